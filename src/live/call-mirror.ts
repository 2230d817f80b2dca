/**
 * CallMirror: keeps a Redis record of every live call this instance owns, off the audio hot path.
 *
 * - `upsert(snapshot)` / `remove(callSid)` are synchronous and O(1): they only note the latest
 *   intent per call in memory. A short timer flushes the notes in one MULTI (coalesced: a
 *   hundred upserts between two flushes cost one write).
 * - Redis down (refused, restarted, partitioned) never blocks or throws to the caller: the
 *   client has no offline queue, in-flight commands fail fast, the notes stay in memory
 *   (bounded), and on the next `ready` every live call is written again, so the mirror catches
 *   up even after a Redis restart that lost everything.
 * - A heartbeat key (`<p>instance:<id>`, PX heartbeatTtlMs, refreshed every heartbeatIntervalMs
 *   and by every flush) tells sweepers this owner is alive; the heartbeat also refreshes the TTL
 *   of the owned call records, so a record expires only callTtlMs after its owner went quiet.
 *
 * Key layout: see keys.ts.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { Redis, type RedisOptions } from 'ioredis';
import { liveKeys, DEFAULT_KEY_PREFIX, type LiveKeys } from './keys.js';
import { silentLogger, type LiveCallSnapshot, type LiveLogger, type MirroredCall } from './types.js';

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

export const DEFAULT_HEARTBEAT_INTERVAL_MS = 2000;
export const DEFAULT_HEARTBEAT_TTL_MS = 6000;

export interface CallMirrorOptions {
  /** A redis:// URL or ioredis options (the mirror's own settings below override theirs). */
  redis?: string | RedisOptions;
  /** Default 'vas:'. */
  keyPrefix?: string;
  /** Default `<hostname>-<pid>-<random>`. */
  instanceId?: string;
  /** Default 2000. */
  heartbeatIntervalMs?: number;
  /** Default 6000. */
  heartbeatTtlMs?: number;
  /** A call record's idle TTL; default 10 min. */
  callTtlMs?: number;
  /** Delay between the first note and its flush (coalescing window); default 10. */
  flushDelayMs?: number;
  /** Delay before retrying a flush that failed while the client looked ready; default 250. */
  retryDelayMs?: number;
  /** Live calls mirrored at most (beyond it new calls are not mirrored, and counted as dropped); default 10000. */
  maxCalls?: number;
  /** Notes per MULTI at most; default 500. */
  maxBatch?: number;
  /** Per-command timeout; default 2000. */
  commandTimeoutMs?: number;
  /** Reconnect backoff cap; default 2000 (exponential from 50 ms, plus jitter). */
  reconnectMaxDelayMs?: number;
  logger?: LiveLogger;
}

export interface CallMirrorStats {
  /** Call records written (upserts flushed). */
  written: number;
  /** Call records deleted (removes flushed). */
  removed: number;
  /** Flush attempts that failed (each is retried). */
  failed: number;
  /** Notes waiting to be written. */
  pending: number;
  /** Calls this mirror currently owns. */
  live: number;
  /** Snapshots or removes given up on (over maxCalls, or malformed). */
  dropped: number;
  /** MULTI round trips done. */
  flushes: number;
  connected: boolean;
}

export interface CallMirrorCloseOptions {
  /** How long to keep trying to flush what is pending; default 2000. */
  timeoutMs?: number;
  /**
   * Delete the heartbeat key on close (default true), so calls still mirrored — not removed —
   * become orphans at once and a sweeper finishes them. False leaves them until the TTL runs out.
   */
  releaseHeartbeat?: boolean;
}

type Note = 'upsert' | 'remove';

