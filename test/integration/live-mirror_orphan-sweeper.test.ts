import { randomBytes } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import { waitFor as until } from '../helpers/wait-for.js';
import { deleteKeysWithPrefix } from '../helpers/redis-keys.js';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CallMirror, type CallMirrorOptions } from '../../src/live/call-mirror.js';
import { liveKeys, type LiveKeys } from '../../src/live/keys.js';
import { OrphanSweeper, type OrphanSweeperOptions } from '../../src/live/orphan-sweeper.js';
import type { LiveCallSnapshot, MirroredCall } from '../../src/live/types.js';
import { REDIS_URL } from '../helpers/test-services.js';

// Real Redis; every key under a prefix unique to this run of this file, and to each test (a
// sweeper sees every call under its prefix, so tests must not see each other's).
const FILE_PREFIX = `test:live-sweeper:${randomBytes(4).toString('hex')}:`;
let testNo = 0;
let PREFIX = FILE_PREFIX;
let keys: LiveKeys = liveKeys(PREFIX);

beforeEach(() => {
  PREFIX = `${FILE_PREFIX}${++testNo}:`;
  keys = liveKeys(PREFIX);
});

let admin: Redis;
const mirrors: CallMirror[] = [];
const sweepers: OrphanSweeper[] = [];
const clients: Redis[] = [];
let seq = 0;

function sid(): string {
  return `CA${randomBytes(8).toString('hex')}${++seq}`;
}

function snapshot(callSid: string, state = 'listening'): LiveCallSnapshot {
  return {
    callSid,
    provider: 'twilio',
    direction: 'inbound',
    from: '+15550001111',
    to: '+15550002222',
    startedAt: new Date().toISOString(),
    state,
    turns: [
      { idx: 0, speaker: 'caller', text: 'hello', interrupted: false },
      { idx: 1, speaker: 'agent', text: 'hi, how can I help?', interrupted: true, latency: { firstFrameSent: 512 } },
    ],
  };
}

function mirror(options: CallMirrorOptions = {}): CallMirror {
  const m = new CallMirror({ redis: REDIS_URL, keyPrefix: PREFIX, heartbeatIntervalMs: 100, heartbeatTtlMs: 400, ...options });
  mirrors.push(m);
  return m;
}

function client(url = REDIS_URL, extra: RedisOptions = {}): Redis {
  const c = new Redis(url, extra);
  c.on('error', () => undefined);
  clients.push(c);
  return c;
}

function sweeper(options: Partial<OrphanSweeperOptions> & Pick<OrphanSweeperOptions, 'onOrphan'>): OrphanSweeper {
  const s = new OrphanSweeper({ redis: client(), keyPrefix: PREFIX, intervalMs: 50, ...options });
  sweepers.push(s);
  return s;
}

/** Collects onOrphan calls; each takes a little while, to widen any race between sweepers. */
function recorder(delayMs = 20): { seen: MirroredCall[]; onOrphan: (call: MirroredCall) => Promise<void> } {
  const seen: MirroredCall[] = [];
  return {
    seen,
    onOrphan: async (call) => {
      seen.push(call);
      await sleep(delayMs);
    },
  };
}

function countBySid(calls: MirroredCall[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const c of calls) counts.set(c.callSid, (counts.get(c.callSid) ?? 0) + 1);
  return counts;
}


function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A mirror owning `n` calls that then dies: heartbeat stopped, calls left in Redis. */
async function deadOwner(n: number): Promise<{ owner: string; sids: string[] }> {
  const m = mirror();
  const sids = Array.from({ length: n }, () => sid());
  for (const s of sids) m.upsert(snapshot(s, 'speaking'));
  await m.close({ releaseHeartbeat: false });
  await until('dead heartbeat', async () => (await admin.exists(keys.instance(m.instanceId))) === 0, 3000);
  return { owner: m.instanceId, sids };
}

beforeAll(async () => {
  admin = new Redis(REDIS_URL);
  await admin.ping();
});

afterEach(async () => {
  await Promise.all(sweepers.splice(0).map((s) => s.stop()));
  await Promise.all(mirrors.splice(0).map((m) => m.close({ timeoutMs: 500 })));
  await Promise.all(clients.splice(0).map((c) => c.quit().catch(() => c.disconnect())));
});

afterAll(async () => {
  await deleteKeysWithPrefix(admin, FILE_PREFIX);
  await admin.quit();
});

