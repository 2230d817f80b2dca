/**
 * Redis key layout of the live-call mirror. Every key starts with a configurable prefix
 * (default `vas:`) so tests and deployments sharing one Redis never collide.
 *
 *   <p>call:<callSid>            string  JSON MirroredCall (snapshot + owner + updatedAt), PX callTtlMs
 *   <p>instance:<instanceId>     string  heartbeat (JSON { host, pid, at }), PX heartbeatTtlMs
 *   <p>instance-calls:<id>       set     call SIDs an instance owns, PX callTtlMs
 *   <p>live-calls                zset    every mirrored call SID, score = last write (epoch ms)
 *   <p>sweep-claim:<callSid>     string  id of the sweeper finishing an orphan, NX PX claimTtlMs
 */
export const DEFAULT_KEY_PREFIX = 'vas:';

export interface LiveKeys {
  readonly prefix: string;
  call(callSid: string): string;
  instance(instanceId: string): string;
  instanceCalls(instanceId: string): string;
  liveCalls(): string;
  sweepClaim(callSid: string): string;
}

export function liveKeys(prefix: string = DEFAULT_KEY_PREFIX): LiveKeys {
  return {
    prefix,
    call: (callSid) => `${prefix}call:${callSid}`,
    instance: (instanceId) => `${prefix}instance:${instanceId}`,
    instanceCalls: (instanceId) => `${prefix}instance-calls:${instanceId}`,
    liveCalls: () => `${prefix}live-calls`,
    sweepClaim: (callSid) => `${prefix}sweep-claim:${callSid}`,
  };
}
