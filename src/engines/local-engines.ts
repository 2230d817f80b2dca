/**
 * Builds the engines for the embedded default (all CPU, all offline): Silero VAD, pocketsphinx,
 * espeak-ng; and the agents by called number (scripted, behind an OpenAI-compatible LLM when one is
 * configured).
 */
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { loadResampler } from '../audio/resampler.js';
import { AgentDirectory } from '../agent/agent-directory.js';
import { FallbackLlm } from './fallback-llm.js';
import { EspeakTts } from './local/espeak-tts.js';
import { PocketsphinxAsr } from './local/pocketsphinx-asr.js';
import { SileroVad } from './local/silero-vad.js';
import { OpenAiCompatibleLlm } from './openai/openai-llm.js';
import type { Llm, SharedEngines } from './types.js';

export interface LocalEngines {
  /** The engines every call shares. */
  engines: SharedEngines;
  agents: AgentDirectory;
  /** The configured OpenAI-compatible LLM, wrapped so the number's script answers when it fails. */
  remoteLlm: ((fallback: Llm) => Llm) | undefined;
}

export async function loadLocalEngines(config: Config, logger: Logger): Promise<LocalEngines> {
  await loadResampler();
  const agents = AgentDirectory.load(config.agentScriptPath);
  const tts = new EspeakTts();
  await tts.check().catch((error: Error) => {
    throw new Error(`TTS engine unavailable: ${error.message}. Install Debian's espeak-ng (npm start does this on a fresh machine).`);
  });
  const [vad, asr] = await Promise.all([
    SileroVad.load({
      maxBacklogMs: config.audio.inboundBufferMs,
      onError: (error) => logger.error({ event: 'vad_failed', err: error.message }, 'speech detection failed'),
    }),
    PocketsphinxAsr.start({ workers: config.asrWorkers, logger }),
  ]);
  let remoteLlm: LocalEngines['remoteLlm'];
  if (config.llm !== undefined) {
    const primary = new OpenAiCompatibleLlm({
      url: config.llm.url,
      model: config.llm.model,
      ...(config.llm.apiKey === undefined ? {} : { apiKey: config.llm.apiKey }),
      firstTokenTimeoutMs: config.llm.timeoutMs,
      idleTimeoutMs: config.llm.timeoutMs,
      logger,
    });
    remoteLlm = (fallback) => new FallbackLlm(primary, fallback, logger);
  }
  logger.info(
    { event: 'engines_loaded', vad: 'silero-v5', asr: 'pocketsphinx', tts: tts.name, llm: config.llm?.model ?? 'scripted', numbers: agents.numbers },
    'engines loaded',
  );
  return { engines: { vad, asr, tts }, agents, remoteLlm };
}

export async function closeEngines(engines: SharedEngines): Promise<void> {
  await Promise.allSettled([engines.vad.close(), engines.asr.close()]);
}
