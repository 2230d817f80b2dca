/**
 * Load: server CPU per call-second and outbound pacing with 50 and 200 concurrent calls, against a
 * "floor" measured in the same run.
 *
 * The server under test (the real server on the real local engines) runs in THIS process; the
 * simulated callers (bench/load-callers.ts) run in a CHILD process, so `process.cpuUsage()` deltas
 * over the measurement window are the server's CPU alone. The agent's greeting is ~60 s long, so
 * the agent talks through the whole window; the callers send low-level noise, so the VAD runs on
 * every inbound frame but no turn starts.
 *
 * Each call's caller sends its frames on its own 20 ms cadence with a random phase, as independent
 * calls reach a server (`--phases aligned` sends every call's frame in one burst each 20 ms instead:
 * a worst case for pacing that no carrier produces).
 *
 * Ours and the floor are measured in paired rounds, one right after the other, and the ratio is the
 * median of the rounds' ratios: the cost of a socket message on this machine drifts by ±15% from one
 * window to the next, more than the effects being measured.
 *
 * The floor is a bare `ws` server in this process that does the least any such server must:
 * JSON.parse + base64-decode each inbound frame, and send exactly as many outbound media messages
 * per call-second as the callers received from our server (same JSON shape, same payload size,
 * base64-encoded per message, the same lead, each call on its own drift-free cadence with a random
 * phase, all from one shared timer that, like ours, serves every call due within the early window).
 * At a run's first frame size each round also measures the `bare-floor`: the same server with each
 * call on its own timer and no early window, as a plain `ws` server is written (the issue's "bare
 * ws server that only parses the same inbound frames and sends the same number of outbound
 * frames"). The shared-timer floor is the stricter of the two: it has our scheduler's batching.
 *
 * Figures per OUTBOUND_FRAME_MS (20, 40, 60) and call count:
 *   - CPU ms per call-second, ours vs floor, and the ratio (target ≤ 1.5×)
 *   - p99 pacing lateness: our PlayoutScheduler's `lateness` histogram (target ≤ 5 ms); the floor's
 *     own timer lateness for comparison
 *   - p99 inter-arrival jitter at the callers: |Δarrival − the message's audio duration|
 *   - saturation signs: machine CPU busy (and how much of it is other processes), server event-loop
 *     utilisation, caller timer lateness, audio delivered per call-second, VAD chunks analysed per
 *     call-second; playback underruns at the callers are shown beside them
 *   - diagnostic (`--no-vad`): our server with a no-op VAD at the first frame size, to split the VAD's share
 *
 *   npx tsx bench/load.ts [--frames 20,40,60] [--calls 50,200] [--seconds 15] [--rounds 3] [--phases spread|aligned] [--gate on|off] [--echo-guard on|off] [--bare-floor on|off] [--noise-dbfs=-65] [--triton-vad host:port]
 *   BENCH_CPU_PROFILE=/tmp/profiles npx tsx bench/load.ts …   (a .cpuprofile per case's window)
 *   BENCH_HEAP_PROFILE=/tmp/profiles npx tsx bench/load.ts …  (a .heapprofile of each case's allocations)
 *   BENCH_THREADS=1 …        (CPU by thread and heap per case)
 *   BENCH_PRINT_WINDOWS=1 …  (each case's window on CLOCK_MONOTONIC, for `perf record -k CLOCK_MONOTONIC`
 *                             and `perf report --time start,end`: V8's sampling profiler misses most of
 *                             this server's CPU, its samples falling in with the timers)
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance, PerformanceObserver } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { WebSocketServer, type WebSocket } from 'ws';
import { SileroVad } from '../src/engines/local/silero-vad.js';
import { LatencyHistogram } from '../src/metrics/histogram.js';
import { pacingEarlyMs, wakeWindowMs } from '../src/audio/playout-scheduler.js';
import { startVoiceServer, TEST_AUTH_TOKEN, type RunningServer } from '../test/helpers/voice-test-server.js';
import { fmt, isMain, machineBusyFraction, machineCpu, printSummary, printTable, processCpuMs, quantile, row, sleep, type SummaryRow } from './common.js';
import type { Vad, VadStream } from '../src/engines/types.js';
import type { CallerConfig, CallerReady, CallerStats } from './load-callers.js';

/**
 * `floor`: the bare server paced like ours (one shared timer, the same early window);
 * `bare-floor`: the same with each call on its own timer, as a plain `ws` server is written;
 * `ours-no-vad`: our server with the VAD replaced by a no-op (diagnostic: what the VAD costs).
 */
export type LoadServerKind = 'ours' | 'ours-no-vad' | 'floor' | 'bare-floor';

