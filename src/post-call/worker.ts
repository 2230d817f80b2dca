/**
 * The BullMQ worker on `post-call`: validates each job, runs the processor, and logs one line per
 * job attempt with its call SID. A failed attempt is retried by BullMQ with the job's exponential
 * backoff; when the attempts are spent (or the payload is malformed, which no retry fixes) the
 * call row gets `post_call_error` (markPostCallFailed) and the job stays in BullMQ's failed set.
 * A job that failed by stalling too often (its worker died each time) is marked the same way.
 *
 * close() is BullMQ's: it stops taking jobs and waits for the active ones to finish.
 */
import { performance } from 'node:perf_hooks';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { DEFAULT_CONCURRENCY } from './config.js';
import { InvalidPostCallJobError, POST_CALL_QUEUE, callSidOf, parsePostCallJob } from './job.js';
import { errorMessage, type PostCallLogger } from './logger.js';
import type { PostCallProcessor } from './processor.js';
import { DEFAULT_QUEUE_PREFIX, DEFAULT_REDIS_URL } from './queue.js';

export interface PostCallWorkerOptions {
  processor: PostCallProcessor;
  logger: PostCallLogger;
  /** Ignored when `connection` is given. */
  redisUrl?: string;
  /** A connection to use (needs `maxRetriesPerRequest: null`); not closed by close(). */
  connection?: Redis;
  /** Same as the queue's. Default `bull`. */
  prefix?: string;
  /** Jobs processed at once; default 4. */
  concurrency?: number;
  /** Lock time per active job, renewed while it runs (BullMQ's default 30 s). */
  lockDurationMs?: number;
  /** How often stalled jobs (their worker died) are looked for (BullMQ's default 30 s). */
  stalledIntervalMs?: number;
  /** Stalls allowed before a job fails (default 2: a worker killed twice mid-job). */
  maxStalledCount?: number;
}

/** What BullMQ stores as a completed job's return value. */
export interface PostCallJobResult {
  callSid: string;
  disposition: string | null;
  sentiment: string;
  extractive: boolean;
  llmRequests: number;
}

export interface PostCallWorker {
  readonly worker: Worker<unknown, PostCallJobResult>;
  /** Resolves once connected and taking jobs. */
  waitUntilReady(): Promise<void>;
  /** Stops taking jobs, waits for the active ones to finish, then disconnects. */
  close(): Promise<void>;
}

