/**
 * The post-call pipeline's settings from the environment, shared by the worker and by the
 * server's queue (both must agree on REDIS_URL and POST_CALL_QUEUE_PREFIX).
 */
import {
  DEFAULT_ATTEMPTS,
  DEFAULT_BACKOFF_MS,
  DEFAULT_QUEUE_PREFIX,
  DEFAULT_REDIS_URL,
  type PostCallQueueOptions,
} from './queue.js';
import { DEFAULT_CHUNK_TOKENS, DEFAULT_LLM_TIMEOUT_MS } from './analysis.js';
import { DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_HEARTBEAT_TTL_MS } from '../live/call-mirror.js';
import { DEFAULT_SWEEP_INTERVAL_MS } from '../live/orphan-sweeper.js';

export const DEFAULT_CONCURRENCY = 4;
/** BullMQ's defaults: an active job's lock (renewed at half of it while the job runs) … */
export const DEFAULT_LOCK_MS = 30_000;
/** … and how often jobs whose worker died (lock expired) are looked for and put back. */
export const DEFAULT_STALLED_INTERVAL_MS = 30_000;

export type PostCallLlmConfig =
  | { kind: 'openai'; url: string; model: string; apiKey?: string }
  | { kind: 'triton'; url: string }
  | { kind: 'none' };

export interface PostCallQueueConfig {
  redisUrl: string;
  prefix: string;
  attempts: number;
  backoffDelayMs: number;
}

export interface PostCallWorkerConfig extends PostCallQueueConfig {
  /** Required by the worker (PGlite cannot be shared across processes). */
  databaseUrl: string | undefined;
  concurrency: number;
  /** POST_CALL_LOCK_MS: lock time per active job (BullMQ's lockDuration). */
  lockDurationMs: number;
  /** POST_CALL_STALLED_INTERVAL_MS: how often stalled jobs are looked for (BullMQ's stalledInterval). */
  stalledIntervalMs: number;
  llm: PostCallLlmConfig;
  llmTimeoutMs: number;
  chunkTokens: number;
  logLevel: string;
}

export class PostCallConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`post-call configuration: ${problems.join('; ')}`);
    this.name = 'PostCallConfigError';
  }
}

function reader(env: NodeJS.ProcessEnv, problems: string[]) {
  const string = (name: string): string | undefined => {
    const v = env[name]?.trim();
    return v === undefined || v === '' ? undefined : v;
  };
  const int = (name: string, fallback: number, min: number, max: number): number => {
    const v = string(name);
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) {
      problems.push(`${name}=${JSON.stringify(v)} must be an integer from ${min} to ${max}`);
      return fallback;
    }
    return n;
  };
  return { string, int };
}

