/**
 * Silero VAD cost per 256-sample chunk (32 ms at 8 kHz): one stream alone (batch 1) against N
 * concurrent streams that the shared `SileroVad` batches into one inference. Each round pushes the
 * next 256 samples of real speech to every stream and awaits every stream's result, as live calls
 * would (each stream starts at a different place in the speech so the batch is not N copies).
 *
 * Both graphs run, one after the other: `derived` (the 8 kHz network re-laid out for batches, the
 * default) and `exported` (the model file as shipped); see silero-8k-graph.ts.
 *
 * Two figures per configuration, both µs per stream-chunk:
 *   - inference: `SileroVad.stats.inferenceMs` (wall time of `session.run`) / chunks
 *   - process CPU: `process.cpuUsage()` over the run (all threads: JS, tensors, onnxruntime) / chunks
 *
 *   npx tsx bench/vad.ts
 */
import { performance } from 'node:perf_hooks';
import { SileroVad, type SileroGraph } from '../src/engines/local/silero-vad.js';
import type { VadStream } from '../src/engines/types.js';
import { phoneSpeech, RECORDINGS } from '../test/helpers/speech.js';
import { fmt, isMain, printTable, processCpuMs, row, type SummaryRow } from './common.js';

const CHUNK = 256;
/** Chunks per second of one 8 kHz stream. */
const CHUNKS_PER_SECOND = 8000 / CHUNK;

export interface VadCase {
  graph: SileroGraph;
  streams: number;
  rounds: number;
  chunks: number;
  batches: number;
  /** µs of inference wall time per stream-chunk. */
  inferenceUs: number;
  /** µs of process CPU per stream-chunk. */
  cpuUs: number;
  wallMs: number;
}

export interface VadBenchResult {
  cases: VadCase[];
  summary: SummaryRow[];
}

export interface VadBenchOptions {
  /** Concurrent stream counts to batch; batch 1 always runs first. */
  streamCounts?: number[];
  /** Each case runs until this much wall time has passed (and at least `minRounds`). */
  secondsPerCase?: number;
}

async function loadSpeech(): Promise<Int16Array> {
  const clips = await Promise.all([RECORDINGS.illDisposed, RECORDINGS.amiable, RECORDINGS.coldHearted].map(phoneSpeech));
  const total = clips.reduce((n, c) => n + c.length, 0);
  const out = new Int16Array(total);
  let at = 0;
  for (const clip of clips) {
    out.set(clip, at);
    at += clip.length;
  }
  return out.subarray(0, out.length - (out.length % CHUNK));
}

async function runCase(vad: SileroVad, graph: SileroGraph, speech: Int16Array, streams: number, seconds: number): Promise<VadCase> {
  const totalChunks = speech.length / CHUNK;
  let pending = 0;
  let roundDone: (() => void) | undefined;
  const onResult = (): void => {
    pending--;
    if (pending === 0) roundDone?.();
  };
  const list: VadStream[] = [];
  const offsets: number[] = [];
  for (let s = 0; s < streams; s++) {
    list.push(vad.createStream(onResult));
    offsets.push(Math.floor((s * totalChunks) / streams));
  }
  let round = 0;
  const oneRound = (): Promise<void> =>
    new Promise<void>((resolve) => {
      pending = streams;
      roundDone = resolve;
      for (let s = 0; s < streams; s++) {
        const c = ((offsets[s] ?? 0) + round) % totalChunks;
        list[s]!.push(speech.subarray(c * CHUNK, (c + 1) * CHUNK));
      }
      round++;
    });

  // Warm-up: first runs of a new batch shape allocate and plan inside onnxruntime.
  for (let i = 0; i < 20; i++) await oneRound();

  const stats0 = { ...vad.stats };
  const cpu0 = processCpuMs().usage;
  const t0 = performance.now();
  let rounds = 0;
  const minRounds = 50;
  while (rounds < minRounds || performance.now() - t0 < seconds * 1000) {
    await oneRound();
    rounds++;
  }
  const wallMs = performance.now() - t0;
  const cpuMs = processCpuMs(cpu0).ms;
  const chunks = vad.stats.chunks - stats0.chunks;
  const batches = vad.stats.batches - stats0.batches;
  const inferenceMs = vad.stats.inferenceMs - stats0.inferenceMs;
  for (const stream of list) stream.close();
  return {
    graph,
    streams,
    rounds,
    chunks,
    batches,
    inferenceUs: (inferenceMs * 1000) / chunks,
    cpuUs: (cpuMs * 1000) / chunks,
    wallMs,
  };
}

export async function runVadBench(options: VadBenchOptions = {}): Promise<VadBenchResult> {
  const counts = options.streamCounts ?? [8, 50, 200];
  const seconds = options.secondsPerCase ?? 3;
  console.log(`\n== Silero VAD: µs per 256-sample chunk, batch 1 vs N streams batched (${seconds} s per case) ==`);
  const speech = await loadSpeech();
  const cases: VadCase[] = [];
  for (const graph of ['derived', 'exported'] as const) {
    const vad = await SileroVad.load({ graph });
    try {
      for (const n of [1, ...counts]) cases.push(await runCase(vad, graph, speech, n, seconds));
    } finally {
      await vad.close();
    }
  }
  const alone = (graph: SileroGraph): VadCase => cases.find((c) => c.graph === graph && c.streams === 1)!;
  printTable(
    ['graph', 'streams', 'avg batch', 'chunks', 'inference µs/chunk', 'process CPU µs/chunk', 'CPU vs alone', 'streams per core (CPU)'],
    cases.map((c) => [
      c.graph,
      String(c.streams),
      fmt(c.chunks / c.batches, 1),
      String(c.chunks),
      fmt(c.inferenceUs, 1),
      fmt(c.cpuUs, 1),
      c.streams === 1 ? '—' : `${fmt(alone(c.graph).cpuUs / c.cpuUs, 1)}× cheaper`,
      fmt(1e6 / (c.cpuUs * CHUNKS_PER_SECOND), 0),
    ]),
  );
  console.log(`(a stream needs ${CHUNKS_PER_SECOND} chunks/s; "streams per core" = 1 s of CPU / (${CHUNKS_PER_SECOND} × CPU µs per chunk))`);

  const summary: SummaryRow[] = cases
    .filter((c) => c.graph === 'derived')
    .map((c) => {
      const exported = cases.find((e) => e.graph === 'exported' && e.streams === c.streams);
      return row(
        c.streams === 1 ? 'VAD µs/chunk, 1 stream alone' : `VAD µs/chunk, ${c.streams} streams batched`,
        `${fmt(c.inferenceUs, 0)} µs inference, ${fmt(c.cpuUs, 0)} µs CPU` +
          (exported === undefined ? '' : ` (exported graph: ${fmt(exported.inferenceUs, 0)} / ${fmt(exported.cpuUs, 0)})`),
      );
    });
  return { cases, summary };
}

if (isMain(import.meta.url)) {
  await runVadBench();
}
