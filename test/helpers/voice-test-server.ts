/** Starts the real server on the real local engines, on a free port, for end-to-end tests and benchmarks. */
import pino from 'pino';
import { fixedPrompts } from '../../src/agent/agent-profile.js';
import { PromptCache } from '../../src/agent/prompt-cache.js';
import { loadConfig, type Config } from '../../src/config.js';
import { loadEngines, serverEngineDeps, type LoadedEngines } from '../../src/engines/load-engines.js';
import type { SharedEngines } from '../../src/engines/types.js';
import { buildServer, type VoiceServer } from '../../src/server.js';
import { startPostCallSide, type PostCallSide } from '../../src/post-call/server-side.js';
import { CallLedger, type CallStore } from '../../src/store/index.js';

export const TEST_AUTH_TOKEN = 'test-auth-token-0123456789abcdef';

export interface RunningServer extends VoiceServer {
  url: string;
  config: Config;
  engines: SharedEngines;
  loaded: LoadedEngines;
  /** Only when the test asked for it with REDIS_URL (and a POST_CALL_QUEUE_PREFIX of its own). */
  postCallSide: PostCallSide | undefined;
  close(): Promise<void>;
}

export interface VoiceServerExtras {
  /** The durable store: call rows at arrival, recording callbacks, the read API. */
  store?: CallStore;
}

export async function startVoiceServer(
  env: Record<string, string> = {},
  engineOverrides: Partial<SharedEngines> = {},
  extras: VoiceServerExtras = {},
): Promise<RunningServer> {
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    TWILIO_AUTH_TOKEN: TEST_AUTH_TOKEN,
    PUBLIC_URL: 'http://127.0.0.1:0',
    LOG_LEVEL: process.env['TEST_LOG_LEVEL'] ?? 'silent',
    ...env,
  });
  const logger = pino({ level: config.logLevel });
  const loaded = await loadEngines(config, logger);
  const engines = { ...loaded.engines, ...engineOverrides };
  const prompts = new PromptCache(engines.tts, loaded.degraded.tts);
  for (const agent of loaded.agents.all()) await prompts.warm(fixedPrompts(agent.profile), agent.profile.voice);
  // The public URL must name the real port for signatures and TwiML: bind first, then build.
  const probe = await import('node:net').then(
    ({ createServer }) =>
      new Promise<number>((resolve) => {
        const s = createServer().listen(0, '127.0.0.1', () => {
          const port = (s.address() as { port: number }).port;
          s.close(() => resolve(port));
        });
      }),
  );
  const url = `http://127.0.0.1:${probe}`;
  const finalConfig = { ...config, port: probe, publicUrl: url };
  const postCallSide = env['REDIS_URL'] === undefined ? undefined : startPostCallSide(env, logger);
  const server = await buildServer({
    config: finalConfig,
    engines,
    prompts,
    ...serverEngineDeps(loaded),
    postCall: postCallSide?.postCall,
    mirror: postCallSide?.mirror,
    ...(extras.store === undefined ? {} : { store: extras.store, ledger: new CallLedger({ store: extras.store, logger }) }),
    logger: { level: config.logLevel },
  });
  await server.app.listen({ port: probe, host: '127.0.0.1' });
  return {
    ...server,
    url,
    config: finalConfig,
    engines,
    loaded,
    postCallSide,
    close: async () => {
      await server.app.close();
      await postCallSide?.close(5000);
      await loaded.close();
    },
  };
}