/** REDIS_URL, POST_CALL_QUEUE_PREFIX, POST_CALL_ATTEMPTS, POST_CALL_BACKOFF_MS. */
export function readPostCallQueueConfig(env: NodeJS.ProcessEnv = process.env, problems: string[] = []): PostCallQueueConfig {
  const read = reader(env, problems);
  const redisUrl = read.string('REDIS_URL') ?? DEFAULT_REDIS_URL;
  if (!/^rediss?:\/\//.test(redisUrl)) problems.push(`REDIS_URL=${JSON.stringify(redisUrl)} must be a redis:// or rediss:// URL`);
  const prefix = read.string('POST_CALL_QUEUE_PREFIX') ?? DEFAULT_QUEUE_PREFIX;
  if (prefix.includes(':')) problems.push('POST_CALL_QUEUE_PREFIX must not contain ":"');
  const config = {
    redisUrl,
    prefix,
    attempts: read.int('POST_CALL_ATTEMPTS', DEFAULT_ATTEMPTS, 1, 100),
    backoffDelayMs: read.int('POST_CALL_BACKOFF_MS', DEFAULT_BACKOFF_MS, 1, 3_600_000),
  };
  if (problems.length > 0) throw new PostCallConfigError(problems);
  return config;
}

export interface LiveMirrorConfig {
  /** LIVE_HEARTBEAT_MS: how often this instance says it is alive (default 2 s). */
  heartbeatIntervalMs: number;
  /** LIVE_HEARTBEAT_TTL_MS: silence after which it counts as dead (default 6 s; above the interval). */
  heartbeatTtlMs: number;
  /** ORPHAN_SWEEP_MS: how often the dead instances' calls are looked for (default 5 s). */
  sweepIntervalMs: number;
}

/**
 * The server's live-call mirror and orphan sweeper: a call on an instance that died gets its
 * `server_lost` post-call job within about LIVE_HEARTBEAT_TTL_MS + ORPHAN_SWEEP_MS.
 */
export function readLiveMirrorConfig(env: NodeJS.ProcessEnv = process.env, problems: string[] = []): LiveMirrorConfig {
  const read = reader(env, problems);
  const config = {
    heartbeatIntervalMs: read.int('LIVE_HEARTBEAT_MS', DEFAULT_HEARTBEAT_INTERVAL_MS, 100, 600_000),
    heartbeatTtlMs: read.int('LIVE_HEARTBEAT_TTL_MS', DEFAULT_HEARTBEAT_TTL_MS, 200, 3_600_000),
    sweepIntervalMs: read.int('ORPHAN_SWEEP_MS', DEFAULT_SWEEP_INTERVAL_MS, 100, 3_600_000),
  };
  if (config.heartbeatTtlMs <= config.heartbeatIntervalMs) {
    problems.push(`LIVE_HEARTBEAT_TTL_MS=${config.heartbeatTtlMs} must exceed LIVE_HEARTBEAT_MS=${config.heartbeatIntervalMs}`);
  }
  if (problems.length > 0) throw new PostCallConfigError(problems);
  return config;
}

/** The queue's options from its config (for `new PostCallQueue(...)`). */
export function queueOptionsFrom(config: PostCallQueueConfig): PostCallQueueOptions {
  return { redisUrl: config.redisUrl, prefix: config.prefix, attempts: config.attempts, backoffDelayMs: config.backoffDelayMs };
}

/**
 * The worker's settings: the queue's, plus DATABASE_URL, POST_CALL_CONCURRENCY (default 4), the
 * LLM (LLM_URL + LLM_MODEL [+ LLM_API_KEY] for an OpenAI-compatible endpoint, or LLM_ENGINE=triton
 * with TRITON_URL; neither: extractive fallback), POST_CALL_LLM_TIMEOUT_MS, POST_CALL_CHUNK_TOKENS,
 * POST_CALL_LOCK_MS and POST_CALL_STALLED_INTERVAL_MS (how soon a job whose worker died is run
 * again: at most about lock + 2 × interval later; both default 30 s) and LOG_LEVEL. Throws
 * PostCallConfigError listing every problem.
 */
export function readPostCallWorkerConfig(env: NodeJS.ProcessEnv = process.env): PostCallWorkerConfig {
  const problems: string[] = [];
  let queue: PostCallQueueConfig | undefined;
  try {
    queue = readPostCallQueueConfig(env, problems);
  } catch {
    // problems already holds them
  }
  const read = reader(env, problems);
  const engine = read.string('LLM_ENGINE');
  const llmUrl = read.string('LLM_URL');
  const llmModel = read.string('LLM_MODEL');
  const apiKey = read.string('LLM_API_KEY');
  const tritonUrl = read.string('TRITON_URL');
  let llm: PostCallLlmConfig = { kind: 'none' };
  if (engine === 'triton') {
    if (tritonUrl === undefined) problems.push('LLM_ENGINE=triton needs TRITON_URL (host:port of Triton\'s gRPC endpoint)');
    else llm = { kind: 'triton', url: tritonUrl };
  } else if (engine === undefined || engine === 'openai' || engine === 'local') {
    if (engine === 'openai' && llmUrl === undefined) problems.push('LLM_ENGINE=openai needs LLM_URL (and LLM_MODEL)');
    if (llmUrl !== undefined && engine !== 'local') {
      if (!/^https?:\/\//.test(llmUrl)) problems.push(`LLM_URL=${JSON.stringify(llmUrl)} must be an http(s) URL`);
      if (llmModel === undefined) problems.push('LLM_URL is set but LLM_MODEL is not');
      else llm = { kind: 'openai', url: llmUrl.replace(/\/+$/, ''), model: llmModel, ...(apiKey === undefined ? {} : { apiKey }) };
    }
  } else {
    problems.push(`LLM_ENGINE=${JSON.stringify(engine)} must be openai, triton or local`);
  }
  const config: PostCallWorkerConfig = {
    ...(queue ?? { redisUrl: DEFAULT_REDIS_URL, prefix: DEFAULT_QUEUE_PREFIX, attempts: DEFAULT_ATTEMPTS, backoffDelayMs: DEFAULT_BACKOFF_MS }),
    databaseUrl: read.string('DATABASE_URL'),
    concurrency: read.int('POST_CALL_CONCURRENCY', DEFAULT_CONCURRENCY, 1, 256),
    lockDurationMs: read.int('POST_CALL_LOCK_MS', DEFAULT_LOCK_MS, 1000, 3_600_000),
    stalledIntervalMs: read.int('POST_CALL_STALLED_INTERVAL_MS', DEFAULT_STALLED_INTERVAL_MS, 500, 3_600_000),
    llm,
    llmTimeoutMs: read.int('POST_CALL_LLM_TIMEOUT_MS', DEFAULT_LLM_TIMEOUT_MS, 100, 3_600_000),
    chunkTokens: read.int('POST_CALL_CHUNK_TOKENS', DEFAULT_CHUNK_TOKENS, 100, 1_000_000),
    logLevel: read.string('LOG_LEVEL') ?? 'info',
  };
  if (problems.length > 0) throw new PostCallConfigError(problems);
  return config;
}
