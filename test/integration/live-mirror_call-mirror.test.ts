import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { waitFor as until } from '../helpers/wait-for.js';
import { deleteKeysWithPrefix } from '../helpers/redis-keys.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CallMirror, type CallMirrorOptions } from '../../src/live/call-mirror.js';
import { liveKeys } from '../../src/live/keys.js';
import { parseMirroredCall, type LiveCallSnapshot, type MirroredCall } from '../../src/live/types.js';
import { REDIS_URL } from '../helpers/test-services.js';

// Real Redis; every key under a prefix unique to this run of this file.
const PREFIX = `test:live-mirror:${randomBytes(4).toString('hex')}:`;
const keys = liveKeys(PREFIX);

let admin: Redis;
const mirrors: CallMirror[] = [];
let seq = 0;

function sid(): string {
  return `CA${randomBytes(8).toString('hex')}${++seq}`;
}

function snapshot(callSid: string, state = 'listening', turns = 0): LiveCallSnapshot {
  return {
    callSid,
    provider: 'twilio',
    direction: 'inbound',
    from: '+15550001111',
    to: '+15550002222',
    number: '+15550002222',
    startedAt: '2025-01-01T00:00:00.000Z',
    state,
    turns: Array.from({ length: turns }, (_, i) => ({
      idx: i,
      speaker: i % 2 === 0 ? ('caller' as const) : ('agent' as const),
      text: `turn ${i}`,
      interrupted: false,
      latency: { turnDecided: 0, firstFrameSent: 400 + i },
    })),
  };
}

function mirror(options: CallMirrorOptions = {}): CallMirror {
  const m = new CallMirror({ redis: REDIS_URL, keyPrefix: PREFIX, ...options });
  mirrors.push(m);
  return m;
}

async function readCall(callSid: string): Promise<MirroredCall | undefined> {
  const raw = await admin.get(keys.call(callSid));
  return raw === null ? undefined : parseMirroredCall(raw);
}


function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A TCP forwarder to Redis that the test can take down (dropping every connection) and bring back. */
class RedisProxy {
  port = 0;
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  private readonly pairs = new Set<[net.Socket, net.Socket]>();
  private readonly upstream = new URL(REDIS_URL);

