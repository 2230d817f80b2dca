// Guards the shared Silero VAD: real speech detected, calls batched into one inference, silence answered for free, order kept.
import { spawnSync } from 'node:child_process';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { SileroVad, WorkerSileroInference, type SileroInference } from '../../src/engines/local/silero-vad.js';
import type { VadResult } from '../../src/engines/types.js';
import { phoneSpeech, RECORDINGS, timeline } from '../helpers/speech.js';

let vad: SileroVad;
beforeAll(async () => {
  // The tests push audio faster than real time: a backlog bound of a minute keeps a cold first
  // inference from dropping audio (the bound itself is the inbound buffer's test).
  vad = await SileroVad.load({ maxBacklogMs: 60_000 });
});
afterAll(async () => vad?.close());

async function run(streams: Int16Array[], on: SileroVad = vad): Promise<VadResult[][]> {
  const results = streams.map(() => [] as VadResult[]);
  const handles = streams.map((_, i) => on.createStream((r) => results[i]!.push(r)));
  const frames = Math.max(...streams.map((s) => s.length)) / 160;
  for (let f = 0; f < frames; f++) {
    streams.forEach((pcm, i) => handles[i]!.push(pcm.subarray(f * 160, f * 160 + 160)));
    if (f % 4 === 3) await new Promise((r) => setTimeout(r, 1));
  }
  const expected = streams.map((s) => Math.floor(s.length / 256));
  while (results.some((r, i) => r.length < expected[i]!)) await new Promise((r) => setTimeout(r, 5));
  handles.forEach((h) => h.close());
  return results;
}

