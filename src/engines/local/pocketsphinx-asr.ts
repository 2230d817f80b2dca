/**
 * Local CPU speech recognizer: a pool of `native/build/pocketsphinx-worker` processes (Debian's
 * pocketsphinx 0.8+5prealpha with the en-us model; see native/pocketsphinx-worker.c for the pipe
 * protocol). Each caller utterance is one stream: 8 kHz PCM16 in → 16 kHz through a per-stream
 * SpeexDSP resampler → framed onto a free worker's stdin; the worker answers with
 * newline-delimited JSON partials and one final.
 *
 * A stream holds a worker from the moment it gets one until its final (or cancel). While every
 * worker is busy, the stream's resampled audio waits in a bounded buffer (oldest audio dropped
 * beyond `maxBufferedSeconds`) and is replayed when a worker frees up, in stream creation order.
 * Every line from a worker carries the utterance id it belongs to, so lines of a cancelled
 * utterance that were already in the pipe are recognised and dropped; that is what lets cancel()
 * hand the worker to the next stream at once.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { loadResampler, Resampler } from '../../audio/resampler.js';
import type { Asr, AsrEvent, AsrStream } from '../types.js';

export interface PocketsphinxAsrLogger {
  warn(obj: object, msg: string): void;
  info?(obj: object, msg: string): void;
}

export interface PocketsphinxAsrOptions {
  /** Worker processes (each holds the model, ~100 MB RSS, and decodes one utterance at a time). */
  workers: number;
  /** Defaults to native/build/pocketsphinx-worker in this repository. */
  binaryPath?: string;
  logger?: PocketsphinxAsrLogger;
  /** Extra pocketsphinx options for every worker, as `-name value` pairs (e.g. `['-dither', 'yes']`). */
  /** Defaults to LIVE_DECODER_ARGS. */
  workerArgs?: readonly string[];
  /** Rate of the audio given to `push`: 8000 (telephony, the default) or 16000 (wideband, benchmarks). */
  inputSampleRate?: 8000 | 16000;
  /** Audio a stream may hold while it waits for a worker; older audio is dropped. Default 30 s. */
  maxBufferedSeconds?: number;
  /** A worker that has not produced a final this long after end() is killed (the stream errors). */
  finalTimeoutMs?: number;
  /** How long a worker may take to load the model and print its ready line. */
  startTimeoutMs?: number;
  /**
   * Start each utterance from the cepstral mean its caller's previous utterance ended with (per
   * callId), instead of the initial mean. Default true.
   */
  perCallCmn?: boolean;
}

const WORKER_RATE = 16000;
const FRAME_BEGIN = 0x42; // 'B'
const FRAME_AUDIO = 0x41; // 'A'
const FRAME_END = 0x45; // 'E'
const FRAME_CANCEL = 0x43; // 'C'
const EMPTY_FRAME = Buffer.alloc(0);
const MAX_FRAME_SAMPLES = WORKER_RATE * 10;
/** Per-call cepstral means kept (least recently used dropped beyond this). */
const MAX_CALL_CMN = 4096;

/**
 * Initial cepstral mean for telephone audio (8 kHz µ-law upsampled to 16 kHz). The en-us model's
 * feat.params -cmninit describes wideband audio; on band-limited audio it is far off (c1..c3 by
 * 30–45), and pocketsphinx's live CMN needs several seconds to walk there, so the first words of
 * every utterance decode as noise ("go forward ten meters" → "harvard who years"). Estimated by
 * chaining the live CMN over numbers.raw and something.raw from pocketsphinx-testdata (recordings
 * that are not part of the WER benchmark) converted to telephone audio until it converged.
 */
export const TELEPHONE_CMN_INIT = '44.7,29.0,-44.2,43.1,-11.1,-3.5,14.9,-29.8,16.2,-8.3,-9.0,11.1,-14.2';

