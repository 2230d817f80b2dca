// Guards against the local pocketsphinx pool losing, duplicating or leaking ASR results: streams stuck without a worker, events after cancel, or a crashed worker taking the pool down.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { decodeG711, encodeG711 } from '../../src/audio/g711.js';
import { loadResampler, resampleAll } from '../../src/audio/resampler.js';
import { readWav } from '../../src/audio/wav.js';
import { PocketsphinxAsr } from '../../src/engines/local/pocketsphinx-asr.js';
import { wordErrorRate } from '../../src/engines/local/word-error-rate.js';
import type { AsrEvent, AsrStream } from '../../src/engines/types.js';

const TESTDATA = '/usr/share/pocketsphinx/test/data';
const MODEL = '/usr/share/pocketsphinx/model/en-us/en-us/mdef';
const available = existsSync(MODEL) && existsSync(`${TESTDATA}/goforward.raw`);
const BUILD_SCRIPT = fileURLToPath(new URL('../../native/build.sh', import.meta.url));

/** 16 kHz recording → what a phone call delivers: 8 kHz through µ-law and back. */
function telephone(pcm16k: Int16Array): Int16Array {
  return decodeG711('mulaw', encodeG711('mulaw', resampleAll(pcm16k, 16000, 8000)));
}

function readRaw16k(path: string): Int16Array {
  const bytes = readFileSync(path);
  const pcm = new Int16Array(bytes.byteLength >> 1);
  for (let i = 0; i < pcm.length; i++) pcm[i] = bytes.readInt16LE(i * 2);
  return pcm;
}

/** Pushes 20 ms frames; optionally ends the stream. */
function feed(stream: AsrStream, pcm8k: Int16Array, end = true): void {
  for (let i = 0; i < pcm8k.length; i += 160) stream.push(pcm8k.subarray(i, i + 160));
  if (end) stream.end();
}

interface Recorded {
  stream: AsrStream;
  events: AsrEvent[];
  /** Resolves with the stream's final or error event. */
  done: Promise<AsrEvent>;
  /** Resolves at the first partial. */
  firstPartial: Promise<void>;
}