export interface LoadCase {
  server: LoadServerKind;
  /** Which paired round (1-based): ours and the floor of the same round ran one after the other. */
  round: number;
  frameMs: number;
  calls: number;
  callsAlive: number;
  callsFailed: number;
  windowS: number;
  cpuMs: number;
  cpuMsPerCallSecond: number;
  /** Kernel share of cpuMsPerCallSecond (socket syscalls mostly). */
  sysMsPerCallSecond: number;
  /** Pacing lateness p99 / max (ours: the scheduler's histogram; floor: its timer's). */
  pacingP99: number;
  pacingMax: number;
  pacingCount: number;
  callerJitterP50: number;
  callerJitterP99: number;
  callerJitterMax: number;
  mediaPerCallSecond: number;
  audioMsPerCallSecond: number;
  underruns: number;
  minBufferMs: number;
  clears: number;
  closedByServer: number;
  machineBusy: number;
  serverElu: number;
  /** Main-thread garbage-collection pauses in the window: how many, ms per second, the longest. */
  gcPauses: number;
  gcMsPerSecond: number;
  gcMaxMs: number;
  callerCpuMsPerSecond: number;
  callerTickLateP99: number;
  /** VAD chunks per call-second in the window (ours only; 31.25 means every frame was analysed). */
  vadChunksPerCallSecond: number;
  /** Of those, the chunks that went through the model (the rest were answered by the noise gate). */
  vadInferredPerCallSecond: number;
  vadInferenceMsPerCallSecond: number;
  /** Average streams per VAD inference in the window: how well live frames share a batch. */
  vadAvgBatch: number;
  /** CPU cores busy with processes other than the server and the callers (other work on the machine). */
  otherCores: number;
  saturated: string[];
}

export interface LoadBenchOptions {
  frames?: Array<20 | 40 | 60>;
  calls?: number[];
  /** Measurement window for the 20 ms (headline) case; 40/60 ms and floors use `otherSeconds`. */
  seconds?: number;
  otherSeconds?: number;
  warmupSeconds?: number;
  noiseDbfs?: number;
  /** Also run our server with a no-op VAD at the first frame size, to split out the VAD's cost. */
  withNoVad?: boolean;
  /** Also measure the `bare-floor` (per-call timers) in each round at the first frame size (default true). */
  withBareFloor?: boolean;
  /** Extra environment for our server (e.g. VAD_NOISE_GATE=off for the model on every chunk). */
  serverEnv?: Record<string, string>;
  /**
   * Paired rounds per frame size and call count: ours, then the floor, again and again. This
   * machine's CPU cost per message drifts by ±15% between windows a minute apart, so the ratio is
   * the median of the rounds' own ratios, not one window against another.
   */
  rounds?: number;
  /** How the callers' frames are phased (load-callers.ts); default `spread`, as independent calls arrive. */
  inboundPhases?: 'spread' | 'aligned';
}

export interface LoadBenchResult {
  cases: LoadCase[];
  summary: SummaryRow[];
}

// ── the scripted agent with a ~60 s greeting ─────────────────────────────────────────────────────

const LONG_GREETING = [
  'Thank you for calling the benchmark line.',
  ...Array.from(
    { length: 9 },
    (_, i) =>
      `Announcement number ${i + 1}: our office is open from nine in the morning until five in the afternoon on every weekday, and on saturdays until noon.`,
  ),
].join(' ');

function writeLongGreetingScript(dir: string): string {
  const path = join(dir, 'agent-script.load.json');
  writeFileSync(
    path,
    JSON.stringify({
      name: 'Load Line',
      greeting: LONG_GREETING,
      fallback: 'Sorry, I did not catch that.',
      apology: 'Sorry, I had trouble with that.',
      goodbye: 'Goodbye.',
      intents: [{ name: 'bye', keywords: ['goodbye'], reply: 'Goodbye.', action: { type: 'hang_up' } }],
    }),
  );
  return path;
}

/** A VAD that hears nothing and costs nothing: our server minus Silero, for the cost split. */
class NoVad implements Vad {
  readonly chunkSamples = 256;
  createStream(): VadStream {
    return { push: () => {}, close: () => {} };
  }
  async close(): Promise<void> {}
}

// ── the floor server ─────────────────────────────────────────────────────────────────────────────

interface FloorCall {
  ws: WebSocket;
  streamSid: string;
  nextDueMs: number;
  offset: number;
  /** `per-call` pacing: this call's own timer. */
  timer?: NodeJS.Timeout;
}

/**
 * `shared`: one timer for every call, each wake serving every call due within our scheduler's early
 * window (the least such a server must do). `per-call`: each call on its own drift-free timer, sent
 * when due (a plain server).
 */
export type FloorPacing = 'shared' | 'per-call';

class FloorServer {
  /** Frames due within this of a wake go out on it (our scheduler's early window for this lead). */
  private readonly windowMs: number;
  readonly lateness = new LatencyHistogram();
  private readonly wss: WebSocketServer;
  private readonly calls = new Set<FloorCall>();
  private readonly audio: Buffer;
  private timer: NodeJS.Timeout | undefined;
  private timerDueMs = Infinity;
  private closed = false;
  inboundFrames = 0;

