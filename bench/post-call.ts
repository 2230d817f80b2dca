/**
 * The post-call pipeline end to end: the server's PostCallQueue → BullMQ on the real Redis → one
 * worker (startPostCallWorker, in this process, the default concurrency) → PII redaction, the call
 * and its 24 turn parts written, the analysis by an OpenAI-compatible LLM (OpenAiCompatibleLlm
 * against the stand-in, test/helpers/openai-stand-in.ts, in a child process: bench/post-call-llm.ts)
 * → the post_call_results row in the real PostgreSQL (a fresh schema, dropped at the end); Redis
 * keys live under a prefix of their own, deleted at the end. Calls are realistic (bench/post-call-calls.ts:
 * 12 turns each way, PII to redact, latency waterfalls), and every job's number has a profile that
 * is read per job, as in production. The LLM replies with a valid 150-token analysis:
 *   - instant: all tokens at once — what the pipeline itself can do;
 *   - paced: `--tokens-per-s` (default 100) — a hosted or local model's streaming rate (the
 *     stand-in has no separate prefill delay: a real endpoint adds its time to first token).
 *
 * 1. Throughput: N jobs queued first (a backlog), then one worker drains them. Jobs per second =
 *    N / (first job taken → last job completed); worker CPU ms per job = process.cpuUsage() over
 *    the same window / N (this process runs the worker only by then: the stand-in is another
 *    process, PostgreSQL and Redis are servers; with PGlite the database runs in-process and is
 *    counted). Cases: extractive (no LLM), instant LLM, paced LLM (also at a higher concurrency:
 *    with an LLM-bound job, POST_CALL_CONCURRENCY is what sizes a worker), and instant LLM on
 *    PGlite. A warm-up batch runs first.
 * 2. Hang-up → stored summary: jobs one at a time, each enqueued (what the server does when the call
 *    ends) only after the previous one is done and the worker has idled `--gap-ms`. Measured from the
 *    enqueue call to the moment the post_call_results upsert committed (the row is readable by
 *    anyone from then on; each row is also read back through another connection, shown), with
 *    the stages between: Redis has the job, the worker takes it, the LLM request, the reply, the
 *    result committed, the job completed in BullMQ.
 *
 *   npx tsx bench/post-call.ts [--quick] [--jobs 200] [--paced-jobs 40] [--latency-jobs 40]
 *     [--paced-latency-jobs 20] [--tokens-per-s 100] [--concurrency 4] [--scale-concurrency 16]
 *     [--gap-ms 200] [--no-pglite]
 *   Redis: BENCH_REDIS_URL or TEST_REDIS_URL (default redis://127.0.0.1:6379);
 *   PostgreSQL: BENCH_DATABASE_URL or TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { OpenAiCompatibleLlm } from '../src/engines/openai/openai-llm.js';
import type { Llm, LlmEvent, LlmRequest } from '../src/engines/types.js';
import { DEFAULT_DISPOSITIONS } from '../src/post-call/analysis.js';
import { DEFAULT_CONCURRENCY } from '../src/post-call/config.js';
import type { PostCallLogger } from '../src/post-call/logger.js';
import { PostCallProcessor } from '../src/post-call/processor.js';
import { PostCallQueue } from '../src/post-call/queue.js';
import { startPostCallWorker, type PostCallWorker } from '../src/post-call/worker.js';
import { CallStore } from '../src/store/call-store.js';
import { openDatabase, type Db, type Queryable } from '../src/store/database.js';
import type { PostCallResult, PostCallResultInput } from '../src/store/types.js';
import { deleteKeysWithPrefix } from '../test/helpers/redis-keys.js';
import { fmt, isMain, machineBusyFraction, machineCpu, printSummary, printTable, quantile, row, sleep, watchdog, type SummaryRow } from './common.js';
import { benchCalls } from './post-call-calls.js';

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
const BENCH_NUMBER = '+15550100199';
/** Turn parts per bench call (12 turns, caller and agent). */
const PARTS_PER_CALL = 24;

