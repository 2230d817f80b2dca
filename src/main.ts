/** Entry point: configuration, engines, prompt cache, server, and a clean shutdown on SIGTERM. */
import pino from 'pino';
import { fixedPrompts } from './agent/agent-profile.js';
import { PromptCache } from './agent/prompt-cache.js';
import { ConfigError, loadConfig } from './config.js';
import { loadEngines, serverEngineDeps } from './engines/load-engines.js';
import { startPostCallSide } from './post-call/server-side.js';
import { buildServer } from './server.js';

/**
 * Signal handlers go in before anything loads. Registered after start-up (as they were), SIGTERM
 * never reached them and the process died with 143 without draining: some module loaded during
 * start-up takes the signal over when it finds no listener. Set once the server is up; a signal
 * before that ends start-up.
 */
let stopHandler: ((signal: string) => void) | undefined;
const onSignal = (signal: string): void => {
  if (stopHandler !== undefined) stopHandler(signal);
  else process.exit(0);
};
process.on('SIGTERM', () => onSignal('SIGTERM'));
process.on('SIGINT', () => onSignal('SIGINT'));

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const logger = pino({ level: config.logLevel });
  const loaded = await loadEngines(config, logger);
  const { engines, agents } = loaded;
  const prompts = new PromptCache(engines.tts, loaded.degraded.tts);
  const warmPrompts = async (): Promise<void> => {
    for (const agent of agents.all()) await prompts.warm(fixedPrompts(agent.profile), agent.profile.voice);
  };
  await warmPrompts();
  // Prompts rendered by the local TTS while Triton was down are rendered again in Triton's voice.
  loaded.triton?.readiness.onAllReady(() => void warmPrompts().catch(() => undefined));
  // Ended calls → one post-call job each (BullMQ on REDIS_URL); live calls mirrored in Redis; calls
  // of a dead instance finished by the sweeper. POST_CALL=0 turns this off (e.g. no Redis at hand).
  const postCallSide = process.env['POST_CALL'] === '0' ? undefined : startPostCallSide(process.env, logger);
  const server = await buildServer({
    config,
    engines,
    prompts,
    ...serverEngineDeps(loaded),
    postCall: postCallSide?.postCall,
    mirror: postCallSide?.mirror,
    logger: { level: config.logLevel },
  });
  await server.app.listen({ port: config.port, host: config.host });
  server.app.log.info({ publicUrl: config.publicUrl, agent: agents.fallback.profile.name, numbers: agents.numbers }, 'voice agent server ready');

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    server.app.log.info({ signal, calls: server.sessions.size }, 'shutting down');
    server.startDraining();
    void server.app
      .close()
      .then(() => postCallSide?.close())
      .then(() => loaded.close())
      .then(() => process.exit(0));
  };
  stopHandler = stop;
}

main().catch((error: Error) => {
  process.stderr.write(`voice agent server failed to start: ${error.message}\n`);
  process.exit(1);
});
