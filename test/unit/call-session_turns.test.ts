// Guards the call session's orchestration without real audio: what it replies to, what it drops, and what it keeps.
import pino from 'pino';
import { beforeAll, describe, expect, it } from 'vitest';
import { CallSession } from '../../src/agent/call-session.js';
import { PromptCache } from '../../src/agent/prompt-cache.js';
import { PlayoutScheduler } from '../../src/audio/playout-scheduler.js';
import { loadResampler } from '../../src/audio/resampler.js';
import type { AsrEvent, Engines, LlmRequest, Tts, TtsRequest, VadResult } from '../../src/engines/types.js';
import type { CallEnding, CallTransport } from '../../src/telephony/transport.js';
import type { HttpToolSpec } from '../../src/engines/local/agent-script.js';

beforeAll(loadResampler);

/** A VAD whose probabilities the test dictates, chunk by chunk. */
function scriptedVad() {
  let onResult: ((r: VadResult) => void) | undefined;
  return {
    vad: { chunkSamples: 256, createStream: (cb: (r: VadResult) => void) => ((onResult = cb), { push() {}, close() {} }), close: async () => {} },
    speak(chunks: number, probability = 0.9) {
      for (let i = 0; i < chunks; i++) onResult?.({ probability, endSample: 0 });
    },
  };
}

/** Each caller utterance is recognized as the next text in the list, after `delayMs`. */
function scriptedAsr(texts: string[], delayMs = 0) {
  return {
    createStream: (_callId: string, onEvent: (e: AsrEvent) => void) => ({
      push() {},
      end() {
        const text = texts.shift() ?? '';
        setTimeout(() => onEvent({ type: 'final', text }), delayMs);
      },
      cancel() {},
    }),
    close: async () => {},
  };
}

/** 100 ms of a tone per text segment, at 8 kHz. */
const toneTts: Tts = {
  name: 'tone',
  async *synthesize(request: TtsRequest) {
    let segment = 0;
    for await (const text of request.text) {
      if (request.signal.aborted) return;
      const pcm = Int16Array.from({ length: 800 }, (_, i) => Math.round(3000 * Math.sin(i / 3)));
      yield { segment, text, pcm, sampleRate: 8000, segmentEnd: false };
      yield { segment, text, pcm: new Int16Array(0), sampleRate: 8000, segmentEnd: true };
      segment++;
    }
  },
};

function fakeTransport() {
  const sent: Array<{ kind: string; name?: string; bytes?: number }> = [];
  const endings: CallEnding[] = [];
  const transport: CallTransport = {
    provider: 'twilio',
    encoding: 'mulaw',
    sendAudio: (data) => sent.push({ kind: 'media', bytes: data.length }),
    sendMark: (name) => sent.push({ kind: 'mark', name }),
    clear: () => sent.push({ kind: 'clear' }),
    finish: (ending) => endings.push(ending),
    close: () => sent.push({ kind: 'close' }),
  };
  return { transport, sent, endings };
}

function build(options: { asrTexts: string[]; asrDelayMs?: number; llm?: Engines['llm']; maxCallSeconds?: number; goodbye?: string; tools?: HttpToolSpec[] }) {
  const vad = scriptedVad();
  const { transport, sent, endings } = fakeTransport();
  const requests: LlmRequest[] = [];
  const echoLlm: Engines['llm'] = {
    name: 'echo',
    async *generate(request) {
      requests.push(request);
      const last = request.messages[request.messages.length - 1];
      yield { type: 'text', delta: `You said ${last?.role === 'user' ? last.content : '?'}.` };
      if (last?.role === 'user' && last.content.includes('bye')) yield { type: 'tool_call', call: { id: 't1', name: 'end_call', arguments: {} } };
    },
  };
  const engines: Engines = { vad: vad.vad, asr: scriptedAsr(options.asrTexts, options.asrDelayMs), llm: options.llm ?? echoLlm, fallbackLlm: echoLlm, tts: toneTts };
  const session = new CallSession({
    callId: 'CA0123456789abcdef0123456789abcdef',
    transport,
    engines,
    profile: { name: 'test', greeting: 'Hi.', apology: 'Sorry.', systemPrompt: 'Be brief.', tools: options.tools ?? [], ...(options.goodbye ? { goodbye: options.goodbye } : {}) },
    prompts: new PromptCache(toneTts),
    scheduler: new PlayoutScheduler(),
    logger: pino({ level: 'silent' }),
    timing: { endOfTurnSilenceMs: 500, minSpeechMs: 100, bargeInMinSpeechMs: 150, vadThreshold: 0.5, outboundFrameMs: 20, outboundLeadMs: 200, maxCallSeconds: options.maxCallSeconds ?? 60 },
  });
  /** Echo every mark as soon as it was sent (audio "plays" instantly). */
  const echoMarks = () => {
    for (const m of sent.filter((s) => s.kind === 'mark')) session.onMarkEcho(m.name!);
    sent.length = 0;
  };
  return { session, vad, sent, endings, requests, echoMarks };
}

