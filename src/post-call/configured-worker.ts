/**
 * A post-call worker from its configuration: the LLM it analyses calls with (an OpenAI-compatible
 * endpoint, Triton's Qwen3, or none: the extractive fallback), the processor on the given store,
 * and the BullMQ worker. Shared by `npm run worker` and the worker `npm start` runs in-process on
 * the embedded database.
 */
import type { Logger } from 'pino';
import { OpenAiCompatibleLlm } from '../engines/openai/openai-llm.js';
import { TritonClient } from '../engines/triton/client.js';
import { TritonLlm } from '../engines/triton/triton-llm.js';
import type { Llm } from '../engines/types.js';
import type { CallStore } from '../store/call-store.js';
import type { PostCallWorkerConfig } from './config.js';
import { PostCallProcessor } from './processor.js';
import { startPostCallWorker, type PostCallWorker } from './worker.js';

export interface PostCallLlm {
  /** Undefined: extractive fallback. */
  llm: Llm | undefined;
  /** Reported with each result, e.g. `openai:gpt-4o-mini`; undefined: the LLM's own name. */
  modelName: string | undefined;
  close(): void;
}

function postCallLlmFrom(config: PostCallWorkerConfig, logger: Logger): PostCallLlm {
  switch (config.llm.kind) {
    case 'openai':
      return {
        llm: new OpenAiCompatibleLlm({
          url: config.llm.url,
          model: config.llm.model,
          ...(config.llm.apiKey === undefined ? {} : { apiKey: config.llm.apiKey }),
          firstTokenTimeoutMs: config.llmTimeoutMs,
          idleTimeoutMs: config.llmTimeoutMs,
          logger,
        }),
        modelName: `openai:${config.llm.model}`,
        close: () => undefined,
      };
    case 'triton': {
      const client = new TritonClient({ url: config.llm.url });
      // Post-call work is not latency-bound: long waits, room for a long summary, steadier sampling.
      const llm = new TritonLlm(client, { firstTokenTimeoutMs: config.llmTimeoutMs, maxTokens: 1024, temperature: 0.2, logger });
      return { llm, modelName: undefined, close: () => client.close() };
    }
    case 'none':
      logger.warn({ event: 'post_call_worker_extractive' }, 'no LLM configured (LLM_URL/LLM_MODEL or LLM_ENGINE=triton): post-call results are extractive');
      return { llm: undefined, modelName: undefined, close: () => undefined };
  }
}

export interface ConfiguredWorker {
  worker: PostCallWorker;
  /** The LLM's name, or `extractive`. */
  llmName: string;
  /** Finishes the jobs in hand, disconnects, closes the LLM's client. */
  close(): Promise<void>;
}

export function startConfiguredWorker(
  config: PostCallWorkerConfig,
  store: CallStore,
  logger: Logger,
  options: { concurrency?: number } = {},
): ConfiguredWorker {
  const { llm, modelName, close: closeLlm } = postCallLlmFrom(config, logger);
  const processor = new PostCallProcessor({
    store,
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
    concurrency: options.concurrency ?? config.concurrency,
    lockDurationMs: config.lockDurationMs,
    stalledIntervalMs: config.stalledIntervalMs,
  });
  return {
    worker,
    llmName: llm?.name ?? 'extractive',
    close: async () => {
      await worker.close();
      closeLlm();
    },
  };
}