export interface PostCallBenchOptions {
  /** Throughput: jobs per case with the instant LLM, the extractive fallback and PGlite. */
  jobs?: number;
  /** Throughput: jobs with the paced LLM. */
  pacedJobs?: number;
  /** Hang-up → stored: jobs one at a time with the instant LLM (and on PGlite). */
  latencyJobs?: number;
  /** Hang-up → stored: jobs one at a time with the paced LLM. */
  pacedLatencyJobs?: number;
  /** The paced stand-in's streaming rate. */
  tokensPerS?: number;
  /** Worker concurrency (POST_CALL_CONCURRENCY); default the worker's default. */
  concurrency?: number;
  /** A second paced throughput case at this concurrency; 0 leaves it out. */
  scaleConcurrency?: number;
  /** Idle time between the one-at-a-time jobs. */
  gapMs?: number;
  /** The PGlite rows (an in-process database; the worker process needs PostgreSQL in production). */
  pglite?: boolean;
  /** Warm-up jobs before the throughput cases. */
  warmupJobs?: number;
  redisUrl?: string;
  databaseUrl?: string;
}

export const QUICK_POST_CALL_OPTIONS: PostCallBenchOptions = {
  jobs: 60,
  pacedJobs: 16,
  latencyJobs: 15,
  pacedLatencyJobs: 6,
  scaleConcurrency: 0,
  warmupJobs: 10,
};

export interface ThroughputFigures {
  label: string;
  store: string;
  llm: string;
  jobs: number;
  concurrency: number;
  jobsPerS: number;
  /** Worker process CPU per job over the drain window, ms. */
  cpuMsPerJob: number;
  /** Worker process CPU / wall over the drain window (1 = one core). */
  cores: number;
  /** Fraction of all the machine's cores busy over the drain window (worker, PostgreSQL, Redis, stand-in). */
  machineBusy: number;
  /** Mean wall time of an LLM request (request sent → reply complete), ms; NaN without an LLM. */
  llmMsPerRequest: number;
  llmRequests: number;
  /** The server side: CPU of PostCallQueue.enqueue per job (all jobs enqueued at once), µs. */
  enqueueCpuUs: number;
  /** Redactions per call, from the stored results. */
  redactionsPerCall: number;
}

/** ms from the enqueue call. */
export interface JobStamps {
  enqueue: number;
  queued?: number;
  active?: number;
  llmStart?: number;
  llmEnd?: number;
  stored?: number;
  completed?: number;
  readable?: number;
}

export interface LatencyFigures {
  label: string;
  store: string;
  llm: string;
  /** Stamps of the measured jobs (the warm-up job left out), absolute performance.now() ms. */
  jobs: JobStamps[];
  /** enqueue → committed, ms, per job. */
  stored: number[];
  /** Fraction of all the machine's cores busy over the case (mostly not this process: it idles between jobs). */
  machineBusy: number;
}

export interface PostCallBenchResult {
  throughput: ThroughputFigures[];
  latency: LatencyFigures[];
  problems: string[];
  summary: SummaryRow[];
}

// ── instrumentation ─────────────────────────────────────────────────────────────────────────────

/** The store, telling when each post-call result's upsert has committed. */
class StampingStore extends CallStore {
  constructor(
    db: Db,
    private readonly onStored: (callSid: string) => void,
  ) {
    super(db);
  }

  override async upsertPostCallResult(input: PostCallResultInput): Promise<PostCallResult> {
    const result = await super.upsertPostCallResult(input);
    this.onStored(input.callSid);
    return result;
  }
}

interface LlmTally {
  requests: number;
  totalMs: number;
}