  async start(): Promise<void> {
    const server = net.createServer((client) => {
      const upstream = net.connect(Number(this.upstream.port || 6379), this.upstream.hostname);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
      const pair: [net.Socket, net.Socket] = [client, upstream];
      this.pairs.add(pair);
      client.on('close', () => this.pairs.delete(pair));
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('proxy: no port');
    this.port = address.port;
    this.server = server;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server === undefined) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  /** Black-hole the live connections: what the client sends is held, never forwarded. */
  blackhole(): void {
    for (const [client, upstream] of this.pairs) {
      client.unpipe(upstream);
      client.pause();
    }
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }
}

beforeAll(async () => {
  admin = new Redis(REDIS_URL);
  await admin.ping();
});

afterEach(async () => {
  await Promise.all(mirrors.splice(0).map((m) => m.close({ timeoutMs: 500 })));
});

afterAll(async () => {
  await deleteKeysWithPrefix(admin, PREFIX);
  await admin.quit();
});

describe('CallMirror', () => {
  it('writes a snapshot readable as a MirroredCall, indexed for the sweeper, with the idle TTL', async () => {
    const m = mirror();
    const callSid = sid();
    m.upsert(snapshot(callSid, 'speaking', 3));
    expect(await m.flush()).toBe(true);

    const stored = await readCall(callSid);
    expect(stored).toMatchObject({
      ...snapshot(callSid, 'speaking', 3),
      owner: m.instanceId,
    });
    expect(Number.isNaN(Date.parse(stored?.updatedAt ?? ''))).toBe(false);
    expect(stored?.turns[1]).toEqual({
      idx: 1,
      speaker: 'agent',
      text: 'turn 1',
      interrupted: false,
      latency: { turnDecided: 0, firstFrameSent: 401 },
    });

    expect(await admin.sismember(keys.instanceCalls(m.instanceId), callSid)).toBe(1);
    expect(await admin.zscore(keys.liveCalls(), callSid)).not.toBeNull();

    const ttl = await admin.pttl(keys.call(callSid));
    expect(ttl).toBeGreaterThan(9 * 60_000);
    expect(ttl).toBeLessThanOrEqual(10 * 60_000);
    expect(await admin.pttl(keys.instanceCalls(m.instanceId))).toBeGreaterThan(9 * 60_000);
    expect(m.stats).toMatchObject({ written: 1, pending: 0, live: 1, failed: 0, connected: true });
  });

  it('coalesces: 100 upserts of one call cost at most a few writes, and the last one wins', async () => {
    const m = mirror();
    await until('ready', async () => m.stats.connected);
    const callSid = sid();
    for (let i = 0; i < 100; i++) {
      m.upsert(snapshot(callSid, `state-${i}`, i % 7));
      if (i % 25 === 0) await Promise.resolve();
    }
    expect(await m.flush()).toBe(true);
    expect(m.stats.written).toBeGreaterThanOrEqual(1);
    expect(m.stats.written).toBeLessThanOrEqual(3);
    expect((await readCall(callSid))?.state).toBe('state-99');
  });

  it('removes a record (DEL, SREM, ZREM) and a remove supersedes a pending upsert', async () => {
    const m = mirror();
    const a = sid();
    const b = sid();
    m.upsert(snapshot(a));
    m.upsert(snapshot(b));
    await m.flush();
    expect(await readCall(a)).toBeDefined();

    m.remove(a);
    m.upsert(snapshot(b, 'thinking'));
    m.remove(b); // never written in its 'thinking' state
    await m.flush();
    for (const callSid of [a, b]) {
      expect(await admin.exists(keys.call(callSid))).toBe(0);
      expect(await admin.sismember(keys.instanceCalls(m.instanceId), callSid)).toBe(0);
      expect(await admin.zscore(keys.liveCalls(), callSid)).toBeNull();
    }
    expect(m.stats.live).toBe(0);
    expect(m.has(a)).toBe(false);
  });

  it('keeps a heartbeat key with its TTL and refreshes it', async () => {
    const m = mirror({ heartbeatIntervalMs: 150, heartbeatTtlMs: 500 });
    const key = keys.instance(m.instanceId);
    const first = await until('heartbeat', async () => (await admin.get(key)) ?? undefined);
    expect(JSON.parse(first)).toMatchObject({ pid: process.pid });
    const ttl = await admin.pttl(key);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(500);

    // Well past the first TTL the key is still there, rewritten.
    await sleep(1200);
    const later = await admin.get(key);
    expect(later).not.toBeNull();
    expect(later).not.toBe(first);
    expect(await admin.pttl(key)).toBeGreaterThan(0);

    // close() stops the heartbeat and releases the key.
    await m.close();
    expect(await admin.exists(key)).toBe(0);
  });

  it('close({ releaseHeartbeat: false }) leaves the heartbeat to expire and the calls mirrored', async () => {
    const m = mirror({ heartbeatIntervalMs: 100, heartbeatTtlMs: 400 });
    const callSid = sid();
    m.upsert(snapshot(callSid));
    await m.close({ releaseHeartbeat: false });
    expect(await readCall(callSid)).toBeDefined();
    await until('heartbeat expiry', async () => (await admin.exists(keys.instance(m.instanceId))) === 0, 3000);
    expect(await readCall(callSid)).toBeDefined();
    m.upsert(snapshot(callSid, 'after-close')); // ignored, never throws
    expect((await readCall(callSid))?.state).toBe('listening');
  });

  it('a Redis outage never blocks or throws; the latest state lands after reconnect, even if Redis lost everything', async () => {
    const proxy = new RedisProxy();
    await proxy.start();
    try {
      const m = mirror({ redis: proxy.url, reconnectMaxDelayMs: 100, heartbeatIntervalMs: 200, heartbeatTtlMs: 1000 });
      const busy = sid();
      const quiet = sid();
      const ended = sid();
      m.upsert(snapshot(busy, 'listening', 1));
      m.upsert(snapshot(quiet, 'listening', 2));
      m.upsert(snapshot(ended, 'listening', 1));
      expect(await m.flush()).toBe(true);
      expect(await readCall(quiet)).toBeDefined();

      await proxy.stop();
      await until('disconnect', async () => !m.stats.connected);

      // Redis "restarts" empty while the mirror cannot reach it.
      await admin.del(keys.call(busy), keys.call(quiet), keys.call(ended));

      let slowest = 0;
      const started = performance.now();
      for (let i = 0; i < 200; i++) {
        const t0 = performance.now();
        const returned: unknown = m.upsert(snapshot(busy, `outage-${i}`, 2 + (i % 5)));
        slowest = Math.max(slowest, performance.now() - t0);
        expect(returned).toBeUndefined(); // not a promise: nothing to await, nothing to reject
      }
      m.remove(ended);
      const total = performance.now() - started;
      // Synchronous in-memory notes: generous bounds, only to catch a call that waits on Redis.
      expect(slowest).toBeLessThan(50);
      expect(total).toBeLessThan(500);
      expect(m.stats.pending).toBeGreaterThanOrEqual(2);
      expect(m.stats.connected).toBe(false);

      // Let reconnect attempts fail a few times while down.
      await sleep(400);
      expect(await readCall(busy)).toBeUndefined();

      await proxy.start(); // same port
      const landed = await until('catch-up', async () => {
        const call = await readCall(busy);
        return call?.state === 'outage-199' ? call : undefined;
      });
      expect(landed.owner).toBe(m.instanceId);
      expect(landed.turns).toHaveLength(2 + (199 % 5));
      // A call not updated during the outage is rewritten too (Redis lost it).
      await until('quiet call rewritten', async () => (await readCall(quiet))?.turns.length === 2);
      // The call that ended during the outage stays gone.
      expect(await admin.zscore(keys.liveCalls(), ended)).toBeNull();
      expect(await admin.exists(keys.instance(m.instanceId))).toBe(1);
      expect(await m.flush()).toBe(true);
      expect(m.stats.pending).toBe(0);
    } finally {
      await proxy.stop();
    }
  });

  it('a flush in flight when the connection drops is retried and lands after reconnect', async () => {
    const proxy = new RedisProxy();
    await proxy.start();
    try {
      const m = mirror({ redis: proxy.url, reconnectMaxDelayMs: 100, commandTimeoutMs: 5000 });
      await until('ready', async () => m.stats.connected);
      const callSid = sid();
      proxy.blackhole();
      m.upsert(snapshot(callSid, 'in-flight'));
      // The note is taken into a MULTI that goes out and never gets an answer.
      await until('flush in flight', async () => m.stats.pending === 0 && m.stats.flushes >= 1);
      expect(m.stats.written).toBe(0);
      await proxy.stop(); // the connection dies under the in-flight MULTI
      await until('flush failure noted', async () => m.stats.failed >= 1);
      expect(m.stats.pending).toBe(1);
      expect(await readCall(callSid)).toBeUndefined();
      await proxy.start();
      await until('write after reconnect', async () => (await readCall(callSid))?.state === 'in-flight');
      expect(m.stats.written).toBe(1);
    } finally {
      await proxy.stop();
    }
  });

  it('a note made while disconnected waits for the reconnect and only its latest version lands', async () => {
    const proxy = new RedisProxy();
    await proxy.start();
    try {
      const m = mirror({ redis: proxy.url, reconnectMaxDelayMs: 100, flushDelayMs: 50 });
      await until('ready', async () => m.stats.connected);
      const callSid = sid();
      m.upsert(snapshot(callSid, 'before'));
      // Kill the link before the coalescing timer fires; the note must survive.
      await proxy.stop();
      await sleep(150);
      m.upsert(snapshot(callSid, 'during'));
      expect(await readCall(callSid)).toBeUndefined();
      await proxy.start();
      await until('write after reconnect', async () => (await readCall(callSid))?.state === 'during');
    } finally {
      await proxy.stop();
    }
  });

  it('close() with Redis unreachable returns within its bound and never throws', async () => {
    const proxy = new RedisProxy();
    await proxy.start();
    const m = mirror({ redis: proxy.url, reconnectMaxDelayMs: 100 });
    await until('ready', async () => m.stats.connected);
    await proxy.stop();
    await until('disconnect', async () => !m.stats.connected);
    m.upsert(snapshot(sid()));
    const t0 = Date.now();
    await m.close({ timeoutMs: 300 });
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it('bounds what it keeps: calls beyond maxCalls are counted as dropped, not mirrored', async () => {
    const m = mirror({ maxCalls: 2 });
    const [a, b, c] = [sid(), sid(), sid()];
    m.upsert(snapshot(a));
    m.upsert(snapshot(b));
    m.upsert(snapshot(c));
    await m.flush();
    expect(m.stats).toMatchObject({ live: 2, dropped: 1 });
    expect(await readCall(c)).toBeUndefined();
  });
});
