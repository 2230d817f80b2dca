/**
 * Fault: the post-call worker is SIGKILLed mid-job, then a new one is started.
 *
 * The real worker process (`workers/post-call-worker.ts`) against the real Redis (a unique queue
 * prefix) and PostgreSQL (a fresh schema, chosen through DATABASE_URL's search_path), with a slow
 * OpenAI-compatible stand-in so that the jobs are in the middle of their LLM request (call row
 * and turns already written, result not yet) when the process dies. Lock and stall check are set
 * low (POST_CALL_LOCK_MS, POST_CALL_STALLED_INTERVAL_MS) so that the stalled jobs come back in
 * seconds rather than BullMQ's default minute and a half.
 *
 * Every call must end with exactly one call row, its turns once, and one post-call result; each
 * BullMQ job (job id = call SID) completed once, none failed.
 */
import { randomBytes } from 'node:crypto';
import type { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PostCallJob } from '../../src/post-call/job.js';
import type { PostCallQueue } from '../../src/post-call/queue.js';
import type { Db } from '../../src/store/index.js';
import type { OpenAiStandIn } from '../helpers/openai-stand-in.js';
import { PostCallHarness } from '../helpers/post-call-harness.js';
import { waitFor } from '../helpers/wait-for.js';
import { spawnPostCallWorker, type WorkerProcess } from '../helpers/worker-process.js';
import { databaseUrlForSchema, PG_URL, REDIS_URL } from '../helpers/test-services.js';

const schema = `fault_sigkill_${randomBytes(5).toString('hex')}`;
const prefix = `pcfault_${randomBytes(5).toString('hex')}`;

const CALLS = 6;
const CONCURRENCY = 3;
const LOCK_MS = 2000;
const STALLED_INTERVAL_MS = 1000;

const harness = new PostCallHarness(schema, prefix);
let db: Db;
let inspect: Queue;
let standIn: OpenAiStandIn;
let queue: PostCallQueue;
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  ({ db, inspect, standIn, queue } = await harness.open());
});
afterAll(async () => {
  for (const w of workers) await w.kill('SIGKILL');
  await harness.close();
});

const sid = (): string => `CA${randomBytes(16).toString('hex')}`;

function makeJob(i: number): PostCallJob {
  return {
    callSid: sid(),
    provider: 'twilio',
    direction: 'inbound',
    from: '+15550001111',
    to: '+15550002222',
    startedAt: '2025-05-06T09:00:00.000Z',
    endedAt: '2025-05-06T09:03:00.000Z',
    endReason: 'caller_hangup',
    turns: [
      { idx: 0, speaker: 'agent', text: `Thanks for calling Acme, this is call ${i}.`, interrupted: false },
      { idx: 0, speaker: 'caller', text: 'I need to move my delivery to Friday.', interrupted: false },
      { idx: 1, speaker: 'agent', text: 'Done, it is moved to Friday.', interrupted: false, latency: { llmFirstToken: 300, ttsFirstAudio: 480 } },
    ],
  };
}

function workerEnv(): Record<string, string> {
  const url = databaseUrlForSchema(schema);
  return {
    REDIS_URL,
    POST_CALL_QUEUE_PREFIX: prefix,
    DATABASE_URL: url,
    LLM_URL: standIn.url,
    LLM_MODEL: 'standin-slow',
    POST_CALL_CONCURRENCY: String(CONCURRENCY),
    POST_CALL_LOCK_MS: String(LOCK_MS),
    POST_CALL_STALLED_INTERVAL_MS: String(STALLED_INTERVAL_MS),
  };
}

function startWorker(): WorkerProcess {
  const w = spawnPostCallWorker(workerEnv());
  workers.push(w);
  return w;
}

