/** Real speech for end-to-end tests: Debian's pocketsphinx-testdata recordings, as a phone would carry them. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { loadResampler, resampleAll } from '../../src/audio/resampler.js';
import { readWav } from '../../src/audio/wav.js';
import { decodeG711, encodeG711 } from '../../src/audio/g711.js';

const LIBRIVOX = '/usr/share/pocketsphinx/test/data/librivox';

export const RECORDINGS = {
  /** "he was not an ill disposed young man" (3.0 s) */
  illDisposed: `${LIBRIVOX}/sense_and_sensibility_01_austen_64kb-0880.wav`,
  /** "he might even have been made amiable himself" (3.3 s) */
  amiable: `${LIBRIVOX}/sense_and_sensibility_01_austen_64kb-0930.wav`,
  /** "unless to be rather cold hearted and rather selfish is to be ill disposed" (5.3 s) */
  coldHearted: `${LIBRIVOX}/sense_and_sensibility_01_austen_64kb-0890.wav`,
} as const;

/** A recording at 8 kHz after a µ-law round trip, as it arrives from the phone network. */
export async function phoneSpeech(path: string): Promise<Int16Array> {
  await loadResampler();
  const wav = readWav(readFileSync(path));
  return decodeG711('mulaw', encodeG711('mulaw', resampleAll(wav.samples, wav.sampleRate, 8000)));
}

/** Words spoken by espeak-ng (the Debian binary), at 8 kHz after a µ-law round trip: for short words no recording has. */
export async function spokenWords(text: string): Promise<Int16Array> {
  await loadResampler();
  const wav = readWav(execFileSync('espeak-ng', ['-v', 'en-us', '--stdout', text]));
  return decodeG711('mulaw', encodeG711('mulaw', resampleAll(wav.samples, wav.sampleRate, 8000)));
}

/** Lays clips on a silent 8 kHz timeline: [atMs, pcm] pairs; total length `totalMs`. */
export function timeline(totalMs: number, clips: Array<[number, Int16Array]>): Int16Array {
  const out = new Int16Array((totalMs * 8000) / 1000);
  for (const [atMs, pcm] of clips) out.set(pcm.subarray(0, Math.max(0, out.length - (atMs * 8000) / 1000)), (atMs * 8000) / 1000);
  return out;
}
