/**
 * Builds the engines the configuration asks for, per stage (VAD_ENGINE, ASR_ENGINE, LLM_ENGINE,
 * TTS_ENGINE): the embedded CPU engines (Silero, pocketsphinx, espeak-ng, the scripted agent), the
 * Triton pipeline over one shared gRPC channel, or an OpenAI-compatible LLM. The local engines are
 * always loaded too: they are what a call falls back to when Triton fails mid-call (the caller hears
 * an apology and the scripted agent takes over), and what speech detection runs on while Triton is
 * unreachable.
 */
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { loadResampler } from '../audio/resampler.js';
import { AgentDirectory } from '../agent/agent-directory.js';
import type { ConversationSummarizer } from '../agent/context-budget.js';
import { HYSTERESIS } from '../agent/endpointing.js';
import { LlmSummarizer } from '../agent/llm-summarizer.js';
import { FallbackLlm } from './fallback-llm.js';
import { EspeakTts } from './local/espeak-tts.js';
import { PocketsphinxAsr } from './local/pocketsphinx-asr.js';
import { SileroVad, WorkerSileroInference } from './local/silero-vad.js';
import type { SpeechGateOptions } from './local/speech-gate.js';
import { OpenAiCompatibleLlm } from './openai/openai-llm.js';
import { TritonClient } from './triton/client.js';
import { TritonReadiness } from './triton/readiness.js';
import { PARAKEET_MODEL, TritonAsr } from './triton/triton-asr.js';
import { QWEN3_MODEL, TritonLlm } from './triton/triton-llm.js';
import { TTS_MODEL, TritonTts } from './triton/triton-tts.js';
import { FailoverSileroInference, SILERO_MODEL, TritonSileroInference } from './triton/triton-vad.js';
import type { Asr, Llm, SharedEngines, Tts } from './types.js';
import type { ServerDeps } from '../server.js';

export interface LoadedEngines {
  /** The engines every call starts on. */
  engines: SharedEngines;
  /** The local engines a call moves to when a Triton stage fails mid-call. */
  degraded: { asr: Asr; tts: Tts };
  agents: AgentDirectory;
  /** The configured LLM (Triton or OpenAI-compatible), wrapped so the number's script answers when it fails. */
  remoteLlm: ((fallback: Llm) => Llm) | undefined;
  /** Summarizes older turns with the configured LLM; undefined when only the script answers. */
  summarizer: ConversationSummarizer | undefined;
  /** Per-model readiness of the Triton models in use; undefined when no stage runs on Triton. */
  triton: { client: TritonClient; readiness: TritonReadiness } | undefined;
  /** Which engine serves each stage, for logs and `/ready`. */
  describe(): Record<string, string>;
  close(): Promise<void>;
}

