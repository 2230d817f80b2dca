/**
 * Fault: PostgreSQL refuses connections for 30 s while post-call jobs run.
 *
 * The shared PostgreSQL server is left alone: the real worker process (`workers/post-call-worker.ts`)
 * reaches it through a TCP proxy (test/helpers/tcp-fault-proxy.ts) that, for the outage, cuts
 * every open connection and closes its listener, so each connect gets ECONNREFUSED as from a
 * server that is down. Jobs are queued before the outage (some in the middle of their LLM request
 * when it starts, so they fail on their last write) and all through it; the queue uses the
 * server's defaults (8 attempts, exponential backoff from 2 s, 20 % jitter: the 8th attempt comes
 * ≥ 203 s after the first, so a 30 s outage leaves several attempts in hand).
 *
 * Every call must end with exactly one call row, its turns once and one post-call result, no job
 * in the failed set, the worker process still the same one, and the retries, spaced by the
 * backoff, what carried the jobs across the outage.
 */
import { randomBytes } from 'node:crypto';
import type { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PostCallJob } from '../../src/post-call/job.js';
import { DEFAULT_ATTEMPTS, DEFAULT_BACKOFF_JITTER, DEFAULT_BACKOFF_MS, PostCallQueue } from '../../src/post-call/queue.js';
import { openDatabase, type Db } from '../../src/store/index.js';
import type { OpenAiStandIn } from '../helpers/openai-stand-in.js';
import { PostCallHarness } from '../helpers/post-call-harness.js';
import { TcpFaultProxy } from '../helpers/tcp-fault-proxy.js';
import { waitFor } from '../helpers/wait-for.js';
import { spawnPostCallWorker, type WorkerProcess } from '../helpers/worker-process.js';
import { databaseUrlForSchema, PG_URL, REDIS_URL } from '../helpers/test-services.js';

const schema = `fault_pg_outage_${randomBytes(5).toString('hex')}`;
const prefix = `pcfault_${randomBytes(5).toString('hex')}`;

const OUTAGE_MS = 30_000;
const BEFORE = 12;
const DURING_EVERY_MS = 3000;
const CONCURRENCY = 4;

const harness = new PostCallHarness(schema, prefix);
const quiet = { info: () => {}, warn: () => {}, error: () => {} };
let db: Db;
let inspect: Queue;
let standIn: OpenAiStandIn;
let proxy: TcpFaultProxy;
let queue: PostCallQueue;
let worker: WorkerProcess | undefined;

beforeAll(async () => {
  ({ db, inspect, standIn, queue } = await harness.open());
  const target = new URL(PG_URL);
  proxy = await TcpFaultProxy.start({ targetHost: target.hostname, targetPort: Number(target.port || 5432) });
});
afterAll(async () => {
  await worker?.kill('SIGKILL');
  await proxy?.close();
  await harness.close();
});

const sid = (): string => `CA${randomBytes(16).toString('hex')}`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function makeJob(i: number): PostCallJob {
  return {
    callSid: sid(),
    provider: 'twilio',
    direction: 'outbound',
    to: '+15550003333',
    startedAt: '2025-05-07T14:00:00.000Z',
    endedAt: '2025-05-07T14:01:30.000Z',
    endReason: 'end_call',
    turns: [
      { idx: 0, speaker: 'agent', text: `Hello, Acme calling about order ${i}.`, interrupted: false },
      { idx: 0, speaker: 'caller', text: 'Yes, please cancel it.', interrupted: false },
      { idx: 1, speaker: 'agent', text: 'It is cancelled.', interrupted: false, latency: { llmFirstToken: 250, ttsFirstAudio: 400 } },
    ],
  };
}

/** Shortest delay BullMQ's exponential backoff with jitter may pick before attempt n + 1. */
const minBackoffMs = (n: number): number => Math.round(2 ** (n - 1) * DEFAULT_BACKOFF_MS) * (1 - DEFAULT_BACKOFF_JITTER);