  constructor(
    private readonly intervalMs: number,
    private readonly payloadBytes: number,
    /** Sent ahead of real time at the start of a call, like our playout lead. */
    private readonly leadMs: number,
    private readonly pacing: FloorPacing = 'shared',
  ) {
    this.windowMs = wakeWindowMs(pacingEarlyMs(leadMs));
    this.audio = Buffer.alloc(80_000);
    for (let i = 0; i < this.audio.length; i++) this.audio[i] = 0x70 + Math.floor(Math.random() * 32);
    this.wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 1 << 20 });
    this.wss.on('connection', (ws) => this.onConnection(ws));
  }

  async listen(): Promise<string> {
    if (this.wss.address() === null) await new Promise<void>((resolve) => this.wss.once('listening', () => resolve()));
    const address = this.wss.address();
    if (address === null || typeof address === 'string') throw new Error('floor server has no port');
    return `ws://127.0.0.1:${address.port}/`;
  }

  private onConnection(ws: WebSocket): void {
    let call: FloorCall | undefined;
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) return;
      const message = JSON.parse(data.toString('utf8')) as { event?: string; media?: { payload?: string }; start?: { streamSid?: string } };
      if (message.event === 'media') {
        Buffer.from(message.media?.payload ?? '', 'base64');
        this.inboundFrames++;
      } else if (message.event === 'start' && call === undefined) {
        // Like our queue: message k is due when sending it keeps `leadMs` of audio ahead of the playhead.
        // Calls ring in at random times, so each call's cadence gets a random phase; without it the
        // floor's calls (which connect all at once, no webhook) would share one timer wake per frame.
        const nextDueMs = performance.now() + this.intervalMs - this.leadMs + Math.random() * this.intervalMs;
        call = { ws, streamSid: message.start?.streamSid ?? '', nextDueMs, offset: Math.floor(Math.random() * 40_000) };
        this.calls.add(call);
        if (this.pacing === 'per-call') this.armCall(call);
        else this.arm();
      } else if (message.event === 'stop' && call !== undefined) {
        this.forget(call);
      }
    });
    ws.on('close', () => {
      if (call !== undefined) this.forget(call);
    });
    ws.on('error', () => {});
  }

  private sendOne(call: FloorCall): void {
    if (call.offset + this.payloadBytes > this.audio.length) call.offset = 0;
    const payload = this.audio.toString('base64', call.offset, call.offset + this.payloadBytes);
    call.offset += this.payloadBytes;
    call.ws.send(`{"event":"media","streamSid":"${call.streamSid}","media":{"payload":"${payload}"}}`);
  }

  private forget(call: FloorCall): void {
    this.calls.delete(call);
    if (call.timer !== undefined) clearTimeout(call.timer);
    call.timer = undefined;
  }

  /** `per-call` pacing: the call's own timer, for its next due time. */
  private armCall(call: FloorCall): void {
    if (this.closed || !this.calls.has(call)) return;
    call.timer = setTimeout(() => {
      const now = performance.now();
      while (call.nextDueMs <= now) {
        this.lateness.record(now - call.nextDueMs);
        this.sendOne(call);
        call.nextDueMs += this.intervalMs;
      }
      this.armCall(call);
    }, Math.max(0, call.nextDueMs - performance.now()));
  }

  private arm(): void {
    if (this.closed) return;
    let earliest = Infinity;
    for (const call of this.calls) earliest = Math.min(earliest, call.nextDueMs);
    if (earliest === Infinity || (this.timer !== undefined && this.timerDueMs <= earliest)) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timerDueMs = earliest;
    this.timer = setTimeout(() => this.onTimer(), Math.max(0, earliest - performance.now()));
  }

  private onTimer(): void {
    this.timer = undefined;
    this.timerDueMs = Infinity;
    const now = performance.now();
    for (const call of this.calls) {
      // The same early window as our scheduler: one wake serves every call due within it.
      while (call.nextDueMs <= now + this.windowMs) {
        this.lateness.record(Math.max(0, now - call.nextDueMs));
        this.sendOne(call);
        call.nextDueMs += this.intervalMs;
      }
    }
    this.arm();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    for (const call of this.calls) this.forget(call);
    for (const client of this.wss.clients) client.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }
}

// ── one measured run ─────────────────────────────────────────────────────────────────────────────

interface Probe {
  server: LoadServerKind;
  frameMs: number;
  calls: number;
  target: Omit<CallerConfig, 'type' | 'calls' | 'noiseDbfs' | 'inboundPhases'>;
  round: number;
  lateness: LatencyHistogram;
  vad?: SileroVad;
  drained?: () => Promise<void>;
  /** Floor: the audio per call-second it is told to send (ours: 1000). */
  intendedAudioMsPerCallSecond?: number;
}

