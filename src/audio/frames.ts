/**
 * Telephony framing: 8 kHz G.711 travels in 20 ms frames of 160 bytes. Outbound payloads are always
 * whole frames; a last partial frame is padded with encoded silence, never sent short.
 */
import { g711Silence, type G711Encoding } from './g711.js';

export const SAMPLE_RATE_8K = 8000;
export const FRAME_MS = 20;
export const FRAME_BYTES = 160;

export function bytesToMs(bytes: number): number {
  return (bytes / FRAME_BYTES) * FRAME_MS;
}

export function msToBytes(ms: number): number {
  return Math.round((ms / FRAME_MS) * FRAME_BYTES);
}

/** Collects encoded audio of any length and hands back whole frames; `flush` pads the remainder. */
export class FrameAssembler {
  private pending: Uint8Array = new Uint8Array(0);

  constructor(private readonly encoding: G711Encoding) {}

  /** Returns the whole frames now available (possibly empty), keeping the remainder. */
  push(encoded: Uint8Array): Uint8Array {
    const joined = this.pending.length === 0 ? encoded : concatBytes(this.pending, encoded);
    const whole = joined.length - (joined.length % FRAME_BYTES);
    this.pending = joined.slice(whole);
    return joined.subarray(0, whole);
  }

  /** Pads the remainder to a whole frame with silence and returns it (empty if none). */
  flush(): Uint8Array {
    if (this.pending.length === 0) return new Uint8Array(0);
    const frame = new Uint8Array(FRAME_BYTES).fill(g711Silence(this.encoding));
    frame.set(this.pending);
    this.pending = new Uint8Array(0);
    return frame;
  }

  reset(): void {
    this.pending = new Uint8Array(0);
  }
}

export function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
