/**
 * `npm run worker`: the post-call worker process. Reads the post-call configuration from the
 * environment (see workers/README.md), opens PostgreSQL (DATABASE_URL, required), picks the LLM
 * (OpenAI-compatible, Triton Qwen3, or none: extractive fallback) and works the `post-call` queue
 * until SIGTERM/SIGINT, when it finishes the jobs in hand and exits 0. A second signal (more than
 * 2 s after the first: copies relayed by npm or tsx count once) exits at
 * once (1); the unfinished jobs are picked up again once their lock expires.
 */
import pino from 'pino';
import { PostCallConfigError, readPostCallWorkerConfig, type PostCallWorkerConfig } from '../src/post-call/config.js';
import { startConfiguredWorker } from '../src/post-call/configured-worker.js';
import { CallStore, openDatabase } from '../src/store/index.js';
import { onStopSignals } from '../src/util/stop-signals.js';

function loadConfig(): PostCallWorkerConfig {
  try {
    return readPostCallWorkerConfig();
  } catch (err) {
    if (err instanceof PostCallConfigError) {
      process.stderr.write(`post-call worker: ${err.problems.join('\n')}\n`);
      process.exit(2);
    }
    throw err;
  }
}

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = pino({ level: config.logLevel, base: { service: 'post-call-worker', pid: process.pid } });
  if (config.databaseUrl === undefined) {
    logger.fatal(
      { event: 'post_call_worker_no_database' },
      'DATABASE_URL is required for the post-call worker: it is a separate process, and the embedded PGlite database ' +
        '(what `npm start` uses when DATABASE_URL is unset) lives inside the server process and cannot be shared across ' +
        'processes. Point both the server and the worker at the same PostgreSQL.',
    );
    process.exit(2);
  }

  const db = await openDatabase({ url: config.databaseUrl, logger: { info: (m) => logger.info(m), warn: (m) => logger.warn(m), error: (m) => logger.error(m) } });
  const worker = startConfiguredWorker(config, new CallStore(db), logger);

  onStopSignals({
    stop: (signal) => {
      logger.info({ event: 'post_call_worker_stopping', signal }, 'finishing the jobs in hand, then exiting');
      void (async () => {
        try {
          await worker.close();
          await db.close();
          logger.info({ event: 'post_call_worker_stopped' }, 'post-call worker stopped');
          process.exit(0);
        } catch (err) {
          logger.error({ event: 'post_call_worker_stop_failed', err: err instanceof Error ? err.message : String(err) }, 'unclean stop');
          process.exit(1);
        }
      })();
    },
    force: (signal) => {
      logger.warn({ event: 'post_call_worker_forced', signal }, 'second signal: exiting now; unfinished jobs will be retried');
      process.exit(1);
    },
  });

  await worker.worker.waitUntilReady();
  logger.info(
    {
      event: 'post_call_worker_ready',
      concurrency: config.concurrency,
      lockMs: config.lockDurationMs,
      stalledIntervalMs: config.stalledIntervalMs,
      prefix: config.prefix,
      llm: worker.llmName,
      redis: config.redisUrl.replace(/\/\/[^@/]*@/, '//***@'),
    },
    'post-call worker ready',
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`post-call worker failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