export function defaultInstanceId(): string {
  return `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

export class CallMirror {
  readonly instanceId: string;
  readonly redis: Redis;
  readonly keys: LiveKeys;

  private readonly heartbeatIntervalMs: number;
  private readonly heartbeatTtlMs: number;
  private readonly callTtlMs: number;
  private readonly flushDelayMs: number;
  private readonly retryDelayMs: number;
  private readonly maxCalls: number;
  private readonly maxBatch: number;
  private readonly logger: LiveLogger;

  /** The latest snapshot of every call owned (kept to rewrite after a Redis restart). */
  private readonly live = new Map<string, LiveCallSnapshot>();
  /** The latest note per call not yet written. */
  private readonly pending = new Map<string, Note>();
  private flushTimer: NodeJS.Timeout | undefined;
  private flushing: Promise<boolean> | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private heartbeatInFlight = false;
  private closed = false;
  private lastErrorLogAt = 0;
  private readonly counters = { written: 0, removed: 0, failed: 0, dropped: 0, flushes: 0 };

  constructor(options: CallMirrorOptions = {}) {
    this.instanceId = options.instanceId ?? defaultInstanceId();
    this.keys = liveKeys(options.keyPrefix ?? DEFAULT_KEY_PREFIX);
    this.heartbeatIntervalMs = options.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS;
    this.heartbeatTtlMs = options.heartbeatTtlMs ?? DEFAULT_HEARTBEAT_TTL_MS;
    this.callTtlMs = options.callTtlMs ?? 10 * 60_000;
    this.flushDelayMs = options.flushDelayMs ?? 10;
    this.retryDelayMs = options.retryDelayMs ?? 250;
    this.maxCalls = options.maxCalls ?? 10_000;
    this.maxBatch = options.maxBatch ?? 500;
    this.logger = options.logger ?? silentLogger;
    if (this.heartbeatTtlMs <= this.heartbeatIntervalMs) {
      throw new Error('CallMirror: heartbeatTtlMs must exceed heartbeatIntervalMs');
    }

    const commandTimeout = options.commandTimeoutMs ?? 2000;
    const reconnectMaxDelayMs = options.reconnectMaxDelayMs ?? 2000;
    const own: RedisOptions = {
      // Never queue while disconnected and never resend: the mirror keeps its own notes.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      commandTimeout,
      connectTimeout: commandTimeout,
      retryStrategy: (times) =>
        Math.min(50 * 2 ** Math.min(times, 10), reconnectMaxDelayMs) + Math.floor(Math.random() * 50),
      connectionName: `vas-mirror-${this.instanceId}`,
    };
    const given = options.redis ?? DEFAULT_REDIS_URL;
    this.redis = typeof given === 'string' ? new Redis(given, own) : new Redis({ ...given, ...own });

    this.redis.on('error', (err: Error) => this.logError(err, 'redis mirror connection error'));
    this.redis.on('ready', () => this.onReady());

    this.heartbeatTimer = setInterval(() => this.beat(), this.heartbeatIntervalMs);
    this.heartbeatTimer.unref();
  }

  get stats(): CallMirrorStats {
    return {
      ...this.counters,
      pending: this.pending.size,
      live: this.live.size,
      connected: this.redis.status === 'ready',
    };
  }

  /** Note the call's latest state. Synchronous, never throws, never waits on Redis. */
  upsert(snapshot: LiveCallSnapshot): void {
    if (this.closed) return;
    const sid = snapshot.callSid;
    if (!this.live.has(sid) && this.live.size >= this.maxCalls) {
      this.counters.dropped++;
      this.logThrottled({ callSid: sid, maxCalls: this.maxCalls }, 'call mirror full: call not mirrored');
      return;
    }
    this.live.set(sid, snapshot);
    this.note(sid, 'upsert');
  }

  /** The call ended and its post-call job is enqueued: drop its record. Synchronous, never throws. */
  remove(callSid: string): void {
    if (this.closed) return;
    this.live.delete(callSid);
    this.note(callSid, 'remove');
  }

  /** Whether the mirror currently owns the call. */
  has(callSid: string): boolean {
    return this.live.has(callSid);
  }

  /** Whether any instance (this one included) mirrors the call as live. Throws when Redis cannot answer. */
  async isLiveAnywhere(callSid: string): Promise<boolean> {
    if (this.live.has(callSid)) return true;
    return (await this.redis.exists(this.keys.call(callSid))) === 1;
  }

  /**
   * Wait until nothing is pending (true) or the timeout passes (false). Never throws.
   * Used by close(); handy for tests and drains.
   */
  async flush(timeoutMs = 2000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.pending.size > 0 || this.flushing !== undefined) {
      if (Date.now() >= deadline) return false;
      if (this.flushing !== undefined) {
        await withTimeout(this.flushing, deadline - Date.now());
        continue;
      }
      if (this.redis.status === 'ready') {
        this.clearFlushTimer();
        await withTimeout(this.runFlush(), deadline - Date.now());
        if (this.pending.size > 0) await sleep(Math.min(this.retryDelayMs, Math.max(0, deadline - Date.now())));
      } else {
        await sleep(Math.min(50, Math.max(0, deadline - Date.now())));
      }
    }
    return true;
  }

  /** Stop the heartbeat, flush (bounded), release the heartbeat, quit. Never throws. */
  async close(options: CallMirrorCloseOptions = {}): Promise<void> {
    if (this.closed) return;
    const timeoutMs = options.timeoutMs ?? 2000;
    const deadline = Date.now() + timeoutMs;
    if (this.heartbeatTimer !== undefined) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
    const flushed = await this.flush(timeoutMs);
    this.closed = true;
    this.clearFlushTimer();
    if (!flushed) {
      this.logger.warn({ pending: this.pending.size, instanceId: this.instanceId }, 'call mirror closed with unwritten notes');
    }
    if ((options.releaseHeartbeat ?? true) && this.redis.status === 'ready') {
      await withTimeout(
        this.redis.del(this.keys.instance(this.instanceId)).catch((err: unknown) => {
          this.logError(err, 'call mirror: heartbeat release failed');
        }),
        Math.max(100, deadline - Date.now()),
      );
    }
    const quit = this.redis.status === 'ready' ? this.redis.quit().then(() => true, () => false) : Promise.resolve(false);
    const quitOk = await withTimeout(quit, Math.max(100, deadline - Date.now()));
    if (quitOk !== true) this.redis.disconnect();
  }

  // --- internals ------------------------------------------------------------------------------

  private note(sid: string, note: Note): void {
    // Move to the end so the map's order is oldest-first for the bound below.
    this.pending.delete(sid);
    this.pending.set(sid, note);
    if (this.pending.size > this.maxCalls * 2) {
      const oldest = this.pending.keys().next();
      if (oldest.done !== true) {
        this.pending.delete(oldest.value);
        this.counters.dropped++;
      }
    }
    this.schedule(this.flushDelayMs);
  }

  private schedule(delayMs: number): void {
    if (this.closed || this.flushTimer !== undefined || this.flushing !== undefined) return;
    if (this.pending.size === 0 || this.redis.status !== 'ready') return; // 'ready' reschedules
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      void this.runFlush();
    }, delayMs);
    this.flushTimer.unref();
  }

  private clearFlushTimer(): void {
    if (this.flushTimer !== undefined) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
  }

  /** One flush at a time; reschedules itself while notes remain. Resolves true when it wrote. */
  private runFlush(): Promise<boolean> {
    if (this.flushing !== undefined) return this.flushing;
    const run = this.flushOnce().then(
      (ok) => ok,
      (err: unknown) => {
        this.logError(err, 'call mirror flush crashed');
        return false;
      },
    );
    this.flushing = run.finally(() => {
      this.flushing = undefined;
    });
    void this.flushing.then((ok) => this.schedule(ok ? this.flushDelayMs : this.retryDelayMs));
    return this.flushing;
  }

  private async flushOnce(): Promise<boolean> {
    if (this.pending.size === 0 || this.redis.status !== 'ready') return true;
    const batch: Array<[string, Note]> = [];
    for (const entry of this.pending) {
      batch.push(entry);
      if (batch.length >= this.maxBatch) break;
    }
    for (const [sid] of batch) this.pending.delete(sid);

    const { keys, instanceId } = this;
    const now = Date.now();
    const updatedAt = new Date(now).toISOString();
    const instanceCalls = keys.instanceCalls(instanceId);
    const multi = this.redis.multi();
    // Heartbeat first: a sweeper never sees a fresh record without a live owner.
    multi.set(keys.instance(instanceId), this.heartbeatValue(now), 'PX', this.heartbeatTtlMs);
    const written: Array<[string, Note]> = [];
    for (const [sid, note] of batch) {
      if (note === 'upsert') {
        const snapshot = this.live.get(sid);
        if (snapshot === undefined) continue; // removed since; its remove note follows
        let json: string;
        try {
          const record: MirroredCall = { ...snapshot, owner: instanceId, updatedAt };
          json = JSON.stringify(record);
        } catch (err) {
          this.counters.dropped++;
          this.logError(err, 'call mirror: snapshot not serializable');
          continue;
        }
        multi.set(keys.call(sid), json, 'PX', this.callTtlMs);
        multi.sadd(instanceCalls, sid);
        multi.zadd(keys.liveCalls(), now, sid);
      } else {
        multi.del(keys.call(sid));
        multi.srem(instanceCalls, sid);
        multi.zrem(keys.liveCalls(), sid);
      }
      written.push([sid, note]);
    }
    multi.pexpire(instanceCalls, this.callTtlMs);
    this.counters.flushes++;
    try {
      const results = await multi.exec();
      if (results === null) throw new Error('MULTI aborted');
      const firstError = results.find(([err]) => err !== null)?.[0];
      if (firstError) this.logError(firstError, 'call mirror: a command in the flush failed');
      for (const [, note] of written) {
        if (note === 'upsert') this.counters.written++;
        else this.counters.removed++;
      }
      return true;
    } catch (err) {
      this.counters.failed++;
      this.logError(err, 'call mirror flush failed; will retry');
      // Put back what no newer note superseded.
      for (const [sid, note] of written) {
        if (this.pending.has(sid)) continue;
        if (note === 'upsert' && !this.live.has(sid)) continue;
        this.pending.set(sid, note);
      }
      return false;
    }
  }

  private onReady(): void {
    if (this.closed) return;
    // Redis may have restarted empty: write every live call again.
    for (const sid of this.live.keys()) {
      if (!this.pending.has(sid)) this.pending.set(sid, 'upsert');
    }
    this.beat();
    this.schedule(0);
  }

  private beat(): void {
    if (this.closed || this.heartbeatInFlight || this.redis.status !== 'ready') return;
    this.heartbeatInFlight = true;
    const now = Date.now();
    const pipeline = this.redis.pipeline();
    pipeline.set(this.keys.instance(this.instanceId), this.heartbeatValue(now), 'PX', this.heartbeatTtlMs);
    if (this.live.size > 0) {
      for (const sid of this.live.keys()) pipeline.pexpire(this.keys.call(sid), this.callTtlMs);
      pipeline.pexpire(this.keys.instanceCalls(this.instanceId), this.callTtlMs);
    }
    pipeline
      .exec()
      .catch((err: unknown) => this.logError(err, 'call mirror heartbeat failed'))
      .finally(() => {
        this.heartbeatInFlight = false;
      });
  }

  private heartbeatValue(now: number): string {
    return JSON.stringify({ host: hostname(), pid: process.pid, at: new Date(now).toISOString(), calls: this.live.size });
  }

  private logError(err: unknown, msg: string): void {
    this.logThrottled({ err: err instanceof Error ? err.message : String(err), instanceId: this.instanceId }, msg);
  }

  /** At most one log line per 5 s: an outage must not flood the log. */
  private logThrottled(obj: object, msg: string): void {
    const now = Date.now();
    if (now - this.lastErrorLogAt < 5000) return;
    this.lastErrorLogAt = now;
    this.logger.warn(obj, msg);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The promise's value, or undefined once ms passed. */
function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), Math.max(0, ms));
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
