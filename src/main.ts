/** Entry point: configuration, engines, prompt cache, server, and a clean shutdown on SIGTERM. */
import pino from 'pino';
import { fixedPrompts } from './agent/agent-profile.js';
import { PromptCache } from './agent/prompt-cache.js';
import { ConfigError, loadConfig } from './config.js';
import { loadEngines, serverEngineDeps } from './engines/load-engines.js';
import { startInProcessWorker, workerPlacement, type InProcessWorker } from './post-call/in-process-worker.js';
import { PostCallConfigError } from './post-call/config.js';
import { checkPostCallSideConfig, startPostCallSide } from './post-call/server-side.js';
import { buildServer } from './server.js';
import { CallLedger, CallStore, openDatabaseFromEnv } from './store/index.js';
import { onStopSignals } from './util/stop-signals.js';

/**
 * Signal handlers go in before anything loads. Registered after start-up (as they were), SIGTERM
 * never reached them and the process died with 143 without draining: some module loaded during
 * start-up takes the signal over when it finds no listener. Set once the server is up; a signal
 * before that ends start-up.
 */
let stopHandler: ((signal: string) => void) | undefined;
let forceHandler: ((signal: string) => void) | undefined;
onStopSignals({
  stop: (signal) => (stopHandler === undefined ? process.exit(0) : stopHandler(signal)),
  force: (signal) => {
    forceHandler?.(signal);
    process.exit(1);
  },
});

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
    // The post-call side's settings too, before minutes of engine loading (startPostCallSide reads them again).
    if (process.env['POST_CALL'] !== '0') checkPostCallSideConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError || error instanceof PostCallConfigError) {
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
  // The durable store: PostgreSQL on DATABASE_URL, else embedded PGlite (PGLITE_DIR, or memory).
  const db = await openDatabaseFromEnv(process.env, {
    info: (msg) => logger.info({ component: 'store' }, msg),
    warn: (msg) => logger.warn({ component: 'store' }, msg),
    error: (msg) => logger.error({ component: 'store' }, msg),
  });
  const store = new CallStore(db);
  const ledger = new CallLedger({ store, logger });
  // Ended calls → one post-call job each (BullMQ on REDIS_URL); live calls mirrored in Redis; calls
  // of a dead instance finished by the sweeper. POST_CALL=0 turns this off (e.g. no Redis at hand).
  const postCallSide = process.env['POST_CALL'] === '0' ? undefined : startPostCallSide(process.env, logger);
  let worker: InProcessWorker | undefined;
  if (postCallSide !== undefined && workerPlacement(process.env) === 'inline') worker = startInProcessWorker(process.env, store, logger);
  const server = await buildServer({
    config,
    engines,
    prompts,
    ...serverEngineDeps(loaded),
    postCall: postCallSide?.postCall,
    mirror: postCallSide?.mirror,
    ledger,
    store,
    logger: { level: config.logLevel },
  });
  await server.app.listen({ port: config.port, host: config.host });
  server.app.log.info(
    {
      publicUrl: config.publicUrl,
      agent: agents.fallback.profile.name,
      numbers: agents.numbers,
      database: process.env['DATABASE_URL']?.trim() ? 'postgresql' : 'pglite (embedded)',
      event: 'server_ready',
      postCallWorker: worker === undefined ? (postCallSide === undefined ? 'disabled (POST_CALL=0)' : 'separate (npm run worker)') : 'in-process',
    },
    'voice agent server ready',
  );

  /**
   * SIGTERM: drain (see server.drain), then close in order — HTTP, the call rows still being
   * written, the queue (delivering any job still pending), the in-process worker (finishing the
   * job in hand), the database, the engines — and exit 0. A second signal (see stop-signals.ts) exits at once.
   */
  forceHandler = (signal) => server.app.log.warn({ signal }, 'second signal: exiting without finishing the drain');
  const stop = (signal: string): void => {
    server.app.log.info({ signal, calls: server.sessions.size, drainTimeoutSeconds: config.drain.timeoutSeconds }, 'shutting down');
    void (async () => {
      try {
        await server.drain(config.drain.timeoutSeconds * 1000);
        await server.app.close();
        await ledger.close();
        const delivery = await postCallSide?.close();
        if (delivery !== undefined && delivery.undelivered.length > 0) {
          server.app.log.error({ event: 'post_call_undelivered', callSids: delivery.undelivered }, 'post-call jobs not delivered before exit; the sweeper files them from the mirror');
        }
        await worker?.close();
        await db.close();
        await loaded.close();
        server.app.log.info({ event: 'shutdown_done' }, 'shut down cleanly');
        process.exit(0);
      } catch (error) {
        server.app.log.error({ err: error instanceof Error ? error.message : String(error) }, 'unclean shutdown');
        process.exit(1);
      }
    })();
  };
  stopHandler = stop;
}

main().catch((error: Error) => {
  process.stderr.write(`voice agent server failed to start: ${error.message}\n`);
  process.exit(1);
});