export async function loadEngines(config: Config, logger: Logger): Promise<LoadedEngines> {
  await loadResampler();
  const agents = AgentDirectory.load(config.agentScriptPath);
  const choice = config.engines;

  const localTts = new EspeakTts();
  await localTts.check().catch((error: Error) => {
    throw new Error(`TTS engine unavailable: ${error.message}. Install Debian's espeak-ng (npm start does this on a fresh machine).`);
  });
  const [localVad, localAsr] = await Promise.all([
    WorkerSileroInference.start(),
    PocketsphinxAsr.start({ workers: config.asrWorkers, logger }),
  ]);
  if (localVad.fallbackReason !== undefined) {
    logger.warn({ event: 'vad_graph_fallback', reason: localVad.fallbackReason }, 'speech detection runs the exported Silero graph (slower)');
  }

  let triton: LoadedEngines['triton'];
  if (config.triton !== undefined && Object.values(choice).includes('triton')) {
    const client = new TritonClient({ url: config.triton.url });
    const models = [
      ...(choice.vad === 'triton' ? [SILERO_MODEL] : []),
      ...(choice.asr === 'triton' ? [PARAKEET_MODEL] : []),
      ...(choice.llm === 'triton' ? [QWEN3_MODEL] : []),
      ...(choice.tts === 'triton' ? [TTS_MODEL] : []),
    ];
    const readiness = new TritonReadiness(client, models, logger);
    await readiness.start();
    if (!readiness.allReady) {
      logger.error(
        { event: 'triton_not_ready', url: config.triton.url, models: readiness.snapshot() },
        'Triton is not ready: /ready answers 503 until every model is; retrying with backoff',
      );
    }
    triton = { client, readiness };
  }
  const suspect = (): void => triton?.readiness.suspect();

  const vadInference =
    choice.vad === 'triton' && triton !== undefined
      ? new FailoverSileroInference(new TritonSileroInference(triton.client), localVad, logger, 5000, suspect)
      : localVad;
  const vad = new SileroVad(vadInference, {
    maxBacklogMs: config.audio.inboundBufferMs,
    speechGate: speechGateFor(config.turn),
    batchWindowMs: config.turn.vadBatchWindowMs,
    onError: (error) => logger.error({ event: 'vad_failed', err: error.message }, 'speech detection failed'),
  });

  const asr: Asr =
    choice.asr === 'triton' && triton !== undefined
      ? new TritonAsr(triton.client, { finalDeadlineMs: config.triton!.asrFinalDeadlineMs, onFailure: suspect })
      : localAsr;
  const tts: Tts =
    choice.tts === 'triton' && triton !== undefined
      ? new TritonTts(triton.client, { chunkDeadlineMs: config.triton!.ttsChunkDeadlineMs, onFailure: suspect })
      : localTts;

  let primaryLlm: Llm | undefined;
  if (choice.llm === 'triton' && triton !== undefined) {
    primaryLlm = new TritonLlm(triton.client, {
      firstTokenTimeoutMs: config.triton!.llmFirstTokenDeadlineMs,
      logger,
      onFailure: suspect,
    });
  } else if (choice.llm === 'openai' && config.llm !== undefined) {
    primaryLlm = new OpenAiCompatibleLlm({
      url: config.llm.url,
      model: config.llm.model,
      ...(config.llm.apiKey === undefined ? {} : { apiKey: config.llm.apiKey }),
      firstTokenTimeoutMs: config.llm.timeoutMs,
      idleTimeoutMs: config.llm.timeoutMs,
      logger,
    });
  }
  const remoteLlm = primaryLlm === undefined ? undefined : (fallback: Llm): Llm => new FallbackLlm(primaryLlm, fallback, logger);

  const describe = (): Record<string, string> => ({
    vad: `silero-v5 (${vad.backend})`,
    asr: asr === localAsr ? 'pocketsphinx' : (asr as TritonAsr).name,
    llm: primaryLlm?.name ?? 'scripted',
    tts: tts.name,
  });
  logger.info({ event: 'engines_loaded', ...describe(), triton: config.triton?.url, numbers: agents.numbers }, 'engines loaded');

  return {
    engines: { vad, asr, tts },
    degraded: { asr: localAsr, tts: localTts },
    agents,
    remoteLlm,
    summarizer: primaryLlm === undefined ? undefined : new LlmSummarizer(primaryLlm),
    triton,
    describe,
    close: async () => {
      triton?.readiness.stop();
      await Promise.allSettled([vad.close(), localAsr.close()]);
      triton?.client.close();
    },
  };
}

/** What `buildServer` needs from the loaded engines (besides the shared engines and the prompts). */
export function serverEngineDeps(loaded: LoadedEngines): Pick<ServerDeps, 'agents' | 'remoteLlm' | 'degraded' | 'tritonReadiness' | 'summarizer' | 'describeEngines'> {
  return {
    agents: loaded.agents,
    remoteLlm: loaded.remoteLlm,
    degraded: loaded.degraded,
    tritonReadiness: loaded.triton?.readiness,
    summarizer: loaded.summarizer,
    describeEngines: loaded.describe,
  };
}

/**
 * The VAD's noise gate for these turn settings. Its hold must start at or below the endpointer's
 * lower (continue-speech) threshold: an answer the endpointer counts as speech must keep the model
 * on. With a threshold so low that leaves no room, the gate is off.
 */
export function speechGateFor(turn: { vadThreshold: number; vadNoiseGate: boolean }): SpeechGateOptions | false {
  if (!turn.vadNoiseGate) return false;
  const holdProbability = Math.min(0.3, turn.vadThreshold * 0.6, turn.vadThreshold - HYSTERESIS);
  return holdProbability > 0.05 ? { holdProbability } : false;
}
