/**
 * Fixed prompts (greeting, apology, goodbye…) synthesized once at start-up and kept as ready-to-send
 * 8 kHz frames, so a call's greeting is on the wire within milliseconds of the stream's `start`.
 */
import type { G711Encoding } from '../audio/g711.js';
import { concatBytes } from '../audio/frames.js';
import type { Tts } from '../engines/types.js';
import { AsyncQueue } from '../util/async-queue.js';
import { SpeechEncoder } from './speech-encoder.js';

export class PromptCache {
  private readonly cache = new Map<string, Uint8Array>();
  /** Renders by the fallback TTS, kept apart so a later warm() can still render them in the primary voice. */
  private readonly fallbackCache = new Map<string, Uint8Array>();

  /** `fallback` speaks the prompts when `tts` cannot (e.g. Triton down at start-up). */
  constructor(
    private readonly tts: Tts,
    private readonly fallback?: Tts,
  ) {}

  async warm(texts: Iterable<string>, voice?: string, encodings: G711Encoding[] = ['mulaw']): Promise<void> {
    for (const text of texts) for (const encoding of encodings) await this.synthesize(text, encoding, voice);
  }

  get(text: string, encoding: G711Encoding, voice?: string): Uint8Array | undefined {
    return this.cache.get(key(text, encoding, voice)) ?? this.fallbackCache.get(key(text, encoding, voice));
  }

  async synthesize(text: string, encoding: G711Encoding, voice?: string): Promise<Uint8Array> {
    const cached = this.cache.get(key(text, encoding, voice));
    if (cached !== undefined) return cached;
    try {
      const frames = await this.render(this.tts, text, encoding, voice);
      this.cache.set(key(text, encoding, voice), frames);
      this.fallbackCache.delete(key(text, encoding, voice));
      return frames;
    } catch (error) {
      if (this.fallback === undefined) throw error;
      const kept = this.fallbackCache.get(key(text, encoding, voice));
      if (kept !== undefined) return kept;
      // The fallback speaks its own default voice.
      const frames = await this.render(this.fallback, text, encoding, undefined);
      this.fallbackCache.set(key(text, encoding, voice), frames);
      return frames;
    }
  }

  private async render(tts: Tts, text: string, encoding: G711Encoding, voice: string | undefined): Promise<Uint8Array> {
    const input = new AsyncQueue<string>();
    input.push(text);
    input.end();
    const encoder = new SpeechEncoder(encoding);
    let frames: Uint8Array = new Uint8Array(0);
    try {
      const request = { callId: 'prompt-cache', text: input, signal: new AbortController().signal, ...(voice ? { voice } : {}) };
      for await (const chunk of tts.synthesize(request)) {
        frames = concatBytes(frames, encoder.encode(chunk.pcm, chunk.sampleRate));
      }
      frames = concatBytes(frames, encoder.flush());
    } finally {
      encoder.destroy();
    }
    return frames;
  }
}

const key = (text: string, encoding: G711Encoding, voice = ''): string => `${encoding}\u0000${voice}\u0000${text}`;
