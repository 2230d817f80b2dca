/**
 * Environment → validated configuration. Every bad value is named in the error, and start-up stops
 * before anything listens: a server that silently falls back to a default credential is worse than
 * one that refuses to start.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { ApiKeys, ApiKeysError, parseApiKeys } from './api/api-keys.js';
import { DEFAULT_BATCH_WINDOW_MS } from './engines/local/silero-vad.js';

export type OutboundFrameMs = 20 | 40 | 60;

/** Where each pipeline stage runs: this machine's CPU, Triton over gRPC, or (LLM) an OpenAI-compatible endpoint. */
export interface EngineChoice {
  vad: 'local' | 'triton';
  asr: 'local' | 'triton';
  llm: 'local' | 'triton' | 'openai';
  tts: 'local' | 'triton';
}

export interface TritonConfig {
  /** host:port of Triton's gRPC endpoint. */
  url: string;
  /** Per-stage deadlines: an answer later than this counts as a failure (apology, scripted take-over). */
  asrFinalDeadlineMs: number;
  llmFirstTokenDeadlineMs: number;
  ttsChunkDeadlineMs: number;
}

/** What SIGTERM does (see README, "Deploys and graceful drain"). */
export interface DrainConfig {
  /** DRAIN_TIMEOUT: seconds live calls may go on after SIGTERM before the goodbye and hang-up. */
  timeoutSeconds: number;
  /**
   * DRAIN_NEW_CALLS: `decline` (default) answers a call arriving while draining with a short
   * apology and hangs up; `unavailable` answers 503 so Twilio's fallback URL (another instance)
   * takes it — only right when the number has a fallback URL configured.
   */
  newCalls: 'decline' | 'unavailable';
}

export interface Config {
  port: number;
  host: string;
  /** https base URL Twilio reaches us at, without a trailing slash. */
  publicUrl: string;
  twilioAuthToken: string | undefined;
  twilioAccountSid: string | undefined;
  allowUnsignedWebhooks: boolean;
  /** Secret for stream tokens; derived from the auth token unless set. */
  streamTokenSecret: string;
  streamTokenTtlSeconds: number;
  agentScriptPath: string;
  llm: { url: string; model: string; apiKey: string | undefined; timeoutMs: number } | undefined;
  logLevel: string;
  turn: {
    endOfTurnSilenceMs: number;
    minSpeechMs: number;
    bargeInMinSpeechMs: number;
    /** Caller speech this long always interrupts the agent; shorter speech that is only "yeah"/"mhm" does not (0: any barge-in interrupts). */
    backchannelMaxMs: number;
    vadThreshold: number;
    /** Hold back caller audio that is only the echo of the agent's voice (agent/echo-guard.ts). */
    echoGuard: boolean;
    /** Chunks of silence and steady line noise skip the VAD model (see speech-gate.ts). */
    vadNoiseGate: boolean;
    /** How long a chunk in speech may wait for other calls' chunks to share an inference (SileroVad.batchDue). */
    vadBatchWindowMs: number;
  };
  audio: {
    outboundFrameMs: OutboundFrameMs;
    outboundLeadMs: number;
    inboundBufferMs: number;
  };
  asrWorkers: number;
  maxCallSeconds: number;
  drain: DrainConfig;
  /** API_KEYS: `key:role` entries (admin, analyst) for the `/v1` API; empty: `/v1` refuses everyone. */
  apiKeys: ApiKeys;
  engines: EngineChoice;
  triton: TritonConfig | undefined;
  /** Start the LLM on a stable partial transcript before the end of turn is confirmed. */
  speculativeLlm: boolean;
  /** Token budget of the conversation sent to the LLM; older turns are summarized to fit. */
  contextBudgetTokens: number;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

class Reader {
  readonly problems: string[] = [];
  constructor(private readonly env: Env) {}

  string(name: string): string | undefined {
    const value = this.env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  }

  int(name: string, fallback: number, min: number, max: number): number {
    const raw = this.string(name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min || value > max) {
      this.problems.push(`${name}=${JSON.stringify(raw)} must be an integer from ${min} to ${max}`);
      return fallback;
    }
    return value;
  }

  number(name: string, fallback: number, min: number, max: number): number {
    const raw = this.string(name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!Number.isFinite(value) || value < min || value > max) {
      this.problems.push(`${name}=${JSON.stringify(raw)} must be a number from ${min} to ${max}`);
      return fallback;
    }
    return value;
  }

  choice<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
    const raw = this.string(name);
    if (raw === undefined) return fallback;
    if ((allowed as readonly string[]).includes(raw)) return raw as T;
    this.problems.push(`${name}=${JSON.stringify(raw)} must be one of ${allowed.join(', ')}`);
    return fallback;
  }

