// Guards the GPU pipeline end to end: a Twilio-exact caller playing real speech, the real server with
// every stage on Triton, and a protocol-true Triton stand-in (KServe v2 gRPC) behind it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CallSession } from '../../src/agent/call-session.js';
import { placeCall } from '../../src/softphone/twilio-caller.js';
import { phoneSpeech, RECORDINGS, timeline } from '../helpers/speech.js';
import { placeTestCall } from '../helpers/place-test-call.js';
import { startVoiceServer, TEST_AUTH_TOKEN, type RunningServer } from '../helpers/voice-test-server.js';
import { startTritonStandIn, type TritonStandIn } from '../triton-stand-in/index.js';
import { lastUserMessage } from '../triton-stand-in/models/qwen3.js';

const HOURS_REPLY = 'We open at nine in the morning. We close at six in the evening.';
const LONG_REPLY =
  'Let me tell you everything about our services. We clean teeth, we fill cavities, we whiten smiles, we fit crowns and bridges, and we see children and adults six days a week. Parking is free behind the building.';
const APOLOGY = 'Sorry, I had trouble with that.';
const SCRIPT_FALLBACK =
  'Sorry, I did not catch that. I can tell you about our opening hours, our address and parking, or help you with an appointment, or put you through to a person at the front desk.';

/** What the scripted Qwen3 answers to the first line; a test may make it long. */
let hoursReply = HOURS_REPLY;
/** The stand-in reads these per request; a test may slow generation down. */
const llmPace = { tokensPerSecond: 60, firstTokenDelayMs: 30 };
let standIn: TritonStandIn;
let server: RunningServer;

beforeAll(async () => {
  standIn = await startTritonStandIn({
    // The n-th utterance of a call is heard as the n-th line (the words of the recordings don't matter here).
    recognizer: { scripted: ['what time do you open', 'tell me everything', 'okay thanks'], msPerWord: 200 },
    llm: {
      get tokensPerSecond() {
        return llmPace.tokensPerSecond;
      },
      get firstTokenDelayMs() {
        return llmPace.firstTokenDelayMs;
      },
      reply: (prompt) => {
        const user = lastUserMessage(prompt);
        if (user.includes('okay thanks')) return 'You are welcome, goodbye.\n<tool_call>\n{"name": "end_call", "arguments": {}}\n</tool_call>';
        if (user.includes('what time do you open')) return hoursReply;
        if (user.includes('tell me everything')) return LONG_REPLY;
        return 'Could you say that again?';
      },
    },
  });
  server = await startVoiceServer({
    AGENT_SCRIPT: 'test/fixtures/agents',
    VAD_ENGINE: 'triton',
    ASR_ENGINE: 'triton',
    LLM_ENGINE: 'triton',
    TTS_ENGINE: 'triton',
    TRITON_URL: standIn.url,
  });
});

afterAll(async () => {
  await server?.close();
  await standIn?.stop();
});

const call = (options: Parameters<typeof placeTestCall>[1]) => placeTestCall(server, options);

