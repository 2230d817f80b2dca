// Guards the whole inbound path on real speech: a Twilio-exact caller, the real server, real VAD, ASR and TTS.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CallSession, SessionEvent } from '../../src/agent/call-session.js';
import { placeCall, type CallResult, type ReceivedMessage } from '../../src/softphone/twilio-caller.js';
import { phoneSpeech, RECORDINGS, spokenWords, timeline } from '../helpers/speech.js';
import { placeTestCall, postStatusCallback } from '../helpers/place-test-call.js';
import { startVoiceServer, TEST_AUTH_TOKEN, type RunningServer } from '../helpers/voice-test-server.js';

let server: RunningServer;
const FALLBACK =
  'Sorry, I did not catch that. I can tell you about our opening hours, our address and parking, or help you with an appointment, or put you through to a person at the front desk.';

beforeAll(async () => {
  server = await startVoiceServer({ AGENT_SCRIPT: 'test/fixtures/agents' });
});
afterAll(async () => server?.close());

const call = (options: Parameters<typeof placeTestCall>[1]) => placeTestCall(server, options);

const media = (result: CallResult): ReceivedMessage[] => result.messages.filter((m) => m.event === 'media');
const markName = (m: ReceivedMessage): string | undefined => (m.data as { mark?: { name?: string } }).mark?.name;

