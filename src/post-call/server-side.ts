/**
 * The server's end of the post-call pipeline: the queue ended calls go to, the Redis mirror of live
 * calls, and the orphan sweeper that files the job of a call whose server died (end reason
 * `server_lost`, with what the mirror last held). All three only ever talk to Redis off the audio
 * path; Redis being down delays them, never a call.
 */
import { CallMirror } from '../live/call-mirror.js';
import { OrphanSweeper } from '../live/orphan-sweeper.js';
import type { LiveLogger } from '../live/types.js';
import { queueOptionsFrom, readLiveMirrorConfig, readPostCallQueueConfig, PostCallConfigError, type LiveMirrorConfig, type PostCallQueueConfig } from './config.js';
import type { PostCallLogger } from './logger.js';
import { PostCallQueue } from './queue.js';
import { postCallJobFromSnapshot } from './session-job.js';

export interface PostCallSide {
  postCall: PostCallQueue;
  mirror: CallMirror;
  sweeper: OrphanSweeper;
  /** After the calls have ended: deliver what is pending (bounded), then disconnect. */
  close(timeoutMs?: number): Promise<{ undelivered: string[] }>;
}

/** The queue's and the live mirror's settings; throws PostCallConfigError listing every problem of both. */
export function checkPostCallSideConfig(env: NodeJS.ProcessEnv): { config: PostCallQueueConfig; live: LiveMirrorConfig } {
  const problems: string[] = [];
  let config: PostCallQueueConfig | undefined;
  let live: LiveMirrorConfig | undefined;
  try {
    config = readPostCallQueueConfig(env, problems);
  } catch {
    // listed in problems
  }
  try {
    live = readLiveMirrorConfig(env, problems);
  } catch {
    // listed in problems
  }
  if (problems.length > 0 || config === undefined || live === undefined) throw new PostCallConfigError(problems);
  return { config, live };
}

export function startPostCallSide(env: NodeJS.ProcessEnv, logger: PostCallLogger & LiveLogger): PostCallSide {
  const { config, live } = checkPostCallSideConfig(env);
  const postCall = new PostCallQueue({ ...queueOptionsFrom(config), logger });
  const keyPrefix = `${config.prefix}:live:`;
  const mirror = new CallMirror({ redis: config.redisUrl, keyPrefix, logger, heartbeatIntervalMs: live.heartbeatIntervalMs, heartbeatTtlMs: live.heartbeatTtlMs });
  const sweeper = new OrphanSweeper({
    redis: mirror.redis,
    intervalMs: live.sweepIntervalMs,
    keyPrefix,
    logger,
    onOrphan: async (call) => {
      const outcome = await postCall.enqueue(postCallJobFromSnapshot(call));
      if (outcome.status !== 'queued') throw new Error(`post-call job for an orphaned call not queued: ${outcome.status}`);
    },
  });
  sweeper.start();
  return {
    postCall,
    mirror,
    sweeper,
    close: async (timeoutMs = 10_000) => {
      await sweeper.stop(timeoutMs);
      const result = await postCall.close(timeoutMs);
      await mirror.close({ timeoutMs });
      return result;
    },
  };
}