describe('a call on the Triton pipeline (stand-in)', () => {
  it('reports every Triton model ready', async () => {
    const ready = (await (await fetch(`${server.url}/ready`)).json()) as { ready: boolean; triton: { models: Record<string, { ready: boolean }> }; engines: Record<string, string> };
    expect(ready.ready).toBe(true);
    expect(Object.keys(ready.triton.models).sort()).toEqual(['parakeet_tdt', 'qwen3', 'silero_vad', 'tts']);
    expect(Object.values(ready.triton.models).every((m) => m.ready)).toBe(true);
    expect(ready.engines).toMatchObject({ asr: 'triton:parakeet_tdt', llm: expect.stringContaining('triton:qwen3'), tts: 'triton:tts' });
  });

  it('streams the caller to parakeet, the transcript to qwen3 and the reply through tts, and records the waterfall', async () => {
    standIn.observed.clear();
    const speech = await phoneSpeech(RECORDINGS.illDisposed);
    const { result, session } = await call({ audio: timeline(7000, [[2500, speech]]), idleHangUpMs: 2500 });

    expect(result.violations).toEqual([]);
    const reply = result.turns.find((t) => t.kind === 'reply');
    expect(reply?.agentFirstFrameMs).not.toBeNull();

    // Speech detection ran on Triton, batched.
    expect(standIn.observed.forModel('silero_vad').length).toBeGreaterThan(20);
    // The utterance went up as one sequence keyed by the call SID: START first, END last, 80 ms of 16 kHz audio per request.
    const asr = standIn.observed.forModel('parakeet_tdt').map((r) => r.asr!);
    expect(asr.length).toBeGreaterThan(5);
    expect(asr.every((r) => r.sequenceId === session.callId)).toBe(true);
    expect(asr[0]!.start).toBe(true);
    expect(asr.at(-1)!.end).toBe(true);
    expect(asr.filter((r) => r.start)).toHaveLength(1);
    expect(asr.slice(0, -1).every((r) => r.samples === 1280)).toBe(true);

    // The LLM got Qwen3's chat template with the transcript, thinking disabled, tools offered.
    const prompt = standIn.observed.prompts()[0]!;
    expect(prompt).toContain('<|im_start|>user\nwhat time do you open<|im_end|>');
    expect(prompt.endsWith('<|im_start|>assistant\n<think>\n\n</think>\n\n')).toBe(true);
    expect(prompt).toContain('"name": "end_call"');

    // The reply went to TTS in speakable pieces as it streamed, and the whole of it was heard.
    expect(standIn.observed.ttsTexts()).toEqual(expect.arrayContaining(['We open at nine in the morning.']));
    expect(session.conversation.slice(-2)).toEqual([
      { role: 'user', content: 'what time do you open' },
      { role: 'assistant', content: HOURS_REPLY },
    ]);
    const turn = session.turns[0]!;
    for (const stage of ['speechEndAt', 'turnDecidedAt', 'asrFinalAt', 'llmRequestAt', 'llmFirstTokenAt', 'firstSegmentToTtsAt', 'ttsFirstAudioAt', 'firstFrameSentAt'] as const) {
      expect(turn[stage], stage).toBeTypeOf('number');
    }
    expect(turn.firstFrameSentAt!).toBeGreaterThanOrEqual(turn.ttsFirstAudioAt!);
    expect(turn.ttsFirstAudioAt!).toBeGreaterThanOrEqual(turn.firstSegmentToTtsAt!);
    expect(turn.llmFirstTokenAt!).toBeGreaterThanOrEqual(turn.llmRequestAt!);
    expect(standIn.observed.cancelledCount('qwen3')).toBe(0);
    expect(session.degradation).toBeUndefined();
  });

  it('on barge-in cancels the LLM and TTS requests in Triton, and then answers the interruption', async () => {
    standIn.observed.clear();
    const first = await phoneSpeech(RECORDINGS.illDisposed);
    const second = await phoneSpeech(RECORDINGS.coldHearted);
    // Utterance 1 gets a long reply; 2 ("tell me everything") cuts into it and gets a long reply too;
    // 3 ("okay thanks") cuts into that one and is answered with end_call.
    // Generation slower than it is spoken, so the reply is still generating when the caller cuts in.
    hoursReply = LONG_REPLY;
    llmPace.tokensPerSecond = 8;
    const { result, session, events } = await call({
      audio: timeline(27000, [[1500, first], [8000, second], [18000, first]]),
      idleHangUpMs: 3000,
    }).finally(() => {
      hoursReply = HOURS_REPLY;
      llmPace.tokensPerSecond = 60;
    });
    expect(result.violations).toEqual([]);
    expect(events.some((e) => e.type === 'interrupted')).toBe(true);
    expect(result.clears.length).toBeGreaterThan(0);
    const cut = session.turns.find((t) => t.interrupted);
    expect(cut).toBeDefined();
    expect(LONG_REPLY.startsWith(cut!.assistantText)).toBe(true);
    expect(cut!.assistantText.length).toBeLessThan(LONG_REPLY.length);
    // The cancellation reached Triton: the long reply's generation and/or synthesis was cancelled there.
    await expect.poll(() => standIn.observed.cancelledCount('qwen3'), { timeout: 3000 }).toBeGreaterThan(0);
    // The third utterance was answered (and its end_call tool call ended the call).
    expect(session.turns.at(-1)!.userText).toBe('okay thanks');
    expect(session.endReason).toBe('agent_hung_up');
    expect(session.conversation.at(-2)).toMatchObject({ role: 'assistant', toolCalls: [{ name: 'end_call' }] });
    // Twilio then follows the TwiML after <Connect>: the after-stream webhook tells it to hang up.
    expect(result.closedBy).toBe('server');
    expect(result.afterStream).toMatchObject({ status: 200, next: 'hangup' });
  });

  it('when Triton fails mid-call the caller hears the apology and the scripted agent takes over', async () => {
    standIn.observed.clear();
    standIn.faults['qwen3'] = { error: 'CUDA error: out of memory' };
    try {
      const speech = await phoneSpeech(RECORDINGS.illDisposed);
      const { result, session, events } = await call({ audio: timeline(16000, [[2000, speech], [10500, speech]]), idleHangUpMs: 2500 });
      expect(result.violations).toEqual([]);
      expect(events.filter((e) => e.type === 'degraded')).toEqual([{ type: 'degraded', stage: 'llm', reason: expect.stringContaining('out of memory') }]);
      // First reply: the apology, then the script's answer (which has no intent for these words), until
      // the caller's second utterance cut in (late enough that a loaded machine has begun the answer).
      const firstReply = session.conversation.filter((m) => m.role === 'assistant')[1]!.content;
      expect(firstReply.startsWith(`${APOLOGY} Sorry, I did`)).toBe(true);
      expect(`${APOLOGY} ${SCRIPT_FALLBACK}`.startsWith(firstReply)).toBe(true);
      // The rest of the call never went back to Triton's LLM: one failed request only.
      expect(standIn.observed.forModel('qwen3')).toHaveLength(1);
      expect(session.turns).toHaveLength(2);
      expect(session.turns[1]!.assistantText.startsWith('Sorry, I did')).toBe(true);
      expect(result.turns.filter((t) => t.kind === 'reply').every((t) => t.agentFirstFrameMs !== null)).toBe(true);
    } finally {
      delete standIn.faults['qwen3'];
    }
  });

  it('when the TTS stream is cut mid-reply the apology still plays from the prompt cache', async () => {
    standIn.observed.clear();
    standIn.faults['tts'] = { cutAfterResponses: 1 };
    try {
      const speech = await phoneSpeech(RECORDINGS.illDisposed);
      const { session, events } = await call({ audio: timeline(9000, [[2000, speech]]), idleHangUpMs: 2500 });
      expect(events.some((e) => e.type === 'degraded' && e.stage === 'reply')).toBe(true);
      expect(session.conversation.filter((m) => m.role === 'assistant').map((m) => m.content)).toContain(APOLOGY);
    } finally {
      delete standIn.faults['tts'];
    }
  });
});

