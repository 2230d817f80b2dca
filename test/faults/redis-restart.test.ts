/**
 * Fault: Redis restarts (empty: it keeps nothing on disk) in the middle of a call.
 *
 * A private redis-server (test/helpers/redis-server-process.ts) on its own port carries the
 * post-call queue, the live-call mirror and the sweeper of the real server (in this process, on
 * the real local engines, writing call rows to a fresh PostgreSQL schema), and the queue of the
 * real post-call worker process. A Twilio-exact caller speaks; the moment its turn is decided,
 * redis-server is SIGKILLed, and started again on the same port with nothing in it once ~2.5 s
 * passed and the agent's reply has started playing (so the reply is produced, and its snapshot
 * noted for the mirror, while Redis is down). The caller then speaks again; Redis is killed again
 * 2.5 s before the caller hangs up and started again (empty) 2.5 s later, so the call's job is
 * filed while Redis is down.
 *
 * The call must go on unharmed: the reply's audio flows through the outage and the caller gets a
 * reply to what it said after the restart. The mirror catches up (the call's record, with the turn
 * taken while Redis was down, is in the new Redis while the call is live), the sweeper does not
 * mistake the live call for an orphan, and the job, held in the server's memory over the second
 * outage, is filed once the queue reconnects and processed once by the worker (which rode through
 * both restarts): exactly one call row, its turns once, one post-call result, one BullMQ job
 * (id = call SID), none failed.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CallSession } from '../../src/agent/call-session.js';
import { parseMirroredCall, type MirroredCall } from '../../src/live/types.js';
import { POST_CALL_QUEUE } from '../../src/post-call/job.js';
import type { ReceivedMessage } from '../../src/softphone/twilio-caller.js';
import { CallStore, openDatabase, type Db } from '../../src/store/index.js';
import { placeTestCall } from '../helpers/place-test-call.js';
import { expectOnlyJobCompletedOnce } from '../helpers/post-call-harness.js';
import { startRedisServer, type RedisServerProcess } from '../helpers/redis-server-process.js';
import { phoneSpeech, RECORDINGS, timeline } from '../helpers/speech.js';
import { startVoiceServer, type RunningServer } from '../helpers/voice-test-server.js';
import { waitFor } from '../helpers/wait-for.js';
import { spawnPostCallWorker, type WorkerProcess } from '../helpers/worker-process.js';
import { databaseUrlForSchema, PG_URL } from '../helpers/test-services.js';

const schema = `fault_redis_restart_${randomBytes(5).toString('hex')}`;
const prefix = `pcfault_${randomBytes(5).toString('hex')}`;
const live = `${prefix}:live:`;
/** How long nothing listens on Redis's port. */
const DOWN_MS = 2500;
/** When the caller hangs up (ms into the call). */
const HANG_UP_MS = 28_000;

let redisServer: RedisServerProcess;
let db: Db;
let server: RunningServer;
let worker: WorkerProcess | undefined;
/** The test's own view of Redis (reconnects across the restart). */
let probe: Redis;
let inspect: Queue | undefined;

beforeAll(async () => {
  redisServer = await startRedisServer();
  db = await openDatabase({ url: PG_URL, schema });
  probe = new Redis(redisServer.url, { retryStrategy: () => 100 });
  probe.on('error', () => {});
  server = await startVoiceServer(
    { AGENT_SCRIPT: 'test/fixtures/agents', REDIS_URL: redisServer.url, POST_CALL_QUEUE_PREFIX: prefix },
    {},
    { store: new CallStore(db) },
  );
  const url = databaseUrlForSchema(schema);
  worker = spawnPostCallWorker({ REDIS_URL: redisServer.url, POST_CALL_QUEUE_PREFIX: prefix, DATABASE_URL: url });
  await worker.waitUntilReady(60_000);
}, 120_000);

afterAll(async () => {
  await server?.close();
  await worker?.kill('SIGKILL');
  await inspect?.close();
  probe?.disconnect();
  // Its keys go with it: the private Redis keeps nothing.
  await redisServer?.close();
  await db?.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await db?.close();
}, 60_000);

async function mirrored(callSid: string): Promise<MirroredCall | undefined> {
  const raw = await probe.get(`${live}call:${callSid}`);
  return raw === null ? undefined : parseMirroredCall(raw);
}

/** Milliseconds of agent audio in the media messages that arrived within [fromMs, toMs] of the call. */
function agentAudioMs(messages: readonly ReceivedMessage[], fromMs: number, toMs: number): number {
  let bytes = 0;
  for (const m of messages) {
    if (m.event !== 'media' || m.atMs < fromMs || m.atMs > toMs) continue;
    bytes += Buffer.from((m.data as { media: { payload: string } }).media.payload, 'base64').length;
  }
  return bytes / 8; // µ-law at 8 kHz: 8 bytes a millisecond
}