describe('fault: post-call worker SIGKILLed mid-job, then restarted', () => {
  it('every call ends with one call row, its turns once and one result; each job completed once, none failed', async () => {
    const reply = JSON.stringify({
      summary: 'The caller moved the delivery to Friday.',
      disposition: 'resolved',
      sentiment: 'positive',
      action_items: ['Deliver on Friday'],
    });
    // ~3.3 s per LLM request: long enough to be killed in the middle of one.
    const pieces = Array.from({ length: 10 }, (_, i) => reply.slice((i * reply.length) / 10, ((i + 1) * reply.length) / 10));
    standIn.configure({ tokens: pieces, tokenDelayMs: 300 });

    const first = startWorker();
    await first.waitUntilReady();

    const jobs = Array.from({ length: CALLS }, (_, i) => makeJob(i));
    for (const job of jobs) expect(await queue.enqueue(job)).toMatchObject({ status: 'queued' });

    // Mid-job: as many LLM requests streaming as the worker takes jobs at once.
    await waitFor('the first worker\'s LLM requests', () => standIn.requests.length >= CONCURRENCY, 30_000, 20);
    await new Promise((r) => setTimeout(r, 300));
    const active = (await inspect.getActive()).map((j) => j.id);
    expect(active).toHaveLength(CONCURRENCY);
    // The call rows and turns are written before the analysis: these jobs are half done.
    for (const id of active) expect(await harness.rowCounts(id!)).toEqual({ calls: 1, turns: 3, results: 0 });

    const killedAt = Date.now();
    expect(await first.kill('SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });
    expect(first.events('post_call_processed')).toEqual([]);
    // The interrupted LLM requests were cut, not finished.
    const cut = await Promise.all(standIn.requests.map((r) => r.outcome));
    expect(cut).toEqual(Array(CONCURRENCY).fill('client_closed'));

    const second = startWorker();
    await second.waitUntilReady();
    expect(second.events('post_call_worker_ready')[0]).toMatchObject({ lockMs: LOCK_MS, stalledIntervalMs: STALLED_INTERVAL_MS });
    await waitFor(
      'every job to complete',
      async () => (await inspect.getCompletedCount()) === CALLS,
      // Lock expiry + two stall checks + two rounds of slow LLM requests, with room.
      45_000,
      100,
    );
    const recoveredMs = Date.now() - killedAt;

    // Redis: each call's job completed once, none failed, nothing left behind.
    expect(await inspect.getJobCounts('failed', 'active', 'wait', 'delayed', 'completed')).toEqual({
      failed: 0,
      active: 0,
      wait: 0,
      delayed: 0,
      completed: CALLS,
    });
    for (const job of jobs) {
      const stored = await inspect.getJob(job.callSid);
      expect(await stored?.getState()).toBe('completed');
      // One finished attempt; a stall is not an attempt (BullMQ counts it apart).
      expect(stored?.attemptsMade).toBe(1);
      expect(stored?.stalledCounter ?? 0).toBe(active.includes(job.callSid) ? 1 : 0);
      expect(stored?.failedReason ?? '').toBe('');
    }

    // PostgreSQL: exactly one call row, three turns and one result per call; nothing else.
    for (const job of jobs) expect(await harness.rowCounts(job.callSid)).toEqual({ calls: 1, turns: 3, results: 1 });
    const { rows: totals } = await db.query<{ calls: number; turns: number; results: number; processed: number }>(
      `SELECT (SELECT count(*)::int FROM calls) AS calls, (SELECT count(*)::int FROM turns) AS turns,
              (SELECT count(*)::int FROM post_call_results) AS results,
              (SELECT count(*)::int FROM calls WHERE status = 'processed' AND post_call_error IS NULL) AS processed`,
    );
    expect(totals[0]).toEqual({ calls: CALLS, turns: 3 * CALLS, results: CALLS, processed: CALLS });
    const { rows: results } = await db.query<{ model: string; extractive: boolean; attempts: number; summary: string }>(
      'SELECT model, extractive, attempts, summary FROM post_call_results',
    );
    for (const r of results) {
      expect(r).toEqual({ model: 'openai:standin-slow', extractive: false, attempts: 1, summary: 'The caller moved the delivery to Friday.' });
    }

    // Each call processed exactly once across both processes, the killed jobs by the second one.
    const processed = [...first.events('post_call_processed'), ...second.events('post_call_processed')].map((l) => l.callSid);
    expect(processed.sort()).toEqual(jobs.map((j) => j.callSid).sort());
    expect(second.events('post_call_attempt_failed')).toEqual([]);
    expect(second.events('post_call_failed')).toEqual([]);
    // The LLM saw the killed requests again, and every other one once: 3 cut + 6 finished.
    expect(standIn.requests).toHaveLength(CALLS + CONCURRENCY);
    expect(second.running).toBe(true);

    console.info(`[fault:sigkill] ${CALLS} calls, ${CONCURRENCY} killed mid-job; all done ${recoveredMs} ms after the SIGKILL`);
  }, 90_000);
});