describe('Triton down at start', () => {
  it('answers /ready 503 naming the models, keeps taking calls on the local engines, and recovers when Triton comes up', async () => {
    const probe = await startTritonStandIn({ recognizer: { scripted: [] }, models: ['qwen3'] });
    const port = probe.port;
    await probe.stop();
    const down = await startVoiceServer({ AGENT_SCRIPT: 'test/fixtures/agents', LLM_ENGINE: 'triton', TRITON_URL: `127.0.0.1:${port}` });
    let revived: TritonStandIn | undefined;
    try {
      const first = await fetch(`${down.url}/ready`);
      expect(first.status).toBe(503);
      const body = (await first.json()) as { triton: { models: Record<string, { ready: boolean; reason?: string }> } };
      expect(body.triton.models['qwen3']).toMatchObject({ ready: false });
      // A call arriving now is answered by the script on the local engines, not dropped.
      const calling = placeCall({ url: down.url, authToken: TEST_AUTH_TOKEN, audio: new Int16Array(8000 * 2), idleHangUpMs: 1000 });
      const session = await new Promise<CallSession>((resolve) => {
        const off = down.sessions.onStarted((s) => (off(), resolve(s)));
      });
      expect(session.degradation).toMatch(/^start: /);
      await calling;
      // Triton comes up on the same address: readiness follows (re-checked with backoff).
      revived = await startTritonStandIn({ port, recognizer: { scripted: [] }, models: ['qwen3'] });
      await expect.poll(async () => (await fetch(`${down.url}/ready`)).status, { timeout: 15_000, interval: 250 }).toBe(200);
    } finally {
      await down.close();
      await revived?.stop();
    }
  });
});
