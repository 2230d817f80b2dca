/**
 * Builds the engines for the embedded default (all CPU, all offline): Silero VAD, pocketsphinx,
 * espeak-ng, and the scripted agent — behind an OpenAI-compatible LLM when one is configured.
 */
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { loadResampler } from '../audio/resampler.js';
import type { AgentProfile } from '../agent/agent-profile.js';
import { FallbackLlm } from './fallback-llm.js';
import { loadAgentScript, type AgentScript } from './local/agent-script.js';
import { EspeakTts } from './local/espeak-tts.js';
import { PocketsphinxAsr } from './local/pocketsphinx-asr.js';
import { ScriptedAgent } from './local/scripted-agent.js';
import { SileroVad } from './local/silero-vad.js';
import { OpenAiCompatibleLlm } from './openai/openai-llm.js';
import type { Engines, Llm } from './types.js';

export interface LoadedAgent {
  engines: Engines;
  profile: AgentProfile;
  script: AgentScript;
}

export async function loadLocalEngines(config: Config, logger: Logger): Promise<LoadedAgent> {
  await loadResampler();
  const script = loadAgentScript(config.agentScriptPath);
  const tts = new EspeakTts(script.voice === undefined ? {} : { voice: script.voice });
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
  const scripted = new ScriptedAgent(script);
  let llm: Llm = scripted;
  if (config.llm !== undefined) {
    const primary = new OpenAiCompatibleLlm({
      url: config.llm.url,
      model: config.llm.model,
      ...(config.llm.apiKey === undefined ? {} : { apiKey: config.llm.apiKey }),
      firstTokenTimeoutMs: config.llm.timeoutMs,
      idleTimeoutMs: config.llm.timeoutMs,
      logger,
    });
    llm = new FallbackLlm(primary, scripted, logger);
  }
  const profile: AgentProfile = {
    name: script.name,
    greeting: script.greeting,
    apology: script.apology,
    ...(script.goodbye === undefined ? {} : { goodbye: script.goodbye }),
    systemPrompt: script.systemPrompt ?? `You are the phone assistant for ${script.name}. Answer in one or two short spoken sentences.`,
    ...(script.voice === undefined ? {} : { voice: script.voice }),
  };
  logger.info({ event: 'engines_loaded', vad: 'silero-v5', asr: 'pocketsphinx', tts: tts.name, llm: llm.name }, 'engines loaded');
  return { engines: { vad, asr, llm, fallbackLlm: scripted, tts }, profile, script };
}

export async function closeEngines(engines: Engines): Promise<void> {
  await Promise.allSettled([engines.vad.close(), engines.asr.close()]);
}
