/**
 * The server's side of the `post-call` queue: one BullMQ job per call, whatever happens.
 *
 * Exactly one job per call:
 *   - The job id is the call SID (postCallJobId), and BullMQ's add is a no-op when a job with that
 *     id exists in any state (waiting, delayed, active, completed, failed): its Lua script checks
 *     the job's hash first. So `stop`, the socket closing, `completed`, `end_call`, the maximum
 *     duration and the sweeper may all call enqueue, in any order and as often as they like.
 *   - Finished jobs are kept (completed 7 days, failed 30 days by default), so a late duplicate
 *     (a status callback minutes after the job ran) still finds the job and changes nothing.
 *   - Within this process, a call whose add is still on its way is enqueued once: later calls
 *     get the same promise.
 *
 * Never in the hot path's way: enqueue validates synchronously, then delivers in the background
 * and returns a promise that never rejects (callers need not await it). While Redis is down the
 * job waits in memory and is retried with backoff (and at once when the connection is ready
 * again); `pending` counts those. close() waits, bounded, for them and reports any it had to
 * abandon.
 */
import { Queue, type JobsOptions } from 'bullmq';
import { Redis } from 'ioredis';
import { POST_CALL_JOB_NAME, POST_CALL_QUEUE, parsePostCallJob, postCallJobId, type PostCallJob } from './job.js';
import { errorMessage, silentLogger, type PostCallLogger } from './logger.js';

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';
/** BullMQ's own default key prefix. */
export const DEFAULT_QUEUE_PREFIX = 'bull';
export const DEFAULT_ATTEMPTS = 8;
/** First retry after ~2 s, then 4, 8, … (8 attempts span ~4 minutes: a database restart fits). */
export const DEFAULT_BACKOFF_MS = 2000;
export const DEFAULT_BACKOFF_JITTER = 0.2;
export const DEFAULT_KEEP_COMPLETED_SECONDS = 7 * 24 * 3600;
export const DEFAULT_KEEP_FAILED_SECONDS = 30 * 24 * 3600;

export interface PostCallQueueOptions {
  /** Default REDIS_URL's default, redis://127.0.0.1:6379. Ignored when `connection` is given. */
  redisUrl?: string;
  /**
   * An ioredis connection to use instead (not closed by close()). It should have
   * `enableOfflineQueue: false`, so adds fail fast while disconnected and are retried here.
   */
  connection?: Redis;
  /** BullMQ key prefix; the worker must use the same one. Default `bull`. */
  prefix?: string;
  /** Processing attempts per job (BullMQ retries failures with exponential backoff). */
  attempts?: number;
  /** BullMQ's exponential backoff base: retry n waits delay · 2^(n-1). */
  backoffDelayMs?: number;
  /** Fraction of each backoff delay randomized (0…1). */
  backoffJitter?: number;
  keepCompletedSeconds?: number;
  keepFailedSeconds?: number;
  /** Background re-add delays while Redis is unreachable: min doubling up to max. */
  redeliverMinMs?: number;
  redeliverMaxMs?: number;
  /** Per-command timeout on the queue's own connection (a half-open socket must not hang an add). */
  commandTimeoutMs?: number;
  logger?: PostCallLogger;
}

export type EnqueueOutcome =
  /** The job is in Redis (newly, or it was already: either way one job for the call). */
  | { status: 'queued'; callSid: string; jobId: string; deliveryAttempts: number }
  /** The payload broke the contract; nothing was queued (a bug: the error says what). */
  | { status: 'invalid'; callSid: string | undefined; error: string }
  /** close() gave up before Redis took it (logged at error level with the call SID). */
  | { status: 'undelivered'; callSid: string; jobId: string; error: string };

export interface CloseResult {
  /** Call SIDs whose job never reached Redis. */
  undelivered: string[];
}

interface PendingEntry {
  job: PostCallJob;
  jobId: string;
  promise: Promise<EnqueueOutcome>;
  wake: () => void;
}

export class PostCallQueue {
  /** The BullMQ queue (for inspection: getJob, counts). */
  readonly queue: Queue;
  readonly prefix: string;
  private readonly connection: Redis;
  private readonly ownsConnection: boolean;
  private readonly jobOptions: JobsOptions;
  private readonly logger: PostCallLogger;
  private readonly redeliverMinMs: number;
  private readonly redeliverMaxMs: number;
  private readonly entries = new Map<string, PendingEntry>();
  private abandoned = false;
  private abandon: () => void = () => {};
  private readonly abandonedSignal: Promise<'abandoned'>;
  private redisDown = false;