describe('an inbound Twilio call on the local engines', () => {
  it('greets the caller from the prompt cache within 50 ms of start, then hears the caller and replies', async () => {
    const speech = await phoneSpeech(RECORDINGS.illDisposed);
    const { result, session } = await call({ audio: timeline(6000, [[2500, speech]]), idleHangUpMs: 2500 });

    expect(result.violations).toEqual([]);
    const greeting = result.turns.find((t) => t.kind === 'greeting');
    expect(greeting?.agentFirstFrameMs).not.toBeNull();
    expect(greeting!.agentFirstFrameMs!).toBeLessThan(50);

    const reply = result.turns.find((t) => t.kind === 'reply');
    expect(reply?.agentFirstFrameMs).not.toBeNull();
    // The caller heard a reply with real energy in it, not silence frames.
    const replyAudio = result.agentAudio.subarray((reply!.agentFirstFrameMs! * 8) | 0);
    const rms = Math.sqrt(replyAudio.reduce((s, v) => s + v * v, 0) / replyAudio.length);
    expect(rms).toBeGreaterThan(300);

    const roles = session.conversation.map((m) => m.role);
    expect(roles).toEqual(['system', 'assistant', 'user', 'assistant']);
    expect(session.conversation[1]).toMatchObject({ content: 'Hello, how can I help?' });
    expect((session.conversation[2] as { content: string }).content.length).toBeGreaterThan(0);
    expect(session.conversation[3]).toMatchObject({ role: 'assistant', content: FALLBACK });
    expect(session.turns[0]).toMatchObject({ interrupted: false, assistantText: FALLBACK });
    expect(session.turns[0]!.firstFrameSentAt).toBeGreaterThan(session.turns[0]!.turnDecidedAt!);
    // Every outbound frame is whole 20 ms µ-law frames and carries the stream's SID.
    for (const m of media(result)) {
      const payload = Buffer.from((m.data as { media: { payload: string } }).media.payload, 'base64');
      expect(payload.length % 160).toBe(0);
      expect((m.data as { streamSid: string }).streamSid).toBe(result.streamSid);
    }
  });

  it('on barge-in sends clear, sends no further frame of that reply, and keeps only the words the caller heard', async () => {
    const first = await phoneSpeech(RECORDINGS.illDisposed);
    const second = await phoneSpeech(RECORDINGS.coldHearted);
    const { result, session, events } = await call({ audio: timeline(16000, [[2000, first], [9500, second]]), idleHangUpMs: 4000 });

    expect(result.violations).toEqual([]);
    const interrupted = events.find((e): e is Extract<SessionEvent, { type: 'interrupted' }> => e.type === 'interrupted');
    expect(interrupted).toBeDefined();
    expect(result.clears.length).toBeGreaterThan(0);

    // The interrupted reply is u2 (u1 is the greeting). After the last clear that precedes the next
    // utterance's start mark, not a single media frame may arrive before that mark.
    const messages = result.messages;
    const nextStart = messages.findIndex((m) => m.event === 'mark' && /^u(\d+):start$/.test(markName(m) ?? '') && markName(m) !== 'u1:start' && markName(m) !== 'u2:start');
    const stop = nextStart === -1 ? messages.length : nextStart;
    const lastClear = messages.slice(0, stop).map((m) => m.event).lastIndexOf('clear');
    expect(lastClear).toBeGreaterThan(-1);
    expect(messages.slice(lastClear + 1, stop).filter((m) => m.event === 'media')).toEqual([]);

    // The transcript keeps a strict prefix of the reply: what was played before the caller cut in.
    const cut = session.turns[0]!;
    expect(cut.interrupted).toBe(true);
    expect(cut.assistantText.length).toBeGreaterThan(0);
    expect(cut.assistantText.length).toBeLessThan(FALLBACK.length);
    expect(FALLBACK.startsWith(cut.assistantText)).toBe(true);
    const assistantMessages = session.conversation.filter((m) => m.role === 'assistant').map((m) => m.content);
    expect(assistantMessages).toContain(cut.assistantText);
    expect(assistantMessages).not.toContain(FALLBACK.slice(0, cut.assistantText.length + 20));
    // Then the agent listened to the interruption and answered it.
    expect(session.turns.length).toBe(2);
    expect(session.turns[1]!.userText.length).toBeGreaterThan(0);
  });

  it('goes on with the reply after a "yeah" (paused, then resumed, nothing answered), and stops for a short "no"', async () => {
    const first = await phoneSpeech(RECORDINGS.illDisposed);
    const [yeah, no] = await Promise.all([spokenWords('yeah'), spokenWords('no')]);
    const { result, session, events } = await call({ audio: timeline(24000, [[2000, first], [8000, yeah], [13000, no]]), idleHangUpMs: 2500 });

    expect(result.violations).toEqual([]);
    // Both times the agent paused at the onset (clear) ...
    expect(events.filter((e) => e.type === 'clear_sent' && e.reason === 'pause').length).toBeGreaterThanOrEqual(2);
    // ... went on after "yeah", which was never a turn of its own (reply audio came between the two
    // pauses) ...
    const pauses = result.messages.map((m, i) => (m.event === 'clear' ? i : -1)).filter((i) => i >= 0);
    expect(result.messages.slice(pauses[0]! + 1, pauses[1]).filter((m) => m.event === 'media').length).toBeGreaterThan(50);
    // It went on at the word's end (judged at the first pause), not after the end-of-turn wait:
    // the clip ends at 8000 ms + its length, trailing silence included.
    const resumedAtMs = result.messages.slice(pauses[0]! + 1).find((m) => m.event === 'media')!.atMs;
    expect(resumedAtMs - (8000 + yeah.length / 8)).toBeLessThan(300);
    // ... and "no" interrupted it: the transcript keeps what was heard up to then, and "no" is answered.
    const interruptions = events.filter((e): e is Extract<SessionEvent, { type: 'interrupted' }> => e.type === 'interrupted');
    expect(interruptions).toHaveLength(1);
    expect(session.turns).toHaveLength(2);
    expect(session.turns[0]!.interrupted).toBe(true);
    expect(FALLBACK.startsWith(session.turns[0]!.assistantText)).toBe(true);
    expect(session.turns[0]!.assistantText.length).toBeLessThan(FALLBACK.length);
    expect(session.turns[1]!.userText).not.toMatch(/yeah/);
    expect(session.conversation.filter((m) => m.role === 'user')).toHaveLength(2);
  });

  it('delivers DTMF digits to the session and survives garbage frames without ending the call', async () => {
    const speech = await phoneSpeech(RECORDINGS.amiable);
    const streamSidPlaceholder = 'MZ00000000000000000000000000000000';
    const { result, session } = await call({
      audio: timeline(7000, [[3000, speech]]),
      idleHangUpMs: 2500,
      events: [
        { atMs: 500, kind: 'raw', data: 'not json at all {' },
        { atMs: 600, kind: 'raw', data: '{"event":"media","streamSid":"x","media":{"payload":"%%%"}}' },
        { atMs: 700, kind: 'raw', data: JSON.stringify({ event: 'media', streamSid: streamSidPlaceholder, media: { payload: 'AAAA' } }) },
        { atMs: 800, kind: 'raw', data: Buffer.from([1, 2, 3, 4]) },
        { atMs: 900, kind: 'raw', data: JSON.stringify({ event: 'teleport' }) },
        { atMs: 1000, kind: 'raw', data: 'x'.repeat(100_000) },
        { atMs: 1500, kind: 'dtmf', digit: '4' },
        { atMs: 1700, kind: 'dtmf', digit: '#' },
      ],
    });
    expect(session.dtmfDigits).toEqual(['4', '#']);
    expect(session.endReason).toBe('stop');
    expect(result.closedBy).toBe('caller');
    // The call went on after the garbage: the caller's utterance still got a reply.
    expect(result.turns.find((t) => t.kind === 'reply')?.agentFirstFrameMs).not.toBeNull();
    expect(session.turns).toHaveLength(1);
  });

  it("answers each called number with that number's own agent script", async () => {
    const { session } = await call({ to: '+15550001111', audio: new Int16Array(8000 * 3), idleHangUpMs: 1500 });
    expect(session.conversation[1]).toEqual({ role: 'assistant', content: 'Second line, hello.' });
  });

  it('ends the session and closes the stream when a completed status callback arrives mid-call', async () => {
    const started = new Promise<CallSession>((resolve) => {
      const off = server.sessions.onStarted((s) => {
        off();
        resolve(s);
      });
    });
    const calling = placeCall({ url: server.url, authToken: TEST_AUTH_TOKEN, audio: new Int16Array(8000 * 20), hangUpAfterMs: 20_000 });
    const session = await started;
    const response = await postStatusCallback(server, session.callId, 'completed');
    expect(response.status).toBe(204);
    const result = await calling;
    expect(session.isEnded).toBe(true);
    expect(session.endReason).toBe('status_completed');
    expect(result.closedBy).toBe('server');
    expect(result.durationMs).toBeLessThan(10_000);
    expect(server.sessions.get(session.callId)).toBeUndefined();
  });
});
