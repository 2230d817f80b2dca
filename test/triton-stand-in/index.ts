/**
 * A protocol-true NVIDIA Triton stand-in: a real gRPC server speaking the KServe v2 protocol (our
 * own protos, `src/engines/triton/proto`) that serves the four models of the GPU pipeline with CPU
 * engines behind them — the real Silero VAD, pocketsphinx or scripted transcripts as `parakeet_tdt`,
 * scripted replies as `qwen3` on the vLLM backend, espeak-ng as `tts`. Tests inject faults and
 * assert on what it received; `main.ts` runs it by hand.
 */
import { EventEmitter } from 'node:events';
import type { StandInState } from './dispatch.js';
import type { Faults } from './faults.js';
import type { StandInModel } from './model.js';
import { ParakeetModel, type RecognizerOption } from './models/parakeet-tdt.js';
import { Qwen3Model, type LlmOptions } from './models/qwen3.js';
import { SileroVadModel } from './models/silero-vad.js';
import { TtsModel, type TtsOptions } from './models/tts.js';
import { Observed, type StandInEvents } from './observed.js';
import { StandInServer } from './server.js';

export type StandInModelName = 'silero_vad' | 'parakeet_tdt' | 'qwen3' | 'tts';
export const ALL_MODELS: readonly StandInModelName[] = ['silero_vad', 'parakeet_tdt', 'qwen3', 'tts'];

export interface TritonStandInOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  host?: string;
  /** How `parakeet_tdt` transcribes (default 'pocketsphinx': start waits for its 2 workers, ~3 s). */
  recognizer?: RecognizerOption;
  /** `parakeet_tdt`'s max_sequence_idle (default 60 s, as the model repository's config). */
  sequenceIdleMs?: number;
  llm?: LlmOptions;
  tts?: TtsOptions;
  /** The models to serve (default all four); others are unknown models. */
  models?: readonly StandInModelName[];
}

export interface TritonStandIn {
  /** `host:port`, what a gRPC client dials. */
  readonly url: string;
  readonly port: number;
  /** Per model name; read on every request. */
  readonly faults: Faults;
  readonly observed: Observed;
  /** 'request', 'response' and 'cancelled', as they happen. */
  readonly events: EventEmitter<StandInEvents>;
  /** Drops every connection and sequence, then listens again on the same port. */
  restart(): Promise<void>;
  /** Stops listening and releases the engines. */
  stop(): Promise<void>;
}

export async function startTritonStandIn(options: TritonStandInOptions = {}): Promise<TritonStandIn> {
  const host = options.host ?? '127.0.0.1';
  const names = options.models ?? ALL_MODELS;
  const loaded = await Promise.allSettled(names.map((name) => createModel(name, options)));
  const failed = loaded.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) {
    await Promise.all(loaded.map((r) => (r.status === 'fulfilled' ? r.value.close?.() : undefined)));
    throw failed.reason;
  }
  const models = new Map<string, StandInModel>();
  for (const result of loaded) if (result.status === 'fulfilled') models.set(result.value.spec.name, result.value);
  const events = new EventEmitter<StandInEvents>();
  const state: StandInState = { models, faults: {}, observed: new Observed(events), active: new Set() };
  const server = new StandInServer(state, host);
  try {
    await server.listen(options.port ?? 0);
  } catch (error) {
    await Promise.all([...models.values()].map((m) => m.close?.()));
    throw error;
  }
  const port = server.port;
  let stopped = false;
  return {
    url: `${host}:${port}`,
    port,
    faults: state.faults,
    observed: state.observed,
    events,
    async restart() {
      if (stopped) throw new Error('the Triton stand-in was stopped');
      await server.stop();
      for (const model of models.values()) model.reset?.();
      await server.listen(port);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await server.stop();
      await Promise.all([...models.values()].map((m) => m.close?.()));
    },
  };
}

async function createModel(name: StandInModelName, options: TritonStandInOptions): Promise<StandInModel> {
  switch (name) {
    case 'silero_vad':
      return SileroVadModel.load();
    case 'parakeet_tdt':
      return ParakeetModel.load(options.recognizer, options.sequenceIdleMs);
    case 'qwen3':
      return new Qwen3Model(options.llm);
    case 'tts':
      return new TtsModel(options.tts);
    default: {
      const unknown: never = name;
      throw new Error(`no stand-in for model '${String(unknown)}'`);
    }
  }
}

export type { Faults, ModelFaults } from './faults.js';
export type { LlmOptions, LlmReply, LlmRule } from './models/qwen3.js';
export { lastUserMessage, tokenPieces } from './models/qwen3.js';
export type { RecognizerOption, ScriptedRecognizer } from './models/parakeet-tdt.js';
export type { TtsOptions } from './models/tts.js';
export type { Observed, ObservedCancel, ObservedInputs, ObservedRequest, StandInEvents } from './observed.js';
