// Fault suite: a call's endings — the stream's `stop`, Twilio's `completed` status callback and the
// recording callbacks — arrive in every order, each of them twice, and sometimes long after the
// call's result was stored. Every call must end with exactly one call row, one post-call result,
// one BullMQ job (id = call SID) and its recording's metadata joined to it. Real Redis, real
// PostgreSQL, the real server and the real post-call worker code.
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { PostCallProcessor } from '../../src/post-call/processor.js';
import { startPostCallWorker, type PostCallWorker } from '../../src/post-call/worker.js';
import { parseStreamTwiml, twilioStartMessage, voiceWebhookParams } from '../../src/softphone/twilio-caller.js';
import { CallStore, openDatabase, type Db } from '../../src/store/index.js';
import { postRecordingCallback, postSignedForm, postStatusCallback, TEST_ACCOUNT_SID } from '../helpers/place-test-call.js';
import { deleteKeysWithPrefix } from '../helpers/redis-keys.js';
import { startVoiceServer, type RunningServer } from '../helpers/voice-test-server.js';
import { waitFor } from '../helpers/wait-for.js';
import { PG_URL, REDIS_URL } from '../helpers/test-services.js';

const RECORDED_NUMBER = '+15550001111';
const CALLER = '+15557654321';
const ANALYST_KEY = `analyst-${randomBytes(12).toString('hex')}`;

const prefix = `vas-cb-${randomBytes(4).toString('hex')}`;
const schema = `cb_test_${randomBytes(6).toString('hex')}`;
let db: Db;
let store: CallStore;
let server: RunningServer;
let worker: PostCallWorker;

const hex = (n: number): string => randomBytes(n).toString('hex');
const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  db = await openDatabase({ url: PG_URL, schema });
  store = new CallStore(db);
  await store.upsertNumber({ number: RECORDED_NUMBER, name: 'Recorded line', recordingEnabled: true });
  server = await startVoiceServer(
    { AGENT_SCRIPT: 'test/fixtures/agents', REDIS_URL, POST_CALL_QUEUE_PREFIX: prefix, API_KEYS: `${ANALYST_KEY}:analyst` },
    {},
    { store },
  );
  worker = startPostCallWorker({ processor: new PostCallProcessor({ store }), logger: pino({ level: 'silent' }), redisUrl: REDIS_URL, prefix });
  await worker.waitUntilReady();
});

afterAll(async () => {
  await worker?.close();
  await server?.close();
  const redis = new Redis(REDIS_URL);
  await deleteKeysWithPrefix(redis, `${prefix}:`);
  await redis.quit();
  await db?.query(`DROP SCHEMA "${schema}" CASCADE`);
  await db?.close();
});

/** A call as Twilio places it: the signed voice webhook, then (optionally) its media stream up to `start`. */
async function dial(): Promise<{ callSid: string; twiml: string; socket?: WebSocket; streamSid?: string }> {
  const callSid = `CA${hex(16)}`;
  const response = await postSignedForm(server, '/twilio/voice', voiceWebhookParams({ accountSid: TEST_ACCOUNT_SID, callSid, from: CALLER, to: RECORDED_NUMBER }));
  expect(response.status).toBe(200);
  return { callSid, twiml: await response.text() };
}

async function openStream(callSid: string, twiml: string): Promise<{ socket: WebSocket; streamSid: string }> {
  const stream = parseStreamTwiml(twiml);
  const socket = new WebSocket(stream.url);
  await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
  const streamSid = `MZ${hex(16)}`;
  socket.send(JSON.stringify({ event: 'connected', protocol: 'Call', version: '1.0.0' }));
  socket.send(JSON.stringify(twilioStartMessage({ sequenceNumber: '1', accountSid: TEST_ACCOUNT_SID, callSid, streamSid, customParameters: stream.parameters })));
  await waitFor(`the session of ${callSid}`, () => server.sessions.get(callSid) !== undefined);
  return { socket, streamSid };
}

type Ending = 'stop' | 'completed' | 'recording';

