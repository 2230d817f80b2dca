/**
 * The post-call worker against the real Redis (a unique key prefix) and PostgreSQL (a fresh
 * schema): failing jobs retried with exponential backoff and, once the attempts are spent, left
 * in BullMQ's failed set with the call row saying why; and the worker process itself
 * (`workers/post-call-worker.ts`, spawned) finishing its current job on SIGTERM before exiting 0.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { waitFor as waitForValue } from '../helpers/wait-for.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Llm, LlmEvent, LlmRequest } from '../../src/engines/types.js';
import { POST_CALL_QUEUE, type PostCallJob } from '../../src/post-call/job.js';
import { PostCallProcessor } from '../../src/post-call/processor.js';
import { PostCallQueue } from '../../src/post-call/queue.js';
import { startPostCallWorker, type PostCallWorker } from '../../src/post-call/worker.js';
import { CallStore, openDatabase, type Db } from '../../src/store/index.js';
import { OpenAiStandIn } from '../helpers/openai-stand-in.js';
import { PG_URL, REDIS_URL } from '../helpers/test-services.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const schema = `post_call_worker_${randomBytes(5).toString('hex')}`;
const prefix = `pctest_${randomBytes(5).toString('hex')}`;

let db: Db;
let store: CallStore;
let inspect: Queue;
const closers: Array<() => Promise<unknown>> = [];
const children: ChildProcess[] = [];
const quiet = { info: () => {}, warn: () => {}, error: () => {} };

beforeAll(async () => {
  db = await openDatabase({ url: PG_URL, schema });
  store = new CallStore(db);
  inspect = new Queue(POST_CALL_QUEUE, { connection: { url: REDIS_URL }, prefix });
});
// Each test's workers and queues go before the next test starts (they share the queue).
afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const close of closers.splice(0).reverse()) await close().catch(() => {});
});
afterAll(async () => {
  await inspect?.obliterate({ force: true });
  await inspect?.close();
  await db?.query(`DROP SCHEMA "${schema}" CASCADE`);
  await db?.close();
});

const sid = (): string => `CA${randomBytes(16).toString('hex')}`;

function makeJob(): PostCallJob {
  return {
    callSid: sid(),
    provider: 'twilio',
    direction: 'outbound',
    to: '+15550003333',
    startedAt: '2025-04-02T10:00:00.000Z',
    endedAt: '2025-04-02T10:02:30.000Z',
    endReason: 'end_call',
    turns: [
      { idx: 0, speaker: 'agent', text: 'Hi, this is Acme calling about your delivery.', interrupted: false },
      { idx: 0, speaker: 'caller', text: 'Oh yes, can you deliver it on Friday instead?', interrupted: false },
      { idx: 1, speaker: 'agent', text: 'Sure, I will move it to Friday.', interrupted: false, latency: { llmFirstToken: 280, ttsFirstAudio: 450 } },
    ],
  };
}

const waitFor = <T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 30_000): Promise<T> =>
  waitForValue(what, probe, timeoutMs, 50);

/** An LLM that fails its first `failures` requests (every one when Infinity), then answers. */
function flakyLlm(failures: number): Llm & { startedAt: number[] } {
  const startedAt: number[] = [];
  return {
    name: 'flaky',
    startedAt,
    async *generate(_request: LlmRequest): AsyncGenerator<LlmEvent> {
      startedAt.push(Date.now());
      if (startedAt.length <= failures) throw new Error(`upstream unavailable (request ${startedAt.length})`);
      yield { type: 'text', delta: JSON.stringify({ summary: 'Delivery moved to Friday.', disposition: 'resolved', sentiment: 'positive', action_items: ['Reschedule delivery to Friday'] }) };
      yield { type: 'done' };
    },
  };
}

function inProcess(llm: Llm, attempts: number): { queue: PostCallQueue; worker: PostCallWorker } {
  const queue = new PostCallQueue({ redisUrl: REDIS_URL, prefix, attempts, backoffDelayMs: 300, backoffJitter: 0, logger: quiet });
  const worker = startPostCallWorker({ processor: new PostCallProcessor({ store, llm }), logger: quiet, redisUrl: REDIS_URL, prefix, concurrency: 1 });
  closers.push(() => queue.close(1000), () => worker.close());
  return { queue, worker };
}

