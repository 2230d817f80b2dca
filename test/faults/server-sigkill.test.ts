/**
 * Fault: the voice server is SIGKILLed in the middle of a call; another server instance's orphan
 * sweeper finishes the call.
 *
 * Two real server processes (`src/main.ts`, as `npm start` runs it) share the real Redis (a unique
 * queue prefix) and PostgreSQL (a fresh schema, chosen through DATABASE_URL's search_path), with
 * POST_CALL_WORKER=off and the real post-call worker process beside them. A Twilio-exact caller
 * talks to server A with real speech; once A has mirrored the second turn in Redis, A is killed
 * (no drain, no goodbye, no job filed: its socket to the caller just closes). Twilio's `completed`
 * callback then reaches server B while the call is still mirrored (B must leave it to the
 * sweeper), and again after the sweeper filed it (B must not file a second one).
 *
 * Within the heartbeat TTL plus one sweep interval (6 s + 5 s, CallMirror's and OrphanSweeper's
 * defaults, which startPostCallSide does not expose to the environment), B's sweeper must file the
 * call's job from what the mirror last held, end reason `server_lost`; the worker processes it:
 * exactly one call row, the mirrored turns once, one post-call result, one BullMQ job (id = call
 * SID) completed, none failed, nothing left in the mirror.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import twilio from 'twilio';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseMirroredCall, type MirroredCall } from '../../src/live/types.js';
import { POST_CALL_QUEUE } from '../../src/post-call/job.js';
import { placeCall, type CallResult } from '../../src/softphone/twilio-caller.js';
import { openDatabase, type Db } from '../../src/store/index.js';
import { expectOnlyJobCompletedOnce } from '../helpers/post-call-harness.js';
import { deleteKeysWithPrefix } from '../helpers/redis-keys.js';
import { spawnVoiceServer, type ServerProcess } from '../helpers/server-process.js';
import { phoneSpeech, RECORDINGS, timeline } from '../helpers/speech.js';
import { waitFor } from '../helpers/wait-for.js';
import { spawnPostCallWorker, type WorkerProcess } from '../helpers/worker-process.js';
import { databaseUrlForSchema, PG_URL, REDIS_URL } from '../helpers/test-services.js';

const schema = `fault_srv_kill_${randomBytes(5).toString('hex')}`;
const prefix = `pcfault_${randomBytes(5).toString('hex')}`;
const live = `${prefix}:live:`;

/** CallMirror's and OrphanSweeper's defaults as startPostCallSide uses them (not configurable by env). */
const HEARTBEAT_TTL_MS = 6000;
const SWEEP_INTERVAL_MS = 5000;
/** Line two of test/fixtures/agents: a short greeting and a short fallback reply. */
const TO = '+15550001111';
const REPLY = 'This is the second line. Please say that again.';

let db: Db;
let inspect: Queue;
let redis: Redis;
const servers: ServerProcess[] = [];
let worker: WorkerProcess | undefined;
let abortCall: AbortController | undefined;

function env(): Record<string, string> {
  const url = databaseUrlForSchema(schema);
  return {
    AGENT_SCRIPT: 'test/fixtures/agents',
    DATABASE_URL: url,
    REDIS_URL,
    POST_CALL_QUEUE_PREFIX: prefix,
    POST_CALL_WORKER: 'off',
  };
}

beforeAll(async () => {
  // Creates the schema and migrates it; the servers and the worker find it through their search_path.
  db = await openDatabase({ url: PG_URL, schema });
  inspect = new Queue(POST_CALL_QUEUE, { connection: { url: REDIS_URL }, prefix });
  redis = new Redis(REDIS_URL);
}, 60_000);

afterAll(async () => {
  abortCall?.abort();
  for (const s of servers) await s.kill('SIGKILL');
  await worker?.kill('SIGKILL');
  await inspect?.obliterate({ force: true }).catch(() => {});
  await inspect?.close();
  if (redis !== undefined) {
    await deleteKeysWithPrefix(redis, `${prefix}:`);
    redis.disconnect();
  }
  await db?.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await db?.close();
}, 60_000);

async function startServer(): Promise<ServerProcess> {
  const server = await spawnVoiceServer(env(), 90_000);
  servers.push(server);
  return server;
}

