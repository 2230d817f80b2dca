/**
 * `npm run worker`: the post-call worker process. Reads the post-call configuration from the
 * environment (see workers/README.md), opens PostgreSQL (DATABASE_URL, required), picks the LLM
 * (OpenAI-compatible, Triton Qwen3, or none: extractive fallback) and works the `post-call` queue
 * until SIGTERM/SIGINT, when it finishes the jobs in hand and exits 0. A second signal exits at
 * once (1); the unfinished jobs are picked up again once their lock expires.
 */
import pino from 'pino';
import { OpenAiCompatibleLlm } from '../src/engines/openai/openai-llm.js';
import { TritonClient } from '../src/engines/triton/client.js';
import { TritonLlm } from '../src/engines/triton/triton-llm.js';
import type { Llm } from '../src/engines/types.js';
import { PostCallConfigError, readPostCallWorkerConfig, type PostCallWorkerConfig } from '../src/post-call/config.js';
import { PostCallProcessor } from '../src/post-call/processor.js';
import { startPostCallWorker } from '../src/post-call/worker.js';
import { CallStore, openDatabase } from '../src/store/index.js';

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

  let tritonClient: TritonClient | undefined;
  let llm: Llm | undefined;
  let modelName: string | undefined;
  switch (config.llm.kind) {
    case 'openai':
      llm = new OpenAiCompatibleLlm({
        url: config.llm.url,
        model: config.llm.model,
        ...(config.llm.apiKey === undefined ? {} : { apiKey: config.llm.apiKey }),
        firstTokenTimeoutMs: config.llmTimeoutMs,
        idleTimeoutMs: config.llmTimeoutMs,
        logger,
      });
      modelName = `openai:${config.llm.model}`;
      break;
    case 'triton':
      tritonClient = new TritonClient({ url: config.llm.url });
      // Post-call work is not latency-bound: long waits, room for a long summary, steadier sampling.
      llm = new TritonLlm(tritonClient, { firstTokenTimeoutMs: config.llmTimeoutMs, maxTokens: 1024, temperature: 0.2, logger });
      break;
    case 'none':
      logger.warn({ event: 'post_call_worker_extractive' }, 'no LLM configured (LLM_URL/LLM_MODEL or LLM_ENGINE=triton): results are extractive');
      break;
  }

  const db = await openDatabase({ url: config.databaseUrl, logger: { info: (m) => logger.info(m), warn: (m) => logger.warn(m), error: (m) => logger.error(m) } });
  const processor = new PostCallProcessor({
    store: new CallStore(db),
    llm,
    ...(modelName === undefined ? {} : { modelName }),
    llmTimeoutMs: config.llmTimeoutMs,
    chunkTokens: config.chunkTokens,
  });
  const worker = startPostCallWorker({
    processor,
    logger,
    redisUrl: config.redisUrl,
    prefix: config.prefix,
    concurrency: config.concurrency,
  });

  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn({ event: 'post_call_worker_forced', signal }, 'second signal: exiting now; unfinished jobs will be retried');
      process.exit(1);
    }
    stopping = true;
    logger.info({ event: 'post_call_worker_stopping', signal }, 'finishing the jobs in hand, then exiting');
    void (async () => {
      try {
        await worker.close();
        await db.close();
        tritonClient?.close();
        logger.info({ event: 'post_call_worker_stopped' }, 'post-call worker stopped');
        process.exit(0);
      } catch (err) {
        logger.error({ event: 'post_call_worker_stop_failed', err: err instanceof Error ? err.message : String(err) }, 'unclean stop');
        process.exit(1);
      }
    })();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);

  await worker.waitUntilReady();
  logger.info(
    {
      event: 'post_call_worker_ready',
      concurrency: config.concurrency,
      prefix: config.prefix,
      llm: llm?.name ?? 'extractive',
      redis: config.redisUrl.replace(/\/\/[^@/]*@/, '//***@'),
    },
    'post-call worker ready',
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`post-call worker failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