  flag(name: string): boolean {
    const raw = this.string(name);
    if (raw === undefined) return false;
    if (['1', 'true', 'yes'].includes(raw.toLowerCase())) return true;
    if (['0', 'false', 'no'].includes(raw.toLowerCase())) return false;
    this.problems.push(`${name}=${JSON.stringify(raw)} must be 1 or 0`);
    return false;
  }

  url(name: string, protocols: string[]): string | undefined {
    const raw = this.string(name);
    if (raw === undefined) return undefined;
    try {
      const parsed = new URL(raw);
      if (!protocols.includes(parsed.protocol)) {
        this.problems.push(`${name}=${JSON.stringify(raw)} must use ${protocols.join(' or ')}`);
        return undefined;
      }
      return raw.replace(/\/+$/, '');
    } catch {
      this.problems.push(`${name}=${JSON.stringify(raw)} is not a URL`);
      return undefined;
    }
  }
}

function readApiKeys(read: Reader): ApiKeys {
  try {
    return parseApiKeys(read.string('API_KEYS'));
  } catch (err) {
    if (!(err instanceof ApiKeysError)) throw err;
    read.problems.push(...err.problems.map((p) => `API_KEYS: ${p}`));
    return parseApiKeys(undefined);
  }
}

export const DEFAULT_AGENT_SCRIPT = 'examples/agent-script.json';