/**
 * Live-call decoding. Single pass: the second (flat-lexicon) pass and the lattice best-path search
 * re-decode the whole utterance after it ends, which put 300–800 ms between end of speech and the
 * final here. Tighter beam limits (active HMMs and words per frame, phone-loop lookahead): they
 * halve the CPU per audio-second (RTF 0.48 → 0.28 at 8 kHz, 1.9× → 7.1× real time on 2 cores) at
 * the same telephone WER, 36.5% on the test set (see `npm run wer`). CPU is what limits how many
 * callers can speak at once.
 */
export const LIVE_DECODER_ARGS: readonly string[] = [
  '-fwdflat', 'no',
  '-bestpath', 'no',
  '-maxhmmpf', '3000',
  '-maxwpf', '10',
  '-pl_window', '10',
];

export const DEFAULT_WORKER_BINARY = fileURLToPath(
  new URL('../../../native/build/pocketsphinx-worker', import.meta.url),
);

type WorkerMessage =
  | { type: 'ready'; pid: number; sample_rate: number }
  | { type: 'partial'; id: number; text: string }
  | { type: 'final'; id: number; text: string; audio_ms?: number; decode_ms?: number; cmn?: number[] }
  | { type: 'error'; id: number; message: string };

const noopLogger: PocketsphinxAsrLogger = { warn: () => {} };

export class PocketsphinxAsr implements Asr {
  private readonly slots: (Worker | undefined)[];
  private readonly waiting: PocketsphinxStream[] = [];
  private readonly respawnTimers = new Set<NodeJS.Timeout>();
  private closed = false;
  private nextUtteranceId = 0;
  /** callId → cepstral mean at the end of that caller's last utterance (insertion order = LRU). */
  private readonly callCmn = new Map<string, readonly number[]>();

  private constructor(
    readonly binaryPath: string,
    private readonly args: readonly string[],
    private readonly logger: PocketsphinxAsrLogger,
    readonly inputSampleRate: 8000 | 16000,
    private readonly maxBufferedSamples: number,
    private readonly finalTimeoutMs: number,
    private readonly startTimeoutMs: number,
    private readonly perCallCmn: boolean,
    workers: number,
  ) {
    this.slots = new Array<Worker | undefined>(workers).fill(undefined);
  }

