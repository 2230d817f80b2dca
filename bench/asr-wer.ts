/**
 * Word error rate and speed of the local pocketsphinx recognizer on the real recordings in Debian's
 * pocketsphinx-testdata that come with reference transcripts:
 *   librivox/*.wav (+ librivox/transcription), cards/*.wav (+ cards/cards.transcription), and
 *   goforward.raw, whose reference "go forward ten meters" is the one pocketsphinx's own tests assert.
 * Each file is recognised twice: at 16 kHz as recorded, and as a phone call would deliver it
 * (16 → 8 kHz, µ-law encode, decode, fed to PocketsphinxAsr at 8 kHz in 20 ms frames).
 *
 *   npx tsx bench/asr-wer.ts [--workers N] [--worker-args "-dither yes"] [--testdata DIR]
 *
 * RTF (real-time factor) = wall time from the first frame to the final / audio duration, one
 * utterance at a time on one worker (audio pushed as fast as it is accepted). The throughput line
 * runs every telephone utterance at once through N workers (default: CPU count).
 */
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { decodeG711, encodeG711 } from '../src/audio/g711.js';
import { loadResampler, resampleAll } from '../src/audio/resampler.js';
import { readWav } from '../src/audio/wav.js';
import { LIVE_DECODER_ARGS, PocketsphinxAsr } from '../src/engines/local/pocketsphinx-asr.js';
import { wordErrorRate, type WordErrorRate } from '../src/engines/local/word-error-rate.js';

interface Recording {
  name: string;
  reference: string;
  pcm16k: Int16Array;
}

interface Recognition {
  text: string;
  wallMs: number;
}

const { values } = parseArgs({
  options: {
    workers: { type: 'string', default: String(cpus().length) },
    // Default: the live decoder settings; pass --worker-args="" for pocketsphinx's full multi-pass search.
    'worker-args': { type: 'string', default: LIVE_DECODER_ARGS.join(' ') },
    testdata: { type: 'string', default: process.env.POCKETSPHINX_TESTDATA ?? '/usr/share/pocketsphinx/test/data' },
  },
});
const testdata = values.testdata;
const workerArgs = values['worker-args'].split(/\s+/).filter((a) => a.length > 0);
const throughputWorkers = Math.max(1, Number(values.workers));

/** Reads a `<s> words </s> (fileid)` transcription file into fileid → words. */
function readTranscription(path: string): Map<string, string> {
  const references = new Map<string, string>();
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const match = /^(.*)\(([^()]+)\)\s*$/.exec(line.trim());
    if (match === null) continue;
    references.set(match[2]!.trim(), match[1]!.replace(/<\/?s>/g, ' ').replace(/\s+/g, ' ').trim());
  }
  return references;
}

function loadWav16k(path: string): Int16Array {
  const audio = readWav(readFileSync(path));
  return audio.sampleRate === 16000 ? audio.samples : resampleAll(audio.samples, audio.sampleRate, 16000);
}

function loadRecordings(): Recording[] {
  const recordings: Recording[] = [];
  for (const [dir, transcription] of [
    ['librivox', 'transcription'],
    ['cards', 'cards.transcription'],
  ] as const) {
    for (const [id, reference] of readTranscription(join(testdata, dir, transcription))) {
      recordings.push({ name: `${dir}/${id}`, reference, pcm16k: loadWav16k(join(testdata, dir, `${id}.wav`)) });
    }
  }
  const raw = readFileSync(join(testdata, 'goforward.raw'));
  const goforward = new Int16Array(raw.byteLength >> 1);
  for (let i = 0; i < goforward.length; i++) goforward[i] = raw.readInt16LE(i * 2);
  recordings.push({ name: 'goforward.raw', reference: 'go forward ten meters', pcm16k: goforward });
  return recordings;
}

/** What a phone call delivers: 8 kHz, through µ-law and back. */
function telephone(pcm16k: Int16Array): Int16Array {
  return decodeG711('mulaw', encodeG711('mulaw', resampleAll(pcm16k, 16000, 8000)));
}

function recognize(asr: PocketsphinxAsr, callId: string, pcm: Int16Array, sampleRate: number): Promise<Recognition> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const stream = asr.createStream(callId, (event) => {
      if (event.type === 'final') resolve({ text: event.text, wallMs: performance.now() - started });
      else if (event.type === 'error') reject(event.error);
    });
    const frame = sampleRate / 50; // 20 ms, as a call delivers it
    for (let i = 0; i < pcm.length; i += frame) stream.push(pcm.subarray(i, i + frame));
    stream.end();
  });
}

