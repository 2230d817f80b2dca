/**
 * The `post-call` queue against the real Redis (a unique key prefix for this file) and the real
 * PostgreSQL (a fresh schema): one job per call however often and from however many server
 * instances it is enqueued, before and after the job ran; and jobs enqueued while Redis is
 * unreachable are delivered once it is back.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { Queue } from 'bullmq';
import { waitFor as waitForValue } from '../helpers/wait-for.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { POST_CALL_QUEUE, postCallJobId, type PostCallJob } from '../../src/post-call/job.js';
import { PostCallProcessor } from '../../src/post-call/processor.js';
import { PostCallQueue } from '../../src/post-call/queue.js';
import { startPostCallWorker, type PostCallWorker } from '../../src/post-call/worker.js';
import { CallStore, openDatabase, type Db } from '../../src/store/index.js';
import { PG_URL, REDIS_URL } from '../helpers/test-services.js';

const REDIS_PORT = Number(new URL(REDIS_URL).port || 6379);
const schema = `post_call_queue_${randomBytes(5).toString('hex')}`;
const prefix = `pctest_${randomBytes(5).toString('hex')}`;

let db: Db;
let store: CallStore;
/** A plain BullMQ view of this file's queue, to count jobs independently of PostCallQueue. */
let inspect: Queue;
const queues: PostCallQueue[] = [];
const workers: PostCallWorker[] = [];

const quiet = { info: () => {}, warn: () => {}, error: () => {} };
const logged: Array<{ level: string; obj: Record<string, unknown>; msg: string }> = [];
const recording = {
  info: (obj: Record<string, unknown>, msg: string) => logged.push({ level: 'info', obj, msg }),
  warn: (obj: Record<string, unknown>, msg: string) => logged.push({ level: 'warn', obj, msg }),
  error: (obj: Record<string, unknown>, msg: string) => logged.push({ level: 'error', obj, msg }),
};

function queue(options: ConstructorParameters<typeof PostCallQueue>[0] = {}): PostCallQueue {
  const q = new PostCallQueue({ redisUrl: REDIS_URL, prefix, logger: quiet, ...options });
  queues.push(q);
  return q;
}

beforeAll(async () => {
  db = await openDatabase({ url: PG_URL, schema });
  store = new CallStore(db);
  inspect = new Queue(POST_CALL_QUEUE, { connection: { url: REDIS_URL }, prefix });
});
afterAll(async () => {
  for (const w of workers) await w.close();
  for (const q of queues) await q.close(1000);
  await inspect?.obliterate({ force: true });
  await inspect?.close();
  await db?.query(`DROP SCHEMA "${schema}" CASCADE`);
  await db?.close();
});

const sid = (): string => `CA${randomBytes(16).toString('hex')}`;

function makeJob(callSid = sid()): PostCallJob {
  return {
    callSid,
    provider: 'twilio',
    direction: 'inbound',
    from: '+15550001111',
    to: '+15550002222',
    startedAt: '2025-04-01T09:00:00.000Z',
    endedAt: '2025-04-01T09:01:00.000Z',
    endReason: 'stop',
    turns: [
      { idx: 0, speaker: 'agent', text: 'Hello, how can I help?', interrupted: false, latency: { llmFirstToken: 300 } },
      { idx: 1, speaker: 'caller', text: 'That is all, thanks.', interrupted: false },
    ],
  };
}

const waitFor = <T>(what: string, probe: () => Promise<T | undefined | false>): Promise<T> => waitForValue(what, probe, 15_000, 50);

/** How often the job id appears across the queue's state lists (one job: exactly once). */
async function jobsFor(jobId: string): Promise<number> {
  const jobs = await inspect.getJobs(['wait', 'active', 'delayed', 'completed', 'failed', 'prioritized', 'waiting-children']);
  return jobs.filter((j) => j.id === jobId).length;
}

async function resultRows(callSid: string): Promise<number> {
  const { rows } = await db.query<{ n: string }>('SELECT count(*)::text AS n FROM post_call_results WHERE call_sid = $1', [callSid]);
  return Number(rows[0]?.n);
}