/** The LLM, telling when each job's first request starts and its last one ends. */
function timedLlm(inner: Llm, tally: LlmTally, stamp: (callSid: string, what: 'llmStart' | 'llmEnd') => void): Llm {
  return {
    name: inner.name,
    async *generate(request: LlmRequest): AsyncGenerator<LlmEvent> {
      const started = performance.now();
      stamp(request.callId, 'llmStart');
      try {
        yield* inner.generate(request);
      } finally {
        tally.requests++;
        tally.totalMs += performance.now() - started;
        stamp(request.callId, 'llmEnd');
      }
    },
  };
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: not done within ${Math.round(ms / 1000)} s`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Closes a worker; one whose active jobs do not finish in time is closed by force. */
async function closeWorker(worker: PostCallWorker): Promise<void> {
  try {
    await withTimeout(worker.close(), 15_000, 'closing the worker');
  } catch {
    await worker.worker.close(true).catch(() => {});
  }
}

// ── the stand-in LLM, in a child process ────────────────────────────────────────────────────────

interface LlmChild {
  instantUrl: string;
  pacedUrl: string;
  tokens: number;
  stop(): Promise<void>;
}

async function startLlmChild(tokensPerS: number): Promise<LlmChild> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'bench/post-call-llm.ts', '--tokens-per-s', String(tokensPerS)], {
    cwd: REPO_ROOT,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  // A watchdog's process.exit must not leave the child behind.
  const killOnExit = (): void => void child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', () => resolve());
  });
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.stdin?.end();
      child.kill('SIGTERM');
      const forced = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(forced);
    }
    process.removeListener('exit', killOnExit);
  };
  try {
    const lines = createInterface({ input: child.stdout! });
    const first = new Promise<string>((resolve, reject) => {
      lines.once('line', resolve);
      void exited.then(() => reject(new Error('the stand-in LLM child exited before it was ready')));
    });
    const line = await withTimeout(first, 60_000, 'starting the stand-in LLM child');
    lines.close();
    const ready = JSON.parse(line) as { instant: string; paced: string; tokens: number };
    return { instantUrl: ready.instant, pacedUrl: ready.paced, tokens: ready.tokens, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

// ── the cases ───────────────────────────────────────────────────────────────────────────────────

interface Backend {
  name: string;
  store: StampingStore;
  /** Reads rows back through a connection other than the worker's (PGlite: its one connection). */
  reader: Queryable;
}

interface CaseLlm {
  name: string;
  llm: Llm | undefined;
  modelName?: string;
}

interface BenchContext {
  runId: string;
  redisUrl: string;
  stamps: Map<string, JobStamps>;
  logger: PostCallLogger;
  caseNumber: number;
}

function nextCase(ctx: BenchContext): { prefix: string; sidPrefix: string } {
  ctx.caseNumber++;
  return { prefix: `pcbench_${ctx.runId}_${ctx.caseNumber}`, sidPrefix: `${ctx.runId}c${ctx.caseNumber}x` };
}

function processorFor(backend: Backend, caseLlm: CaseLlm, tally: LlmTally, ctx: BenchContext): PostCallProcessor {
  const stamp = (callSid: string, what: 'llmStart' | 'llmEnd'): void => {
    const s = ctx.stamps.get(callSid);
    if (s === undefined) return;
    if (what === 'llmStart') s.llmStart ??= performance.now();
    else s.llmEnd = performance.now();
  };
  return new PostCallProcessor({
    store: backend.store,
    llm: caseLlm.llm === undefined ? undefined : timedLlm(caseLlm.llm, tally, stamp),
    ...(caseLlm.modelName === undefined ? {} : { modelName: caseLlm.modelName }),
    llmTimeoutMs: 60_000,
  });
}

async function throughputCase(
  ctx: BenchContext,
  backend: Backend,
  caseLlm: CaseLlm,
  options: { label: string; jobs: number; concurrency: number; expectedJobMs: number },
): Promise<ThroughputFigures> {
  const { prefix, sidPrefix } = nextCase(ctx);
  const jobs = benchCalls(options.jobs, { number: BENCH_NUMBER, sidPrefix, seed: ctx.caseNumber });
  const queue = new PostCallQueue({ redisUrl: ctx.redisUrl, prefix, logger: ctx.logger });
  let worker: PostCallWorker | undefined;
  try {
    // The backlog, as the server would file it at hang-up (all at once here).
    const cpu0 = process.cpuUsage();
    const outcomes = await withTimeout(Promise.all(jobs.map((job) => queue.enqueue(job))), 60_000, `${options.label}: enqueueing`);
    const enqueueCpu = process.cpuUsage(cpu0);
    const notQueued = outcomes.filter((o) => o.status !== 'queued');
    if (notQueued.length > 0) throw new Error(`${options.label}: ${notQueued.length} jobs not queued: ${JSON.stringify(notQueued[0])}`);

    const tally: LlmTally = { requests: 0, totalMs: 0 };
    let first: { at: number; cpu: NodeJS.CpuUsage; machine: ReturnType<typeof machineCpu> } | undefined;
    let last: { at: number; cpu: NodeJS.CpuUsage; machine: ReturnType<typeof machineCpu> } | undefined;
    let completed = 0;
    const w = startPostCallWorker({
      processor: processorFor(backend, caseLlm, tally, ctx),
      logger: ctx.logger,
      redisUrl: ctx.redisUrl,
      prefix,
      concurrency: options.concurrency,
    });
    worker = w;
    const drained = new Promise<void>((resolve, reject) => {
      w.worker.on('active', () => {
        first ??= { at: performance.now(), cpu: process.cpuUsage(), machine: machineCpu() };
      });
      w.worker.on('completed', () => {
        if (++completed < jobs.length) return;
        last = { at: performance.now(), cpu: process.cpuUsage(first?.cpu), machine: machineCpu() };
        resolve();
      });
      w.worker.on('failed', (job, err) => reject(new Error(`${options.label}: job ${job?.id ?? '?'} failed: ${err.message}`)));
    });
    const budgetMs = 60_000 + (jobs.length * options.expectedJobMs * 3) / options.concurrency;
    await withTimeout(drained, budgetMs, `${options.label}: draining ${jobs.length} jobs`);
    await closeWorker(w);
    worker = undefined;

    // Every job's rows are there, made by the expected engine.
    const sids = jobs.map((j) => j.callSid);
    const { rows } = await backend.reader.query<{ extractive: boolean; model: string | null; redaction_counts: Record<string, number> }>(
      'SELECT extractive, model, redaction_counts FROM post_call_results WHERE call_sid = ANY($1::text[])',
      [sids],
    );
    const turnRows = await backend.reader.query<{ n: number }>('SELECT count(*)::int AS n FROM turns WHERE call_sid = ANY($1::text[])', [sids]);
    const wantExtractive = caseLlm.llm === undefined;
    const wrong = rows.filter((r) => r.extractive !== wantExtractive || (!wantExtractive && r.model !== caseLlm.modelName));
    if (rows.length !== jobs.length || wrong.length > 0 || turnRows.rows[0]?.n !== jobs.length * PARTS_PER_CALL) {
      throw new Error(
        `${options.label}: stored ${rows.length} results (${wrong.length} by the wrong engine) and ${turnRows.rows[0]?.n ?? 0} turn parts for ${jobs.length} jobs`,
      );
    }
    const redactions = rows.reduce((sum, r) => sum + Object.values(r.redaction_counts).reduce((a, b) => a + b, 0), 0);

    const wallMs = last!.at - first!.at;
    const cpuMs = (last!.cpu.user + last!.cpu.system) / 1000;
    return {
      label: options.label,
      store: backend.name,
      llm: caseLlm.name,
      jobs: jobs.length,
      concurrency: options.concurrency,
      jobsPerS: (jobs.length * 1000) / wallMs,
      cpuMsPerJob: cpuMs / jobs.length,
      cores: cpuMs / wallMs,
      machineBusy: machineBusyFraction(first!.machine, last!.machine),
      llmMsPerRequest: tally.requests === 0 ? NaN : tally.totalMs / tally.requests,
      llmRequests: tally.requests,
      enqueueCpuUs: (enqueueCpu.user + enqueueCpu.system) / jobs.length,
      redactionsPerCall: redactions / jobs.length,
    };
  } finally {
    if (worker !== undefined) await closeWorker(worker);
    await queue.close(2000);
  }
}

async function latencyCase(
  ctx: BenchContext,
  backend: Backend,
  caseLlm: CaseLlm,
  options: { label: string; jobs: number; concurrency: number; gapMs: number; expectedJobMs: number },
): Promise<LatencyFigures> {
  const { prefix, sidPrefix } = nextCase(ctx);
  // One more than measured: a fresh worker's first job is left out (a running worker is warm).
  const jobs = benchCalls(options.jobs + 1, { number: BENCH_NUMBER, sidPrefix, seed: 100 + ctx.caseNumber });
  const queue = new PostCallQueue({ redisUrl: ctx.redisUrl, prefix, logger: ctx.logger });
  const tally: LlmTally = { requests: 0, totalMs: 0 };
  const worker = startPostCallWorker({
    processor: processorFor(backend, caseLlm, tally, ctx),
    logger: ctx.logger,
    redisUrl: ctx.redisUrl,
    prefix,
    concurrency: options.concurrency,
  });
  const waiting = new Map<string, { resolve: () => void; reject: (err: Error) => void }>();
  const stamp = (id: string | undefined, what: 'active' | 'completed'): void => {
    const s = id === undefined ? undefined : ctx.stamps.get(id);
    if (s !== undefined) s[what] ??= performance.now();
  };
  worker.worker.on('active', (job) => stamp(job.id, 'active'));
  worker.worker.on('completed', (job) => {
    stamp(job.id, 'completed');
    if (job.id !== undefined) waiting.get(job.id)?.resolve();
  });
  worker.worker.on('failed', (job, err) => {
    if (job?.id !== undefined) waiting.get(job.id)?.reject(new Error(`${options.label}: job ${job.id} failed: ${err.message}`));
  });
  const measured: JobStamps[] = [];
  let machine0 = machineCpu();
  try {
    await withTimeout(worker.waitUntilReady(), 30_000, `${options.label}: worker start`);
    for (const [i, job] of jobs.entries()) {
      // Job ids are the call SIDs (plain `CA…` SIDs are used as they are).
      const done = new Promise<void>((resolve, reject) => waiting.set(job.callSid, { resolve, reject }));
      const s: JobStamps = { enqueue: performance.now() };
      ctx.stamps.set(job.callSid, s);
      void queue.enqueue(job).then((outcome) => {
        if (outcome.status === 'queued') s.queued = performance.now();
        else waiting.get(job.callSid)?.reject(new Error(`${options.label}: job not queued: ${JSON.stringify(outcome)}`));
      });
      await withTimeout(done, 30_000 + options.expectedJobMs * 3, `${options.label}: job ${i + 1}`);
      waiting.delete(job.callSid);
      const { rows } = await backend.reader.query<{ summary: string }>('SELECT summary FROM post_call_results WHERE call_sid = $1', [job.callSid]);
      s.readable = performance.now();
      if (rows.length !== 1 || s.stored === undefined) throw new Error(`${options.label}: the result of job ${i + 1} is not stored`);
      if (i > 0) measured.push(s);
      else machine0 = machineCpu();
      // The worker idles (blocked on Redis) until the next call ends.
      await sleep(options.gapMs);
    }
  } finally {
    await closeWorker(worker);
    await queue.close(2000);
  }
  const machineBusy = machineBusyFraction(machine0, machineCpu());
  return {
    label: options.label,
    store: backend.name,
    llm: caseLlm.name,
    jobs: measured,
    stored: measured.map((s) => s.stored! - s.enqueue),
    machineBusy,
  };
}

// ── reporting ───────────────────────────────────────────────────────────────────────────────────

function stats(values: number[]): string[] {
  return values.length === 0 ? ['n/a', 'n/a', 'n/a'] : [fmt(quantile(values, 0.5), 1), fmt(quantile(values, 0.95), 1), fmt(Math.max(...values), 1)];
}

function printLatency(l: LatencyFigures, gapMs: number): void {
  const from = (key: keyof JobStamps): number[] => l.jobs.flatMap((s) => (s[key] === undefined ? [] : [s[key]! - s.enqueue]));
  const between = (a: keyof JobStamps, b: keyof JobStamps): number[] =>
    l.jobs.flatMap((s) => (s[a] === undefined || s[b] === undefined ? [] : [s[b]! - s[a]!]));
  console.log(
    `\n${l.label}: n=${l.jobs.length}, one at a time, ${gapMs} ms of worker idle between; ` +
      `machine ${fmt(l.machineBusy * 100, 0)}% busy meanwhile (ms)`,
  );
  const rows: string[][] = [
    ['hang-up (enqueue call) → Redis has the job (enqueue resolved)', ...stats(from('queued'))],
    ['hang-up → the worker takes the job (active)', ...stats(from('active'))],
  ];
  if (l.jobs.some((s) => s.llmStart !== undefined)) {
    rows.push(
      ['  taken → LLM request (profile read, redaction, call + 24 turn parts written)', ...stats(between('active', 'llmStart'))],
      ['  LLM request → reply complete', ...stats(between('llmStart', 'llmEnd'))],
      ['  reply → post_call_results committed', ...stats(between('llmEnd', 'stored'))],
    );
  } else {
    rows.push(['  taken → post_call_results committed', ...stats(between('active', 'stored'))]);
  }
  rows.push(
    ['hang-up → summary stored (committed)', ...stats(l.stored)],
    ['  committed → job completed in BullMQ', ...stats(between('stored', 'completed'))],
    ['info: hang-up → row read back through another connection', ...stats(from('readable'))],
  );
  printTable(['stage', 'p50', 'p95', 'max'], rows);
}

// ── the benchmark ───────────────────────────────────────────────────────────────────────────────

export async function runPostCallBench(options: PostCallBenchOptions = {}): Promise<PostCallBenchResult> {
  const jobsN = options.jobs ?? 200;
  const pacedJobs = options.pacedJobs ?? 40;
  const latencyJobs = options.latencyJobs ?? 40;
  const pacedLatencyJobs = options.pacedLatencyJobs ?? 20;
  const tokensPerS = options.tokensPerS ?? 100;
  const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
  const scaleConcurrency = options.scaleConcurrency ?? 16;
  const gapMs = options.gapMs ?? 200;
  const withPglite = options.pglite ?? true;
  const warmupJobs = options.warmupJobs ?? 20;
  const redisUrl = options.redisUrl ?? process.env.BENCH_REDIS_URL ?? process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
  const databaseUrl = options.databaseUrl ?? process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

  console.log(
    `\n== Post-call pipeline: queue → worker (concurrency ${concurrency}) → redaction, store, LLM analysis; ` +
      `stand-in LLM instant and at ${tokensPerS} tokens/s ==`,
  );
  const runId = randomBytes(4).toString('hex');
  const schema = `post_call_bench_${runId}`;
  const problems: string[] = [];
  const note = (level: string) => (obj: Record<string, unknown>, msg: string): void => {
    problems.push(`${level}: ${msg} ${JSON.stringify(obj)}`);
  };
  const ctx: BenchContext = {
    runId,
    redisUrl,
    stamps: new Map(),
    logger: { info: () => {}, warn: note('warn'), error: note('error') },
    caseNumber: 0,
  };
  const cleanups: Array<() => Promise<unknown>> = [];
  const throughput: ThroughputFigures[] = [];
  const latency: LatencyFigures[] = [];

  try {
    // Redis first: with it down the queue would wait for it forever (as it should in the server).
    const redis = new Redis(redisUrl, { lazyConnect: true, connectTimeout: 3000, maxRetriesPerRequest: 1, retryStrategy: () => null });
    let redisError: Error | undefined;
    redis.on('error', (err: Error) => {
      redisError ??= err;
    });
    await redis.connect().catch((err: Error) => {
      throw new Error(`Redis at ${redisUrl} is not reachable (${(redisError ?? err).message}); set BENCH_REDIS_URL`);
    });
    cleanups.push(async () => {
      await deleteKeysWithPrefix(redis, `pcbench_${runId}_`);
      await redis.quit();
    });

    const pgDb = await openDatabase({ url: databaseUrl, schema }).catch((err: Error) => {
      throw new Error(`PostgreSQL at ${databaseUrl} is not usable (${err.message}); set BENCH_DATABASE_URL`);
    });
    cleanups.push(async () => {
      await pgDb.query(`DROP SCHEMA "${schema}" CASCADE`);
      await pgDb.close();
    });
    const pgReader = await openDatabase({ url: databaseUrl, schema, migrate: false, poolMax: 2 });
    cleanups.push(() => pgReader.close());

    const onStored = (callSid: string): void => {
      const s = ctx.stamps.get(callSid);
      if (s !== undefined) s.stored ??= performance.now();
    };
    const postgres: Backend = { name: 'PostgreSQL', store: new StampingStore(pgDb, onStored), reader: pgReader };
    await postgres.store.upsertNumber({ number: BENCH_NUMBER, name: 'Bench line', dispositions: [...DEFAULT_DISPOSITIONS] });

    const child = await startLlmChild(tokensPerS);
    cleanups.push(() => child.stop());
    const openAi = (url: string): OpenAiCompatibleLlm =>
      new OpenAiCompatibleLlm({ url, model: 'stand-in', firstTokenTimeoutMs: 30_000, idleTimeoutMs: 30_000 });
    const none: CaseLlm = { name: 'none (extractive)', llm: undefined };
    const instant: CaseLlm = { name: 'instant', llm: openAi(child.instantUrl), modelName: 'openai:stand-in' };
    const pacedName = `${tokensPerS} tok/s`;
    const paced: CaseLlm = { name: pacedName, llm: openAi(child.pacedUrl), modelName: 'openai:stand-in' };
    const pacedJobMs = (child.tokens * 1000) / tokensPerS + 200;
    console.log(
      `calls: 12 turns each way (${PARTS_PER_CALL} parts, ~1.2k characters, PII to redact, latency waterfalls); ` +
        `LLM reply: ${child.tokens} tokens (a JSON analysis); ${cpus().length} cores`,
    );

    // 1. Throughput.
    if (warmupJobs > 0) {
      await throughputCase(ctx, postgres, instant, { label: 'warm-up', jobs: warmupJobs, concurrency, expectedJobMs: 200 });
    }
    throughput.push(await throughputCase(ctx, postgres, none, { label: 'extractive (no LLM)', jobs: jobsN, concurrency, expectedJobMs: 200 }));
    throughput.push(await throughputCase(ctx, postgres, instant, { label: 'instant LLM', jobs: jobsN, concurrency, expectedJobMs: 200 }));
    throughput.push(await throughputCase(ctx, postgres, paced, { label: `LLM ${pacedName}`, jobs: pacedJobs, concurrency, expectedJobMs: pacedJobMs }));
    if (scaleConcurrency > 0 && scaleConcurrency !== concurrency) {
      throughput.push(
        await throughputCase(ctx, postgres, paced, {
          label: `LLM ${pacedName}, concurrency ${scaleConcurrency}`,
          jobs: Math.max(pacedJobs, 4 * scaleConcurrency),
          concurrency: scaleConcurrency,
          expectedJobMs: pacedJobMs,
        }),
      );
    }

    let pglite: Backend | undefined;
    if (withPglite) {
      const liteDb = await openDatabase();
      cleanups.push(() => liteDb.close());
      pglite = { name: 'PGlite', store: new StampingStore(liteDb, onStored), reader: liteDb };
      await pglite.store.upsertNumber({ number: BENCH_NUMBER, name: 'Bench line', dispositions: [...DEFAULT_DISPOSITIONS] });
      if (warmupJobs > 0) await throughputCase(ctx, pglite, instant, { label: 'warm-up (PGlite)', jobs: warmupJobs, concurrency, expectedJobMs: 200 });
      throughput.push(await throughputCase(ctx, pglite, instant, { label: 'instant LLM, PGlite', jobs: jobsN, concurrency, expectedJobMs: 200 }));
    }

    console.log(`\nthroughput: one worker drains a backlog (jobs/s = jobs / (first taken → last completed); CPU = this process over that window)`);
    printTable(
      ['case', 'store', 'jobs', 'concurrency', 'jobs/s', 'worker CPU ms/job', 'worker CPU (1 = a core)', 'machine busy', 'LLM ms/request', 'redactions/call', 'enqueue CPU µs/job'],
      throughput.map((t) => [
        t.label,
        t.store,
        String(t.jobs),
        String(t.concurrency),
        fmt(t.jobsPerS, 1),
        fmt(t.cpuMsPerJob, 2),
        fmt(t.cores, 2),
        `${fmt(t.machineBusy * 100, 0)}% of ${cpus().length}`,
        Number.isNaN(t.llmMsPerRequest) ? '—' : fmt(t.llmMsPerRequest, 1),
        fmt(t.redactionsPerCall, 1),
        fmt(t.enqueueCpuUs, 0),
      ]),
    );
    console.log(
      '(a paced reply arrives token by token: each token is a read, an SSE parse and an event through the engine, most of the\n' +
        ' worker CPU per job at that rate; an instant reply arrives in a few reads. With PGlite the database runs in this\n' +
        ' process and its CPU is counted; the worker process itself needs PostgreSQL: PGlite cannot be shared across processes.)',
    );

    // 2. Hang-up → stored summary.
    latency.push(await latencyCase(ctx, postgres, instant, { label: 'hang-up → stored, instant LLM, PostgreSQL', jobs: latencyJobs, concurrency, gapMs, expectedJobMs: 200 }));
    latency.push(
      await latencyCase(ctx, postgres, paced, { label: `hang-up → stored, LLM ${pacedName}, PostgreSQL`, jobs: pacedLatencyJobs, concurrency, gapMs, expectedJobMs: pacedJobMs }),
    );
    if (pglite !== undefined) {
      latency.push(await latencyCase(ctx, pglite, instant, { label: 'hang-up → stored, instant LLM, PGlite', jobs: latencyJobs, concurrency, gapMs, expectedJobMs: 200 }));
    }
    for (const l of latency) printLatency(l, gapMs);
  } finally {
    for (const cleanup of cleanups.reverse()) {
      try {
        await cleanup();
      } catch (err) {
        problems.push(`cleanup: ${(err as Error).message}`);
      }
    }
  }

  if (problems.length > 0) {
    console.log(`problems (${problems.length}):`);
    for (const problem of problems.slice(0, 10)) console.log(`  ${problem}`);
  }

  const summary: SummaryRow[] = [];
  const tp = (label: string): ThroughputFigures | undefined => throughput.find((t) => t.label === label);
  const perWorker = (t: ThroughputFigures): string => `${fmt(t.jobsPerS, 1)} jobs/s, ${fmt(t.cpuMsPerJob, 1)} ms worker CPU/job`;
  const instantTp = tp('instant LLM');
  const pacedTp = throughput.find((t) => t.label.startsWith('LLM ') && t.concurrency === concurrency);
  const scaledTp = throughput.find((t) => t.label.startsWith('LLM ') && t.concurrency !== concurrency);
  const extractiveTp = tp('extractive (no LLM)');
  const liteTp = tp('instant LLM, PGlite');
  if (pacedTp !== undefined) {
    const scaled = scaledTp === undefined ? '' : `; concurrency ${scaledTp.concurrency}: ${fmt(scaledTp.jobsPerS, 1)} jobs/s`;
    summary.push(
      row(
        `post-call jobs/s per worker, LLM ${pacedTp.llm} (concurrency ${concurrency})`,
        `${perWorker(pacedTp)} (${fmt(pacedTp.llmMsPerRequest, 0)} ms per LLM reply${scaled})`,
      ),
    );
  }
  if (instantTp !== undefined) summary.push(row(`post-call jobs/s per worker, instant LLM (pipeline ceiling)`, perWorker(instantTp)));
  if (extractiveTp !== undefined) summary.push(row('post-call jobs/s per worker, no LLM (extractive)', perWorker(extractiveTp)));
  if (liteTp !== undefined) summary.push(row('post-call jobs/s, instant LLM, PGlite in-process', `${perWorker(liteTp)} (DB CPU included)`));
  for (const l of latency) {
    const n = l.stored.length < 20 ? `n=${l.stored.length}: p95 = the slowest` : `n=${l.stored.length}`;
    summary.push(
      row(
        `post-call hang-up → stored summary p50 / p95, ${l.llm === 'instant' ? 'instant LLM' : `LLM ${l.llm}`}${l.store === 'PostgreSQL' ? '' : `, ${l.store}`}`,
        `${fmt(quantile(l.stored, 0.5), 0)} / ${fmt(quantile(l.stored, 0.95), 0)} ms (max ${fmt(Math.max(...l.stored), 0)}, ${n})`,
      ),
    );
  }
  return { throughput, latency, problems, summary };
}

if (isMain(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      jobs: { type: 'string' },
      'paced-jobs': { type: 'string' },
      'latency-jobs': { type: 'string' },
      'paced-latency-jobs': { type: 'string' },
      'tokens-per-s': { type: 'string' },
      concurrency: { type: 'string' },
      'scale-concurrency': { type: 'string' },
      'gap-ms': { type: 'string' },
      'no-pglite': { type: 'boolean', default: false },
    },
  });
  const num = (name: keyof typeof values, min: number): number | undefined => {
    const v = values[name];
    if (typeof v !== 'string') return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number ≥ ${min}`);
    return n;
  };
  const given = (key: keyof PostCallBenchOptions, value: number | undefined): Partial<PostCallBenchOptions> => (value === undefined ? {} : { [key]: value });
  const options: PostCallBenchOptions = {
    ...(values.quick ? QUICK_POST_CALL_OPTIONS : {}),
    ...given('jobs', num('jobs', 1)),
    ...given('pacedJobs', num('paced-jobs', 1)),
    ...given('latencyJobs', num('latency-jobs', 1)),
    ...given('pacedLatencyJobs', num('paced-latency-jobs', 1)),
    ...given('tokensPerS', num('tokens-per-s', 0.1)),
    ...given('concurrency', num('concurrency', 1)),
    ...given('scaleConcurrency', num('scale-concurrency', 0)),
    ...given('gapMs', num('gap-ms', 0)),
    ...(values['no-pglite'] ? { pglite: false } : {}),
  };
  watchdog(values.quick ? 180 : 420, 'bench/post-call.ts');
  const result = await runPostCallBench(options);
  printSummary('SUMMARY', result.summary);
  process.exitCode = 0;
}
