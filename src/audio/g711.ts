/**
 * G.711 µ-law and A-law ↔ PCM16. `alawmulaw` defines the codec; its per-sample functions are run
 * once here over every possible input to fill lookup tables, because every call decodes 8000
 * samples a second through this and a table read costs a fraction of the per-sample arithmetic
 * (decode: 256 entries; encode: one byte per PCM16 value, 64 KiB).
 */
import alawmulaw from 'alawmulaw';

export type G711Encoding = 'mulaw' | 'alaw';

function decodeTable(decodeSample: (byte: number) => number): Int16Array {
  return Int16Array.from({ length: 256 }, (_, byte) => decodeSample(byte));
}

function encodeTable(encodeSample: (sample: number) => number): Uint8Array {
  // Indexed by the sample's 16-bit two's-complement pattern (sample & 0xffff).
  return Uint8Array.from({ length: 65536 }, (_, index) => encodeSample(index >= 32768 ? index - 65536 : index));
}

const DECODE = { mulaw: decodeTable(alawmulaw.mulaw.decodeSample), alaw: decodeTable(alawmulaw.alaw.decodeSample) };
const ENCODE = { mulaw: encodeTable(alawmulaw.mulaw.encodeSample), alaw: encodeTable(alawmulaw.alaw.encodeSample) };

export function decodeG711(encoding: G711Encoding, bytes: Uint8Array): Int16Array {
  const table = DECODE[encoding];
  const out = new Int16Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = table[bytes[i]!]!;
  return out;
}

export function encodeG711(encoding: G711Encoding, pcm: Int16Array): Uint8Array {
  const table = ENCODE[encoding];
  const out = new Uint8Array(pcm.length);
  for (let i = 0; i < pcm.length; i++) out[i] = table[pcm[i]! & 0xffff]!;
  return out;
}

/** The byte that decodes to digital silence: fills the tail of a last, partial frame. */
export function g711Silence(encoding: G711Encoding): number {
  return encoding === 'mulaw' ? 0xff : 0xd5;
}