export function loadConfig(env: Env = process.env): Config {
  const read = new Reader(env);
  const port = read.int('PORT', 8080, 0, 65535);
  const allowUnsignedWebhooks = read.flag('ALLOW_UNSIGNED_WEBHOOKS');
  const twilioAuthToken = read.string('TWILIO_AUTH_TOKEN');
  const twilioAccountSid = read.string('TWILIO_ACCOUNT_SID');
  if (twilioAccountSid !== undefined && !/^AC[0-9a-fA-F]{32}$/.test(twilioAccountSid)) {
    read.problems.push(`TWILIO_ACCOUNT_SID=${JSON.stringify(twilioAccountSid)} must be "AC" followed by 32 hex digits`);
  }
  if (twilioAuthToken === undefined && !allowUnsignedWebhooks) {
    read.problems.push(
      'TWILIO_AUTH_TOKEN is not set: webhooks cannot be verified. Set it, or set ALLOW_UNSIGNED_WEBHOOKS=1 for local testing only',
    );
  }
  const publicUrl = read.url('PUBLIC_URL', ['https:', 'http:']) ?? `http://localhost:${port}`;

  const agentScriptPath = resolve(read.string('AGENT_SCRIPT') ?? DEFAULT_AGENT_SCRIPT);
  if (!existsSync(agentScriptPath)) read.problems.push(`AGENT_SCRIPT=${JSON.stringify(agentScriptPath)}: no such file`);

  const llmUrl = read.url('LLM_URL', ['https:', 'http:']);
  const llmModel = read.string('LLM_MODEL');
  if (llmUrl !== undefined && llmModel === undefined) read.problems.push('LLM_URL is set but LLM_MODEL is not');
  const llmTimeoutMs = read.int('LLM_TIMEOUT_MS', 4000, 100, 60000);

  // The cross-checks below only compare values that were valid: a bad one is already reported, and
  // the default standing in for it would only add a confusing second message.
  const problemsBeforeTurn = read.problems.length;
  const minSpeechMs = read.int('MIN_SPEECH_MS', 100, 0, 2000);
  const bargeInMinSpeechMs = read.int('BARGE_IN_MIN_SPEECH_MS', 150, 0, 2000);
  const backchannelMaxMs = read.int('BACKCHANNEL_MAX_MS', 800, 0, 5000);
  if (read.problems.length === problemsBeforeTurn) {
    // Speech too short to open a turn cannot interrupt one: a barge-in the endpointer never confirms
    // ends in neither a turn nor a resume, and the session would wait on words that never come.
    if (bargeInMinSpeechMs < minSpeechMs) {
      read.problems.push(`BARGE_IN_MIN_SPEECH_MS=${bargeInMinSpeechMs} must be at least MIN_SPEECH_MS (${minSpeechMs})`);
    }
    if (backchannelMaxMs !== 0 && backchannelMaxMs <= bargeInMinSpeechMs) {
      read.problems.push(`BACKCHANNEL_MAX_MS=${backchannelMaxMs} must be 0 (off) or more than BARGE_IN_MIN_SPEECH_MS (${bargeInMinSpeechMs})`);
    }
  }

  const outboundFrameMs = read.int('OUTBOUND_FRAME_MS', 20, 20, 60);
  if (![20, 40, 60].includes(outboundFrameMs)) read.problems.push(`OUTBOUND_FRAME_MS=${outboundFrameMs} must be 20, 40 or 60`);
  const outboundLeadMs = read.int('OUTBOUND_LEAD_MS', 100, 20, 200);
  // A message is sent once it fits in the lead: a lead shorter than one message would send nothing.
  if (outboundLeadMs < outboundFrameMs) read.problems.push(`OUTBOUND_LEAD_MS=${outboundLeadMs} must be at least OUTBOUND_FRAME_MS (${outboundFrameMs})`);

  const engines: EngineChoice = {
    vad: read.choice('VAD_ENGINE', ['local', 'triton'] as const, 'local'),
    asr: read.choice('ASR_ENGINE', ['local', 'triton'] as const, 'local'),
    llm: read.choice('LLM_ENGINE', ['local', 'triton', 'openai'] as const, llmUrl === undefined ? 'local' : 'openai'),
    tts: read.choice('TTS_ENGINE', ['local', 'triton'] as const, 'local'),
  };
  if (engines.llm === 'openai' && llmUrl === undefined) read.problems.push('LLM_ENGINE=openai needs LLM_URL (and LLM_MODEL)');
  const tritonUrl = read.string('TRITON_URL');
  if (tritonUrl !== undefined && !/^[A-Za-z0-9.-]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(tritonUrl)) {
    read.problems.push(`TRITON_URL=${JSON.stringify(tritonUrl)} must be host:port of Triton's gRPC endpoint (e.g. triton:8001)`);
  }
  const usesTriton = Object.entries(engines).filter(([, engine]) => engine === 'triton').map(([stage]) => `${stage.toUpperCase()}_ENGINE`);
  if (usesTriton.length > 0 && tritonUrl === undefined) read.problems.push(`${usesTriton.join(', ')}=triton needs TRITON_URL`);
  const triton: TritonConfig | undefined =
    tritonUrl === undefined
      ? undefined
      : {
          url: tritonUrl,
          asrFinalDeadlineMs: read.int('TRITON_ASR_FINAL_DEADLINE_MS', 1500, 100, 30000),
          llmFirstTokenDeadlineMs: read.int('TRITON_LLM_DEADLINE_MS', 1500, 100, 30000),
          ttsChunkDeadlineMs: read.int('TRITON_TTS_DEADLINE_MS', 2000, 100, 30000),
        };

  const explicitSecret = read.string('STREAM_TOKEN_SECRET');
  const config: Config = {
    port,
    host: read.string('HOST') ?? '0.0.0.0',
    publicUrl,
    twilioAuthToken,
    twilioAccountSid,
    allowUnsignedWebhooks,
    // Any process restart with ALLOW_UNSIGNED_WEBHOOKS and no secret gets a fresh random one: tokens
    // only need to live for the few seconds between the webhook and the stream's start.
    streamTokenSecret: explicitSecret ?? twilioAuthToken ?? randomSecret(),
    streamTokenTtlSeconds: read.int('STREAM_TOKEN_TTL_SECONDS', 300, 10, 3600),
    agentScriptPath,
    llm:
      llmUrl !== undefined && llmModel !== undefined
        ? { url: llmUrl, model: llmModel, apiKey: read.string('LLM_API_KEY'), timeoutMs: llmTimeoutMs }
        : undefined,
    logLevel: read.string('LOG_LEVEL') ?? 'info',
    turn: {
      endOfTurnSilenceMs: read.int('END_OF_TURN_SILENCE_MS', 500, 100, 5000),
      minSpeechMs,
      bargeInMinSpeechMs,
      backchannelMaxMs,
      vadThreshold: read.number('VAD_THRESHOLD', 0.5, 0.05, 0.99),
      echoGuard: read.choice('ECHO_GUARD', ['on', 'off'] as const, 'on') === 'on',
      vadNoiseGate: read.choice('VAD_NOISE_GATE', ['on', 'off'] as const, 'on') === 'on',
      vadBatchWindowMs: read.int('VAD_BATCH_WINDOW_MS', DEFAULT_BATCH_WINDOW_MS, 0, 100),
    },
    audio: {
      outboundFrameMs: outboundFrameMs as OutboundFrameMs,
      outboundLeadMs,
      inboundBufferMs: read.int('INBOUND_BUFFER_MS', 2000, 100, 10000),
    },
    // Each worker decodes one caller utterance at a time (~105 MB each). Past two per core, extra
    // workers only share the same CPU, and under a burst every caller waits longer instead of the
    // later ones alone: 4 suits this 2-core machine; scale with cores.
    asrWorkers: read.int('ASR_WORKERS', 4, 1, 64),
    maxCallSeconds: read.int('MAX_CALL_SECONDS', 3600, 10, 86400),
    drain: {
      timeoutSeconds: read.int('DRAIN_TIMEOUT', 300, 0, 86400),
      newCalls: read.choice('DRAIN_NEW_CALLS', ['decline', 'unavailable'] as const, 'decline'),
    },
    apiKeys: readApiKeys(read),
    engines,
    triton,
    speculativeLlm: read.flag('SPECULATIVE_LLM'),
    contextBudgetTokens: read.int('CONTEXT_BUDGET_TOKENS', 6000, 500, 128000),
  };
  if (read.problems.length > 0) throw new ConfigError(read.problems);
  return config;
}

function randomSecret(): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('hex');
}
