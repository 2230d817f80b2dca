/**
 * PCM16 mono resampling through the SpeexDSP resampler compiled to WASM
 * (`@echogarden/speex-resampler-wasm`). The package ships only the raw Emscripten module, so this
 * file is the small binding: allocate, process, free. One resampler per stream keeps filter state
 * across chunks, so chunk boundaries leave no clicks.
 */
import createSpeexModule from '@echogarden/speex-resampler-wasm/simd';

interface SpeexModule {
  HEAP16: Int16Array;
  HEAPU32: Uint32Array;
  _malloc(bytes: number): number;
  _free(ptr: number): void;
  _speex_resampler_init(channels: number, inRate: number, outRate: number, quality: number, errPtr: number): number;
  _speex_resampler_process_int(st: number, channel: number, inPtr: number, inLenPtr: number, outPtr: number, outLenPtr: number): number;
  _speex_resampler_skip_zeros(st: number): number;
  _speex_resampler_destroy(st: number): void;
}

let modulePromise: Promise<SpeexModule> | undefined;
let loadedModule: SpeexModule | undefined;

/** Loads the WASM module once per process; call before creating resamplers. */
export async function loadResampler(): Promise<void> {
  modulePromise ??= createSpeexModule() as Promise<SpeexModule>;
  loadedModule = await modulePromise;
}

/** Speex quality 0–10; 5 is its "default", and what telephony needs (passband to 3.4 kHz). */
export const DEFAULT_RESAMPLER_QUALITY = 5;

export class Resampler {
  private readonly speex: SpeexModule;
  private state: number;
  private inPtr = 0;
  private outPtr = 0;
  private capacity = 0;
  private readonly lenPtr: number;

  constructor(readonly inRate: number, readonly outRate: number, quality = DEFAULT_RESAMPLER_QUALITY) {
    if (loadedModule === undefined) throw new Error('resampler used before loadResampler() finished');
    this.speex = loadedModule;
    this.lenPtr = this.speex._malloc(8);
    this.state = this.speex._speex_resampler_init(1, inRate, outRate, quality, 0);
    if (this.state === 0) throw new Error(`speex resampler refused ${inRate} → ${outRate} Hz`);
    this.speex._speex_resampler_skip_zeros(this.state);
  }

  /** Resamples one chunk; state carries over to the next call. */
  process(input: Int16Array): Int16Array {
    if (this.state === 0) throw new Error('resampler used after destroy()');
    if (input.length === 0) return new Int16Array(0);
    const outCapacity = Math.ceil((input.length * this.outRate) / this.inRate) + 64;
    this.ensureCapacity(Math.max(input.length, outCapacity));
    const s = this.speex;
    s.HEAP16.set(input, this.inPtr >> 1);
    s.HEAPU32[this.lenPtr >> 2] = input.length;
    s.HEAPU32[(this.lenPtr >> 2) + 1] = outCapacity;
    s._speex_resampler_process_int(this.state, 0, this.inPtr, this.lenPtr, this.outPtr, this.lenPtr + 4);
    const produced = s.HEAPU32[(this.lenPtr >> 2) + 1] ?? 0;
    return s.HEAP16.slice(this.outPtr >> 1, (this.outPtr >> 1) + produced);
  }

  destroy(): void {
    if (this.state === 0) return;
    this.speex._speex_resampler_destroy(this.state);
    this.speex._free(this.lenPtr);
    if (this.inPtr !== 0) this.speex._free(this.inPtr);
    if (this.outPtr !== 0) this.speex._free(this.outPtr);
    this.state = 0;
  }

  private ensureCapacity(samples: number): void {
    if (samples <= this.capacity) return;
    if (this.inPtr !== 0) this.speex._free(this.inPtr);
    if (this.outPtr !== 0) this.speex._free(this.outPtr);
    this.capacity = samples * 2;
    this.inPtr = this.speex._malloc(this.capacity * 2);
    this.outPtr = this.speex._malloc(this.capacity * 2);
  }
}

/** One-shot helper for whole buffers (cached prompts, test fixtures). */
export function resampleAll(input: Int16Array, inRate: number, outRate: number): Int16Array {
  if (inRate === outRate) return input;
  const resampler = new Resampler(inRate, outRate);
  try {
    const body = resampler.process(input);
    // Flush the filter's delay line with silence so the tail is not cut off.
    const tail = resampler.process(new Int16Array(Math.ceil(inRate / 50)));
    const expected = Math.round((input.length * outRate) / inRate);
    const out = new Int16Array(expected);
    out.set(body.subarray(0, expected));
    if (body.length < expected) out.set(tail.subarray(0, expected - body.length), body.length);
    return out;
  } finally {
    resampler.destroy();
  }
}