describe('Silero VAD (shared, batched)', () => {
  it('finds real speech and not the silence around it', async () => {
    const speech = await phoneSpeech(RECORDINGS.illDisposed);
    const [results] = await run([timeline(5000, [[1000, speech]])]);
    const at = (ms: number) => results![Math.floor(ms / 32)]!.probability;
    expect(at(300)).toBeLessThan(0.2);
    expect(Math.max(...results!.slice(Math.floor(1400 / 32), Math.floor(3500 / 32)).map((r) => r.probability))).toBeGreaterThan(0.9);
    expect(at(4800)).toBeLessThan(0.2);
  });

  it('answers in order with stream positions advancing one chunk at a time', async () => {
    const speech = await phoneSpeech(RECORDINGS.amiable);
    const [results] = await run([timeline(2000, [[0, speech]])]);
    expect(results!.map((r) => r.endSample)).toEqual(results!.map((_, i) => (i + 1) * 256));
  });

  it('batches the chunks of concurrent calls into shared inferences', async () => {
    const speech = await phoneSpeech(RECORDINGS.coldHearted);
    const before = { ...vad.stats };
    await run(Array.from({ length: 12 }, () => timeline(1000, [[0, speech]])));
    const batches = vad.stats.batches - before.batches;
    const chunks = vad.stats.chunks - before.chunks;
    const gated = vad.stats.gatedChunks - before.gatedChunks;
    expect(chunks + gated).toBe(12 * Math.floor(8000 / 256));
    expect(chunks).toBeGreaterThan(gated);
    expect(chunks / batches).toBeGreaterThan(4);
  });

  it('answers digital silence and idle line noise without running the model', async () => {
    const before = { ...vad.stats };
    const quiet = Int16Array.from({ length: 8000 }, () => Math.round((Math.random() - 0.5) * 30));
    const [results] = await run([quiet]);
    expect(results!.every((r) => r.probability === 0)).toBe(true);
    expect(vad.stats.chunks - before.chunks).toBe(0);
    expect(vad.stats.gatedChunks - before.gatedChunks).toBe(results!.length);
  });

  it('on a noisy line, skips the steady noise and still finds the speech where the model alone does', async () => {
    const ungated = await SileroVad.load({ maxBacklogMs: 60_000, speechGate: false });
    try {
      const speech = await phoneSpeech(RECORDINGS.illDisposed);
      const line = withNoise(timeline(8000, [[3000, speech]]), -50);
      const before = { ...vad.stats };
      const [gated] = await run([line]);
      const inferred = vad.stats.chunks - before.chunks;
      const [reference] = await run([line], ungated);
      const speechChunks = (results: VadResult[]): number[] => results.flatMap((r, i) => (r.probability >= 0.5 ? [i] : []));
      const withGate = speechChunks(gated!);
      const alone = speechChunks(reference!);
      expect(alone.length).toBeGreaterThan(20);
      // Same onset, same end, same speech in between (to a chunk or two of the model's own wobble).
      expect(Math.abs(withGate[0]! - alone[0]!)).toBeLessThanOrEqual(1);
      expect(Math.abs(withGate.at(-1)! - alone.at(-1)!)).toBeLessThanOrEqual(2);
      expect(Math.abs(withGate.length - alone.length)).toBeLessThanOrEqual(3);
      // The 3 s of noise before the words and the ~2.5 s after them cost almost no inference.
      const speechSpan = alone.at(-1)! - alone[0]! + 1;
      expect(inferred).toBeLessThan(speechSpan + 40);
      expect(inferred).toBeLessThan(reference!.length / 2);
    } finally {
      await ungated.close();
    }
  });

  it('when inference fails mid-speech, the chunks still get answers and the silence after it is answered again', async () => {
    let calls = 0;
    const flaky: SileroInference = {
      name: 'flaky',
      run: async (size, _input, state) => {
        if (++calls > 3) throw new Error('backend gone');
        return { probabilities: new Float32Array(size).fill(0.9), nextState: state, inferenceMs: 0 };
      },
      close: async () => {},
    };
    const failing = new SileroVad(flaky, { maxBacklogMs: 60_000, onError: () => {} });
    const results: VadResult[] = [];
    const stream = failing.createStream((r) => results.push(r));
    const loud = Int16Array.from({ length: 256 * 6 }, (_, i) => (i % 2 === 0 ? 8000 : -8000));
    for (let i = 0; i < 6; i++) {
      stream.push(loud.subarray(i * 256, (i + 1) * 256));
      await new Promise((r) => setTimeout(r, 5));
    }
    stream.push(new Int16Array(256 * 20)); // then digital silence
    await new Promise((r) => setTimeout(r, 50));
    expect(failing.failure?.message).toBe('backend gone');
    expect(results.map((r) => r.endSample)).toEqual(Array.from({ length: 26 }, (_, i) => (i + 1) * 256));
    expect(results.slice(0, 3).every((r) => Math.abs(r.probability - 0.9) < 1e-6)).toBe(true);
    expect(results.slice(3).every((r) => r.probability === 0)).toBe(true);
    await failing.close();
  });

  it('answers an inferred chunk with its own end, even when audio is dropped from the backlog meanwhile', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const slow: SileroInference = {
      name: 'slow',
      run: async (size, _input, state) => {
        await held;
        return { probabilities: new Float32Array(size).fill(0.9), nextState: state, inferenceMs: 0 };
      },
      close: async () => {},
    };
    // A backlog of 512 samples: what arrives while the first chunk is inferred overflows it.
    const vad = new SileroVad(slow, { maxBacklogMs: 64, speechGate: false, batchWindowMs: 0, onError: () => {} });
    const results: VadResult[] = [];
    const stream = vad.createStream((r) => results.push(r));
    stream.push(new Int16Array(256).fill(4000));
    await new Promise((r) => setTimeout(r, 5));
    stream.push(new Int16Array(256 * 4).fill(4000)); // 1024 samples into a 512-sample backlog: 512 dropped
    expect((stream as unknown as { droppedSamples: number }).droppedSamples).toBe(512);
    release();
    await new Promise((r) => setTimeout(r, 20));
    // The first chunk ends at 256; the two kept after the drop end where the caller's timeline puts them.
    expect(results.map((r) => r.endSample)).toEqual([256, 1024, 1280]);
    await vad.close();
  });

  it('reports a dead inference thread as a failure instead of leaving calls waiting on it', async () => {
    const dying = await SileroVad.load({ onError: () => {} });
    const speech = await phoneSpeech(RECORDINGS.amiable);
    await (dying as unknown as { inference: { worker: { terminate(): Promise<number> } } }).inference.worker.terminate();
    const results: number[] = [];
    const stream = dying.createStream((r) => results.push(r.probability));
    stream.push(speech.subarray(0, 8000));
    await new Promise((r) => setTimeout(r, 100));
    expect(dying.failure?.message).toBe('Silero VAD worker exited');
    // Quiet leading chunks may still be answered by the gate; no speech chunk was inferred.
    expect(results.every((p) => p === 0)).toBe(true);
    stream.push(speech.subarray(8000, 16000));
    await new Promise((r) => setTimeout(r, 50));
    expect(dying.failure).toBeDefined();
    await dying.close();
  });
});

describe('Silero VAD inference thread', () => {
  it('closes after the inferences in flight, by letting the thread exit rather than killing it', async () => {
    const inference = await WorkerSileroInference.start();
    const worker = (inference as unknown as { worker: { terminate(): Promise<number>; once(event: 'exit', listener: (code: number) => void): void } }).worker;
    const terminate = vi.spyOn(worker, 'terminate');
    const exitCode = new Promise<number>((resolve) => worker.once('exit', resolve));
    const size = 64;
    const inFlight = [1, 2, 3].map(() => inference.run(size, new Float32Array(size * 288), new Float32Array(2 * size * 128)));
    await inference.close();
    // Every run sent before the close was answered, and the thread left on its own (exit code 0).
    for (const reply of await Promise.all(inFlight)) expect(reply.probabilities).toHaveLength(size);
    expect(await exitCode).toBe(0);
    expect(terminate).not.toHaveBeenCalled();
    await expect(inference.run(1, new Float32Array(288), new Float32Array(256))).rejects.toThrow(/exited/);
  });

  it('keeps a script alive until the thread has closed, so the code after close() runs', () => {
    const run = spawnSync(process.execPath, ['--import', 'tsx', 'test/fixtures/close-vad-then-exit.ts'], { encoding: 'utf8', timeout: 30_000 });
    expect(run.stderr).not.toMatch(/Error/);
    expect(run.status).toBe(0);
    expect(run.stdout.trim()).toBe('closed');
  });
});

