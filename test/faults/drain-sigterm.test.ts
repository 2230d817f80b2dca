// Fault suite: SIGTERM on the real server process (what `npm start` runs) with 5 live calls.
// Seed 000: deploys must not drop calls. At once `/ready` turns 503 and a new call is declined
// politely; the 5 live calls go on — 3 end by themselves, 2 outlive DRAIN_TIMEOUT and hear the
// goodbye before the server hangs up — every one gets its post-call job, the process exits 0, and
// each call ends with exactly one row and one result. Real Redis, real PostgreSQL.
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostCallProcessor } from '../../src/post-call/processor.js';
import { startPostCallWorker, type PostCallWorker } from '../../src/post-call/worker.js';
import { placeCall, voiceWebhookParams, type CallResult } from '../../src/softphone/twilio-caller.js';
import { CallStore, openDatabase, type Db } from '../../src/store/index.js';
import { postSignedForm, TEST_ACCOUNT_SID } from '../helpers/place-test-call.js';
import { deleteKeysWithPrefix } from '../helpers/redis-keys.js';
import { spawnVoiceServer, type ServerProcess } from '../helpers/server-process.js';
import { phoneSpeech, RECORDINGS, timeline } from '../helpers/speech.js';
import { waitFor } from '../helpers/wait-for.js';
import { databaseUrlForSchema, PG_URL, REDIS_URL } from '../helpers/test-services.js';

const DRAIN_TIMEOUT_S = 10;

const prefix = `vas-drain-${randomBytes(4).toString('hex')}`;
const schema = `drain_test_${randomBytes(6).toString('hex')}`;
let db: Db;
let store: CallStore;
let worker: PostCallWorker;
let server: ServerProcess | undefined;

beforeAll(async () => {
  db = await openDatabase({ url: PG_URL, schema });
  store = new CallStore(db);
  worker = startPostCallWorker({ processor: new PostCallProcessor({ store }), logger: pino({ level: 'silent' }), redisUrl: REDIS_URL, prefix });
  await worker.waitUntilReady();
});

afterAll(async () => {
  await server?.kill('SIGKILL');
  await worker?.close();
  const redis = new Redis(REDIS_URL);
  await deleteKeysWithPrefix(redis, `${prefix}:`);
  await redis.quit();
  await db?.query(`DROP SCHEMA "${schema}" CASCADE`);
  await db?.close();
});