const until = async (check: () => boolean, ms = 3000) => {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > ms) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
};
const silence = (vad: ReturnType<typeof scriptedVad>) => vad.speak(17, 0.02);

describe('call session', () => {
  it('replies to a recognized caller turn and records user and assistant messages', async () => {
    const { session, vad, sent, echoMarks } = build({ asrTexts: ['what are your hours'] });
    vad.speak(10);
    silence(vad);
    await until(() => sent.some((s) => s.kind === 'media'));
    await until(() => sent.some((s) => s.name?.endsWith(':end')));
    echoMarks();
    expect(session.state.phase).toBe('idle');
    expect(session.conversation.slice(1)).toEqual([
      { role: 'user', content: 'what are your hours' },
      { role: 'assistant', content: 'You said what are your hours.' },
    ]);
    session.end('test');
  });

  it('never starts a reply for a turn with no recognized words', async () => {
    const { session, vad, requests } = build({ asrTexts: [''] });
    vad.speak(10);
    silence(vad);
    await new Promise((r) => setTimeout(r, 50));
    expect(requests).toHaveLength(0);
    expect(session.state.phase).toBe('idle');
    session.end('test');
  });

  it('drops the pending reply when the caller keeps talking, and answers both parts together', async () => {
    const { session, vad, requests, sent, echoMarks } = build({ asrTexts: ['I would like', 'to book a cleaning'], asrDelayMs: 30 });
    vad.speak(10);
    silence(vad); // turn ends: thinking, recognizer still busy
    vad.speak(10); // the caller goes on before any reply audio
    silence(vad);
    await until(() => sent.some((s) => s.name?.endsWith(':end')));
    echoMarks();
    expect(requests).toHaveLength(1);
    expect(session.conversation.filter((m) => m.role === 'user')).toEqual([{ role: 'user', content: 'I would like to book a cleaning' }]);
    session.end('test');
  });

  it('hangs up through the transport after an end_call reply has played', async () => {
    const { session, vad, sent, endings, echoMarks } = build({ asrTexts: ['ok bye'] });
    vad.speak(10);
    silence(vad);
    await until(() => sent.some((s) => s.name?.endsWith(':end')));
    expect(endings).toEqual([]);
    echoMarks();
    expect(endings).toEqual([{ kind: 'hang_up', reason: 'end_call' }]);
    expect(session.isEnded).toBe(true);
    expect(session.endReason).toBe('agent_hung_up');
    expect(session.conversation.at(-2)).toMatchObject({ role: 'assistant', toolCalls: [{ name: 'end_call' }] });
  });

  it('closes the stream and stops every timer when ended, and ignores audio afterwards', async () => {
    const { session, vad, sent } = build({ asrTexts: [] });
    session.start();
    session.end('stop');
    expect(sent.at(-1)).toEqual({ kind: 'close' });
    const before = sent.length;
    vad.speak(20);
    session.onAudio(new Int16Array(160));
    session.onDtmf('1');
    expect(sent.length).toBe(before);
    expect(session.dtmfDigits).toEqual([]);
  });

  it('says goodbye and hangs up when the call reaches its maximum duration', async () => {
    const { session, sent, endings, echoMarks } = build({ asrTexts: [], maxCallSeconds: 0.05, goodbye: 'Goodbye now.' });
    await until(() => sent.some((s) => s.name?.endsWith(':end')));
    expect(endings).toEqual([]);
    echoMarks();
    expect(endings).toEqual([{ kind: 'hang_up', reason: 'max_duration' }]);
    expect(session.endReason).toBe('max_duration');
    expect(session.conversation.at(-1)).toEqual({ role: 'assistant', content: 'Goodbye now.' });
  });
});