/** Delivers one ending twice (Twilio retries and duplicates happen); a recording reports in-progress, then completed. */
async function deliver(ending: Ending, call: { callSid: string; recordingSid: string; socket: WebSocket; streamSid: string }): Promise<void> {
  switch (ending) {
    case 'stop':
      for (let i = 0; i < 2; i++) {
        if (call.socket.readyState === WebSocket.OPEN) {
          call.socket.send(JSON.stringify({ event: 'stop', sequenceNumber: String(10 + i), streamSid: call.streamSid, stop: { accountSid: TEST_ACCOUNT_SID, callSid: call.callSid } }));
        }
      }
      call.socket.close();
      return;
    case 'completed':
      for (let i = 0; i < 2; i++) expect((await postStatusCallback(server, call.callSid, 'completed', '7')).status).toBe(204);
      return;
    case 'recording':
      expect((await postRecordingCallback(server, { callSid: call.callSid, recordingSid: call.recordingSid, status: 'in-progress' })).status).toBe(204);
      for (let i = 0; i < 2; i++) {
        expect((await postRecordingCallback(server, { callSid: call.callSid, recordingSid: call.recordingSid, status: 'completed', durationSeconds: 12 })).status).toBe(204);
      }
      // A late, duplicated in-progress must not undo the completed one.
      expect((await postRecordingCallback(server, { callSid: call.callSid, recordingSid: call.recordingSid, status: 'in-progress' })).status).toBe(204);
  }
}

function permutations<T>(items: readonly T[]): T[][] {
  if (items.length <= 1) return [[...items]];
  return items.flatMap((item, i) => permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]));
}

async function countRows(table: string, callSid: string): Promise<number> {
  const { rows } = await db.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${table} WHERE call_sid = $1`, [callSid]);
  return Number(rows[0]?.n ?? 0);
}

/** Exactly one of everything for the call, and its recording joined. */
async function expectExactlyOnce(callSid: string, recordingSid: string, endReason: string): Promise<void> {
  await waitFor(`the post-call result of ${callSid}`, async () => (await countRows('post_call_results', callSid)) > 0, 20_000, 50);
  expect(await countRows('calls', callSid)).toBe(1);
  expect(await countRows('post_call_results', callSid)).toBe(1);
  const detail = await store.getCall(callSid);
  expect(detail?.call).toMatchObject({ callSid, from: CALLER, to: RECORDED_NUMBER, number: RECORDED_NUMBER, endReason, status: 'processed' });
  expect(detail?.recordings).toEqual([expect.objectContaining({ recordingSid, status: 'completed', durationSeconds: 12, channels: 2 })]);
  const job = await server.postCallSide!.postCall.queue.getJob(callSid);
  expect(job?.id).toBe(callSid);
  expect(await job?.getState()).toBe('completed');
}

describe('stop, completed and the recording callback in every order, each duplicated', () => {
  const orders = permutations<Ending>(['stop', 'completed', 'recording']);
  const expected: string[] = [];

  it.each(orders.map((order) => [order.join(' → '), order] as const))('%s', async (_name, order) => {
    const { callSid, twiml } = await dial();
    // The number's profile asks for recording: Twilio is told to record, and where to report.
    expect(twiml).toMatch(/<Start><Recording [^>]*recordingStatusCallback="http:\/\/127\.0\.0\.1:\d+\/twilio\/recording"[^>]*channels="dual"/);
    const { socket, streamSid } = await openStream(callSid, twiml);
    const call = { callSid, recordingSid: `RE${hex(16)}`, socket, streamSid };
    for (const ending of order) {
      await deliver(ending, call);
      await pause(30);
    }
    // The call's end is the first ending of the call itself (a recording callback is not one).
    const first = order.find((e) => e !== 'recording');
    await expectExactlyOnce(callSid, call.recordingSid, first === 'stop' ? 'stop' : 'status_completed');
    expected.push(callSid);
  });

  it('a recording callback long after the result was stored still joins the call; repeated endings change nothing', async () => {
    const { callSid, twiml } = await dial();
    const { socket, streamSid } = await openStream(callSid, twiml);
    const call = { callSid, recordingSid: `RE${hex(16)}`, socket, streamSid };
    await deliver('stop', call);
    await waitFor('the result', async () => (await countRows('post_call_results', callSid)) > 0, 20_000, 50);
    const before = await store.getCall(callSid);
    await deliver('completed', call);
    await deliver('recording', call);
    await expectExactlyOnce(callSid, call.recordingSid, 'stop');
    const after = await store.getCall(callSid);
    expect(after?.result?.summary).toBe(before?.result?.summary);
    expected.push(callSid);
  });

  it('a call that ends before its stream opens (caller hung up on the webhook) still gets one row and one result', async () => {
    const { callSid } = await dial();
    const recordingSid = `RE${hex(16)}`;
    expect((await postStatusCallback(server, callSid, 'completed', '1')).status).toBe(204);
    expect((await postStatusCallback(server, callSid, 'completed', '1')).status).toBe(204);
    expect((await postRecordingCallback(server, { callSid, recordingSid, status: 'completed', durationSeconds: 12 })).status).toBe(204);
    await expectExactlyOnce(callSid, recordingSid, 'status_completed');
    expected.push(callSid);
  });

  it("serves the analysts what was stored: the call, its result and its recording's metadata", async () => {
    const callSid = expected[0]!;
    const unauthenticated = await fetch(`${server.url}/v1/calls/${callSid}`);
    expect(unauthenticated.status).toBe(401);
    const response = await fetch(`${server.url}/v1/calls/${callSid}`, { headers: { authorization: `Bearer ${ANALYST_KEY}` } });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { call: { callSid: string; endReason: string }; result: { summary: string } | null; recordings: Array<{ status: string; durationSeconds: number }> };
    expect(body.call).toMatchObject({ callSid, endReason: 'stop' });
    expect(body.result?.summary).toEqual(expect.any(String));
    expect(body.recordings).toEqual([expect.objectContaining({ status: 'completed', durationSeconds: 12 })]);
    const list = await fetch(`${server.url}/v1/calls?number=${encodeURIComponent(RECORDED_NUMBER)}&limit=100`, { headers: { authorization: `Bearer ${ANALYST_KEY}` } });
    const page = (await list.json()) as { calls: Array<{ callSid: string }> };
    expect(page.calls.map((c) => c.callSid).sort()).toEqual([...expected].sort());
    // An analyst may read calls, not reconfigure numbers.
    const put = await fetch(`${server.url}/v1/numbers/${encodeURIComponent(RECORDED_NUMBER)}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${ANALYST_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'x', recordingEnabled: false }),
    });
    expect(put.status).toBe(403);
    expect((await fetch(`${server.url}/docs/json`)).status).toBe(200);
  });

  it('files one job per call in all, and none failed', async () => {
    const counts = await server.postCallSide!.postCall.queue.getJobCounts('waiting', 'active', 'completed', 'failed', 'delayed');
    expect(counts).toEqual({ waiting: 0, active: 0, completed: expected.length, failed: 0, delayed: 0 });
    expect(expected).toHaveLength(orders.length + 2);
  });
});