  constructor(options: PostCallQueueOptions = {}) {
    this.logger = options.logger ?? silentLogger;
    this.prefix = options.prefix ?? DEFAULT_QUEUE_PREFIX;
    this.redeliverMinMs = options.redeliverMinMs ?? 250;
    this.redeliverMaxMs = options.redeliverMaxMs ?? 5000;
    this.abandonedSignal = new Promise((resolve) => {
      this.abandon = () => resolve('abandoned');
    });
    this.ownsConnection = options.connection === undefined;
    this.connection =
      options.connection ??
      new Redis(options.redisUrl ?? DEFAULT_REDIS_URL, {
        // Fail fast while disconnected: the job waits here, not in ioredis' unbounded queue.
        enableOfflineQueue: false,
        maxRetriesPerRequest: 1,
        commandTimeout: options.commandTimeoutMs ?? 5000,
        // Reconnect forever, at most every 2 s.
        retryStrategy: (times) => Math.min(times * 100, 2000),
        connectionName: 'post-call-queue',
      });
    this.connection.on('error', (err: Error) => {
      if (this.redisDown) return;
      this.redisDown = true;
      this.logger.warn({ event: 'post_call_queue_redis_down', err: err.message, pending: this.pending }, 'post-call queue: Redis unreachable; jobs wait in memory');
    });
    this.connection.on('ready', () => {
      if (this.redisDown) {
        this.redisDown = false;
        this.logger.info({ event: 'post_call_queue_redis_up', pending: this.pending }, 'post-call queue: Redis reachable again; delivering pending jobs');
      }
      for (const entry of this.entries.values()) entry.wake();
    });

    this.queue = new Queue(POST_CALL_QUEUE, { connection: this.connection, prefix: this.prefix });
    // Connection errors are reported once above; an unhandled 'error' event would crash the process.
    this.queue.on('error', () => {});

    const attempts = options.attempts ?? DEFAULT_ATTEMPTS;
    if (!Number.isInteger(attempts) || attempts < 1) throw new RangeError('attempts must be a positive integer');
    this.jobOptions = {
      attempts,
      backoff: {
        type: 'exponential',
        delay: options.backoffDelayMs ?? DEFAULT_BACKOFF_MS,
        jitter: options.backoffJitter ?? DEFAULT_BACKOFF_JITTER,
      },
      removeOnComplete: { age: options.keepCompletedSeconds ?? DEFAULT_KEEP_COMPLETED_SECONDS },
      removeOnFail: { age: options.keepFailedSeconds ?? DEFAULT_KEEP_FAILED_SECONDS },
    };
  }

  /** Jobs accepted by enqueue that Redis has not taken yet. */
  get pending(): number {
    return this.entries.size;
  }

  /**
   * Queues the call's post-call job (job id = call SID). Never throws and never blocks: the
   * promise resolves once Redis has the job (or close() gave up on it); callers on the audio
   * path should not await it.
   */
  enqueue(input: PostCallJob): Promise<EnqueueOutcome> {
    let job: PostCallJob;
    try {
      job = parsePostCallJob(input);
    } catch (err) {
      const callSid = typeof input === 'object' && input !== null && typeof input.callSid === 'string' ? input.callSid : undefined;
      this.logger.error({ event: 'post_call_job_invalid', callSid, err: errorMessage(err) }, 'post-call job rejected: it breaks the job contract');
      return Promise.resolve({ status: 'invalid', callSid, error: errorMessage(err) });
    }
    const jobId = postCallJobId(job.callSid);
    const existing = this.entries.get(jobId);
    if (existing !== undefined) return existing.promise;
    if (this.abandoned) {
      const error = 'the post-call queue is closed';
      this.logger.error({ event: 'post_call_job_undelivered', callSid: job.callSid, err: error }, 'post-call job NOT queued');
      return Promise.resolve({ status: 'undelivered', callSid: job.callSid, jobId, error });
    }
    const entry: PendingEntry = { job, jobId, promise: Promise.resolve(undefined as never), wake: () => {} };
    this.entries.set(jobId, entry);
    entry.promise = this.deliver(entry).finally(() => this.entries.delete(jobId));
    return entry.promise;
  }

  /**
   * Stops taking jobs, waits up to `timeoutMs` for pending ones to reach Redis, then closes the
   * BullMQ queue (and the connection it opened). Jobs still pending are logged and returned.
   */
  async close(timeoutMs = 10_000): Promise<CloseResult> {
    const waiting = [...this.entries.values()].map((e) => e.promise);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled(waiting),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    const undelivered = [...this.entries.values()].map((e) => e.job.callSid);
    this.abandoned = true;
    this.abandon();
    for (const entry of this.entries.values()) entry.wake();
    await Promise.allSettled([...this.entries.values()].map((e) => e.promise));
    await withTimeout(this.queue.close(), 2000).catch(() => {});
    if (this.ownsConnection) {
      await withTimeout(this.connection.quit(), 1000).catch(() => {});
      this.connection.disconnect();
    }
    return { undelivered };
  }

  private async deliver(entry: PendingEntry): Promise<EnqueueOutcome> {
    const { job, jobId } = entry;
    let lastError = '';
    for (let attempt = 1; ; attempt++) {
      try {
        const added = this.queue.add(POST_CALL_JOB_NAME, job, { ...this.jobOptions, jobId });
        // While Redis is down BullMQ waits for the connection; close() may abandon the wait.
        const result = await Promise.race([added, this.abandonedSignal]);
        if (result === 'abandoned') {
          added.catch(() => {});
          return this.undelivered(entry, lastError || 'Redis did not take the job before close()');
        }
        if (attempt > 1) {
          this.logger.info({ event: 'post_call_job_queued', callSid: job.callSid, deliveryAttempts: attempt }, 'post-call job queued after Redis came back');
        }
        return { status: 'queued', callSid: job.callSid, jobId, deliveryAttempts: attempt };
      } catch (err) {
        lastError = errorMessage(err);
        if (this.abandoned) return this.undelivered(entry, lastError);
        if (attempt === 1 || attempt % 20 === 0) {
          this.logger.warn(
            { event: 'post_call_job_retrying', callSid: job.callSid, deliveryAttempts: attempt, err: lastError },
            'post-call job not queued yet; retrying in the background',
          );
        }
        const delay = Math.min(this.redeliverMaxMs, this.redeliverMinMs * 2 ** Math.min(attempt - 1, 16));
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delay);
          entry.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        entry.wake = () => {};
        if (this.abandoned) return this.undelivered(entry, lastError);
      }
    }
  }

  private undelivered(entry: PendingEntry, error: string): EnqueueOutcome {
    this.logger.error(
      { event: 'post_call_job_undelivered', callSid: entry.job.callSid, err: error },
      'post-call job NOT queued: the queue closed before Redis took it',
    );
    return { status: 'undelivered', callSid: entry.job.callSid, jobId: entry.jobId, error };
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