function memoryOf(pid: number): { rssMb: number; peakMb: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN);
    return { rssMb: kb('VmRSS') / 1024, peakMb: kb('VmHWM') / 1024 };
  } catch {
    return undefined;
  }
}

function pct(x: number): string {
  return `${(x * 100).toFixed(1)}%`.padStart(7);
}

async function main(): Promise<void> {
  await loadResampler();
  const recordings = loadRecordings();
  const phone = recordings.map((r) => telephone(r.pcm16k));

  const wide = await PocketsphinxAsr.start({ workers: 1, inputSampleRate: 16000, workerArgs });
  const narrow = await PocketsphinxAsr.start({ workers: 1, inputSampleRate: 8000, workerArgs });
  // Warm-up (first utterance pays for page faults in the model files).
  await recognize(wide, 'warmup', recordings[0]!.pcm16k, 16000);
  await recognize(narrow, 'warmup', phone[0]!, 8000);

  const rows: { name: string; seconds: number; wide: WordErrorRate; narrow: WordErrorRate; hyp8k: string }[] = [];
  let audioMs = 0;
  let wideMs = 0;
  let narrowMs = 0;
  for (const [index, recording] of recordings.entries()) {
    const a = await recognize(wide, recording.name, recording.pcm16k, 16000);
    const b = await recognize(narrow, recording.name, phone[index]!, 8000);
    audioMs += (recording.pcm16k.length / 16000) * 1000;
    wideMs += a.wallMs;
    narrowMs += b.wallMs;
    rows.push({
      name: recording.name,
      seconds: recording.pcm16k.length / 16000,
      wide: wordErrorRate(recording.reference, a.text),
      narrow: wordErrorRate(recording.reference, b.text),
      hyp8k: b.text,
    });
  }
  const memory = [...wide.workerPids(), ...narrow.workerPids()].map(memoryOf).filter((m) => m !== undefined);
  await Promise.all([wide.close(), narrow.close()]);

  console.log(`pocketsphinx en-us, ${recordings.length} recordings from ${testdata}`);
  console.log(`${'file'.padEnd(46)} ${'sec'.padStart(5)} ${'words'.padStart(5)} ${'WER16k'.padStart(7)} ${'WER8k'.padStart(7)}  8 kHz µ-law hypothesis`);
  for (const row of rows) {
    console.log(
      `${row.name.padEnd(46)} ${row.seconds.toFixed(1).padStart(5)} ${String(row.wide.referenceWords).padStart(5)} ${pct(row.wide.rate)} ${pct(row.narrow.rate)}  ${row.hyp8k}`,
    );
  }
  const total = (pick: (row: (typeof rows)[number]) => WordErrorRate) => {
    const errors = rows.reduce((sum, row) => sum + pick(row).errors, 0);
    const words = rows.reduce((sum, row) => sum + pick(row).referenceWords, 0);
    const s = rows.reduce((sum, row) => sum + pick(row).substitutions, 0);
    const d = rows.reduce((sum, row) => sum + pick(row).deletions, 0);
    const i = rows.reduce((sum, row) => sum + pick(row).insertions, 0);
    return `${pct(errors / words).trim()} (${errors}/${words} words: ${s} sub, ${d} del, ${i} ins)`;
  };
  console.log(`\nWER 16 kHz:        ${total((r) => r.wide)}`);
  console.log(`WER 8 kHz µ-law:   ${total((r) => r.narrow)}`);
  console.log(`audio: ${(audioMs / 1000).toFixed(1)} s`);
  console.log(`RTF 16 kHz:        ${(wideMs / audioMs).toFixed(3)}  (one utterance at a time, one worker)`);
  console.log(`RTF 8 kHz µ-law:   ${(narrowMs / audioMs).toFixed(3)}  (includes 8→16 kHz resampling in Node)`);
  for (const m of memory) console.log(`worker memory: RSS ${m.rssMb.toFixed(0)} MB, peak ${m.peakMb.toFixed(0)} MB`);

  // Throughput: every telephone utterance at once, through N workers.
  const pool = await PocketsphinxAsr.start({ workers: throughputWorkers, inputSampleRate: 8000, workerArgs });
  const started = performance.now();
  await Promise.all(phone.map((pcm, index) => recognize(pool, `parallel-${index}`, pcm, 8000)));
  const wallMs = performance.now() - started;
  await pool.close();
  console.log(
    `throughput 8 kHz:  ${(audioMs / wallMs).toFixed(1)}× real time with ${throughputWorkers} workers on ${cpus().length} CPUs ` +
      `(${phone.length} utterances at once, ${(wallMs / 1000).toFixed(2)} s wall)`,
  );
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
