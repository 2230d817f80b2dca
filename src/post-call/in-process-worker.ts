/**
 * The post-call worker inside the server process. `npm start` on the embedded PGlite database
 * needs it: PGlite lives in this process, so no separate worker could reach it. With DATABASE_URL
 * (PostgreSQL) the worker normally runs apart (`npm run worker`), scaled on its own;
 * POST_CALL_WORKER=inline runs one here as well, POST_CALL_WORKER=off never does.
 */
import type { Logger } from 'pino';
import type { CallStore } from '../store/call-store.js';
import { PostCallConfigError, readPostCallWorkerConfig } from './config.js';
import { startConfiguredWorker, type ConfiguredWorker } from './configured-worker.js';

export type WorkerPlacement = 'inline' | 'off';

/** POST_CALL_WORKER, defaulting to inline on the embedded database and off on PostgreSQL. */
export function workerPlacement(env: NodeJS.ProcessEnv): WorkerPlacement {
  const raw = env['POST_CALL_WORKER']?.trim();
  if (raw === undefined || raw === '') return env['DATABASE_URL']?.trim() ? 'off' : 'inline';
  if (raw === 'inline' || raw === 'off') return raw;
  throw new PostCallConfigError([`POST_CALL_WORKER=${JSON.stringify(raw)} must be inline or off`]);
}

export type InProcessWorker = ConfiguredWorker;

export function startInProcessWorker(env: NodeJS.ProcessEnv, store: CallStore, logger: Logger): InProcessWorker {
  const config = readPostCallWorkerConfig(env);
  // In the server's process the worker must not compete with live calls for the CPU.
  return startConfiguredWorker(config, store, logger.child({ component: 'post-call-worker' }), { concurrency: Math.min(config.concurrency, 2) });
}