describe('recording callback input', () => {
  it('refuses an unsigned or malformed callback and stores nothing', async () => {
    const callSid = `CA${hex(16)}`;
    const recordingSid = `RE${hex(16)}`;
    const unsigned = await fetch(`${server.url}/twilio/recording`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ CallSid: callSid, RecordingSid: recordingSid, RecordingStatus: 'completed' }).toString(),
    });
    expect(unsigned.status).toBe(403);
    const badSid = await postSignedForm(server, '/twilio/recording', { CallSid: callSid, RecordingSid: 'RE123', RecordingStatus: 'completed' });
    expect(badSid.status).toBe(400);
    expect(await badSid.text()).toMatch(/RecordingSid/);
    const badDuration = await postSignedForm(server, '/twilio/recording', { CallSid: callSid, RecordingSid: recordingSid, RecordingStatus: 'completed', RecordingDuration: 'ten' });
    expect(badDuration.status).toBe(400);
    const badStatus = await postSignedForm(server, '/twilio/recording', { CallSid: callSid, RecordingSid: recordingSid, RecordingStatus: 'paused' });
    expect(badStatus.status).toBe(400);
    expect((await store.getCall(callSid))?.recordings ?? []).toEqual([]);
    const { rows } = await db.query('SELECT 1 FROM recordings WHERE recording_sid = $1', [recordingSid]);
    expect(rows).toHaveLength(0);
  });

  it('does not ask Twilio to record a number whose profile does not enable it', async () => {
    const callSid = `CA${hex(16)}`;
    const response = await postSignedForm(server, '/twilio/voice', voiceWebhookParams({ accountSid: TEST_ACCOUNT_SID, callSid, from: CALLER, to: '+15550009999' }));
    const twiml = await response.text();
    expect(twiml).toContain('<Connect><Stream');
    expect(twiml).not.toContain('<Recording');
    // The call's row is written as it arrives, before any stream.
    await waitFor('the call row', async () => (await countRows('calls', callSid)) === 1);
    expect((await store.getCall(callSid))?.call).toMatchObject({ status: 'live', from: CALLER, to: '+15550009999' });
    expect((await postStatusCallback(server, callSid, 'completed', '1')).status).toBe(204);
    await waitFor('its result', async () => (await countRows('post_call_results', callSid)) === 1, 20_000, 50);
  });
});
