/** G.711 µ-law and A-law ↔ PCM16, through `alawmulaw`. */
import alawmulaw from 'alawmulaw';

export type G711Encoding = 'mulaw' | 'alaw';

export function decodeG711(encoding: G711Encoding, bytes: Uint8Array): Int16Array {
  return encoding === 'mulaw' ? alawmulaw.mulaw.decode(bytes) : alawmulaw.alaw.decode(bytes);
}

export function encodeG711(encoding: G711Encoding, pcm: Int16Array): Uint8Array {
  return encoding === 'mulaw' ? alawmulaw.mulaw.encode(pcm) : alawmulaw.alaw.encode(pcm);
}

/** The byte that decodes to digital silence: fills the tail of a last, partial frame. */
export function g711Silence(encoding: G711Encoding): number {
  return encoding === 'mulaw' ? 0xff : 0xd5;
}