export function startPostCallWorker(options: PostCallWorkerOptions): PostCallWorker {
  const { processor, logger } = options;
  const ownsConnection = options.connection === undefined;
  const connection =
    options.connection ??
    new Redis(options.redisUrl ?? DEFAULT_REDIS_URL, {
      // BullMQ's blocking reads need this; reconnects go on forever, at most every 2 s.
      maxRetriesPerRequest: null,
      retryStrategy: (times) => Math.min(times * 200, 2000),
      connectionName: 'post-call-worker',
    });
  let redisDown = false;
  connection.on('error', (err: Error) => {
    if (redisDown) return;
    redisDown = true;
    logger.warn({ event: 'post_call_worker_redis_down', err: err.message }, 'post-call worker: Redis unreachable; reconnecting');
  });
  connection.on('ready', () => {
    if (!redisDown) return;
    redisDown = false;
    logger.info({ event: 'post_call_worker_redis_up' }, 'post-call worker: Redis reachable again');
  });

  const markFailed = async (callSid: string | undefined, reason: string, jobId: string | undefined): Promise<void> => {
    if (callSid === undefined) return;
    try {
      const marked = await processor.markFailed(callSid, reason);
      if (!marked) logger.warn({ event: 'post_call_mark_failed_no_call', callSid, jobId }, 'post-call failure not recorded: the call is not stored');
    } catch (err) {
      logger.error({ event: 'post_call_mark_failed_error', callSid, jobId, err: errorMessage(err) }, 'could not record the post-call failure on the call row');
    }
  };

  const processJob = async (job: Job<unknown, PostCallJobResult>, _token?: string, signal?: AbortSignal): Promise<PostCallJobResult> => {
    const started = performance.now();
    const attempt = job.attemptsMade + 1;
    const maxAttempts = job.opts.attempts ?? 1;
    let callSid = callSidOf(job.data);
    try {
      const parsed = parsePostCallJob(job.data);
      callSid = parsed.callSid;
      const outcome = await processor.process(parsed, { attempt, ...(signal === undefined ? {} : { signal }) });
      const { analysis } = outcome;
      logger.info(
        {
          event: 'post_call_processed',
          callSid,
          jobId: job.id,
          attempt,
          ms: Math.round(performance.now() - started),
          turns: outcome.turnsStored,
          disposition: analysis.disposition,
          sentiment: analysis.sentiment,
          actionItems: analysis.actionItems.length,
          extractive: analysis.extractive,
          llmRequests: analysis.llmRequests,
          chunks: analysis.chunks,
          redactions: Object.values(outcome.redactionCounts).reduce((a, b) => a + b, 0),
        },
        'post-call job done',
      );
      return {
        callSid,
        disposition: analysis.disposition,
        sentiment: analysis.sentiment,
        extractive: analysis.extractive,
        llmRequests: analysis.llmRequests,
      };
    } catch (err) {
      const invalid = err instanceof InvalidPostCallJobError;
      const final = invalid || attempt >= maxAttempts;
      const reason = `${final ? 'failed' : 'attempt failed'} after ${attempt} of ${maxAttempts} attempt${maxAttempts === 1 ? '' : 's'}: ${errorMessage(err)}`;
      const line = {
        event: final ? 'post_call_failed' : 'post_call_attempt_failed',
        callSid,
        jobId: job.id,
        attempt,
        maxAttempts,
        final,
        ms: Math.round(performance.now() - started),
        err: errorMessage(err),
      };
      if (final) {
        logger.error(line, 'post-call job failed for good; it stays in the failed set');
        // Before the job lands in the failed set, so the row never misses the reason.
        await markFailed(callSid, reason, job.id);
      } else {
        logger.warn(line, 'post-call job attempt failed; BullMQ retries it with backoff');
      }
      if (invalid) throw new UnrecoverableError(errorMessage(err));
      throw err;
    }
  };

  const worker = new Worker<unknown, PostCallJobResult>(POST_CALL_QUEUE, processJob, {
    connection,
    prefix: options.prefix ?? DEFAULT_QUEUE_PREFIX,
    concurrency: options.concurrency ?? DEFAULT_CONCURRENCY,
    ...(options.lockDurationMs === undefined ? {} : { lockDuration: options.lockDurationMs }),
    ...(options.stalledIntervalMs === undefined ? {} : { stalledInterval: options.stalledIntervalMs }),
    maxStalledCount: options.maxStalledCount ?? 2,
  });
  worker.on('error', (err) => {
    if (!redisDown) logger.warn({ event: 'post_call_worker_error', err: errorMessage(err) }, 'post-call worker error');
  });
  // Failures the processor never saw (a job that stalled too often): record them on the call row.
  worker.on('failed', (job, err) => {
    if (job === undefined) return;
    void job
      .getState()
      .then(async (state) => {
        if (state !== 'failed' || !/stalled/i.test(err.message)) return;
        const callSid = callSidOf(job.data);
        logger.error({ event: 'post_call_failed', callSid, jobId: job.id, final: true, err: err.message }, 'post-call job failed for good (stalled)');
        await markFailed(callSid, `failed: ${err.message}`, job.id);
      })
      .catch(() => {});
  });

  return {
    worker,
    waitUntilReady: () => worker.waitUntilReady(),
    async close() {
      await worker.close();
      if (ownsConnection) {
        await connection.quit().catch(() => {});
        connection.disconnect();
      }
    },
  };
}
