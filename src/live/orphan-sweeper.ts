/**
 * OrphanSweeper: finds mirrored calls whose owner's heartbeat expired (the server died or lost
 * Redis for longer than the heartbeat TTL) and hands each to `onOrphan` exactly once, however
 * many sweepers run (worker and server instances alike):
 *
 *   1. read `<p>live-calls`, then the records (MGET) and the owners' heartbeats (EXISTS);
 *   2. claim an orphan with one Lua script: the record is still the one read, the owner's
 *      heartbeat is still missing, and `SET <p>sweep-claim:<sid> <me> NX PX claimTtlMs` wins;
 *   3. `await onOrphan(call)` (enqueue the post-call job, endReason 'server_lost');
 *   4. delete the record with one Lua script (unless the owner came back and rewrote it), and
 *      leave the claim to expire so a sweeper that read the record earlier cannot claim it again.
 *
 * If onOrphan throws, the claim is released and the next tick retries. A Redis error ends the
 * tick (logged); the next tick starts over. Ticks never overlap.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import { DEFAULT_KEY_PREFIX, liveKeys, type LiveKeys } from './keys.js';
import { parseMirroredCall, silentLogger, type LiveLogger, type MirroredCall } from './types.js';

export const DEFAULT_SWEEP_INTERVAL_MS = 5000;

export interface OrphanSweeperOptions {
  /** Any ioredis client (it is not closed by the sweeper). */
  redis: Redis;
  /** Default 5000. */
  intervalMs?: number;
  /** Finish the call (e.g. enqueue its post-call job with endReason 'server_lost'). Throw to retry later. */
  onOrphan: (call: MirroredCall) => Promise<void>;
  /** Default 'vas:'; must match the mirrors'. */
  keyPrefix?: string;
  /** Written into claim keys; default `sweeper-<hostname>-<pid>-<random>`. */
  sweeperId?: string;
  /** How long a claim holds (must outlast onOrphan); default 60000. */
  claimTtlMs?: number;
  /** Calls read per round trip; default 200. */
  batchSize?: number;
  logger?: LiveLogger;
}

export interface SweepResult {
  /** Call SIDs in live-calls looked at. */
  scanned: number;
  /** Orphans this sweeper claimed and finished (onOrphan resolved). */
  finished: string[];
  /** Orphans claimed whose onOrphan threw (released, retried next tick). */
  failed: string[];
  /** live-calls entries dropped because their record had expired. */
  pruned: number;
}

export interface OrphanSweeperStats {
  ticks: number;
  tickErrors: number;
  /** Ticks skipped because Redis was not connected (starting up, or an outage). */
  ticksDisconnected: number;
  finished: number;
  failed: number;
  pruned: number;
}