function record(asr: PocketsphinxAsr, callId: string): Recorded {
  const events: AsrEvent[] = [];
  let resolve!: (event: AsrEvent) => void;
  const done = new Promise<AsrEvent>((r) => (resolve = r));
  let partial!: () => void;
  const firstPartial = new Promise<void>((r) => (partial = r));
  const stream = asr.createStream(callId, (event) => {
    events.push(event);
    if (event.type === 'partial') partial();
    else resolve(event);
  });
  return { stream, events, done, firstPartial };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!available)('PocketsphinxAsr streams (Debian pocketsphinx-en-us + pocketsphinx-testdata)', () => {
  let goforward8k: Int16Array;
  let librivox8k: Int16Array;
  const pools: PocketsphinxAsr[] = [];
  async function startPool(workers: number): Promise<PocketsphinxAsr> {
    const asr = await PocketsphinxAsr.start({ workers });
    pools.push(asr);
    return asr;
  }

  beforeAll(async () => {
    execFileSync('bash', [BUILD_SCRIPT], { stdio: 'pipe' });
    await loadResampler();
    goforward8k = telephone(readRaw16k(`${TESTDATA}/goforward.raw`));
    const librivox = readWav(readFileSync(`${TESTDATA}/librivox/sense_and_sensibility_01_austen_64kb-0870.wav`));
    librivox8k = telephone(librivox.samples);
  }, 120_000);

  afterEach(async () => {
    await Promise.all(pools.splice(0).map((asr) => asr.close()));
  });

  it('transcribes goforward.raw after 8 kHz µ-law telephone conversion within the measured error bound', async () => {
    const asr = await startPool(1);
    const call = record(asr, 'call-1');
    feed(call.stream, goforward8k);
    const final = await call.done;
    expect(final.type).toBe('final');
    if (final.type !== 'final') return;
    // Measured: exact ("go forward ten meters"), as at 16 kHz; allow one wrong word of slack.
    expect(wordErrorRate('go forward ten meters', final.text).rate).toBeLessThanOrEqual(0.25);
  }, 30_000);

  it('delivers partial hypotheses before the single final of a seven-second utterance', async () => {
    const asr = await startPool(1);
    const call = record(asr, 'call-1');
    feed(call.stream, librivox8k);
    await call.done;
    const partials = call.events.filter((e) => e.type === 'partial');
    expect(partials.length).toBeGreaterThanOrEqual(2);
    expect(call.events.filter((e) => e.type === 'final')).toHaveLength(1);
    expect(call.events.at(-1)?.type).toBe('final');
    for (const partial of partials) if (partial.type === 'partial') expect(partial.text.length).toBeGreaterThan(0);
    // Consecutive partials differ: the worker only reports a changed hypothesis.
    for (let i = 1; i < partials.length; i++) expect(partials[i]).not.toEqual(partials[i - 1]);
  }, 30_000);

  it('finishes every stream with one final when there are more concurrent streams than workers', async () => {
    const asr = await startPool(2);
    const calls = Array.from({ length: 5 }, (_, i) => record(asr, `call-${i}`));
    expect(asr.queuedStreams).toBe(3);
    for (const call of calls) feed(call.stream, goforward8k);
    const finals = await Promise.all(calls.map((c) => c.done));
    for (const [i, final] of finals.entries()) {
      expect(final.type).toBe('final');
      if (final.type === 'final') expect(final.text).toContain('go forward');
      expect(calls[i]!.events.filter((e) => e.type !== 'partial')).toHaveLength(1);
    }
    expect(asr.queuedStreams).toBe(0);
  }, 60_000);

  it('keeps a cancelled stream silent and hands its worker to the next stream', async () => {
    const asr = await startPool(1);
    const cancelled = record(asr, 'call-a');
    feed(cancelled.stream, goforward8k.subarray(0, 8000), false);
    const next = record(asr, 'call-b');
    expect(asr.queuedStreams).toBe(1);
    feed(next.stream, goforward8k);
    cancelled.stream.cancel();
    expect(asr.queuedStreams).toBe(0);
    const final = await next.done;
    expect(final.type).toBe('final');
    await sleep(300);
    expect(cancelled.events).toEqual([]);
  }, 30_000);

  it('drops the final of a stream cancelled right after end()', async () => {
    const asr = await startPool(1);
    const cancelled = record(asr, 'call-a');
    feed(cancelled.stream, goforward8k);
    cancelled.stream.cancel();
    // The worker still decodes the cancelled audio and writes its final; that line must be dropped.
    const next = record(asr, 'call-b');
    feed(next.stream, goforward8k);
    expect((await next.done).type).toBe('final');
    await sleep(200);
    expect(cancelled.events).toEqual([]);
    expect(next.events.filter((e) => e.type === 'final')).toHaveLength(1);
  }, 30_000);

  it('gives the in-flight stream an error when its worker is killed and keeps serving afterwards', async () => {
    const asr = await startPool(1);
    const [pid] = asr.workerPids();
    expect(pid).toBeDefined();
    const victim = record(asr, 'call-a');
    feed(victim.stream, librivox8k, false);
    await victim.firstPartial; // the worker is mid-utterance
    process.kill(pid!, 'SIGKILL');
    const failure = await victim.done;
    expect(failure.type).toBe('error');
    if (failure.type === 'error') expect(failure.error.message).toMatch(/SIGKILL/);
    victim.stream.end(); // ending a failed stream is harmless and yields nothing more
    const after = record(asr, 'call-b');
    feed(after.stream, goforward8k);
    const final = await after.done;
    expect(final.type).toBe('final');
    if (final.type === 'final') expect(final.text).toContain('go forward');
    expect(asr.workerPids()).not.toContain(pid);
    expect(victim.events.filter((e) => e.type !== 'partial')).toHaveLength(1);
  }, 30_000);

  it('drops the oldest audio beyond the per-stream bound while the stream waits for a worker', async () => {
    const warnings: { obj: object; msg: string }[] = [];
    const asr = await PocketsphinxAsr.start({
      workers: 1,
      maxBufferedSeconds: 1,
      logger: { warn: (obj, msg) => warnings.push({ obj, msg }) },
    });
    pools.push(asr);
    const busy = record(asr, 'call-a');
    feed(busy.stream, goforward8k.subarray(0, 4000), false);
    const waiting = record(asr, 'call-b');
    feed(waiting.stream, goforward8k); // 2.8 s, of which only the last 1 s is kept
    busy.stream.cancel();
    expect((await waiting.done).type).toBe('final');
    const dropped = warnings.map((w) => (w.obj as { droppedMs?: number }).droppedMs).find((ms) => ms !== undefined);
    expect(dropped).toBeGreaterThan(1700);
    expect(dropped).toBeLessThan(1900);
  }, 30_000);

  it('fails to start with an error naming the binary and native/build.sh when the worker is missing', async () => {
    await expect(PocketsphinxAsr.start({ workers: 1, binaryPath: '/nonexistent/pocketsphinx-worker' })).rejects.toThrow(
      /\/nonexistent\/pocketsphinx-worker.*native\/build\.sh/,
    );
  });

  it('ends in-flight and queued streams with an error on close() and kills the workers', async () => {
    const asr = await PocketsphinxAsr.start({ workers: 1 });
    const pids = asr.workerPids();
    const inFlight = record(asr, 'call-a');
    const queued = record(asr, 'call-b');
    feed(inFlight.stream, goforward8k, false);
    await asr.close();
    expect((await inFlight.done).type).toBe('error');
    expect((await queued.done).type).toBe('error');
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow();
  }, 30_000);
});