describe('post-call worker: retries and final failure', () => {
  it('retries a failing job with exponential backoff, then leaves it failed with the call row saying why', async () => {
    const llm = flakyLlm(Infinity);
    const { queue, worker } = inProcess(llm, 3);
    const job = makeJob();
    await queue.enqueue(job);
    await waitFor('the job to fail for good', async () => (await inspect.getJob(job.callSid))?.finishedOn);
    await worker.close();

    const failed = await inspect.getJob(job.callSid);
    expect(await failed?.getState()).toBe('failed');
    expect(failed?.attemptsMade).toBe(3);
    expect(failed?.failedReason).toContain('upstream unavailable (request 3)');
    expect(llm.startedAt).toHaveLength(3);
    const [first = 0, second = 0, third = 0] = llm.startedAt;
    // Exponential: 300 ms, then 600 ms (never sooner).
    expect(second - first).toBeGreaterThanOrEqual(300);
    expect(third - second).toBeGreaterThanOrEqual(600);

    const detail = await store.getCall(job.callSid);
    expect(detail?.call.status).toBe('failed');
    expect(detail?.call.postCallError).toMatch(/^failed after 3 of 3 attempts: LLM request failed: upstream unavailable \(request 3\)/);
    // Redaction and the transcript were stored on the way; only the analysis is missing.
    expect(detail?.turns).toHaveLength(3);
    expect(detail?.result).toBeNull();
    expect(await (await inspect.getJob(job.callSid))?.getState()).toBe('failed');
  });

  it('a job that fails twice then succeeds is processed, with its attempts counted and no error left', async () => {
    const llm = flakyLlm(2);
    const { queue } = inProcess(llm, 5);
    const job = makeJob();
    await queue.enqueue(job);
    await waitFor('the job to complete', async () => (await inspect.getJob(job.callSid))?.finishedOn);
    expect(await (await inspect.getJob(job.callSid))?.getState()).toBe('completed');
    const detail = await store.getCall(job.callSid);
    expect(detail?.call).toMatchObject({ status: 'processed', postCallError: null, endReason: 'end_call', direction: 'outbound' });
    expect(detail?.result).toMatchObject({ summary: 'Delivery moved to Friday.', attempts: 3, actionItems: ['Reschedule delivery to Friday'] });
  });

  it('a malformed payload fails at once (no retries) and is marked on the call row', async () => {
    const callSid = sid();
    await store.upsertCall({ callSid, direction: 'inbound' });
    const { worker } = inProcess(flakyLlm(0), 5);
    await worker.waitUntilReady();
    await inspect.add('post-call', { callSid, provider: 'twilio', turns: 'none' }, { jobId: callSid, attempts: 5 });
    await waitFor('the job to fail', async () => (await inspect.getJob(callSid))?.finishedOn);
    const failed = await inspect.getJob(callSid);
    expect(await failed?.getState()).toBe('failed');
    expect(failed?.attemptsMade).toBe(1);
    const call = (await store.getCall(callSid))?.call;
    expect(call?.status).toBe('failed');
    expect(call?.postCallError).toContain('invalid post-call job');
    expect(call?.postCallError).toContain('turns must be an array');
  });
});

describe('post-call worker process (npm run worker)', () => {
  function spawnWorker(env: Record<string, string>): { child: ChildProcess; output: () => string; exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> } {
    const child = spawn(process.execPath, ['--import', 'tsx', 'workers/post-call-worker.ts'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    return { child, output: () => out, exited };
  }

  it('refuses to start without DATABASE_URL, saying why', async () => {
    const { exited, output } = spawnWorker({ REDIS_URL, POST_CALL_QUEUE_PREFIX: prefix });
    const { code } = await exited;
    expect(code).toBe(2);
    expect(output()).toContain('DATABASE_URL is required');
    expect(output()).toContain('PGlite');
  });

  it('on SIGTERM finishes the job in hand (slow LLM), then exits 0', async () => {
    const standIn = await OpenAiStandIn.start();
    closers.push(() => standIn.close());
    const reply = JSON.stringify({ summary: 'The caller asked for Friday delivery; the agent moved it.', disposition: 'follow_up', sentiment: 'positive', action_items: ['Move delivery to Friday'] });
    const pieces = Array.from({ length: 10 }, (_, i) => reply.slice((i * reply.length) / 10, ((i + 1) * reply.length) / 10));
    standIn.configure({ tokens: pieces, tokenDelayMs: 250 });

    const { child, output, exited } = spawnWorker({
      REDIS_URL,
      POST_CALL_QUEUE_PREFIX: prefix,
      // The fresh schema through the connection's search_path.
      DATABASE_URL: `${PG_URL}?options=${encodeURIComponent(`-c search_path=${schema}`)}`,
      LLM_URL: standIn.url,
      LLM_MODEL: 'standin-slow',
      POST_CALL_CONCURRENCY: '1',
    });
    await waitFor('the worker to be ready', () => output().includes('post_call_worker_ready'));

    const queue = new PostCallQueue({ redisUrl: REDIS_URL, prefix, logger: quiet });
    closers.push(() => queue.close(1000));
    const job = makeJob();
    expect(await queue.enqueue(job)).toMatchObject({ status: 'queued' });
    // Mid-job: the LLM request is streaming (it takes ~2.75 s).
    await waitFor('the LLM request', () => standIn.requests.length > 0);
    await new Promise((r) => setTimeout(r, 300));
    expect(await (await inspect.getJob(job.callSid))?.getState()).toBe('active');
    const signalledAt = Date.now();
    child.kill('SIGTERM');

    const { code, signal } = await exited;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(Date.now() - signalledAt).toBeGreaterThan(1500);
    expect(await standIn.requests[0]?.outcome).toBe('completed');

    const done = await inspect.getJob(job.callSid);
    expect(await done?.getState()).toBe('completed');
    // One attempt (BullMQ counts the finished one), not a stalled-and-retried one.
    expect(done?.attemptsMade).toBe(1);
    expect(done?.stalledCounter ?? 0).toBe(0);
    const detail = await store.getCall(job.callSid);
    expect(detail?.result).toMatchObject({
      summary: 'The caller asked for Friday delivery; the agent moved it.',
      disposition: 'follow_up',
      extractive: false,
      model: 'openai:standin-slow',
      attempts: 1,
    });
    const lines = output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { event?: string; callSid?: string });
    const events = lines.map((l) => l.event);
    expect(events.indexOf('post_call_worker_stopping')).toBeLessThan(events.indexOf('post_call_processed'));
    expect(events.indexOf('post_call_processed')).toBeLessThan(events.indexOf('post_call_worker_stopped'));
    expect(lines.filter((l) => l.event === 'post_call_processed')).toEqual([expect.objectContaining({ callSid: job.callSid })]);
  });
});
