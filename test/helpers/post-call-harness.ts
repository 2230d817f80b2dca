// What the post-call fault tests share: a migrated schema of their own, the queue as the server
// enqueues on it (its defaults), a BullMQ view of it for inspection, Redis, and the LLM stand-in —
// and the checks they all make on what ended up in BullMQ and in the database.
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { expect } from 'vitest';
import { POST_CALL_QUEUE, type PostCallJob } from '../../src/post-call/job.js';
import { PostCallQueue } from '../../src/post-call/queue.js';
import { openDatabase, type Db } from '../../src/store/index.js';
import { OpenAiStandIn } from './openai-stand-in.js';
import { deleteKeysWithPrefix } from './redis-keys.js';
import { PG_URL, REDIS_URL } from './test-services.js';

const quiet = { info: () => {}, warn: () => {}, error: () => {} };

export class PostCallHarness {
  db!: Db;
  inspect!: Queue;
  redis!: Redis;
  standIn!: OpenAiStandIn;
  queue!: PostCallQueue;

  constructor(
    readonly schema: string,
    readonly prefix: string,
  ) {}

  async open(): Promise<this> {
    // Directly, not through any fault proxy: the test's own view of the database stays up. Creates
    // the schema and migrates it; workers find it through their search_path.
    this.db = await openDatabase({ url: PG_URL, schema: this.schema });
    this.inspect = new Queue(POST_CALL_QUEUE, { connection: { url: REDIS_URL }, prefix: this.prefix });
    this.redis = new Redis(REDIS_URL);
    this.standIn = await OpenAiStandIn.start();
    // The server's defaults: attempts, backoff and jitter as `npm start` enqueues them.
    this.queue = new PostCallQueue({ redisUrl: REDIS_URL, prefix: this.prefix, logger: quiet });
    return this;
  }

  /** Closes what `open` got to, even if it failed half way. */
  async close(): Promise<void> {
    await this.queue?.close(1000);
    await this.standIn?.close();
    await this.inspect?.obliterate({ force: true }).catch(() => {});
    await this.inspect?.close();
    if (this.redis !== undefined) {
      await deleteKeysWithPrefix(this.redis, `${this.prefix}:`);
      this.redis.disconnect();
    }
    await this.db?.query(`DROP SCHEMA "${this.schema}" CASCADE`);
    await this.db?.close();
  }

  async rowCounts(callSid: string): Promise<{ calls: number; turns: number; results: number }> {
    const { rows } = await this.db.query<{ calls: number; turns: number; results: number }>(
      `SELECT (SELECT count(*)::int FROM calls WHERE call_sid = $1) AS calls,
              (SELECT count(*)::int FROM turns WHERE call_sid = $1) AS turns,
              (SELECT count(*)::int FROM post_call_results WHERE call_sid = $1) AS results`,
      [callSid],
    );
    return rows[0]!;
  }
}

/**
 * The queue holds exactly one job, the call's (id = call SID), completed on its first attempt with
 * nothing failed; returns it for the test's own checks of its data.
 */
export async function expectOnlyJobCompletedOnce(inspect: Queue, callSid: string): Promise<{ data: PostCallJob }> {
  const job = (await inspect.getJob(callSid))!;
  expect(job.id).toBe(callSid);
  expect(await job.getState()).toBe('completed');
  expect(job.attemptsMade).toBe(1);
  expect(job.failedReason ?? '').toBe('');
  expect(await inspect.getJobCounts('failed', 'active', 'wait', 'delayed', 'completed', 'prioritized', 'waiting-children')).toEqual({
    failed: 0,
    active: 0,
    wait: 0,
    delayed: 0,
    completed: 1,
    prioritized: 0,
    'waiting-children': 0,
  });
  return job as { data: PostCallJob };
}
