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

/**
 * Decoded frames are views into shared slabs, as Node pools small Buffers: a fresh Int16Array per
 * 20 ms frame costs ~0.9 µs here (an off-heap backing store each, freed by the GC later), a view
 * ~0.07 µs. A slab is never reused, so a view stays valid as long as anyone holds it.
 */
const SLAB_SAMPLES = 64 * 1024;
let slab = new Int16Array(SLAB_SAMPLES);
let slabUsed = 0;

function pcmArray(length: number): Int16Array {
  if (length > SLAB_SAMPLES / 16) return new Int16Array(length);
  if (slabUsed + length > SLAB_SAMPLES) {
    slab = new Int16Array(SLAB_SAMPLES);
    slabUsed = 0;
  }
  const out = slab.subarray(slabUsed, slabUsed + length);
  slabUsed += length;
  return out;
}

export function decodeG711(encoding: G711Encoding, bytes: Uint8Array): Int16Array {
  const table = DECODE[encoding];
  const out = pcmArray(bytes.length);
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