  static async start(options: PocketsphinxAsrOptions): Promise<PocketsphinxAsr> {
    const workers = Math.floor(options.workers);
    if (!(workers >= 1)) throw new Error(`PocketsphinxAsr needs at least one worker (got ${options.workers})`);
    const binaryPath = options.binaryPath ?? DEFAULT_WORKER_BINARY;
    try {
      await access(binaryPath, fsConstants.X_OK);
    } catch {
      throw new Error(
        `pocketsphinx worker binary not found or not executable at ${binaryPath}; build it with ` +
          '`bash native/build.sh` (needs apt packages gcc pkg-config libpocketsphinx-dev libsphinxbase-dev pocketsphinx-en-us)',
      );
    }
    const inputSampleRate = options.inputSampleRate ?? 8000;
    if (inputSampleRate === 8000) await loadResampler();
    const workerArgs = [...(options.workerArgs ?? LIVE_DECODER_ARGS)];
    if (inputSampleRate === 8000 && !workerArgs.includes('-cmninit')) workerArgs.push('-cmninit', TELEPHONE_CMN_INIT);
    const asr = new PocketsphinxAsr(
      binaryPath,
      workerArgs,
      options.logger ?? noopLogger,
      inputSampleRate,
      Math.round((options.maxBufferedSeconds ?? 30) * WORKER_RATE),
      options.finalTimeoutMs ?? 20_000,
      options.startTimeoutMs ?? 30_000,
      options.perCallCmn ?? true,
      workers,
    );
    const ready = asr.slots.map((_, index) => asr.spawnWorker(index).readyPromise);
    const results = await Promise.allSettled(ready);
    const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failure !== undefined) {
      await asr.close();
      throw failure.reason instanceof Error ? failure.reason : new Error(String(failure.reason));
    }
    asr.logger.info?.({ workers, binaryPath, pids: asr.workerPids() }, 'pocketsphinx ASR workers ready');
    return asr;
  }

  createStream(callId: string, onEvent: (event: AsrEvent) => void): AsrStream {
    const stream = new PocketsphinxStream(this, callId, onEvent, this.maxBufferedSamples, this.logger);
    if (this.closed) {
      queueMicrotask(() => stream.finish({ type: 'error', error: new Error('pocketsphinx ASR is closed') }));
      return stream;
    }
    this.waiting.push(stream);
    const worker = this.idleWorker();
    if (worker !== undefined) this.release(worker);
    return stream;
  }

  /** Process ids of the live workers (diagnostics, memory accounting, tests). */
  workerPids(): number[] {
    const pids: number[] = [];
    for (const worker of this.slots) if (worker !== undefined && worker.pid !== undefined) pids.push(worker.pid);
    return pids;
  }

  /** Streams waiting for a worker. */
  get queuedStreams(): number {
    return this.waiting.length;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.respawnTimers) clearTimeout(timer);
    this.respawnTimers.clear();
    const closedError = () => ({ type: 'error' as const, error: new Error('pocketsphinx ASR closed') });
    for (const stream of this.waiting.splice(0)) stream.finish(closedError());
    const exits: Promise<void>[] = [];
    for (const worker of this.slots) {
      if (worker === undefined) continue;
      const stream = worker.detach();
      stream?.finish(closedError());
      exits.push(worker.kill());
    }
    await Promise.all(exits);
  }

  // ── internals used by streams and workers ───────────────────────────────────────────────────

  /** A stream that holds no worker any more (cancelled or waiting) leaves the queue. */
  unqueue(stream: PocketsphinxStream): void {
    const index = this.waiting.indexOf(stream);
    if (index >= 0) this.waiting.splice(index, 1);
  }

  /** The worker is free again: give it the longest-waiting stream. */
  release(worker: Worker): void {
    if (this.closed || !worker.ready || worker.exited || worker.stream !== undefined) return;
    const next = this.waiting.shift();
    if (next !== undefined) this.attach(worker, next);
  }

  private idleWorker(): Worker | undefined {
    for (const worker of this.slots) {
      if (worker !== undefined && worker.ready && !worker.exited && worker.stream === undefined) return worker;
    }
    return undefined;
  }

  private attach(worker: Worker, stream: PocketsphinxStream): void {
    this.nextUtteranceId = (this.nextUtteranceId + 1) >>> 0 || 1;
    worker.begin(stream, this.nextUtteranceId, this.perCallCmn ? this.callCmn.get(stream.callId) : undefined);
    stream.attached(worker);
  }

  private spawnWorker(index: number): Worker {
    const worker = new Worker(this.binaryPath, this.args, this.startTimeoutMs, this.finalTimeoutMs, this.logger);
    this.slots[index] = worker;
    worker.onExit = (reason) => this.workerExited(index, worker, reason);
    worker.onIdle = () => this.release(worker);
    worker.onCmn = (callId, mean) => {
      if (!this.perCallCmn) return;
      this.callCmn.delete(callId);
      this.callCmn.set(callId, mean);
      if (this.callCmn.size > MAX_CALL_CMN) {
        const oldest = this.callCmn.keys().next();
        if (oldest.done !== true) this.callCmn.delete(oldest.value);
      }
    };
    worker.readyPromise.then(
      () => this.release(worker),
      () => {}, // start() reports it; after start, onExit handles respawning
    );
    return worker;
  }

  private workerExited(index: number, worker: Worker, reason: string): void {
    const stream = worker.detach();
    if (this.slots[index] === worker) this.slots[index] = undefined;
    if (this.closed) return;
    this.logger.warn(
      { pid: worker.pid, reason, callId: stream?.callId, stderr: worker.stderrTail() },
      'pocketsphinx worker exited; respawning',
    );
    // Respawn at once after a worker that ran a while; back off when they die young (bad model,
    // broken binary) so a crash loop does not eat a core.
    const lived = Date.now() - worker.startedAt;
    const delay = lived > 10_000 ? 0 : Math.min(5_000, 250 * 2 ** Math.min(5, worker.generation));
    const timer = setTimeout(() => {
      this.respawnTimers.delete(timer);
      if (this.closed) return;
      const next = this.spawnWorker(index);
      next.generation = lived > 10_000 ? 0 : worker.generation + 1;
    }, delay);
    this.respawnTimers.add(timer);
    stream?.finish({ type: 'error', error: new Error(`pocketsphinx worker ${worker.pid ?? '?'} ${reason}`) });
  }
}