/** Twilio's status callback for `callSid`, signed as Twilio signs it, to `server`. */
function postStatus(server: ServerProcess, callSid: string, status: string): Promise<Response> {
  const params = { CallSid: callSid, AccountSid: 'AC0123456789abcdef0123456789abcdef', CallStatus: status, CallDuration: '20' };
  return fetch(`${server.url}/twilio/status`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      'x-twilio-signature': twilio.getExpectedTwilioSignature(server.authToken, `${server.url}/twilio/status`, params),
    },
    body: new URLSearchParams(params).toString(),
  });
}

async function mirrored(callSid: string): Promise<MirroredCall | undefined> {
  const raw = await redis.get(`${live}call:${callSid}`);
  return raw === null ? undefined : parseMirroredCall(raw);
}

describe('fault: voice server SIGKILLed mid-call', () => {
  it('another instance\'s sweeper finishes the call as server_lost with the mirrored turns: one row, one result, one job', async () => {
    // B first: the instance that survives (its sweeper, and the status callbacks, go to it).
    const serverB = await startServer();
    const serverA = await startServer();
    worker = spawnPostCallWorker(env());
    await worker.waitUntilReady(60_000);

    // Two caller turns: the second one's snapshot carries the first reply's words in full.
    const first = await phoneSpeech(RECORDINGS.illDisposed);
    const second = await phoneSpeech(RECORDINGS.amiable);
    abortCall = new AbortController();
    let result: CallResult | undefined;
    const call = placeCall({
      url: serverA.url,
      authToken: serverA.authToken,
      from: '+15557654321',
      to: TO,
      // Long enough that only the SIGKILL ends it: the caller never hangs up by itself.
      audio: timeline(45_000, [[2000, first], [11_000, second]]),
      hangUpAfterMs: 50_000,
      maxDurationMs: 55_000,
      signal: abortCall.signal,
    }).then((r) => (result = r));

    const callSid = await waitFor(
      'the call to be mirrored by server A',
      async () => (await redis.zrange(`${live}live-calls`, '0', '-1'))[0],
      20_000,
      50,
    );
    // A mirrored the second turn (its reply started): caller, agent, caller, agent.
    await waitFor(
      'server A to mirror the second turn',
      async () => {
        if (!serverA.running) throw new Error(`server A exited:\n${serverA.output().slice(-4000)}`);
        const rec = await mirrored(callSid);
        return rec !== undefined && rec.turns.length >= 4;
      },
      40_000,
      50,
    );

    const killedAt = Date.now();
    const killedAtPerf = performance.now();
    expect(await serverA.kill('SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });
    // What the mirror holds now is what the sweeper must file (no one writes it any more).
    const last = await mirrored(callSid);
    expect(last).toBeDefined();
    expect(last!.owner).toContain(`-${serverA.pid}-`);
    expect(await redis.exists(`${live}instance:${last!.owner}`)).toBe(1); // the heartbeat has not expired yet

    // The caller's media socket closes with the process.
    await waitFor('the caller to see the socket close', () => result, 10_000, 20);
    expect(result!.callSid).toBe(callSid);
    expect(result!.closedBy).toBe('server');

    // Twilio's `completed` reaches the surviving instance while the call is still mirrored:
    // B must leave it to its owner or the sweeper, not file a job with no turns.
    expect((await postStatus(serverB, callSid, 'completed')).status).toBe(204);
    await serverB.waitForEvent('call_status', 10_000);
    await new Promise((r) => setTimeout(r, 500));
    expect(serverB.events('call_ended_without_stream')).toEqual([]);

    // The sweeper files the job within heartbeat TTL + one sweep interval (plus room for a busy box).
    const job = await waitFor(
      'the sweeper to file the orphaned call\'s job',
      async () => (await inspect.getJob(callSid)) ?? undefined,
      HEARTBEAT_TTL_MS + SWEEP_INTERVAL_MS + 15_000,
      100,
    );
    const filedAfterMs = job.timestamp - killedAt;
    expect(filedAfterMs).toBeLessThan(HEARTBEAT_TTL_MS + SWEEP_INTERVAL_MS + 5000);
    await waitFor('the job to complete', async () => (await inspect.getJob(callSid))?.finishedOn !== undefined, 30_000, 100);
    const doneAfterMs = performance.now() - killedAtPerf;

    // The late callback (after the sweeper) changes nothing either: still the one job.
    expect((await postStatus(serverB, callSid, 'completed')).status).toBe(204);
    // (No mirror record now, so B files the call's job itself: a no-op, the job id exists.)
    await waitFor('B to handle the late callback', () => serverB.events('call_ended_without_stream').length >= 1, 10_000, 20);
    await new Promise((r) => setTimeout(r, 1000));
    expect(serverB.events('call_ended_without_stream').map((l) => l.callSid)).toEqual([callSid]);

    // B's sweeper did it; B filed nothing for the callback that came while the call was mirrored.
    const sweptBy = serverB.lines().filter((l) => l.msg === 'orphan sweeper: finished orphaned call');
    expect(sweptBy.map((l) => l.callSid)).toEqual([callSid]);
    expect(sweptBy[0]!.owner).toBe(last!.owner);
    expect(serverB.events('post_call_not_filed')).toEqual([]);

    // BullMQ: one job, id = call SID, completed once, nothing failed, nothing else.
    const stored = await expectOnlyJobCompletedOnce(inspect, callSid);
    expect(stored.data.endReason).toBe('server_lost');
    expect(stored.data).toMatchObject({ callSid, provider: 'twilio', direction: 'inbound', from: '+15557654321', to: TO, number: TO, startedAt: last!.startedAt });
    expect(stored.data.turns).toEqual(last!.turns);

    // What the mirror held: both caller turns recognized, the first reply in full.
    const turns = last!.turns;
    expect(turns.map((t) => [t.idx, t.speaker])).toEqual([
      [0, 'caller'],
      [0, 'agent'],
      [1, 'caller'],
      [1, 'agent'],
    ]);
    expect(turns[0]!.text.length).toBeGreaterThan(0);
    expect(turns[1]!.text).toBe(REPLY);
    expect(turns[2]!.text.length).toBeGreaterThan(0);

    // The worker processed it once.
    expect(worker.events('post_call_processed').map((l) => l.callSid)).toEqual([callSid]);
    expect(worker.events('post_call_attempt_failed')).toEqual([]);
    expect(worker.events('post_call_failed')).toEqual([]);

    // PostgreSQL: one call row (written by A at arrival, finished by the worker), the mirrored
    // turns once, one result; nothing else in the schema.
    const { rows: callRows } = await db.query<{ call_sid: string; status: string; end_reason: string; ended_at: Date | null; post_call_error: string | null }>(
      'SELECT call_sid, status, end_reason, ended_at, post_call_error FROM calls',
    );
    expect(callRows).toHaveLength(1);
    expect(callRows[0]).toMatchObject({ call_sid: callSid, status: 'processed', end_reason: 'server_lost', post_call_error: null });
    expect(callRows[0]!.ended_at).not.toBeNull();
    const { rows: turnRows } = await db.query<{ call_sid: string; idx: number; speaker: string }>('SELECT call_sid, idx, speaker FROM turns ORDER BY idx, speaker DESC');
    expect(turnRows).toEqual(turns.map((t) => ({ call_sid: callSid, idx: t.idx, speaker: t.speaker })));
    const { rows: results } = await db.query<{ call_sid: string; summary: string }>('SELECT call_sid, summary FROM post_call_results');
    expect(results).toHaveLength(1);
    expect(results[0]!.call_sid).toBe(callSid);
    expect(results[0]!.summary.length).toBeGreaterThan(0);

    // Redis: the mirror let go of the call; only B's own heartbeat remains of the live keys.
    expect(await redis.exists(`${live}call:${callSid}`)).toBe(0);
    expect(await redis.zrange(`${live}live-calls`, '0', '-1')).toEqual([]);
    expect(await redis.exists(`${live}instance:${last!.owner}`)).toBe(0);

    expect(serverB.running).toBe(true);
    expect(worker.running).toBe(true);
    console.info(`[fault:server-sigkill] job filed ${filedAfterMs} ms and processed ${doneAfterMs.toFixed(0)} ms after the SIGKILL`);
  }, 180_000);
});
