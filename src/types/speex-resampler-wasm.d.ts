// The package ships a bare Emscripten module factory without type declarations.
declare module '@echogarden/speex-resampler-wasm/simd' {
  const createModule: () => Promise<unknown>;
  export default createModule;
}
declare module '@echogarden/speex-resampler-wasm' {
  const createModule: () => Promise<unknown>;
  export default createModule;
}