describe('OrphanSweeper', () => {
  it("hands a dead owner's calls to onOrphan exactly once across two running sweepers, and never a live owner's", async () => {
    const alive = mirror();
    const liveSids = [sid(), sid(), sid()];
    for (const s of liveSids) alive.upsert(snapshot(s));
    await alive.flush();

    const dead = await deadOwner(6);

    const rec = recorder();
    const one = sweeper({ onOrphan: rec.onOrphan });
    const two = sweeper({ onOrphan: rec.onOrphan });
    one.start();
    two.start();

    await until('all orphans handled', () => countBySid(rec.seen).size === dead.sids.length);
    await sleep(500); // many more ticks of both sweepers

    const counts = countBySid(rec.seen);
    expect([...counts.keys()].sort()).toEqual([...dead.sids].sort());
    expect([...counts.values()].every((n) => n === 1)).toBe(true);
    expect(one.stats.finished + two.stats.finished).toBe(dead.sids.length);

    // What was mirrored reaches onOrphan.
    const first = rec.seen[0];
    expect(first).toMatchObject({ owner: dead.owner, state: 'speaking', provider: 'twilio', direction: 'inbound' });
    expect(first?.turns).toHaveLength(2);
    expect(first?.turns[1]).toMatchObject({ speaker: 'agent', interrupted: true, latency: { firstFrameSent: 512 } });

    // Orphans are gone from Redis; the live owner's calls are untouched.
    for (const s of dead.sids) {
      expect(await admin.exists(keys.call(s))).toBe(0);
      expect(await admin.zscore(keys.liveCalls(), s)).toBeNull();
      expect(await admin.sismember(keys.instanceCalls(dead.owner), s)).toBe(0);
    }
    for (const s of liveSids) {
      expect(await admin.exists(keys.call(s))).toBe(1);
      expect(await admin.zscore(keys.liveCalls(), s)).not.toBeNull();
    }
    expect(rec.seen.some((c) => c.owner === alive.instanceId)).toBe(false);
  });

  it('concurrent sweepOnce() passes never hand the same orphan out twice', async () => {
    const dead = await deadOwner(20);
    const rec = recorder(5);
    const a = sweeper({ onOrphan: rec.onOrphan });
    const b = sweeper({ onOrphan: rec.onOrphan });
    const c = sweeper({ onOrphan: rec.onOrphan });
    const results = await Promise.all([a.sweepOnce(), b.sweepOnce(), c.sweepOnce(), a.sweepOnce(), b.sweepOnce()]);
    const finished = results.flatMap((r) => r.finished);
    expect(finished.sort()).toEqual([...dead.sids].sort());
    expect(rec.seen).toHaveLength(dead.sids.length);
    expect(new Set(rec.seen.map((x) => x.callSid)).size).toBe(dead.sids.length);
    // Nothing left for a later pass.
    expect((await a.sweepOnce()).finished).toEqual([]);
  });

  it('a live owner is never swept, however many passes', async () => {
    const alive = mirror();
    const s1 = sid();
    alive.upsert(snapshot(s1));
    await alive.flush();
    const rec = recorder(0);
    const s = sweeper({ onOrphan: rec.onOrphan });
    for (let i = 0; i < 10; i++) {
      await s.sweepOnce();
      await sleep(100); // spans several heartbeat TTLs (400 ms) in all
    }
    expect(rec.seen).toEqual([]);
    expect(await admin.exists(keys.call(s1))).toBe(1);
  });

  it('a mirror closed normally (heartbeat released) leaves its remaining calls to the sweeper at once', async () => {
    const m = mirror({ heartbeatIntervalMs: 2000, heartbeatTtlMs: 60_000 });
    const s1 = sid();
    m.upsert(snapshot(s1));
    await m.close();
    const rec = recorder(0);
    const result = await sweeper({ onOrphan: rec.onOrphan }).sweepOnce();
    expect(result.finished).toEqual([s1]);
  });

  it('when onOrphan throws, the claim is released and a later pass finishes the call', async () => {
    const dead = await deadOwner(1);
    const target = dead.sids[0];
    let attempts = 0;
    const done: string[] = [];
    const s = sweeper({
      onOrphan: async (call) => {
        attempts++;
        if (attempts === 1) throw new Error('queue unavailable');
        done.push(call.callSid);
      },
    });
    const first = await s.sweepOnce();
    expect(first.failed).toEqual([target]);
    expect(await admin.exists(keys.call(target ?? ''))).toBe(1);
    expect(await admin.exists(keys.sweepClaim(target ?? ''))).toBe(0);
    const second = await s.sweepOnce();
    expect(second.finished).toEqual([target]);
    expect(done).toEqual([target]);
    expect(await admin.exists(keys.call(target ?? ''))).toBe(0);
  });

  it('prunes live-calls entries whose record expired, without calling onOrphan', async () => {
    const m = mirror({ callTtlMs: 300 });
    const s1 = sid();
    m.upsert(snapshot(s1));
    await m.close({ releaseHeartbeat: false });
    await until('record expiry', async () => (await admin.exists(keys.call(s1))) === 0, 3000);
    expect(await admin.zscore(keys.liveCalls(), s1)).not.toBeNull();
    const rec = recorder(0);
    const result = await sweeper({ onOrphan: rec.onOrphan }).sweepOnce();
    expect(result.pruned).toBe(1);
    expect(rec.seen).toEqual([]);
    expect(await admin.zscore(keys.liveCalls(), s1)).toBeNull();
  });

  it('keeps ticking through a Redis outage (quietly: no failed command per tick) and sweeps once Redis answers', async () => {
    const dead = await deadOwner(2);
    // A client for a port where nothing listens: every tick fails fast.
    const broken = client('redis://127.0.0.1:1', { enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => 200 });
    const rec = recorder(0);
    const failing = new OrphanSweeper({ redis: broken, keyPrefix: PREFIX, intervalMs: 30, onOrphan: rec.onOrphan });
    sweepers.push(failing);
    failing.start();
    await until('ticks while disconnected', () => failing.stats.ticksDisconnected >= 3);
    expect(failing.stats.tickErrors).toBe(0);
    expect(rec.seen).toEqual([]);
    await failing.stop();

    const working = sweeper({ onOrphan: rec.onOrphan });
    working.start();
    await until('orphans finished', () => rec.seen.length === dead.sids.length);
  });
});