function nextMessage<T extends { type: string }>(child: ChildProcess, type: T['type'], timeoutMs: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`callers: no "${type}" within ${timeoutMs} ms`));
    }, timeoutMs);
    const onMessage = (message: { type?: string }): void => {
      if (message.type !== type) return;
      cleanup();
      resolve(message as T);
    };
    const onExit = (code: number | null): void => {
      cleanup();
      reject(new Error(`callers exited (code ${code}) before "${type}"`));
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

interface CallerSetup {
  noiseDbfs: number;
  inboundPhases: 'spread' | 'aligned';
}

async function measure(probe: Probe, windowS: number, warmupS: number, callers: CallerSetup): Promise<LoadCase> {
  const child = fork(fileURLToPath(new URL('./load-callers.ts', import.meta.url)), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    const config: CallerConfig = { type: 'config', calls: probe.calls, ...callers, ...probe.target };
    child.send(config);
    const ready = await nextMessage<CallerReady>(child, 'ready', 60_000);
    if (ready.failed > 0) console.log(`  ${ready.failed} of ${probe.calls} calls failed to start: ${ready.firstError ?? ''}`);
    await sleep(warmupS * 1000);

    probe.lateness.reset();
    const vad0 = probe.vad === undefined ? undefined : { ...probe.vad.stats };
    const machine0 = machineCpu();
    const elu0 = performance.eventLoopUtilization();
    const cpu0 = processCpuMs().usage;
    const t0 = performance.now();
    const profiling = await startWindowProfile();
    const threads0 = threadCpuMs();
    const gcPauses: number[] = [];
    const gcObserver = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) gcPauses.push(entry.duration);
    });
    gcObserver.observe({ entryTypes: ['gc'] });
    child.send({ type: 'measure-start' });
    const windowStart = process.hrtime.bigint();
    await sleep(windowS * 1000);
    gcObserver.disconnect();
    // For `perf record -k CLOCK_MONOTONIC … ; perf report --time start,end`: this case's window alone.
    if (process.env['BENCH_PRINT_WINDOWS'] === '1') console.log(`  window ${probe.server} × ${probe.calls}: ${Number(windowStart) / 1e9},${Number(process.hrtime.bigint()) / 1e9}`);
    await profiling?.stop(`${probe.server}-${probe.frameMs}ms-${probe.calls}calls`);
    if (process.env['BENCH_THREADS'] === '1') {
      const threads1 = threadCpuMs();
      const byName = new Map<string, number>();
      for (const [tid, t] of threads1) byName.set(t.name, (byName.get(t.name) ?? 0) + t.ms - (threads0.get(tid)?.ms ?? 0));
      console.log(`  ${probe.server} × ${probe.calls}: CPU by thread (ms per call-second): ${[...byName].filter(([, ms]) => ms > 0).map(([name, ms]) => `${name} ${fmt(ms / (probe.calls * windowS), 2)}`).join(', ')}`);
      const memory = process.memoryUsage();
      console.log(`  ${probe.server} × ${probe.calls}: heap used ${fmt(memory.heapUsed / 2 ** 20, 0)} MiB of ${fmt(memory.heapTotal / 2 ** 20, 0)} MiB, rss ${fmt(memory.rss / 2 ** 20, 0)} MiB`);
    }
    const { ms: cpuMs, usage: cpuDelta } = processCpuMs(cpu0);
    const wallS = (performance.now() - t0) / 1000;
    const elu = performance.eventLoopUtilization(elu0).utilization;
    const machine1 = machineCpu();
    const statsPromise = nextMessage<CallerStats>(child, 'stats', 10_000);
    child.send({ type: 'measure-stop' });
    const stats = await statsPromise;
    // Chunks answered by the silence gate were analysed too (without inference).
    const vadChunks =
      probe.vad === undefined || vad0 === undefined ? NaN : probe.vad.stats.chunks + probe.vad.stats.gatedChunks - vad0.chunks - vad0.gatedChunks;
    const vadInferred = probe.vad === undefined || vad0 === undefined ? NaN : probe.vad.stats.chunks - vad0.chunks;
    const vadInferenceMs = probe.vad === undefined || vad0 === undefined ? NaN : probe.vad.stats.inferenceMs - vad0.inferenceMs;
    const vadBatches = probe.vad === undefined || vad0 === undefined ? NaN : probe.vad.stats.batches - vad0.batches;

    const donePromise = nextMessage(child, 'done', 10_000).catch(() => undefined);
    child.send({ type: 'hangup' });
    await donePromise;
    await probe.drained?.();

    const callSeconds = Math.max(1, stats.callsAlive) * wallS;
    const machineBusy = machineBusyFraction(machine0, machine1);
    const audioMsPerCallSecond = stats.audioMsReceived / (Math.max(1, stats.callsAlive) * (stats.windowMs / 1000));
    const otherCores = machineBusy * cpus().length - cpuMs / 1000 / wallS - stats.cpuMs / stats.windowMs;
    const saturated: string[] = [];
    if (machineBusy > 0.9) {
      const others = otherCores > 0.2 ? ` (${fmt(otherCores, 1)} cores of it other processes)` : '';
      saturated.push(`machine ${fmt(machineBusy * 100, 0)}% busy${others}`);
    }
    if (elu > 0.9) saturated.push(`server event loop ${fmt(elu * 100, 0)}% utilised`);
    if (stats.tickLateP99 > 10) saturated.push(`caller timer p99 ${fmt(stats.tickLateP99)} ms late`);
    // The floor is told to send as many messages as ours delivered; when ours fell short, so does the
    // floor by design, and its callers' buffers run dry: that is not the floor saturating.
    const intendedAudioMs = probe.intendedAudioMsPerCallSecond ?? 1000;
    if (audioMsPerCallSecond < 0.97 * intendedAudioMs) saturated.push(`only ${fmt(audioMsPerCallSecond, 0)} ms audio per call-second delivered`);
    const vadPerCallSecond = vadChunks / callSeconds;
    if (vadPerCallSecond < 0.95 * (8000 / 256)) saturated.push(`VAD analysed only ${fmt(vadPerCallSecond, 1)} of 31.25 chunks per call-second (inbound audio dropped)`);
    if (stats.callsAlive < probe.calls) saturated.push(`${probe.calls - stats.callsAlive} calls dropped`);

    return {
      server: probe.server,
      round: probe.round,
      frameMs: probe.frameMs,
      calls: probe.calls,
      callsAlive: stats.callsAlive,
      callsFailed: ready.failed,
      windowS: wallS,
      cpuMs,
      cpuMsPerCallSecond: cpuMs / callSeconds,
      sysMsPerCallSecond: cpuDelta.system / 1000 / callSeconds,
      pacingP99: probe.lateness.quantile(0.99),
      pacingMax: probe.lateness.max,
      pacingCount: probe.lateness.count,
      callerJitterP50: stats.jitterP50,
      callerJitterP99: stats.jitterP99,
      callerJitterMax: stats.jitterMax,
      mediaPerCallSecond: stats.mediaReceived / (Math.max(1, stats.callsAlive) * (stats.windowMs / 1000)),
      audioMsPerCallSecond,
      underruns: stats.underruns,
      minBufferMs: stats.minBufferMs,
      clears: stats.clears,
      closedByServer: stats.callsClosedByServer,
      machineBusy,
      serverElu: elu,
      gcPauses: gcPauses.length,
      gcMsPerSecond: gcPauses.reduce((a, b) => a + b, 0) / wallS,
      gcMaxMs: Math.max(0, ...gcPauses),
      callerCpuMsPerSecond: stats.cpuMs / (stats.windowMs / 1000),
      callerTickLateP99: stats.tickLateP99,
      vadChunksPerCallSecond: vadChunks / callSeconds,
      vadInferredPerCallSecond: vadInferred / callSeconds,
      vadInferenceMsPerCallSecond: vadInferenceMs / callSeconds,
      vadAvgBatch: vadInferred / vadBatches,
      otherCores,
      saturated,
    };
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