describe('fault: PostgreSQL refusing connections for 30 s while jobs run', () => {
  it('a connection lost in the middle of a transaction fails that transaction, not the process', async () => {
    // The store's own path, in this process: an unhandled 'error' here would fail the run.
    const target = new URL(PG_URL);
    const own = await TcpFaultProxy.start({ targetHost: target.hostname, targetPort: Number(target.port || 5432) });
    const url = databaseUrlForSchema(schema, { viaPort: own.port });
    const viaProxy = await openDatabase({ url, migrate: false, logger: quiet });
    try {
      let inside: () => void = () => {};
      const entered = new Promise<void>((resolve) => (inside = resolve));
      const tx = viaProxy.transaction(async (q) => {
        await q.query('SELECT 1');
        inside();
        await q.query('SELECT pg_sleep(2)');
      });
      await entered;
      await own.refuse();
      await expect(tx).rejects.toThrow(/Connection terminated|ECONNRESET/);
      await expect(viaProxy.query('SELECT 1')).rejects.toThrow(/ECONNREFUSED/);
      await own.restore();
      // The pool connects afresh once the server is reachable again.
      expect((await viaProxy.query<{ one: number }>('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      expect(await viaProxy.transaction(async (q) => (await q.query<{ two: number }>('SELECT 2 AS two')).rows)).toEqual([{ two: 2 }]);
    } finally {
      await viaProxy.close();
      await own.close();
    }
  });

  it('every call ends with one call row and one result, carried across by retries with backoff; none failed', async () => {
    const reply = JSON.stringify({ summary: 'The caller cancelled the order.', disposition: 'resolved', sentiment: 'neutral', action_items: ['Cancel the order'] });
    const pieces = Array.from({ length: 6 }, (_, i) => reply.slice((i * reply.length) / 6, ((i + 1) * reply.length) / 6));
    // ~1 s per LLM request: jobs are mid-analysis when the outage starts.
    standIn.configure({ tokens: pieces, tokenDelayMs: 150 });

    const databaseUrl = databaseUrlForSchema(schema, { viaPort: proxy.port });
    worker = spawnPostCallWorker({
      REDIS_URL,
      POST_CALL_QUEUE_PREFIX: prefix,
      DATABASE_URL: databaseUrl,
      LLM_URL: standIn.url,
      LLM_MODEL: 'standin',
      POST_CALL_CONCURRENCY: String(CONCURRENCY),
    });
    await worker.waitUntilReady();

    const before = Array.from({ length: BEFORE }, (_, i) => makeJob(i));
    for (const job of before) expect(await queue.enqueue(job)).toMatchObject({ status: 'queued' });
    // Jobs flowing: some done, the next ones in the middle of their LLM request.
    await waitFor('the first jobs to be processed', () => worker!.events('post_call_processed').length >= CONCURRENCY, 30_000, 20);
    await waitFor('the next jobs to be mid-analysis', () => standIn.requests.length > worker!.events('post_call_processed').length, 10_000, 20);

    const acceptedBefore = proxy.accepted;
    const outageStart = Date.now();
    await proxy.refuse();
    const cutAtStart = proxy.cut;
    const activeAtStart = (await inspect.getActive()).map((j) => j.id);
    const doneBeforeOutage = new Set(worker.events('post_call_processed').map((l) => l.callSid));

    // Calls keep ending during the outage.
    const during: PostCallJob[] = [];
    while (Date.now() - outageStart < OUTAGE_MS - DURING_EVERY_MS) {
      await sleep(DURING_EVERY_MS);
      const job = makeJob(BEFORE + during.length);
      during.push(job);
      expect(await queue.enqueue(job)).toMatchObject({ status: 'queued' });
    }
    await sleep(outageStart + OUTAGE_MS - Date.now());
    // Nothing got through, and the worker rode it out without crashing or giving up on a job.
    const processedInOutage = worker.events('post_call_processed').filter((l) => !doneBeforeOutage.has(l.callSid));
    expect(worker.running, `the worker exited during the outage:\n${worker.output().slice(-6000)}`).toBe(true);
    expect(worker.events('post_call_failed')).toEqual([]);
    expect(await inspect.getFailedCount()).toBe(0);
    await proxy.restore();
    const outageMs = Date.now() - outageStart;

    const all = [...before, ...during];
    await waitFor('every job to complete after the outage', async () => (await inspect.getCompletedCount()) === all.length, 120_000, 200);
    const recoveredMs = Date.now() - outageStart - outageMs;

    // Redis: every job completed, none failed or left waiting.
    expect(await inspect.getJobCounts('failed', 'active', 'wait', 'delayed', 'completed')).toEqual({
      failed: 0,
      active: 0,
      wait: 0,
      delayed: 0,
      completed: all.length,
    });

    // PostgreSQL: exactly one call row, three turns and one result per call; nothing else.
    for (const job of all) expect(await harness.rowCounts(job.callSid)).toEqual({ calls: 1, turns: 3, results: 1 });
    const { rows: totals } = await db.query<{ calls: number; turns: number; results: number; processed: number }>(
      `SELECT (SELECT count(*)::int FROM calls) AS calls, (SELECT count(*)::int FROM turns) AS turns,
              (SELECT count(*)::int FROM post_call_results) AS results,
              (SELECT count(*)::int FROM calls WHERE status = 'processed' AND post_call_error IS NULL) AS processed`,
    );
    expect(totals[0]).toEqual({ calls: all.length, turns: 3 * all.length, results: all.length, processed: all.length });

    // Retries carried them: each job's stored attempt number is BullMQ's, every call queued during
    // the outage (and every one caught mid-job by it) needed more than one, none ran out.
    const { rows: results } = await db.query<{ call_sid: string; attempts: number; extractive: boolean }>(
      'SELECT call_sid, attempts, extractive FROM post_call_results',
    );
    const attemptsBySid = new Map(results.map((r) => [r.call_sid, r.attempts]));
    for (const r of results) expect(r.extractive).toBe(false);
    for (const job of all) {
      const stored = await inspect.getJob(job.callSid);
      expect(await stored?.getState()).toBe('completed');
      expect(stored?.attemptsMade).toBe(attemptsBySid.get(job.callSid));
    }
    for (const job of during) expect(attemptsBySid.get(job.callSid)).toBeGreaterThan(1);
    for (const id of activeAtStart) if (!doneBeforeOutage.has(id)) expect(attemptsBySid.get(id!)).toBeGreaterThan(1);
    const maxAttempts = Math.max(...attemptsBySid.values());
    expect(maxAttempts).toBeLessThan(DEFAULT_ATTEMPTS);

    // Each call processed once (one success line), after failed attempts spaced by the backoff.
    const processed = worker.events('post_call_processed');
    expect(processed.map((l) => l.callSid).sort()).toEqual(all.map((j) => j.callSid).sort());
    const failedAttempts = worker.events('post_call_attempt_failed');
    expect(failedAttempts.length).toBeGreaterThanOrEqual(during.length);
    for (const line of failedAttempts) expect(String(line.err)).toMatch(/ECONNREFUSED|ECONNRESET|Connection terminated|connection error|not queryable/i);
    for (const job of all) {
      const lines = [...failedAttempts, ...processed].filter((l) => l.callSid === job.callSid).sort((a, b) => num(a.attempt) - num(b.attempt));
      expect(lines.map((l) => l.attempt)).toEqual(lines.map((_, i) => i + 1));
      for (let i = 1; i < lines.length; i++) {
        const gap = num(lines[i]!.time) - num(lines[i - 1]!.time);
        // The next attempt's outcome is logged no sooner than the backoff after the previous one's.
        expect(gap).toBeGreaterThanOrEqual(minBackoffMs(i) - 50);
      }
    }

    // The proxy cut live connections, and the pool connected afresh once PostgreSQL was back.
    expect(cutAtStart).toBeGreaterThan(0);
    expect(proxy.accepted).toBeGreaterThan(acceptedBefore);
    expect(processedInOutage).toEqual([]);
    expect(worker.running).toBe(true);
    const poolErrors = worker.lines().filter((l) => typeof l.msg === 'string' && l.msg.startsWith('postgres pool:')).length;

    console.info(
      `[fault:postgres-outage] ${all.length} calls (${before.length} before, ${during.length} during a ${outageMs} ms outage; ` +
        `${activeAtStart.length} active when it began, ${cutAtStart} connections cut, ${poolErrors} idle-connection errors logged); ` +
        `${failedAttempts.length} failed attempts, at most ${maxAttempts} of ${DEFAULT_ATTEMPTS} attempts; all done ${recoveredMs} ms after PostgreSQL came back`,
    );
  }, 200_000);
});

function num(value: unknown): number {
  return typeof value === 'number' ? value : Number.NaN;
}
