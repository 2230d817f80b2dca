// Guards against codec or framing bugs that make the caller hear noise, clicks or clipped syllables.
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeG711, encodeG711, g711Silence } from '../../src/audio/g711.js';
import { FrameAssembler } from '../../src/audio/frames.js';
import alawmulaw from 'alawmulaw';
import { DropOldestAudioBuffer } from '../../src/audio/inbound-buffer.js';
import { loadResampler, resampleAll } from '../../src/audio/resampler.js';

function sine(freq: number, rate: number, samples: number, amplitude = 8000): Int16Array {
  return Int16Array.from({ length: samples }, (_, i) => Math.round(amplitude * Math.sin((2 * Math.PI * freq * i) / rate)));
}

function snrDb(reference: Int16Array, test: Int16Array): number {
  let signal = 0;
  let noise = 0;
  for (let i = 0; i < reference.length; i++) {
    signal += reference[i]! ** 2;
    noise += (reference[i]! - test[i]!) ** 2;
  }
  return 10 * Math.log10(signal / Math.max(noise, 1));
}

describe('G.711', () => {
  it('round-trips µ-law and A-law with the SNR G.711 promises (> 30 dB)', () => {
    const pcm = sine(440, 8000, 8000);
    for (const encoding of ['mulaw', 'alaw'] as const) {
      const decoded = decodeG711(encoding, encodeG711(encoding, pcm));
      expect(decoded).toHaveLength(pcm.length);
      expect(snrDb(pcm, decoded)).toBeGreaterThan(30);
    }
  });

  it('matches alawmulaw on every byte and every PCM16 value', () => {
    const allBytes = Uint8Array.from({ length: 256 }, (_, i) => i);
    const allSamples = Int16Array.from({ length: 65536 }, (_, i) => i - 32768);
    expect(decodeG711('mulaw', allBytes)).toEqual(alawmulaw.mulaw.decode(allBytes));
    expect(decodeG711('alaw', allBytes)).toEqual(alawmulaw.alaw.decode(allBytes));
    expect(encodeG711('mulaw', allSamples)).toEqual(alawmulaw.mulaw.encode(allSamples));
    expect(encodeG711('alaw', allSamples)).toEqual(alawmulaw.alaw.encode(allSamples));
  });

  it('a decoded frame keeps its samples while later frames fill and roll over the shared slabs', () => {
    const first = decodeG711('mulaw', new Uint8Array(160).fill(0x10));
    const expected = Array.from(first);
    for (let i = 0; i < 2000; i++) decodeG711('mulaw', new Uint8Array(160).fill(i & 0xff)); // > 4 slabs
    expect(Array.from(first)).toEqual(expected);
  });

  it('uses the byte that decodes to silence for padding', () => {
    for (const encoding of ['mulaw', 'alaw'] as const) {
      const decoded = decodeG711(encoding, new Uint8Array([g711Silence(encoding)]));
      expect(Math.abs(decoded[0]!)).toBeLessThanOrEqual(8);
    }
  });
});

describe('framing', () => {
  it('hands back whole 160-byte frames and pads the remainder with silence on flush', () => {
    const assembler = new FrameAssembler('mulaw');
    expect(assembler.push(new Uint8Array(100).fill(1))).toHaveLength(0);
    expect(assembler.push(new Uint8Array(300).fill(1))).toHaveLength(320);
    const tail = assembler.flush();
    expect(tail).toHaveLength(160);
    expect(tail[79]).toBe(1);
    expect(tail[80]).toBe(0xff);
    expect(assembler.flush()).toHaveLength(0);
  });
});