describe('fault: Redis restarted mid-call', () => {
  it('the call goes on unharmed, the mirror catches up, and the job (held in memory over a second outage at hang-up) is filed and processed once: one row, one result', async () => {
    const first = await phoneSpeech(RECORDINGS.illDisposed);
    const second = await phoneSpeech(RECORDINGS.amiable);
    const mirror = server.postCallSide!.mirror;

    // Redis dies (no goodbye to its clients) the moment the caller's first turn is decided, so the
    // reply is produced, starts playing and is noted for the mirror while nothing listens; it
    // comes back empty on the same port once DOWN_MS passed and the reply's first frame went out.
    const outage: { downAtMs?: number; upAtMs?: number; pendingAtRestart?: number; connectedWhileDown?: boolean } = {};
    let outageDone: Promise<void> | undefined;
    const restartRedis = async (s: CallSession): Promise<void> => {
      const downAt = performance.now();
      outage.downAtMs = callMs();
      await redisServer.stop('SIGKILL');
      await waitFor(
        'the first reply to start while Redis is down',
        () => performance.now() - downAt >= DOWN_MS && s.turns[0]?.firstFrameSentAt !== undefined,
        15_000,
        20,
      );
      outage.pendingAtRestart = mirror.stats.pending;
      outage.connectedWhileDown = mirror.stats.connected;
      expect(s.isEnded).toBe(false);
      await redisServer.start();
      outage.upAtMs = callMs();
    };

    let session: CallSession | undefined;
    const off = server.sessions.onStarted((s) => {
      session = s;
      s.onEvent((e) => {
        if (e.type !== 'turn_decided' || outageDone !== undefined) return;
        outageDone = restartRedis(s);
        outageDone.catch(() => {}); // awaited below
      });
    });
    // The call's own clock (ms since its stream started), read from the messages the caller gets.
    let callT0: number | undefined;
    const callMs = (): number => performance.now() - (callT0 ?? performance.now());
    const call = placeTestCall(server, {
      from: '+15557654321',
      // The default line: its fallback reply is long (~10 s), so the whole outage falls inside it.
      audio: timeline(30_000, [[2000, first], [19_000, second]]),
      hangUpAfterMs: HANG_UP_MS,
      maxDurationMs: 40_000,
      onMessage: (m) => {
        callT0 ??= performance.now() - m.atMs;
      },
    });
    call.catch(() => {}); // awaited below; a failure must not go unhandled meanwhile

    const callSid = await waitFor('the call to start', () => session?.callId, 20_000, 20);
    off();
    // Mirrored from its start, before the outage.
    await waitFor('the call to be mirrored', async () => (await mirrored(callSid)) !== undefined, 10_000, 20);
    await waitFor('the outage to begin', () => outageDone !== undefined, 30_000, 20);
    await outageDone;
    const downAtMs = outage.downAtMs!;
    const upAtMs = outage.upAtMs!;
    // While Redis was down the mirror was disconnected and held what changed (the turn decided,
    // the reply's first frame) in memory …
    expect(outage.connectedWhileDown).toBe(false);
    expect(outage.pendingAtRestart).toBeGreaterThanOrEqual(1);

    // … and catches up while the call is live: the call's record, with the turn taken while Redis
    // was down, and its owner's heartbeat are in the new Redis, written by this server.
    const rec = await waitFor(
      'the mirror to write the call again into the new Redis',
      async () => {
        const r = await mirrored(callSid).catch(() => undefined);
        return r !== undefined && r.turns.length >= 2 ? r : undefined;
      },
      20_000,
      50,
    );
    const caughtUpAtMs = callMs();
    expect(session!.isEnded).toBe(false);
    expect(rec.owner).toBe(mirror.instanceId);
    expect(rec.turns[0]).toMatchObject({ idx: 0, speaker: 'caller' });
    expect(rec.turns[0]!.text).toBe(session!.turns[0]!.userText);
    expect(await probe.exists(`${live}instance:${mirror.instanceId}`)).toBe(1);
    expect(await probe.zscore(`${live}live-calls`, callSid)).not.toBeNull();

    // Redis goes down a second time just before the caller hangs up (at HANG_UP_MS): the call's
    // job waits in the server's memory, and is filed once the queue reconnects to the new Redis.
    await waitFor('the call to near its hang-up', () => callMs() >= HANG_UP_MS - 2500, 30_000, 20);
    expect(session!.isEnded).toBe(false);
    const secondDownAt = performance.now();
    await redisServer.stop('SIGKILL');
    const { result, session: ended } = await call;
    expect(ended.callId).toBe(callSid);
    expect(result.violations).toEqual([]);
    expect(result.closedBy).toBe('caller');
    expect(ended.endReason).toBe('stop');
    await waitFor('the job to wait in memory', () => server.postCallSide!.postCall.pending === 1, 5000, 20);
    // Filed only once Redis has it: until then the mirror keeps the call.
    expect(mirror.has(callSid)).toBe(true);
    await new Promise((r) => setTimeout(r, Math.max(0, secondDownAt + DOWN_MS - performance.now())));
    expect(server.postCallSide!.postCall.pending).toBe(1);
    await redisServer.start();
    const secondUpAt = performance.now();
    await waitFor('the queue to deliver the job', () => server.postCallSide!.postCall.pending === 0, 20_000, 20);
    const deliveredAfterMs = performance.now() - secondUpAt;

    // Unharmed: the first reply was produced and played while Redis was down, its audio flowing …
    const replies = result.turns.filter((t) => t.kind === 'reply');
    const firstReply = replies[0]!;
    expect(firstReply.agentFirstFrameMs).not.toBeNull();
    expect(firstReply.agentFirstFrameMs!).toBeLessThan(upAtMs);
    const outageAudioMs = agentAudioMs(result.messages, firstReply.agentFirstFrameMs!, upAtMs);
    expect(outageAudioMs).toBeGreaterThan(0.25 * (upAtMs - firstReply.agentFirstFrameMs!));
    // … and the caller got a reply to what it said after the restart.
    const after = replies.filter((t) => t.callerStartMs !== null && t.callerStartMs > upAtMs);
    expect(after.length).toBeGreaterThanOrEqual(1);
    expect(after[0]!.agentFirstFrameMs).not.toBeNull();
    expect(agentAudioMs(result.messages, after[0]!.agentFirstFrameMs!, result.durationMs)).toBeGreaterThan(200);
    // Both caller turns were recognized and answered on the server.
    expect(ended.turns).toHaveLength(2);
    for (const t of ended.turns) {
      expect(t.userText.length).toBeGreaterThan(0);
      expect(t.firstFrameSentAt).toBeDefined();
    }

    // After the hang-up: one job in the new Redis, filed by the session (not by the sweeper), processed once.
    inspect = new Queue(POST_CALL_QUEUE, { connection: { url: redisServer.url }, prefix });
    await waitFor('the job to complete', async () => (await inspect!.getJob(callSid))?.finishedOn !== undefined, 30_000, 100);
    const job = await expectOnlyJobCompletedOnce(inspect, callSid);
    expect(job.data.endReason).toBe('stop');
    expect(job.data.turns.map((t) => [t.idx, t.speaker])).toEqual([
      [0, 'caller'],
      [0, 'agent'],
      [1, 'caller'],
      [1, 'agent'],
    ]);
    expect(worker!.events('post_call_processed').map((l) => l.callSid)).toEqual([callSid]);
    expect(worker!.events('post_call_attempt_failed')).toEqual([]);
    expect(worker!.events('post_call_failed')).toEqual([]);
    expect(server.postCallSide!.sweeper.stats.finished).toBe(0);
    expect(server.postCallSide!.postCall.pending).toBe(0);

    // The mirror dropped the call once its job was filed.
    await waitFor('the mirror to drop the call', async () => (await probe.exists(`${live}call:${callSid}`)) === 0, 5000, 50);
    expect(await probe.zrange(`${live}live-calls`, '0', '-1')).toEqual([]);
    expect(mirror.has(callSid)).toBe(false);

    // PostgreSQL: one call row (written at arrival, finished by the worker), its turns once, one result.
    const { rows: callRows } = await db.query<{ call_sid: string; status: string; end_reason: string; post_call_error: string | null }>(
      'SELECT call_sid, status, end_reason, post_call_error FROM calls',
    );
    expect(callRows).toEqual([{ call_sid: callSid, status: 'processed', end_reason: 'stop', post_call_error: null }]);
    const { rows: turnRows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM turns WHERE call_sid = $1', [callSid]);
    expect(turnRows[0]!.n).toBe(4);
    const { rows: results } = await db.query<{ call_sid: string }>('SELECT call_sid FROM post_call_results');
    expect(results).toEqual([{ call_sid: callSid }]);

    // The worker rode through the restart in the same process.
    expect(worker!.running).toBe(true);
    console.info(
      `[fault:redis-restart] Redis down ${(upAtMs - downAtMs).toFixed(0)} ms from ${downAtMs.toFixed(0)} ms into the call; ` +
        `first reply's first frame at ${firstReply.agentFirstFrameMs!.toFixed(0)} ms, ${outageAudioMs.toFixed(0)} ms of its audio arrived before the restart; ` +
        `${outage.pendingAtRestart} mirror note(s) pending at the restart; mirror caught up ${(caughtUpAtMs - upAtMs).toFixed(0)} ms after the restart; ` +
        `job held over the hang-up outage delivered ${deliveredAfterMs.toFixed(0)} ms after the second restart; ` +
        `worker redis down/up events ${worker!.events('post_call_worker_redis_down').length}/${worker!.events('post_call_worker_redis_up').length}`,
    );
  }, 180_000);
});
