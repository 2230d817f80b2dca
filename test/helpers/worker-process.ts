/**
 * The real post-call worker process (`workers/post-call-worker.ts`, what `npm run worker` runs),
 * spawned for fault tests (see logged-process.ts: the pid is the worker itself, its environment is
 * exactly what the test passes, its pino lines are collected).
 */
import { spawnLoggedProcess, type LoggedProcess } from './logged-process.js';

export type { ExitStatus, LogLine as WorkerLogLine } from './logged-process.js';

export interface WorkerProcess extends LoggedProcess {
  /** Waits for `post_call_worker_ready`; fails early (with the output) if the process exits first. */
  waitUntilReady(timeoutMs?: number): Promise<void>;
}

export function spawnPostCallWorker(env: Record<string, string>): WorkerProcess {
  const proc = spawnLoggedProcess('post-call worker', 'workers/post-call-worker.ts', env);
  return Object.assign(proc, {
    async waitUntilReady(timeoutMs = 30_000) {
      await proc.waitForEvent('post_call_worker_ready', timeoutMs);
    },
  });
}