/**
 * With BENCH_CPU_PROFILE=<dir>, the measurement window of each case is profiled (this thread only:
 * the server or the floor, not the callers or the VAD's thread) into <dir>/<case>.cpuprofile; with
 * BENCH_HEAP_PROFILE=<dir>, its allocations are sampled into <dir>/<case>.heapprofile.
 */
async function startWindowProfile(): Promise<{ stop: (name: string) => Promise<void> } | undefined> {
  const dir = process.env['BENCH_CPU_PROFILE'];
  const heapDir = process.env['BENCH_HEAP_PROFILE'];
  if ((dir === undefined || dir === '') && (heapDir === undefined || heapDir === '')) return undefined;
  const session = new Session();
  session.connect();
  if (dir) {
    await session.post('Profiler.enable');
    await session.post('Profiler.start');
  }
  if (heapDir) await session.post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  return {
    stop: async (name) => {
      if (dir) {
        const { profile } = await session.post('Profiler.stop');
        mkdirSync(dir, { recursive: true });
        writeFileSync(join(dir, `${name}.cpuprofile`), JSON.stringify(profile));
      }
      if (heapDir) {
        const { profile } = await session.post('HeapProfiler.stopSampling');
        mkdirSync(heapDir, { recursive: true });
        writeFileSync(join(heapDir, `${name}.heapprofile`), JSON.stringify(profile));
      }
      session.disconnect();
    },
  };
}

/** CPU ms per thread of this process (Linux /proc), by thread id, with the thread's name. */
function threadCpuMs(): Map<string, { name: string; ms: number }> {
  const out = new Map<string, { name: string; ms: number }>();
  try {
    for (const tid of readdirSync('/proc/self/task')) {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const name = tid === String(process.pid) ? 'main' : `other ${stat.slice(stat.indexOf('(') + 1, close).replace(/[0-9]+$/, '#')}`;
      const fields = stat.slice(close + 2).split(' ');
      out.set(tid, { name, ms: ((Number(fields[11]) + Number(fields[12])) * 1000) / 100 });
    }
  } catch {
    // not Linux: no per-thread figures
  }
  return out;
}

async function waitForDrain(server: RunningServer, timeoutMs: number): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (server.sessions.size > 0 && performance.now() < until) await sleep(50);
}