describe('Silero VAD batch window (calls in speech share an inference)', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setImmediate', 'Date'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  /** A model that answers at once and records the size of each batch it is given. */
  function recordingVad(batchWindowMs: number): { vad: SileroVad; sizes: number[] } {
    const sizes: number[] = [];
    const inference: SileroInference = {
      name: 'recording',
      run: async (size, _input, state) => {
        sizes.push(size);
        return { probabilities: new Float32Array(size).fill(0.9), nextState: state, inferenceMs: 0 };
      },
      close: async () => {},
    };
    // No gate: every chunk needs the model, as for a caller who is talking.
    return { vad: new SileroVad(inference, { speechGate: false, batchWindowMs, now: () => Date.now() }), sizes };
  }
  /** `count` chunks of loud audio. */
  const chunk = (count = 1): Int16Array => Int16Array.from({ length: 256 * count }, (_, i) => (i % 2 === 0 ? 4000 : -4000));
  const settle = async (ms = 0): Promise<void> => {
    await vi.advanceTimersByTimeAsync(ms);
  };

  it('answers a lone talker at once and batches two talkers, the first waiting for the second', async () => {
    const { vad, sizes } = recordingVad(1000);
    const a: number[] = [];
    const b: number[] = [];
    const streamA = vad.createStream((r) => a.push(r.endSample));
    const streamB = vad.createStream((r) => b.push(r.endSample));
    streamA.push(chunk());
    await settle();
    expect(sizes).toEqual([1]); // the only call in speech: nothing to wait for
    streamB.push(chunk());
    await settle(10);
    expect(sizes).toEqual([1]); // B's chunk waits for A's next one
    streamA.push(chunk());
    await settle();
    expect(sizes).toEqual([1, 2]); // both talkers in one inference, long before the window ends
    expect(a).toEqual([256, 512]);
    expect(b).toEqual([256]);
    streamA.close();
    streamB.close();
    await vad.close();
  });

  it('runs a waiting chunk when the window ends, however many talkers stay silent', async () => {
    const { vad, sizes } = recordingVad(30);
    const results: number[] = [];
    const streams = [0, 1, 2].map(() => vad.createStream(() => {}));
    const talker = vad.createStream((r) => results.push(r.endSample));
    for (const s of [...streams, talker]) s.push(chunk());
    await settle();
    expect(sizes).toEqual([4]);
    talker.push(chunk()); // the other three callers fall silent (their audio stops arriving)
    await settle(29);
    expect(results).toEqual([256]);
    await settle(2);
    expect(sizes).toEqual([4, 1]);
    expect(results).toEqual([256, 512]);
    await vad.close();
  });

  it('does not hold back a call that has fallen a chunk behind', async () => {
    const { vad, sizes } = recordingVad(1000);
    const a: number[] = [];
    const streamA = vad.createStream((r) => a.push(r.endSample));
    const streamB = vad.createStream(() => {});
    streamA.push(chunk());
    streamB.push(chunk());
    await settle();
    expect(sizes).toEqual([2]);
    streamA.push(chunk(2)); // two chunks at once
    await settle();
    expect(a).toEqual([256, 512, 768]); // both answered without waiting for B
    expect(sizes).toEqual([2, 1, 1]);
    await vad.close();
  });

  it('with a window of 0 never waits', async () => {
    const { vad, sizes } = recordingVad(0);
    const streamA = vad.createStream(() => {});
    const streamB = vad.createStream(() => {});
    streamA.push(chunk());
    streamB.push(chunk());
    await settle();
    streamA.push(chunk());
    await settle();
    expect(sizes).toEqual([2, 1]);
    await vad.close();
  });

  it('a call that hangs up stops counting as a talker', async () => {
    const { vad, sizes } = recordingVad(1000);
    const streamA = vad.createStream(() => {});
    const streamB = vad.createStream(() => {});
    streamA.push(chunk());
    streamB.push(chunk());
    await settle();
    streamB.close();
    streamA.push(chunk());
    await settle();
    expect(sizes).toEqual([2, 1]); // no wait for B's chunk: B is gone
    await vad.close();
  });
});

/** The line's steady noise: Gaussian, at `dbfs` RMS, added to the signal (seeded, so runs repeat). */
function withNoise(signal: Int16Array, dbfs: number): Int16Array {
  const rms = 32768 * 10 ** (dbfs / 20);
  let seed = 12345;
  const uniform = (): number => ((seed = (seed * 1103515245 + 12345) % 2147483648) + 1) / 2147483649;
  return Int16Array.from(signal, (s) => {
    const gaussian = Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
    return Math.max(-32768, Math.min(32767, Math.round(s + gaussian * rms)));
  });
}