/** KEYS: call, owner heartbeat, claim. ARGV: record as read, sweeper id, claim TTL ms. */
const CLAIM_SCRIPT = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if redis.call('SET', KEYS[3], ARGV[2], 'NX', 'PX', ARGV[3]) then return 1 end
return 0
`;

/** KEYS: call, live-calls, owner's instance-calls. ARGV: record as read, call SID. */
const FINISH_SCRIPT = `
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('SREM', KEYS[3], ARGV[2])
return 1
`;

/** KEYS: claim. ARGV: sweeper id. */
const RELEASE_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

/** KEYS: call, live-calls. ARGV: call SID. */
const PRUNE_SCRIPT = `
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.call('ZREM', KEYS[2], ARGV[1]) end
return 0
`;

export class OrphanSweeper {
  readonly sweeperId: string;
  readonly keys: LiveKeys;
  private readonly redis: Redis;
  private readonly intervalMs: number;
  private readonly onOrphan: (call: MirroredCall) => Promise<void>;
  private readonly claimTtlMs: number;
  private readonly batchSize: number;
  private readonly logger: LiveLogger;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private started = false;
  private readonly counters: OrphanSweeperStats = { ticks: 0, tickErrors: 0, ticksDisconnected: 0, finished: 0, failed: 0, pruned: 0 };

  constructor(options: OrphanSweeperOptions) {
    this.redis = options.redis;
    this.intervalMs = options.intervalMs ?? DEFAULT_SWEEP_INTERVAL_MS;
    this.onOrphan = options.onOrphan;
    this.keys = liveKeys(options.keyPrefix ?? DEFAULT_KEY_PREFIX);
    this.sweeperId = options.sweeperId ?? `sweeper-${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
    this.claimTtlMs = options.claimTtlMs ?? 60_000;
    this.batchSize = options.batchSize ?? 200;
    this.logger = options.logger ?? silentLogger;
  }

  get stats(): OrphanSweeperStats {
    return { ...this.counters };
  }

  /** Sweep now, then every intervalMs. */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.arm(0);
  }

  /** Stop ticking; waits (bounded) for a tick in progress. */
  async stop(timeoutMs = 5000): Promise<void> {
    this.started = false;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    const running = this.running;
    if (running !== undefined) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([running, new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
      clearTimeout(timer);
    }
  }

  /** One pass. Throws on a Redis error (the ticking loop logs it and tries again next tick). */
  async sweepOnce(): Promise<SweepResult> {
    const result: SweepResult = { scanned: 0, finished: [], failed: [], pruned: 0 };
    const sids = await this.redis.zrange(this.keys.liveCalls(), '0', '-1');
    for (let i = 0; i < sids.length; i += this.batchSize) {
      await this.sweepBatch(sids.slice(i, i + this.batchSize), result);
    }
    return result;
  }

  private async sweepBatch(sids: string[], result: SweepResult): Promise<void> {
    if (sids.length === 0) return;
    result.scanned += sids.length;
    const raws = await this.redis.mget(sids.map((sid) => this.keys.call(sid)));
    const candidates: Array<{ sid: string; raw: string; call: MirroredCall }> = [];
    for (let i = 0; i < sids.length; i++) {
      const sid = sids[i];
      if (sid === undefined) continue;
      const raw = raws[i] ?? null;
      if (raw === null) {
        const pruned = await this.redis.eval(PRUNE_SCRIPT, 2, this.keys.call(sid), this.keys.liveCalls(), sid);
        if (pruned === 1) {
          result.pruned++;
          this.counters.pruned++;
        }
        continue;
      }
      const call = parseMirroredCall(raw);
      if (call === undefined) {
        this.logger.warn({ callSid: sid }, 'orphan sweeper: unreadable call record skipped');
        continue;
      }
      candidates.push({ sid, raw, call });
    }
    if (candidates.length === 0) return;

    const owners = [...new Set(candidates.map((c) => c.call.owner))];
    const alive = new Map<string, boolean>();
    const pipeline = this.redis.pipeline();
    for (const owner of owners) pipeline.exists(this.keys.instance(owner));
    const replies = (await pipeline.exec()) ?? [];
    owners.forEach((owner, i) => {
      const reply = replies[i];
      if (reply === undefined || reply[0] !== null) throw reply?.[0] ?? new Error('heartbeat check failed');
      alive.set(owner, reply[1] === 1);
    });

    for (const { sid, raw, call } of candidates) {
      if (alive.get(call.owner) !== false) continue;
      const claimKey = this.keys.sweepClaim(sid);
      const claimed = await this.redis.eval(
        CLAIM_SCRIPT,
        3,
        this.keys.call(sid),
        this.keys.instance(call.owner),
        claimKey,
        raw,
        this.sweeperId,
        this.claimTtlMs,
      );
      if (claimed !== 1) continue;
      try {
        await this.onOrphan(call);
      } catch (err) {
        result.failed.push(sid);
        this.counters.failed++;
        this.logger.warn(
          { callSid: sid, owner: call.owner, err: err instanceof Error ? err.message : String(err) },
          'orphan sweeper: onOrphan failed; will retry',
        );
        await this.redis.eval(RELEASE_SCRIPT, 1, claimKey, this.sweeperId).catch(() => undefined);
        continue;
      }
      result.finished.push(sid);
      this.counters.finished++;
      this.logger.info({ callSid: sid, owner: call.owner }, 'orphan sweeper: finished orphaned call');
      await this.redis.eval(
        FINISH_SCRIPT,
        3,
        this.keys.call(sid),
        this.keys.liveCalls(),
        this.keys.instanceCalls(call.owner),
        raw,
        sid,
      );
    }
  }

  private arm(delayMs: number): void {
    if (!this.started) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running = this.tick().finally(() => {
        this.running = undefined;
        this.arm(this.intervalMs);
      });
    }, delayMs);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    this.counters.ticks++;
    // Not connected (yet, or during an outage): nothing to sweep with; the next tick tries again.
    if (this.redis.status !== 'ready') {
      this.counters.ticksDisconnected++;
      return;
    }
    try {
      await this.sweepOnce();
    } catch (err) {
      this.counters.tickErrors++;
      this.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'orphan sweeper tick failed; retrying next tick');
    }
  }
}