function describe(c: LoadCase): string[] {
  return [
    `${c.server} #${c.round}`,
    String(c.frameMs),
    `${c.callsAlive}/${c.calls}`,
    `${fmt(c.cpuMsPerCallSecond, 2)} (${fmt(c.sysMsPerCallSecond, 2)})`,
    fmt(c.pacingP99, 1),
    fmt(c.pacingMax, 1),
    `${fmt(c.callerJitterP50, 1)} / ${fmt(c.callerJitterP99, 1)}`,
    fmt(c.mediaPerCallSecond, 1),
    fmt(c.audioMsPerCallSecond, 0),
    String(c.underruns),
    String(c.clears),
    `${fmt(c.machineBusy * 100, 0)}% / ${fmt(c.serverElu * 100, 0)}%`,
    fmt(Math.max(0, c.otherCores), 1),
    c.server === 'ours'
      ? `${fmt(c.vadChunksPerCallSecond, 1)} (${fmt(c.vadInferredPerCallSecond, 1)} to the model${c.vadInferredPerCallSecond > 0 ? `, batch ${fmt(c.vadAvgBatch, 0)}` : ''})`
      : '—',
    c.saturated.length === 0 ? 'no' : 'YES',
  ];
}

export async function runLoadBench(options: LoadBenchOptions = {}): Promise<LoadBenchResult> {
  const frames = options.frames ?? [20, 40, 60];
  const callCounts = options.calls ?? [50, 200];
  const headlineS = options.seconds ?? 15;
  const otherS = options.otherSeconds ?? 8;
  const warmupS = options.warmupSeconds ?? 3;
  const rounds = options.rounds ?? 3;
  const callers: CallerSetup = { noiseDbfs: options.noiseDbfs ?? -50, inboundPhases: options.inboundPhases ?? 'spread' };
  const withNoVad = options.withNoVad ?? false;
  const withBareFloor = options.withBareFloor ?? true;
  const serverEnv = options.serverEnv ?? {};
  console.log(
    `\n== Load: server CPU per call-second and pacing, ours vs a bare ws floor (callers in a child process, ${callers.inboundPhases} phases; ` +
      `${rounds} paired rounds of ${warmupS} s warm-up + ${headlineS} s window at ${frames[0]} ms, ${otherS} s otherwise; caller noise ${callers.noiseDbfs} dBFS` +
      `${Object.keys(serverEnv).length > 0 ? `; ${Object.entries(serverEnv).map(([k, v]) => `${k}=${v}`).join(' ')}` : ''}) ==`,
  );
  const dir = mkdtempSync(join(tmpdir(), 'bench-load-'));
  const cases: LoadCase[] = [];
  try {
    const scriptPath = writeLongGreetingScript(dir);
    for (const frameMs of frames) {
      const windowS = frameMs === frames[0] ? headlineS : otherS;
      const server = await startVoiceServer({ AGENT_SCRIPT: scriptPath, OUTBOUND_FRAME_MS: String(frameMs), LOG_LEVEL: process.env['BENCH_LOG_LEVEL'] ?? 'silent', ...serverEnv });
      const leadMs = server.config.audio.outboundLeadMs;
      try {
        const vad = server.engines.vad instanceof SileroVad ? server.engines.vad : undefined;
        for (const calls of callCounts) {
          let floor: FloorServer | undefined;
          let floorUrl = '';
          let bareFloor: FloorServer | undefined;
          let bareFloorUrl = '';
          try {
            for (let round = 1; round <= rounds; round++) {
              const probe: Probe = {
                server: 'ours',
                round,
                frameMs,
                calls,
                target: { mode: 'twilio', url: server.url, authToken: TEST_AUTH_TOKEN },
                lateness: server.scheduler.lateness,
                drained: () => waitForDrain(server, 10_000),
              };
              if (vad !== undefined) probe.vad = vad;
              const ours = await measure(probe, windowS, warmupS, callers);
              cases.push(ours);
              if (floor === undefined) {
                // The floor sends as many messages per call-second as our callers got from us.
                floor = new FloorServer(1000 / ours.mediaPerCallSecond, (frameMs / 20) * 160, leadMs);
                floorUrl = await floor.listen();
              }
              const floorProbe: Probe = {
                server: 'floor',
                round,
                frameMs,
                calls,
                target: { mode: 'bare', url: floorUrl },
                lateness: floor.lateness,
                intendedAudioMsPerCallSecond: ours.mediaPerCallSecond * frameMs,
              };
              cases.push(await measure(floorProbe, windowS, warmupS, callers));
              if (withBareFloor && frameMs === frames[0]) {
                if (bareFloor === undefined) {
                  bareFloor = new FloorServer(1000 / ours.mediaPerCallSecond, (frameMs / 20) * 160, leadMs, 'per-call');
                  bareFloorUrl = await bareFloor.listen();
                }
                const bareProbe: Probe = { ...floorProbe, server: 'bare-floor', target: { mode: 'bare', url: bareFloorUrl }, lateness: bareFloor.lateness };
                cases.push(await measure(bareProbe, windowS, warmupS, callers));
              }
            }
          } finally {
            await floor?.close();
            await bareFloor?.close();
          }
        }
      } finally {
        await server.close();
      }
      if (frameMs === frames[0] && withNoVad) {
        const bare = await startVoiceServer(
          { AGENT_SCRIPT: scriptPath, OUTBOUND_FRAME_MS: String(frameMs), LOG_LEVEL: process.env['BENCH_LOG_LEVEL'] ?? 'silent' },
          { vad: new NoVad() },
        );
        try {
          for (const calls of callCounts) {
            const probe: Probe = {
              server: 'ours-no-vad',
              round: 1,
              frameMs,
              calls,
              target: { mode: 'twilio', url: bare.url, authToken: TEST_AUTH_TOKEN },
              lateness: bare.scheduler.lateness,
              drained: () => waitForDrain(bare, 10_000),
            };
            cases.push(await measure(probe, otherS, warmupS, callers));
          }
        } finally {
          await bare.close();
        }
      }
      printCases(cases.filter((c) => c.frameMs === frameMs));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const summary: SummaryRow[] = [];
  for (const calls of callCounts) {
    const hits = cases.filter((c) => c.server === 'ours' && c.calls === calls && c.saturated.length > 0);
    summary.push(
      row(
        `do ${calls} calls saturate our server?`,
        hits.length === 0 ? 'no' : `YES at ${hits.map((c) => `${c.frameMs} ms`).join(', ')}: ${hits[0]!.saturated.join('; ')}`,
      ),
    );
  }
  for (const frameMs of frames) {
    for (const calls of callCounts) {
      const ours = cases.filter((c) => c.server === 'ours' && c.frameMs === frameMs && c.calls === calls);
      /** Each round's ours beside that round's `kind` of floor. */
      const pairedWith = (kind: 'floor' | 'bare-floor'): Array<{ ours: LoadCase; floor: LoadCase; ratio: number }> =>
        ours.flatMap((o) => {
          const f = cases.find((c) => c.server === kind && c.frameMs === frameMs && c.calls === calls && c.round === o.round);
          return f === undefined ? [] : [{ ours: o, floor: f, ratio: o.cpuMsPerCallSecond / f.cpuMsPerCallSecond }];
        });
      const pairs = pairedWith('floor');
      if (pairs.length === 0) continue;
      const ratio = median(pairs.map((p) => p.ratio));
      const oursCpu = median(pairs.map((p) => p.ours.cpuMsPerCallSecond));
      const floorCpu = median(pairs.map((p) => p.floor.cpuMsPerCallSecond));
      const pacing = median(pairs.map((p) => p.ours.pacingP99));
      const bare = pairedWith('bare-floor');
      const noVad = cases.find((c) => c.server === 'ours-no-vad' && c.frameMs === frameMs && c.calls === calls);
      const tag = `${frameMs} ms frames, ${calls} calls`;
      const sat = pairs.some((p) => p.ours.saturated.length > 0) ? ' (SATURATED)' : '';
      const others = Math.max(...pairs.flatMap((p) => [p.ours.otherCores, p.floor.otherCores]));
      const shared = others > 0.3 ? ` [machine shared: up to ${fmt(others, 1)} cores of other processes]` : '';
      const perRound = pairs.length > 1 ? `; rounds ${pairs.map((p) => `${fmt(p.ratio, 2)}×`).join(', ')}` : '';
      summary.push(
        row(
          `CPU per call-second, ${tag}${sat}`,
          `ours ${fmt(oursCpu, 2)} ms, floor ${fmt(floorCpu, 2)} ms: ${fmt(ratio, 2)}×${pairs.length > 1 ? ' (median)' : ''}${perRound}${shared}`,
          '≤ 1.5×',
          ratio <= 1.5,
        ),
        ...(bare.length === 0
          ? []
          : [
              row(
                `  the same against the bare floor (each call on its own timer)`,
                `bare floor ${fmt(median(bare.map((b) => b.floor.cpuMsPerCallSecond)), 2)} ms: ${fmt(median(bare.map((b) => b.ratio)), 2)}×${
                  bare.length > 1 ? ` (median); rounds ${bare.map((b) => `${fmt(b.ratio, 2)}×`).join(', ')}` : ''
                }`,
                '≤ 1.5×',
                median(bare.map((b) => b.ratio)) <= 1.5,
              ),
            ]),
        ...(noVad === undefined
          ? []
          : [
              row(
                `  split, ${tag}`,
                `VAD ≈ ${fmt(oursCpu - noVad.cpuMsPerCallSecond, 2)} ms; rest of ours ${fmt(noVad.cpuMsPerCallSecond, 2)} ms = ${fmt(noVad.cpuMsPerCallSecond / floorCpu, 2)}× floor`,
              ),
            ]),
        row(
          `pacing lateness p99 (scheduler), ${tag}${sat}`,
          `${fmt(pacing, 1)} ms${pairs.length > 1 ? ` (median; rounds ${pairs.map((p) => fmt(p.ours.pacingP99, 1)).join(', ')})` : ''} (floor ${fmt(median(pairs.map((p) => p.floor.pacingP99)), 1)} ms)`,
          '≤ 5 ms',
          pacing <= 5,
        ),
        row(
          `caller inter-arrival jitter p99, ${tag}`,
          `${fmt(median(pairs.map((p) => p.ours.callerJitterP99)), 1)} ms (floor ${fmt(median(pairs.map((p) => p.floor.callerJitterP99)), 1)} ms)`,
        ),
      );
    }
  }
  return { cases, summary };
}

/** The middle value (the lower of the two middle ones for an even count). */
function median(values: readonly number[]): number {
  return quantile(values, 0.5);
}

function printCases(cases: LoadCase[]): void {
  console.log('');
  printTable(
    [
      'server',
      'frame ms',
      'calls',
      'CPU ms/call-s (sys)',
      'pacing p99 ms',
      'pacing max ms',
      'jitter p50/p99 ms',
      'msgs/call-s',
      'audio ms/call-s',
      'underruns',
      'clears',
      'machine/loop busy',
      'other procs (cores)',
      'VAD chunks/call-s',
      'saturated',
    ],
    cases.map(describe),
  );
  for (const c of cases) {
    if (c.saturated.length > 0) console.log(`  SATURATED: ${c.server} ${c.frameMs} ms × ${c.calls} calls: ${c.saturated.join('; ')}`);
  }
  for (const c of cases) {
    console.log(`  ${c.server} #${c.round} ${c.frameMs} ms × ${c.calls}: main-thread GC ${c.gcPauses} pauses, ${fmt(c.gcMsPerSecond, 1)} ms/s, longest ${fmt(c.gcMaxMs, 1)} ms`);
  }
  for (const c of cases.filter((x) => x.server === 'ours')) {
    console.log(
      `  ours ${c.frameMs} ms × ${c.calls}: avg VAD batch ${fmt(c.vadAvgBatch, 1)} streams; VAD wall time (session.run incl. its setImmediate wait) ` +
        `${fmt(c.vadInferenceMsPerCallSecond, 2)} ms per call-second; callers used ${fmt(c.callerCpuMsPerSecond, 0)} CPU ms/s ` +
        `(timer p99 ${fmt(c.callerTickLateP99, 1)} ms late); min caller buffer ${fmt(c.minBufferMs, 0)} ms; other processes ${fmt(Math.max(0, c.otherCores), 1)} cores`,
    );
  }
}

if (isMain(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      frames: { type: 'string', default: '20,40,60' },
      calls: { type: 'string', default: '50,200' },
      seconds: { type: 'string', default: '15' },
      'other-seconds': { type: 'string', default: '8' },
      rounds: { type: 'string', default: '3' },
      phases: { type: 'string', default: 'spread' },
      'no-vad': { type: 'boolean', default: false },
      /** `off`: the VAD model on every chunk (VAD_NOISE_GATE=off), as in npm run bench's worst case. */
      gate: { type: 'string', default: 'on' },
      'echo-guard': { type: 'string', default: 'on' },
      /** `off`: skip the bare floor (each call on its own timer) at the first frame size. */
      'bare-floor': { type: 'string', default: 'on' },
      /** The callers' line noise: -50 (a noisy line, the headline) or e.g. -65 (a quiet line). */
      'noise-dbfs': { type: 'string', default: '-50' },
      /** host:port of a Triton (or `npx tsx test/triton-stand-in/main.ts --models silero_vad`): the VAD runs there. */
      'triton-vad': { type: 'string' },
    },
  });
  if (values.phases !== 'spread' && values.phases !== 'aligned') throw new Error('--phases must be spread or aligned');
  if (values.gate !== 'on' && values.gate !== 'off') throw new Error('--gate must be on or off');
  if (values['echo-guard'] !== 'on' && values['echo-guard'] !== 'off') throw new Error('--echo-guard must be on or off');
  if (values['bare-floor'] !== 'on' && values['bare-floor'] !== 'off') throw new Error('--bare-floor must be on or off');
  const result = await runLoadBench({
    frames: values.frames.split(',').map(Number) as Array<20 | 40 | 60>,
    calls: values.calls.split(',').map(Number),
    seconds: Number(values.seconds),
    otherSeconds: Number(values['other-seconds']),
    rounds: Number(values.rounds),
    inboundPhases: values.phases,
    withNoVad: values['no-vad'],
    withBareFloor: values['bare-floor'] === 'on',
    noiseDbfs: Number(values['noise-dbfs']),
    serverEnv: {
      VAD_NOISE_GATE: values.gate,
      ECHO_GUARD: values['echo-guard'],
      ...(values['triton-vad'] === undefined ? {} : { VAD_ENGINE: 'triton', TRITON_URL: values['triton-vad'] }),
    },
  });
  printSummary('Load', result.summary);
  process.exit(0);
}
