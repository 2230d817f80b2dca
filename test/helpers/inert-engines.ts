/** Engines that do nothing, for tests of the HTTP/WebSocket surface that never reach a real turn. */
import type { Engines } from '../../src/engines/types.js';

export function inertEngines(): Engines {
  const silentLlm = { name: 'inert', async *generate() {} };
  return {
    vad: { chunkSamples: 256, createStream: () => ({ push() {}, close() {} }), close: async () => {} },
    asr: { createStream: () => ({ push() {}, end() {}, cancel() {} }), close: async () => {} },
    llm: silentLlm,
    fallbackLlm: silentLlm,
    tts: { name: 'inert', async *synthesize() {} },
  };
}
