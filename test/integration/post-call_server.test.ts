// Guards the server's end of the post-call pipeline: a real call on the real server files exactly
// one BullMQ job (id = call SID) with its transcript and latencies, whatever else arrives after it,
// and the live mirror of the call is gone once the job is filed.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postCallJobId } from '../../src/post-call/job.js';
import { deleteKeysWithPrefix } from '../helpers/redis-keys.js';
import { placeTestCall, postStatusCallback } from '../helpers/place-test-call.js';
import { phoneSpeech, RECORDINGS, timeline } from '../helpers/speech.js';
import { startVoiceServer, type RunningServer } from '../helpers/voice-test-server.js';

let server: RunningServer;
const prefix = `vas-test-${randomBytes(4).toString('hex')}`;

beforeAll(async () => {
  server = await startVoiceServer({ AGENT_SCRIPT: 'test/fixtures/agents', REDIS_URL: 'redis://127.0.0.1:6379', POST_CALL_QUEUE_PREFIX: prefix });
});

afterAll(async () => {
  const side = server?.postCallSide;
  await server?.close();
  if (side !== undefined) {
    // Leave nothing of this test in Redis.
    const { Redis } = await import('ioredis');
    const redis = new Redis('redis://127.0.0.1:6379');
    await deleteKeysWithPrefix(redis, `${prefix}:`);
    await redis.quit();
  }
});

describe('post-call job from the server', () => {
  it('files exactly one job per call, with the transcript and per-turn latencies, and removes the live mirror', async () => {
    const speech = await phoneSpeech(RECORDINGS.illDisposed);
    const { session } = await placeTestCall(server, { audio: timeline(6000, [[2000, speech]]), idleHangUpMs: 2000, from: '+15557654321', to: '+15550001111' });
    const queue = server.postCallSide!.postCall.queue;
    await expect.poll(async () => (await queue.getJob(postCallJobId(session.callId)))?.data, { timeout: 5000 }).toBeDefined();
    const job = (await queue.getJob(postCallJobId(session.callId)))!;
    expect(job.data).toMatchObject({
      callSid: session.callId,
      provider: 'twilio',
      direction: 'inbound',
      from: '+15557654321',
      to: '+15550001111',
      number: '+15550001111',
      endReason: 'stop',
    });
    expect(job.data.turns.map((t: { speaker: string }) => t.speaker)).toEqual(['caller', 'agent']);
    expect(job.data.turns[1].latency).toMatchObject({ firstFrameSent: expect.any(Number) });

    // Twilio's `completed` callback arrives after the stream ended: still one job, the first one.
    const response = await postStatusCallback(server, session.callId, 'completed', '6');
    expect(response.status).toBe(204);
    // Filing the same call again (e.g. the sweeper racing a slow shutdown) changes nothing either.
    await server.postCallSide!.postCall.enqueue({ ...job.data, endReason: 'server_lost' });
    const counts = await queue.getJobCounts('waiting', 'active', 'completed', 'failed', 'delayed');
    expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(1);
    expect((await queue.getJob(postCallJobId(session.callId)))!.data.endReason).toBe('stop');

    // The live mirror held the call while it lived and dropped it once the job was filed.
    await expect.poll(() => server.postCallSide!.mirror.has(session.callId), { timeout: 3000 }).toBe(false);
  });

  it("mirrors the reply's text as soon as it has played, before the caller speaks again", async () => {
    const speech = await phoneSpeech(RECORDINGS.illDisposed);
    const { Redis } = await import('ioredis');
    const redis = new Redis('redis://127.0.0.1:6379');
    const { parseMirroredCall } = await import('../../src/live/types.js');
    let callSid: string | undefined;
    const off = server.sessions.onStarted((s) => (callSid = s.callId));
    let mirroredReply = '';
    const probe = setInterval(() => {
      if (callSid === undefined) return;
      void redis.get(`${prefix}:live:call:${callSid}`).then((raw) => {
        if (raw === null || server.sessions.get(callSid!) === undefined) return;
        const agent = parseMirroredCall(raw)?.turns.find((t) => t.speaker === 'agent');
        if (agent !== undefined && agent.text !== '') mirroredReply = agent.text;
      });
    }, 100);
    try {
      // One utterance, then silence: no later turn would carry the reply's text into the mirror.
      const { session } = await placeTestCall(server, { audio: timeline(5000, [[1000, speech]]), idleHangUpMs: 2500 });
      expect(session.turns[0]?.assistantText).not.toBe('');
      expect(mirroredReply).toBe(session.turns[0]?.assistantText);
    } finally {
      clearInterval(probe);
      off();
      await redis.quit();
    }
  });
});