describe('resampling', () => {
  beforeAll(loadResampler);

  it('keeps a 440 Hz tone intact through 8 → 16 → 8 kHz', () => {
    const pcm = sine(440, 8000, 8000);
    const back = resampleAll(resampleAll(pcm, 8000, 16000), 16000, 8000);
    expect(back).toHaveLength(pcm.length);
    // Compare away from the edges, allowing for the filter's group delay.
    let best = -Infinity;
    for (let shift = -4; shift <= 4; shift++) {
      const a = pcm.subarray(200, 7800);
      const b = back.subarray(200 + shift, 7800 + shift);
      best = Math.max(best, snrDb(a, b));
    }
    expect(best).toBeGreaterThan(25);
  });

  it('removes content above the new Nyquist when downsampling 22.05 kHz TTS audio to 8 kHz', () => {
    const high = sine(6000, 22050, 22050);
    const down = resampleAll(high, 22050, 8000);
    const rms = Math.sqrt(down.subarray(100, 7900).reduce((s, v) => s + v * v, 0) / 7800);
    expect(rms).toBeLessThan(200);
  });
});

describe('inbound buffer', () => {
  it('drops the oldest audio beyond its capacity and counts it', () => {
    const buffer = new DropOldestAudioBuffer(480);
    for (let i = 0; i < 5; i++) buffer.push(new Int16Array(160).fill(i));
    expect(buffer.bufferedSamples).toBe(480);
    expect(buffer.dropped).toBe(320);
    expect(buffer.take(160)![0]).toBe(2);
  });

  it('keeps order across the ring\'s end, and a push larger than the whole buffer keeps its newest samples', () => {
    const buffer = new DropOldestAudioBuffer(500);
    const ramp = (from: number, n: number): Int16Array => Int16Array.from({ length: n }, (_, i) => from + i);
    let next = 0;
    let expected = 0;
    // 160-sample frames in, 256-sample chunks out: reads and writes wrap the ring at every offset.
    for (let round = 0; round < 40; round++) {
      buffer.push(ramp(next, 160));
      next += 160;
      while (buffer.bufferedSamples >= 256) {
        const peeked = Array.from(buffer.peek(256)!);
        const chunk = buffer.take(256)!;
        expect(Array.from(chunk)).toEqual(peeked);
        expect(chunk[0]).toBe(expected);
        expect(chunk[255]).toBe(expected + 255);
        expected += 256;
      }
    }
    expect(buffer.dropped).toBe(0);
    buffer.push(ramp(10_000, 1200));
    expect(buffer.bufferedSamples).toBe(500);
    expect(buffer.take(1)![0]).toBe(10_700);
    buffer.skip(10_000);
    expect(buffer.bufferedSamples).toBe(0);
  });

  it('copies out the newest samples for a pre-roll, across the ring\'s end, without taking them', () => {
    const buffer = new DropOldestAudioBuffer(500);
    const ramp = (from: number, n: number): Int16Array => Int16Array.from({ length: n }, (_, i) => from + i);
    for (let next = 0; next < 160 * 13; next += 160) {
      buffer.push(ramp(next, 160));
      const newest = buffer.latest(300);
      const buffered = Math.min(500, next + 160);
      expect(newest.length).toBe(Math.min(300, buffered));
      expect(Array.from(newest)).toEqual(Array.from(ramp(next + 160 - newest.length, newest.length)));
      expect(buffer.bufferedSamples).toBe(buffered);
    }
    const copy = buffer.latest(10);
    buffer.push(new Int16Array(500)); // overwrites the whole ring
    expect(Array.from(copy)).toEqual(Array.from(ramp(160 * 13 - 10, 10)));
    expect(buffer.latest(1000).length).toBe(500);
    expect(new DropOldestAudioBuffer(10).latest(5).length).toBe(0);
  });

  it('returns nothing until a whole chunk is buffered', () => {
    const buffer = new DropOldestAudioBuffer(1000);
    buffer.push(new Int16Array(100));
    expect(buffer.take(256)).toBeUndefined();
    buffer.push(new Int16Array(200));
    expect(buffer.take(256)).toHaveLength(256);
    expect(buffer.bufferedSamples).toBe(44);
  });
});