describe('SIGTERM with 5 live calls', () => {
  it('stops taking calls at once, lets the live ones finish (goodbye after DRAIN_TIMEOUT), files every job and exits 0', { timeout: 120_000 }, async () => {
    const url = databaseUrlForSchema(schema);
    server = await spawnVoiceServer({
      AGENT_SCRIPT: 'test/fixtures/agents',
      DATABASE_URL: url,
      REDIS_URL,
      POST_CALL_QUEUE_PREFIX: prefix,
      POST_CALL_WORKER: 'off',
      DRAIN_TIMEOUT: String(DRAIN_TIMEOUT_S),
    });
    const running = server;
    const speech = await phoneSpeech(RECORDINGS.illDisposed);
    // Three callers who finish on their own a few seconds into the drain, two who would stay on.
    const calls: Array<Promise<CallResult>> = [];
    for (let i = 0; i < 5; i++) {
      const staysOn = i >= 3;
      calls.push(
        placeCall({
          url: running.url,
          authToken: running.authToken,
          from: `+1555765432${i}`,
          to: '+15550001111',
          audio: timeline(4000, [[1500, speech]]),
          ...(staysOn ? { idleHangUpMs: 600_000, maxDurationMs: 600_000 } : { hangUpAfterMs: 6000, idleHangUpMs: 600_000 }),
        }),
      );
    }
    await waitFor('5 live calls', async () => ((await (await fetch(`${running.url}/health`)).json()) as { calls: number }).calls === 5, 20_000, 100);
    const sigtermAt = Date.now();
    running.child.kill('SIGTERM');
    // npm, tsx and a terminal's Ctrl-C signal the whole process group: the copies of one stop
    // request that arrive together must not turn into a forced exit.
    running.child.kill('SIGTERM');

    // Not ready any more, at once; a new call is declined with a spoken apology and a hang-up.
    await waitFor('/ready to turn 503', async () => (await fetch(`${running.url}/ready`)).status === 503, 2000, 20);
    expect(Date.now() - sigtermAt).toBeLessThan(2000);
    const declined = await postSignedForm(running, '/twilio/voice', voiceWebhookParams({ accountSid: TEST_ACCOUNT_SID, callSid: `CA${randomBytes(16).toString('hex')}`, from: '+15550000000', to: '+15550001111' }));
    expect(declined.status).toBe(200);
    const declinedTwiml = await declined.text();
    expect(declinedTwiml).toMatch(/<Say>[^<]+<\/Say><Hangup\/>/);
    expect(declinedTwiml).not.toContain('<Connect>');
    // Live calls are still live.
    expect(((await (await fetch(`${running.url}/health`)).json()) as { calls: number }).calls).toBe(5);

    const results = await Promise.all(calls);
    const exit = await running.exited;
    expect(exit).toEqual({ code: 0, signal: null });

    // The three that hung up themselves did; the two that stayed on were hung up by the server
    // after the drain timeout, having been sent the goodbye line first.
    expect(results.slice(0, 3).map((r) => r.closedBy)).toEqual(['caller', 'caller', 'caller']);
    expect(results.slice(3).map((r) => r.closedBy)).toEqual(['server', 'server']);
    for (const result of results.slice(3)) {
      expect(result.durationMs).toBeGreaterThan(DRAIN_TIMEOUT_S * 1000);
      // Twilio then asks the after-stream URL what to do: the draining server still answers it (a
      // refused connection would make Twilio play its "application error" message to the caller).
      expect(result.afterStream).toMatchObject({ status: 200, next: 'hangup' });
      expect(result.violations).toEqual([]);
      // The goodbye: the last unbroken run of audio (after the reply ended, or after the `clear`
      // that cut it), played out just before the hang-up and only once the drain timed out.
      const goodbye = lastRunOfMedia(result);
      const reply = result.messages.filter((m) => m.event === 'media' && m.atMs < goodbye[0]!.atMs);
      expect(reply.length).toBeGreaterThan(0);
      expect(goodbye.length).toBeGreaterThan(50); // "We are closing this line now, goodbye." ≥ 1 s at 20 ms per message
      // Each stream started before the SIGTERM, so the drain timed out at least DRAIN_TIMEOUT into it.
      expect(goodbye[0]!.atMs).toBeGreaterThan(DRAIN_TIMEOUT_S * 1000);
      expect(result.durationMs - goodbye.at(-1)!.atMs).toBeLessThan(1500);
    }
    expect(running.events('drain_timeout')[0]).toMatchObject({ hungUp: 2 });
    expect(running.events('drain_done')).toHaveLength(1);

    // Every call: one row, ended for the right reason, and one post-call result.
    for (const [i, result] of results.entries()) {
      await waitFor(`the result of call ${i}`, async () => (await store.getCall(result.callSid))?.result ?? undefined, 30_000, 100);
      const detail = await store.getCall(result.callSid);
      expect(detail?.call).toMatchObject({ status: 'processed', endReason: i < 3 ? 'stop' : 'drain_timeout', from: `+1555765432${i}` });
      expect(detail?.turns.length).toBeGreaterThan(0);
    }
    const sids = results.map((r) => r.callSid);
    const { rows } = await db.query<{ calls: string; results: string }>(
      `SELECT (SELECT count(*) FROM calls WHERE call_sid = ANY($1))::text AS calls, (SELECT count(*) FROM post_call_results WHERE call_sid = ANY($1))::text AS results`,
      [sids],
    );
    expect(rows[0]).toEqual({ calls: '5', results: '5' });
  });
});

/** The media messages after the last `clear` or the last gap of more than 300 ms, whichever is later. */
function lastRunOfMedia(result: CallResult): CallResult['messages'] {
  const media = result.messages.filter((m) => m.event === 'media');
  const lastClear = result.clears.at(-1) ?? -Infinity;
  let start = media.length - 1;
  while (start > 0 && media[start - 1]!.atMs > lastClear && media[start]!.atMs - media[start - 1]!.atMs < 300) start--;
  return media.slice(start);
}