/** A port where nothing listens (yet). */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A TCP proxy to the real Redis on `port`; close() drops every connection (Redis "goes away"). */
async function redisProxy(port: number): Promise<{ close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(REDIS_PORT, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('PostCallQueue: exactly one job per call', () => {
  it('enqueued 5× at once, again from a second server instance, and again after it ran: one job, one result', async () => {
    const a = queue();
    const b = queue();
    const job = makeJob();
    const jobId = postCallJobId(job.callSid);
    expect(jobId).toBe(job.callSid);

    // stop, socket close, completed, end_call, max_duration… all at once, on one instance.
    const outcomes = await Promise.all(Array.from({ length: 5 }, () => a.enqueue(job)));
    for (const outcome of outcomes) expect(outcome).toMatchObject({ status: 'queued', callSid: job.callSid, jobId });
    // Another instance (the sweeper, a status callback handled elsewhere) and a later duplicate.
    expect(await b.enqueue(job)).toMatchObject({ status: 'queued', jobId });
    expect(await a.enqueue({ ...job, endReason: 'completed' })).toMatchObject({ status: 'queued', jobId });
    expect(await jobsFor(jobId)).toBe(1);
    // The first add wins: later payloads change nothing.
    expect((await inspect.getJob(jobId))?.data).toMatchObject({ endReason: 'stop' });
    expect((await inspect.getJob(jobId))?.opts).toMatchObject({ attempts: 8, backoff: { type: 'exponential', delay: 2000 } });

    const worker = startPostCallWorker({ processor: new PostCallProcessor({ store }), logger: quiet, redisUrl: REDIS_URL, prefix, concurrency: 2 });
    workers.push(worker);
    await waitFor('the job to complete', async () => (await inspect.getJob(jobId))?.finishedOn);
    const finished = await inspect.getJob(jobId);
    expect(await finished?.getState()).toBe('completed');
    expect(finished?.returnvalue).toMatchObject({ callSid: job.callSid, extractive: true });

    // Late duplicates after completion: the kept job makes them no-ops; nothing runs again.
    for (let i = 0; i < 5; i++) expect(await (i % 2 === 0 ? a : b).enqueue(job)).toMatchObject({ status: 'queued', jobId });
    await new Promise((r) => setTimeout(r, 500));
    expect(await jobsFor(jobId)).toBe(1);
    const after = await inspect.getJob(jobId);
    expect(after?.finishedOn).toBe(finished?.finishedOn);
    expect(after?.attemptsMade).toBe(finished?.attemptsMade);
    expect(await resultRows(job.callSid)).toBe(1);
    expect((await store.getCall(job.callSid))?.call.status).toBe('processed');
  });

  it('keeps finished jobs (completed 7 days, failed 30 days) so late duplicates stay no-ops', async () => {
    const q = queue();
    const job = makeJob();
    await q.enqueue(job);
    const opts = (await inspect.getJob(job.callSid))?.opts;
    expect(opts?.removeOnComplete).toEqual({ age: 7 * 24 * 3600 });
    expect(opts?.removeOnFail).toEqual({ age: 30 * 24 * 3600 });
  });

  it('a Telnyx call control id (with ":") gets its encoded job id, one job as well', async () => {
    const q = queue();
    const job = makeJob(`v3:${randomBytes(12).toString('base64url')}`);
    const outcomes = await Promise.all([q.enqueue(job), q.enqueue(job), q.enqueue({ ...job })]);
    expect(new Set(outcomes.map((o) => (o.status === 'queued' ? o.jobId : o.status)))).toEqual(new Set([postCallJobId(job.callSid)]));
    expect(await jobsFor(postCallJobId(job.callSid))).toBe(1);
  });

  it('an invalid payload is refused without throwing, and logged', async () => {
    const q = queue({ logger: recording });
    const bad = { ...makeJob(), turns: [{ idx: 0, speaker: 'robot', text: 'x', interrupted: false }] } as unknown as PostCallJob;
    const outcome = await q.enqueue(bad);
    expect(outcome).toMatchObject({ status: 'invalid', error: expect.stringContaining('turns[0].speaker must be "caller" or "agent"') });
    expect(logged.some((l) => l.level === 'error' && l.obj.event === 'post_call_job_invalid')).toBe(true);
    expect(q.pending).toBe(0);
  });
});

describe('PostCallQueue: Redis unreachable', () => {
  it('enqueue returns at once while Redis is down; the job is delivered (once) when it is back', async () => {
    const port = await freePort();
    const q = queue({ redisUrl: `redis://127.0.0.1:${port}`, logger: recording, redeliverMinMs: 50, redeliverMaxMs: 200 });
    const job = makeJob();
    let settled = false;
    const started = performance.now();
    const delivery = q.enqueue(job).then((o) => {
      settled = true;
      return o;
    });
    void q.enqueue(job); // a duplicate while pending shares the first delivery
    expect(performance.now() - started).toBeLessThan(50);
    expect(q.pending).toBe(1);
    await new Promise((r) => setTimeout(r, 1000));
    expect(settled).toBe(false);
    expect(q.pending).toBe(1);
    expect(logged.some((l) => l.obj.event === 'post_call_queue_redis_down')).toBe(true);

    const proxy = await redisProxy(port);
    try {
      const outcome = await delivery;
      expect(outcome).toMatchObject({ status: 'queued', callSid: job.callSid });
      expect(q.pending).toBe(0);
      expect(await jobsFor(job.callSid)).toBe(1);

      // Redis goes away mid-life: the add fails fast, waits in memory, and is retried.
      await proxy.close();
      await new Promise((r) => setTimeout(r, 100));
      const second = makeJob();
      const secondDelivery = q.enqueue(second);
      await new Promise((r) => setTimeout(r, 600));
      expect(q.pending).toBe(1);
      const back = await redisProxy(port);
      try {
        expect(await secondDelivery).toMatchObject({ status: 'queued', callSid: second.callSid });
        const outcome2 = await secondDelivery;
        // It failed fast while the connection was down and was re-added from memory.
        expect(outcome2.status === 'queued' ? outcome2.deliveryAttempts : 0).toBeGreaterThan(1);
        expect(logged.some((l) => l.obj.event === 'post_call_job_retrying' && l.obj.callSid === second.callSid)).toBe(true);
        expect(await jobsFor(second.callSid)).toBe(1);
      } finally {
        await back.close();
      }
    } finally {
      await proxy.close().catch(() => {});
    }
  });

  it('close() waits a bounded time, then reports the jobs Redis never took', async () => {
    const port = await freePort();
    const q = new PostCallQueue({ redisUrl: `redis://127.0.0.1:${port}`, prefix, logger: recording });
    const job = makeJob();
    const delivery = q.enqueue(job);
    const started = performance.now();
    const closed = await q.close(300);
    expect(performance.now() - started).toBeLessThan(3000);
    expect(closed.undelivered).toEqual([job.callSid]);
    expect(await delivery).toMatchObject({ status: 'undelivered', callSid: job.callSid });
    expect(logged.some((l) => l.level === 'error' && l.obj.event === 'post_call_job_undelivered' && l.obj.callSid === job.callSid)).toBe(true);
  });
});