/** One worker process: holds at most one utterance. */
class Worker {
  readonly readyPromise: Promise<void>;
  readonly startedAt = Date.now();
  readonly pid: number | undefined;
  generation = 0;
  stream: PocketsphinxStream | undefined;
  exited = false;
  onExit: (reason: string) => void = () => {};
  onIdle: () => void = () => {};
  onCmn: (callId: string, mean: readonly number[]) => void = () => {};
  private isReady = false;
  private utteranceId = 0;
  private finalTimer: NodeJS.Timeout | undefined;
  private stdoutPending = '';
  private stderrText = '';
  private readonly proc: ChildProcessByStdio<Writable, Readable, Readable>;
  private readonly exitPromise: Promise<void>;

  constructor(
    binaryPath: string,
    args: readonly string[],
    startTimeoutMs: number,
    private readonly finalTimeoutMs: number,
    private readonly logger: PocketsphinxAsrLogger,
  ) {
    // Its own process group: a Ctrl-C or a group-wide SIGTERM (npm, tsx, `timeout` all signal the
    // whole group) must not kill the recognizers of calls still draining. It exits on stdin's EOF,
    // so it still goes when this process does, however that dies.
    this.proc = spawn(binaryPath, [...args], { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    this.pid = this.proc.pid;
    this.proc.stdin.on('error', () => {}); // EPIPE after a crash; 'exit' reports the crash
    this.proc.stdout.setEncoding('utf8');
    this.proc.stderr.setEncoding('utf8');
    this.proc.stderr.on('data', (chunk: string) => {
      this.stderrText = (this.stderrText + chunk).slice(-2000);
    });

    let resolveReady!: () => void;
    let rejectReady!: (error: Error) => void;
    this.readyPromise = new Promise<void>((resolve, reject) => {
      resolveReady = resolve;
      rejectReady = reject;
    });
    const startTimer = setTimeout(() => {
      rejectReady(new Error(`pocketsphinx worker ${binaryPath} printed no ready line within ${startTimeoutMs} ms`));
      this.proc.kill('SIGKILL');
    }, startTimeoutMs);

    this.proc.stdout.on('data', (chunk: string) => {
      this.stdoutPending += chunk;
      let newline: number;
      while ((newline = this.stdoutPending.indexOf('\n')) >= 0) {
        const line = this.stdoutPending.slice(0, newline);
        this.stdoutPending = this.stdoutPending.slice(newline + 1);
        if (line.length === 0) continue;
        let message: WorkerMessage;
        try {
          message = JSON.parse(line) as WorkerMessage;
        } catch {
          this.logger.warn({ pid: this.pid, line: line.slice(0, 200) }, 'pocketsphinx worker wrote a non-JSON line');
          continue;
        }
        if (message.type === 'ready') {
          clearTimeout(startTimer);
          this.isReady = true;
          resolveReady();
        } else {
          this.handle(message);
        }
      }
    });

    let exitResolve!: () => void;
    this.exitPromise = new Promise<void>((resolve) => (exitResolve = resolve));
    let exitHandled = false;
    const exited = (reason: string) => {
      if (exitHandled) return;
      exitHandled = true;
      this.exited = true;
      clearTimeout(startTimer);
      this.clearFinalTimer();
      const detail = this.stderrTail();
      rejectReady(
        new Error(
          `pocketsphinx worker ${binaryPath} ${reason} before it was ready` + (detail ? `: ${detail}` : ''),
        ),
      );
      exitResolve();
      this.onExit(reason);
    };
    this.proc.on('error', (error) => exited(`failed: ${error.message}`));
    this.proc.on('exit', (code, signal) =>
      exited(signal !== null ? `was killed by ${signal}` : `exited with code ${code ?? '?'}`),
    );
  }

  /** The model is loaded and the ready line was read. */
  get ready(): boolean {
    return this.isReady;
  }

  /** Starts an utterance, optionally from the caller's own cepstral mean. */
  begin(stream: PocketsphinxStream, id: number, cmn: readonly number[] | undefined): void {
    this.stream = stream;
    this.utteranceId = id;
    const payload = Buffer.allocUnsafe(4 + 4 * (cmn?.length ?? 0));
    payload.writeUInt32LE(id, 0);
    cmn?.forEach((value, i) => payload.writeFloatLE(value, 4 + 4 * i));
    this.write(FRAME_BEGIN, payload);
  }

  audio(pcm16k: Int16Array): void {
    // The worker refuses frames over 60 s; a call's 20 ms frames never come close.
    for (let start = 0; start < pcm16k.length; start += MAX_FRAME_SAMPLES) {
      const part = pcm16k.length <= MAX_FRAME_SAMPLES ? pcm16k : pcm16k.subarray(start, start + MAX_FRAME_SAMPLES);
      this.write(FRAME_AUDIO, Buffer.from(part.buffer, part.byteOffset, part.byteLength));
    }
  }

  end(): void {
    this.write(FRAME_END, EMPTY_FRAME);
    this.clearFinalTimer();
    this.finalTimer = setTimeout(() => {
      this.logger.warn(
        { pid: this.pid, callId: this.stream?.callId, timeoutMs: this.finalTimeoutMs },
        'pocketsphinx worker gave no final in time; killing it',
      );
      this.proc.kill('SIGKILL');
    }, this.finalTimeoutMs);
  }

  /** Drops the running utterance; the worker is free for the next BEGIN at once (stdin is ordered). */
  cancel(): void {
    this.write(FRAME_CANCEL, EMPTY_FRAME);
    this.detach();
    this.onIdle();
  }

  /** Forgets the in-flight stream (without telling the process) and returns it. */
  detach(): PocketsphinxStream | undefined {
    const stream = this.stream;
    this.stream = undefined;
    this.utteranceId = 0;
    this.clearFinalTimer();
    return stream;
  }

  kill(): Promise<void> {
    if (this.exited) return Promise.resolve();
    this.proc.stdin.end(); // EOF lets it exit cleanly
    this.proc.kill('SIGTERM');
    const force = setTimeout(() => this.proc.kill('SIGKILL'), 2_000);
    return this.exitPromise.finally(() => clearTimeout(force));
  }

  stderrTail(): string {
    return this.stderrText.trim().split('\n').slice(-3).join(' | ');
  }

  private handle(message: Exclude<WorkerMessage, { type: 'ready' }>): void {
    const stream = this.stream;
    // Lines of a cancelled (or otherwise finished) utterance may still be in the pipe.
    if (stream === undefined || message.id !== this.utteranceId) return;
    if (message.type === 'partial') {
      stream.emit({ type: 'partial', text: message.text });
      return;
    }
    this.detach();
    // Hand the worker on before delivering the result, so a stream created from inside the
    // callback queues behind the ones already waiting.
    this.onIdle();
    if (message.type === 'final') {
      if (message.cmn !== undefined && message.cmn.length > 0) this.onCmn(stream.callId, message.cmn);
      stream.finish({ type: 'final', text: message.text });
    }
    else stream.finish({ type: 'error', error: new Error(`pocketsphinx: ${message.message}`) });
  }

  private write(type: number, payload: Buffer): void {
    if (this.exited) return;
    const header = Buffer.allocUnsafe(5);
    header[0] = type;
    header.writeUInt32LE(payload.length, 1);
    const stdin = this.proc.stdin;
    if (payload.length === 0) {
      stdin.write(header);
      return;
    }
    stdin.cork();
    stdin.write(header);
    stdin.write(payload);
    stdin.uncork();
  }

  private clearFinalTimer(): void {
    if (this.finalTimer !== undefined) clearTimeout(this.finalTimer);
    this.finalTimer = undefined;
  }
}

/** One caller utterance. */
class PocketsphinxStream implements AsrStream {
  private worker: Worker | undefined;
  private readonly resampler: Resampler | undefined;
  private ended = false;
  private done = false;
  /** Resampled audio waiting for a worker: a queue of chunks, oldest dropped beyond the cap. */
  private pending: Int16Array[] = [];
  private pendingHead = 0;
  private pendingSamples = 0;
  private droppedSamples = 0;

  constructor(
    private readonly asr: PocketsphinxAsr,
    readonly callId: string,
    private readonly onEvent: (event: AsrEvent) => void,
    private readonly maxBufferedSamples: number,
    private readonly logger: PocketsphinxAsrLogger,
  ) {
    this.resampler = asr.inputSampleRate === WORKER_RATE ? undefined : new Resampler(asr.inputSampleRate, WORKER_RATE);
  }

  push(pcm: Int16Array): void {
    if (this.done || this.ended || pcm.length === 0) return;
    // Without a resampler the caller's buffer is copied: it may be reused once push returns.
    const pcm16k = this.resampler !== undefined ? this.resampler.process(pcm) : pcm.slice();
    this.forward(pcm16k);
  }

  end(): void {
    if (this.done || this.ended) return;
    this.ended = true;
    if (this.resampler !== undefined) {
      // Flush the filter's delay line (a few ms) so the last phone is not clipped.
      this.forward(this.resampler.process(new Int16Array(this.asr.inputSampleRate / 100)));
      this.resampler.destroy();
    }
    this.worker?.end();
  }

  cancel(): void {
    if (this.done) return;
    this.done = true;
    this.ended = true;
    this.resampler?.destroy();
    this.clearPending();
    const worker = this.worker;
    this.worker = undefined;
    if (worker !== undefined) worker.cancel();
    else this.asr.unqueue(this);
  }

  /** A worker took this stream: replay what waited, and END if the utterance is already over. */
  attached(worker: Worker): void {
    this.worker = worker;
    if (this.droppedSamples > 0) {
      this.logger.warn(
        { callId: this.callId, droppedMs: Math.round((this.droppedSamples * 1000) / WORKER_RATE) },
        'pocketsphinx ASR: no worker free for too long; dropped the oldest audio of the utterance',
      );
    }
    for (let i = this.pendingHead; i < this.pending.length; i++) worker.audio(this.pending[i]!);
    this.clearPending();
    if (this.ended) worker.end();
  }

  emit(event: AsrEvent): void {
    if (this.done) return;
    this.deliver(event);
  }

  /** The stream's one final or error; nothing is delivered after it (or after cancel). */
  finish(event: AsrEvent): void {
    if (this.done) return;
    this.done = true;
    this.worker = undefined;
    if (!this.ended) {
      this.ended = true;
      this.resampler?.destroy();
    }
    this.clearPending();
    this.deliver(event);
  }

  private deliver(event: AsrEvent): void {
    try {
      this.onEvent(event);
    } catch (error) {
      this.logger.warn({ callId: this.callId, err: error }, 'pocketsphinx ASR event handler threw');
    }
  }

  private forward(pcm16k: Int16Array): void {
    if (pcm16k.length === 0) return;
    if (this.worker !== undefined) {
      this.worker.audio(pcm16k);
      return;
    }
    this.pending.push(pcm16k);
    this.pendingSamples += pcm16k.length;
    while (this.pendingSamples > this.maxBufferedSamples) {
      const oldest = this.pending[this.pendingHead]!;
      const excess = this.pendingSamples - this.maxBufferedSamples;
      if (oldest.length <= excess) {
        this.pendingHead++;
        this.pendingSamples -= oldest.length;
        this.droppedSamples += oldest.length;
      } else {
        this.pending[this.pendingHead] = oldest.subarray(excess);
        this.pendingSamples -= excess;
        this.droppedSamples += excess;
      }
    }
    if (this.pendingHead > 256 && this.pendingHead * 2 > this.pending.length) {
      this.pending = this.pending.slice(this.pendingHead);
      this.pendingHead = 0;
    }
  }

  private clearPending(): void {
    this.pending = [];
    this.pendingHead = 0;
    this.pendingSamples = 0;
  }
}
