// Guards the call session's orchestration without real audio: what it replies to, what it drops, and what it keeps.
import pino from 'pino';
import { beforeAll, describe, expect, it } from 'vitest';
import { CallSession, type SessionEvent } from '../../src/agent/call-session.js';
import { PromptCache } from '../../src/agent/prompt-cache.js';
import { PlayoutScheduler } from '../../src/audio/playout-scheduler.js';
import { loadResampler } from '../../src/audio/resampler.js';
import type { AsrEvent, Engines, LlmRequest, Tts, TtsRequest, VadResult } from '../../src/engines/types.js';
import type { CallEnding, CallTransport } from '../../src/telephony/transport.js';
import type { HttpToolSpec } from '../../src/engines/local/agent-script.js';
import type { EchoJudge } from '../../src/agent/echo-guard.js';

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

/** Every text segment any tone TTS was asked to speak, in order. */
const spokenSegments: string[] = [];

/** 100 ms of a tone per text segment, at 8 kHz. */
const toneTts: Tts = {
  name: 'tone',
  async *synthesize(request: TtsRequest) {
    let segment = 0;
    for await (const text of request.text) {
      spokenSegments.push(text);
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

interface BuildOptions {
  asrTexts: string[];
  asrDelayMs?: number;
  asr?: Engines['asr'];
  llm?: Engines['llm'];
  fallbackLlm?: Engines['llm'];
  maxCallSeconds?: number;
  goodbye?: string;
  tools?: HttpToolSpec[];
  degraded?: { asr: Engines['asr']; tts: Tts };
  speculativeLlm?: boolean;
  backchannelMaxMs?: number;
  echoGuard?: EchoJudge;
}

function build(options: BuildOptions) {
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
  const engines: Engines = {
    vad: vad.vad,
    asr: options.asr ?? scriptedAsr(options.asrTexts, options.asrDelayMs),
    llm: options.llm ?? echoLlm,
    fallbackLlm: options.fallbackLlm ?? echoLlm,
    tts: toneTts,
  };
  const session = new CallSession({
    callId: 'CA0123456789abcdef0123456789abcdef',
    transport,
    engines,
    profile: { name: 'test', greeting: 'Hi.', apology: 'Sorry.', systemPrompt: 'Be brief.', tools: options.tools ?? [], ...(options.goodbye ? { goodbye: options.goodbye } : {}) },
    prompts: new PromptCache(toneTts),
    ...(options.degraded === undefined ? {} : { degraded: options.degraded }),
    ...(options.speculativeLlm === undefined ? {} : { speculativeLlm: options.speculativeLlm }),
    ...(options.echoGuard === undefined ? {} : { echoGuard: options.echoGuard }),
    scheduler: new PlayoutScheduler(),
    logger: pino({ level: 'silent' }),
    timing: { endOfTurnSilenceMs: 500, minSpeechMs: 100, bargeInMinSpeechMs: 150, backchannelMaxMs: options.backchannelMaxMs ?? 800, vadThreshold: 0.5, outboundFrameMs: 20, outboundLeadMs: 200, maxCallSeconds: options.maxCallSeconds ?? 60 },
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

/** An ASR whose events the test emits: `partial(text)` during the utterance; the final on end(). */
function controlledAsr(finals: string[], options: { failOnEnd?: boolean } = {}) {
  let current: ((e: AsrEvent) => void) | undefined;
  const asr: Engines['asr'] = {
    createStream: (_callId, onEvent) => {
      current = onEvent;
      return {
        push() {},
        end() {
          if (options.failOnEnd) setTimeout(() => onEvent({ type: 'error', error: new Error('parakeet_tdt: stream lost') }), 5);
          else setTimeout(() => onEvent({ type: 'final', text: finals.shift() ?? '' }), 5);
        },
        cancel() {},
      };
    },
    close: async () => {},
  };
  return { asr, partial: (text: string) => current?.({ type: 'partial', text }) };
}

const scriptedLlm: Engines['llm'] = {
  name: 'script',
  async *generate() {
    yield { type: 'text', delta: 'Scripted answer.' };
    yield { type: 'done' };
  },
};

describe('call session: tools, speculation, degradation', () => {
  it('runs an HTTP tool, says the filler while it is slow, and answers with its result in the context', async () => {
    const { createServer } = await import('node:http');
    const bodies: string[] = [];
    const http = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        bodies.push(body);
        setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"shipped"}'), 1200);
      });
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(http.address() as { port: number }).port}/orders`;
    const tool: HttpToolSpec = {
      name: 'lookup_order',
      description: 'Order status',
      parameters: { type: 'object', properties: { order: { type: 'string' } }, required: ['order'] },
      url,
      method: 'POST',
      timeoutMs: 3000,
      headers: {},
      filler: 'Let me check that.',
    };
    const llm: Engines['llm'] = {
      name: 'tool-user',
      async *generate(request) {
        const last = request.messages.at(-1);
        if (last?.role === 'tool') {
          yield { type: 'text', delta: `Your order is ${JSON.parse(last.content).status}.` };
        } else {
          expect(request.tools.map((t) => t.name)).toContain('lookup_order');
          yield { type: 'text', delta: 'Checking order 42.' };
          yield { type: 'tool_call', call: { id: 'c1', name: 'lookup_order', arguments: { order: '42' } } };
        }
        yield { type: 'done' };
      },
    };
    spokenSegments.length = 0;
    const { session, vad, sent, echoMarks } = build({ asrTexts: ['where is my order'], llm, tools: [tool] });
    try {
      vad.speak(10);
      silence(vad);
      await until(() => sent.some((s) => s.name?.endsWith(':end')), 5000);
      echoMarks();
      expect(JSON.parse(bodies[0]!)).toEqual({ order: '42' });
      expect(spokenSegments).toEqual(['Checking order 42.', 'Let me check that.', 'Your order is shipped.']);
      expect(session.conversation.slice(2)).toEqual([
        { role: 'assistant', content: '', toolCalls: [{ id: 'c1', name: 'lookup_order', arguments: { order: '42' } }] },
        { role: 'tool', toolCallId: 'c1', content: '{"status":"shipped"}' },
        { role: 'assistant', content: 'Checking order 42. Let me check that. Your order is shipped.' },
      ]);
    } finally {
      session.end('test');
      http.close();
    }
  });

  it('answers a stable partial speculatively during the pause and adopts it when the final matches', async () => {
    const control = controlledAsr(['What are your hours?']);
    const { session, vad, sent, requests, echoMarks } = build({ asrTexts: [], asr: control.asr, speculativeLlm: true });
    const outcomes: string[] = [];
    session.onEvent((e) => e.type === 'speculation' && outcomes.push(e.outcome));
    vad.speak(10);
    control.partial('what are your hours');
    vad.speak(4, 0.02); // a pause: silence_gap
    await until(() => requests.length === 1);
    expect(requests[0]!.messages.at(-1)).toEqual({ role: 'user', content: 'what are your hours' });
    silence(vad); // the turn ends; the final says the same words
    await until(() => sent.some((s) => s.name?.endsWith(':end')));
    echoMarks();
    expect(outcomes).toEqual(['started', 'adopted']);
    expect(requests).toHaveLength(1);
    expect(session.turns[0]).toMatchObject({ speculative: true, userText: 'What are your hours?' });
    expect(session.conversation.at(-1)).toEqual({ role: 'assistant', content: 'You said what are your hours.' });
    session.end('test');
  });

  it('cancels the speculation when the caller goes on, and answers the whole turn afresh', async () => {
    const control = controlledAsr(['I want to book a cleaning']);
    const { session, vad, sent, requests, echoMarks } = build({ asrTexts: [], asr: control.asr, speculativeLlm: true });
    vad.speak(10);
    control.partial('I want');
    vad.speak(4, 0.02);
    await until(() => requests.length === 1);
    vad.speak(8); // the caller goes on
    expect(requests[0]!.signal.aborted).toBe(true);
    silence(vad);
    await until(() => sent.some((s) => s.name?.endsWith(':end')));
    echoMarks();
    expect(requests).toHaveLength(2);
    expect(requests[1]!.messages.at(-1)).toEqual({ role: 'user', content: 'I want to book a cleaning' });
    expect(session.conversation.at(-1)).toEqual({ role: 'assistant', content: 'You said I want to book a cleaning.' });
    session.end('test');
  });

  it('apologizes when the recognizer fails and moves the call to the local engines and the script', async () => {
    const failing = controlledAsr([], { failOnEnd: true });
    const local = controlledAsr(['are you there']);
    const { session, vad, sent, echoMarks } = build({ asrTexts: [], asr: failing.asr, fallbackLlm: scriptedLlm, degraded: { asr: local.asr, tts: toneTts } });
    const degraded: string[] = [];
    session.onEvent((e) => e.type === 'degraded' && degraded.push(e.stage));
    vad.speak(10);
    silence(vad);
    await until(() => sent.some((s) => s.name?.endsWith(':end')));
    echoMarks();
    expect(degraded).toEqual(['asr']);
    expect(session.conversation.at(-1)).toEqual({ role: 'assistant', content: 'Sorry.' });
    // The next turn is heard by the local recognizer and answered by the script.
    vad.speak(10);
    silence(vad);
    await until(() => sent.some((s) => s.name?.endsWith(':end')));
    echoMarks();
    expect(session.conversation.slice(-2)).toEqual([
      { role: 'user', content: 'are you there' },
      { role: 'assistant', content: 'Scripted answer.' },
    ]);
    session.end('test');
  });

  it('apologizes before the script answers when the LLM fails, and keeps the script for the rest of the call', async () => {
    const { FallbackLlm } = await import('../../src/engines/fallback-llm.js');
    let primaryCalls = 0;
    const broken: Engines['llm'] = {
      name: 'triton:qwen3',
      // eslint-disable-next-line require-yield
      async *generate() {
        primaryCalls++;
        throw new Error('qwen3: stream lost');
      },
    };
    const llm = new FallbackLlm(broken, scriptedLlm, pino({ level: 'silent' }));
    const { session, vad, sent, echoMarks } = build({ asrTexts: ['hello', 'and again'], llm, fallbackLlm: scriptedLlm });
    vad.speak(10);
    silence(vad);
    await until(() => sent.some((s) => s.name?.endsWith(':end')));
    echoMarks();
    expect(session.conversation.at(-1)).toEqual({ role: 'assistant', content: 'Sorry. Scripted answer.' });
    expect(session.degradation).toMatch(/^llm: /);
    vad.speak(10);
    silence(vad);
    await until(() => sent.some((s) => s.name?.endsWith(':end')));
    echoMarks();
    expect(primaryCalls).toBe(1);
    expect(session.conversation.at(-1)).toEqual({ role: 'assistant', content: 'Scripted answer.' });
    session.end('test');
  });
});

/** Replies with `first` to the first request, then echoes the caller; records every request's messages. */
function replyingLlm(first: string) {
  const requests: LlmRequest[] = [];
  const llm: Engines['llm'] = {
    name: 'replying',
    async *generate(request) {
      requests.push(request);
      const last = request.messages.at(-1);
      yield { type: 'text', delta: requests.length === 1 ? first : `You said ${last?.role === 'user' ? last.content : '?'}.` };
    },
  };
  return { llm, requests };
}

/** A recognizer that counts the samples each stream was fed before its end(); finals after `delayMs`. */
function countingAsr(finals: string[], delayMs: number) {
  const pushed: number[] = [];
  const asr: Engines['asr'] = {
    createStream: (_callId, onEvent) => {
      const index = pushed.push(0) - 1;
      let ended = false;
      return {
        push: (pcm: Int16Array) => void (!ended && (pushed[index]! += pcm.length)),
        end() {
          ended = true;
          const text = finals.shift() ?? '';
          setTimeout(() => onEvent({ type: 'final', text }), delayMs);
        },
        cancel() {},
      };
    },
    close: async () => {},
  };
  return { asr, pushed };
}

/** Finals in order, each after `delayMs(text)`; as the real recognizers do, a cancelled stream never delivers its final. */
function faithfulAsr(finals: string[], delayMs: (text: string) => number): Engines['asr'] {
  return {
    createStream: (_callId, onEvent) => {
      let cancelled = false;
      return {
        push() {},
        end() {
          const text = finals.shift() ?? '';
          setTimeout(() => cancelled || onEvent({ type: 'final', text }), delayMs(text));
        },
        cancel: () => void (cancelled = true),
      };
    },
    close: async () => {},
  };
}

/** Feeds the session `n` 20 ms frames of caller audio (the VAD is scripted separately). */
const callerFrames = (session: CallSession) => (n: number) => {
  for (let i = 0; i < n; i++) session.onAudio(new Int16Array(160));
};

const LONG_REPLY = 'First point. Second point. Third point. Fourth point. Fifth point. Sixth point.';

describe('call session: backchannels and barge-in', () => {
  /** The caller's first turn, answered with `reply`; resolves once the reply is on the wire and its first marks came back. */
  async function agentSpeaking(asrTexts: string[], reply: string, options: Partial<BuildOptions> = {}) {
    const llm = replyingLlm(reply);
    const built = build({ asrTexts, llm: llm.llm, ...options });
    const events: SessionEvent[] = [];
    built.session.onEvent((event) => events.push(event));
    built.vad.speak(10);
    silence(built.vad);
    await until(() => built.session.state.phase === 'speaking');
    await until(() => built.sent.some((s) => s.name?.endsWith(':s0')));
    // The start of the reply was heard (its end mark, if already sent, is not: the reply is still playing).
    for (const m of built.sent.filter((s) => s.kind === 'mark' && !s.name!.endsWith(':end'))) built.session.onMarkEcho(m.name!);
    return { ...built, events, llmRequests: llm.requests };
  }

  it('goes on with the reply after a "yeah": output paused, then resumed at its first pause, nothing answered', async () => {
    const { session, vad, sent, events, llmRequests } = await agentSpeaking(['tell me everything', 'yeah'], LONG_REPLY);
    vad.speak(8); // ~256 ms of speech: past the barge-in minimum, short of the backchannel maximum
    expect(sent.filter((s) => s.kind === 'clear')).toHaveLength(1); // paused at the onset
    expect(session.state).toEqual({ phase: 'speaking', outputPaused: true, bargeIn: 'tentative' });
    vad.speak(4, 0.02); // ~130 ms of silence: a pause, not yet the end of the turn
    expect(session.state.bargeIn).toBe('judging');
    await until(() => session.state.bargeIn === 'none');
    silence(vad); // the rest of the silence changes nothing
    expect(session.state).toEqual({ phase: 'speaking', outputPaused: false, bargeIn: 'none' });
    const resumedAt = sent.length;
    await until(() => sent.slice(resumedAt).some((s) => s.kind === 'media'));
    expect(events.filter((e) => e.type === 'interrupted')).toEqual([]);
    expect(llmRequests).toHaveLength(1);
    expect(session.conversation.filter((m) => m.role === 'user')).toEqual([{ role: 'user', content: 'tell me everything' }]);
    session.end('test');
  });

  it('interrupts and answers when the short speech was not a backchannel', async () => {
    const { session, vad, events, llmRequests } = await agentSpeaking(['tell me everything', 'no stop'], LONG_REPLY);
    vad.speak(8);
    silence(vad);
    await until(() => llmRequests.length === 2);
    expect(events.filter((e) => e.type === 'interrupted')).toHaveLength(1);
    expect(llmRequests[1]!.messages.at(-1)).toEqual({ role: 'user', content: 'no stop' });
    // The interrupted reply stays in the conversation only as far as the caller heard it.
    const assistant = session.conversation.filter((m) => m.role === 'assistant')[0]!;
    expect(LONG_REPLY.startsWith(assistant.content)).toBe(true);
    expect(assistant.content.length).toBeGreaterThan(0);
    expect(assistant.content).not.toContain('Sixth');
    session.end('test');
  });

  it('interrupts at the pause when the words were more than a backchannel, then hears the caller out', async () => {
    const { session, vad, events, llmRequests } = await agentSpeaking(['tell me everything', 'no', 'I meant Tuesday'], LONG_REPLY);
    vad.speak(8);
    vad.speak(4, 0.02); // the pause after "no"
    await until(() => events.some((e) => e.type === 'interrupted'));
    expect(session.state.phase).toBe('listening');
    expect(llmRequests).toHaveLength(1); // not answered yet: the caller may go on
    vad.speak(10); // "I meant Tuesday"
    silence(vad);
    await until(() => llmRequests.length === 2);
    expect(llmRequests[1]!.messages.at(-1)).toEqual({ role: 'user', content: 'no I meant Tuesday' });
    session.end('test');
  });

  it('interrupts speech that outlasts the backchannel maximum without waiting for words', async () => {
    const { session, vad, events } = await agentSpeaking(['tell me everything', 'yeah'], LONG_REPLY);
    vad.speak(26); // ~830 ms
    expect(events.filter((e) => e.type === 'interrupted')).toHaveLength(1);
    expect(session.state.phase).toBe('listening');
    session.end('test');
  });

  it('takes a "yes" at the end of a question as its answer', async () => {
    const { session, vad, events, llmRequests } = await agentSpeaking(['book me in', 'yes'], 'Shall I book it for Tuesday?');
    vad.speak(8);
    silence(vad);
    await until(() => llmRequests.length === 2);
    expect(events.filter((e) => e.type === 'interrupted')).toHaveLength(1);
    expect(llmRequests[1]!.messages.at(-1)).toEqual({ role: 'user', content: 'yes' });
    session.end('test');
  });

  it('takes a "yes" early in a long question as acknowledgement: the question goes on', async () => {
    const question = `${Array.from({ length: 24 }, (_, i) => `Point ${i + 1}.`).join(' ')} Shall I go on?`; // ~2.5 s of audio
    const { session, vad, events, llmRequests } = await agentSpeaking(['tell me everything', 'yes'], question);
    vad.speak(8);
    silence(vad);
    await until(() => session.state.bargeIn === 'none');
    expect(session.state).toEqual({ phase: 'speaking', outputPaused: false, bargeIn: 'none' });
    expect(events.filter((e) => e.type === 'interrupted')).toEqual([]);
    expect(llmRequests).toHaveLength(1);
    session.end('test');
  });

  it('judges an acknowledgement followed by more words together: "okay … so what now" interrupts', async () => {
    const { session, vad, events, llmRequests } = await agentSpeaking(['tell me everything', 'okay', 'so what now'], LONG_REPLY);
    vad.speak(8);
    vad.speak(4, 0.02); // a pause: "okay" is judged …
    vad.speak(6); // … but the caller goes on: what follows is recognized, to be judged with "okay"
    expect(session.state).toEqual({ phase: 'speaking', outputPaused: true, bargeIn: 'tentative' });
    await new Promise((r) => setTimeout(r, 20)); // the verdict on "okay" alone comes, and is stale
    expect(session.state.bargeIn).toBe('tentative');
    expect(events.filter((e) => e.type === 'interrupted')).toEqual([]);
    vad.speak(4, 0.02);
    await until(() => events.some((e) => e.type === 'interrupted'));
    silence(vad);
    await until(() => llmRequests.length === 2);
    expect(llmRequests[1]!.messages.at(-1)).toEqual({ role: 'user', content: 'okay so what now' });
    session.end('test');
  });

  it('resumes after "yeah … right" and forgets those words for the next turn', async () => {
    const { session, vad, events, llmRequests, echoMarks } = await agentSpeaking(['tell me everything', 'yeah', 'right', 'what about Monday'], LONG_REPLY);
    vad.speak(8);
    vad.speak(4, 0.02);
    vad.speak(6);
    await until(() => session.state.bargeIn === 'tentative');
    vad.speak(4, 0.02);
    await until(() => session.state.bargeIn === 'none');
    expect(session.state).toEqual({ phase: 'speaking', outputPaused: false, bargeIn: 'none' });
    silence(vad);
    // The reply plays out; the caller's next turn stands alone.
    await until(() => {
      echoMarks();
      return session.state.phase === 'idle';
    });
    vad.speak(10);
    silence(vad);
    await until(() => llmRequests.length === 2);
    expect(llmRequests[1]!.messages.at(-1)).toEqual({ role: 'user', content: 'what about Monday' });
    expect(events.filter((e) => e.type === 'interrupted')).toEqual([]);
    session.end('test');
  });

  it('counts a final transcript later than the judging limit as an interruption', async () => {
    let ends = 0;
    const slowAsr: Engines['asr'] = {
      createStream: (_callId, onEvent) => ({
        push() {},
        // The first turn is recognized at once; the barge-in's final never comes.
        end: () => void (ends++ === 0 && setTimeout(() => onEvent({ type: 'final', text: 'tell me everything' }), 0)),
        cancel() {},
      }),
      close: async () => {},
    };
    const { session, vad, events } = await agentSpeaking([], LONG_REPLY, { asr: slowAsr });
    vad.speak(8);
    vad.speak(4, 0.02);
    const judgedAt = performance.now();
    await until(() => events.some((e) => e.type === 'interrupted'));
    expect(performance.now() - judgedAt).toBeGreaterThanOrEqual(1400);
    expect(session.state.phase).toBe('listening');
    session.end('test');
  });

  it('feeds a judged-then-continued turn only the audio since the judgement (no words twice)', async () => {
    const { asr, pushed } = countingAsr(['tell me everything', 'no', ''], 20);
    const { session, vad, events } = await agentSpeaking([], LONG_REPLY, { asr });
    const frames = callerFrames(session);
    frames(5); // 800 samples before the barge-in: all of it pre-roll
    vad.speak(8);
    expect(pushed[1]).toBe(800);
    frames(2);
    vad.speak(4, 0.02); // judged here, after 1120 samples
    frames(3); // 480 samples while the final is awaited
    await until(() => events.some((e) => e.type === 'interrupted'));
    expect(pushed[1]).toBe(1120);
    expect(pushed[2]).toBe(480);
    frames(1);
    expect(pushed[2]).toBe(640);
    session.end('test');
  });

  it('keeps the judged words when the caller talks past the maximum before their final arrives', async () => {
    const asr = faithfulAsr(['tell me everything', 'no', 'wait a moment'], () => 60);
    const { session, vad, events, llmRequests } = await agentSpeaking([], LONG_REPLY, { asr });
    vad.speak(8);
    vad.speak(4, 0.02); // "no" is being judged …
    vad.speak(14); // … and the caller talks on past the backchannel maximum (~830 ms in all) before its final
    expect(events.filter((e) => e.type === 'interrupted')).toHaveLength(1);
    silence(vad);
    await until(() => llmRequests.length === 2);
    expect(llmRequests[1]!.messages.at(-1)).toEqual({ role: 'user', content: 'no wait a moment' });
    session.end('test');
  });

  it('answers the whole turn when it ends while a slow final is still being awaited ("no … wait")', async () => {
    // The first turn at once; the barge-in's finals late, as from a busy recognizer.
    const asr = faithfulAsr(['tell me everything', 'no', 'wait'], (text) => (text === 'tell me everything' ? 0 : 900));
    const { session, vad, llmRequests } = await agentSpeaking([], LONG_REPLY, { asr });
    vad.speak(8); // "no"
    vad.speak(4, 0.02); // judged …
    vad.speak(4); // "wait", before the verdict
    silence(vad); // and the turn ends
    await until(() => llmRequests.length === 2, 4000);
    expect(llmRequests[1]!.messages.at(-1)).toEqual({ role: 'user', content: 'no wait' });
    // The first reply was cut where it was heard, before the answer.
    expect(session.conversation.filter((m) => m.role === 'assistant')[0]!.content).not.toBe(LONG_REPLY);
    session.end('test');
  });

  it('feeds what the caller says before the verdict to the next recognition, live, whatever the verdict takes', async () => {
    const { asr, pushed } = countingAsr(['tell me everything', 'no', 'friday'], 300);
    const { session, vad, events } = await agentSpeaking([], LONG_REPLY, { asr });
    const frames = callerFrames(session);
    vad.speak(8);
    vad.speak(4, 0.02); // "no" judged; its final takes 300 ms
    frames(3); // 60 ms of the pause
    vad.speak(6); // "friday" begins: a new recognition, fed the audio since the judgement …
    expect(pushed[2]).toBe(480);
    frames(20); // … and then live: 400 ms more, nothing lost to a ring however long the verdict takes
    expect(pushed[2]).toBe(480 + 3200);
    vad.speak(4, 0.02);
    await until(() => events.some((e) => e.type === 'interrupted'));
    session.end('test');
  });

  it('does not resume over words the recognizer lost: "yeah" then a failed recognition interrupts', async () => {
    let streams = 0;
    const failingAsr: Engines['asr'] = {
      createStream: (_callId, onEvent) => {
        const index = streams++;
        return {
          push() {},
          end() {
            if (index === 2) setTimeout(() => onEvent({ type: 'error', error: new Error('recognizer crashed') }), 5);
            else setTimeout(() => onEvent({ type: 'final', text: index === 0 ? 'tell me everything' : 'yeah' }), 5);
          },
          cancel() {},
        };
      },
      close: async () => {},
    };
    const { session, vad, events } = await agentSpeaking([], LONG_REPLY, { asr: failingAsr });
    vad.speak(8); // "yeah" …
    vad.speak(4, 0.02);
    vad.speak(4); // … and more, whose recognition fails
    vad.speak(4, 0.02);
    await until(() => events.some((e) => e.type === 'backchannel_judged'));
    expect(events.find((e) => e.type === 'backchannel_judged')).toMatchObject({ backchannel: false, text: 'yeah', reason: 'the recognizer failed' });
    expect(events.some((e) => e.type === 'interrupted')).toBe(true);
    session.end('test');
  });

  it('does not hang up when the goodbye ends while the caller is still speaking over it', async () => {
    const { session, vad, sent, endings, requests } = build({ asrTexts: ['ok bye', 'wait one more thing'] });
    vad.speak(10);
    silence(vad);
    await until(() => sent.some((s) => s.name?.endsWith(':end')));
    await new Promise((r) => setTimeout(r, 350)); // the goodbye has played by our clock
    vad.speak(8); // the caller starts to speak: a tentative barge-in
    expect(session.state.bargeIn).toBe('tentative');
    for (const m of sent.filter((s) => s.kind === 'mark')) session.onMarkEcho(m.name!); // the goodbye's end mark
    expect(endings).toEqual([]);
    expect(session.isEnded).toBe(false);
    expect(session.state.phase).toBe('listening');
    silence(vad);
    await until(() => requests.length === 2);
    expect(requests[1]!.messages.at(-1)).toEqual({ role: 'user', content: 'wait one more thing' });
    // The answer is heard: the hold put on output at the caller's onset ended with the goodbye.
    await until(() => sent.some((s) => s.name === 'u2:s0'));
    expect(sent.filter((s) => s.kind === 'media').length).toBeGreaterThan(0);
    session.end('test');
  });

  it('hangs up when the caller says goodbye back over the end of the closing words, and records their words', async () => {
    const { session, vad, sent, endings, requests } = build({ asrTexts: ['ok bye', 'thanks, bye'] });
    vad.speak(10);
    silence(vad);
    await until(() => sent.some((s) => s.name?.endsWith(':end')));
    await new Promise((r) => setTimeout(r, 350));
    vad.speak(8); // "thanks, bye" starts before the goodbye's end mark comes back
    for (const m of sent.filter((s) => s.kind === 'mark')) session.onMarkEcho(m.name!);
    expect(endings).toEqual([]);
    silence(vad);
    await until(() => session.isEnded);
    expect(endings).toEqual([{ kind: 'hang_up', reason: 'end_call' }]);
    expect(session.endReason).toBe('agent_hung_up');
    expect(requests).toHaveLength(1); // nothing answered the goodbye back
    expect(session.conversation.at(-1)).toEqual({ role: 'user', content: 'thanks, bye' });
    expect(session.turns.map((t) => t.userText)).toEqual(['ok bye', 'thanks, bye']);
  });

  it('lets the closing words play out over "okay, bye" said in their middle, then hangs up', async () => {
    const requests: LlmRequest[] = [];
    const { session, vad, sent, endings, events } = await agentSpeaking(['ok bye', 'okay thank you bye'], 'unused', {
      llm: {
        name: 'closing',
        async *generate(request) {
          requests.push(request);
          yield { type: 'text', delta: 'Glad to help. Goodbye for now.' };
          yield { type: 'tool_call', call: { id: 't1', name: 'end_call', arguments: {} } };
        },
      },
    });
    vad.speak(8); // tentative barge-in over the closing line
    expect(session.state.bargeIn).toBe('tentative');
    vad.speak(4, 0.02); // its pause: judged
    await until(() => events.some((e) => e.type === 'backchannel_judged'));
    expect(events.find((e) => e.type === 'backchannel_judged')).toMatchObject({ backchannel: true, text: 'okay thank you bye' });
    expect(session.state.phase).toBe('speaking');
    await until(() => sent.some((s) => s.name?.endsWith(':end')));
    for (const m of sent.filter((s) => s.kind === 'mark')) session.onMarkEcho(m.name!);
    expect(endings).toEqual([{ kind: 'hang_up', reason: 'end_call' }]);
    expect(requests).toHaveLength(1); // the closing line's own; nothing answered "okay thank you bye"
  });

  it('keeps the call open when the words over the end of the closing line were lost by the recognizer, on a call already degraded', async () => {
    const { FallbackLlm } = await import('../../src/engines/fallback-llm.js');
    const broken: Engines['llm'] = {
      name: 'triton:qwen3',
      // eslint-disable-next-line require-yield
      async *generate() {
        throw new Error('qwen3: stream lost');
      },
    };
    const closingScript: Engines['llm'] = {
      name: 'script',
      async *generate() {
        yield { type: 'text', delta: 'Goodbye.' };
        yield { type: 'tool_call', call: { id: 't1', name: 'end_call', arguments: {} } };
      },
    };
    // The first turn is recognized ("ok bye"); the recognizer fails on the second.
    let streams = 0;
    const asr: Engines['asr'] = {
      createStream: (_callId, onEvent) => {
        const failing = ++streams === 2;
        return {
          push() {},
          end() {
            setTimeout(() => onEvent(failing ? { type: 'error', error: new Error('recognizer lost') } : { type: 'final', text: 'ok bye' }), 5);
          },
          cancel() {},
        };
      },
      close: async () => {},
    };
    const { session, vad, sent, endings } = build({ asrTexts: [], asr, llm: new FallbackLlm(broken, closingScript, pino({ level: 'silent' })), fallbackLlm: closingScript });
    vad.speak(10);
    silence(vad);
    await until(() => sent.some((s) => s.name?.endsWith(':end')));
    expect(session.degradation).toMatch(/^llm: /); // degraded once already: no apology is due for a later failure
    await new Promise((r) => setTimeout(r, 350));
    vad.speak(8); // the caller speaks over the end of "Goodbye."
    for (const m of sent.filter((s) => s.kind === 'mark')) session.onMarkEcho(m.name!);
    silence(vad);
    await new Promise((r) => setTimeout(r, 200));
    expect(endings).toEqual([]); // what the caller said is unknown: the call is not hung up on them
    expect(session.isEnded).toBe(false);
    session.end('test');
  });

  it('hangs up at the maximum duration even when the caller talks over the goodbye ("wait"): nothing is answered', async () => {
    const { session, vad, sent, endings, requests } = build({ asrTexts: ['wait one more thing'], maxCallSeconds: 0.05, goodbye: 'Goodbye now.' });
    await until(() => sent.some((s) => s.name?.endsWith(':end')));
    await new Promise((r) => setTimeout(r, 150));
    vad.speak(8); // "wait…" starts before the goodbye's end mark comes back
    for (const m of sent.filter((s) => s.kind === 'mark')) session.onMarkEcho(m.name!);
    expect(endings).toEqual([{ kind: 'hang_up', reason: 'max_duration' }]);
    expect(session.endReason).toBe('max_duration');
    silence(vad);
    await new Promise((r) => setTimeout(r, 100));
    expect(requests).toHaveLength(0);
  });

  /** An echo guard whose verdicts the test dictates: `next` first, then `otherwise`. */
  function oracleGuard() {
    const oracle = {
      next: [] as boolean[],
      otherwise: false,
      asked: 0,
      onAgentG711() {},
      onClear() {},
      onCallerAudio() {},
      isEcho(): boolean {
        oracle.asked++;
        return oracle.next.length > 0 ? oracle.next.shift()! : oracle.otherwise;
      },
      echoPath: undefined,
    };
    return oracle;
  }

  it('meets the echo of a reply resumed after a "yeah" with the guard again (no self-interruption)', async () => {
    const echo = oracleGuard();
    const { session, vad, sent, events, llmRequests } = await agentSpeaking(['tell me everything', 'yeah'], LONG_REPLY, { echoGuard: echo });
    vad.speak(8); // the caller's "yeah" passes the guard: paused, tentative
    vad.speak(4, 0.02); // its pause: judged, resumed
    await until(() => session.state.bargeIn === 'none' && !session.state.outputPaused);
    const clears = sent.filter((s) => s.kind === 'clear').length;
    // The resumed reply's echo comes back well inside the end-of-turn silence of the "yeah" run.
    echo.otherwise = true;
    const askedBefore = echo.asked;
    vad.speak(12);
    expect(echo.asked - askedBefore).toBe(12);
    expect(sent.filter((s) => s.kind === 'clear')).toHaveLength(clears);
    expect(session.state).toEqual({ phase: 'speaking', outputPaused: false, bargeIn: 'none' });
    silence(vad);
    expect(events.filter((e) => e.type === 'interrupted')).toEqual([]);
    expect(llmRequests).toHaveLength(1);
    session.end('test');
  });

  it('does not let stray misses of a long echo make it the caller: passing chunks must come in a row', async () => {
    const echo = oracleGuard();
    const { session, vad, events, llmRequests } = await agentSpeaking(['tell me everything'], LONG_REPLY, { echoGuard: echo });
    // Echo the guard misses now and then (miss, held, miss), then holds.
    echo.next = [false, true, false];
    echo.otherwise = true;
    vad.speak(20);
    silence(vad);
    await until(() => !session.state.outputPaused);
    expect(session.state).toEqual({ phase: 'speaking', outputPaused: false, bargeIn: 'none' });
    expect(events.filter((e) => e.type === 'interrupted')).toEqual([]);
    expect(llmRequests).toHaveLength(1);
    session.end('test');
  });

  it('lets the caller’s speech through whole once two chunks in a row passed the guard', async () => {
    const echo = oracleGuard();
    const { session, vad, events, llmRequests } = await agentSpeaking(['tell me everything', 'stop that'], LONG_REPLY, { echoGuard: echo });
    // The caller's first two chunks pass; later ones the guard would hold (the echo of what played
    // before the clear is predicted there) are not even asked about.
    echo.next = [false, false];
    echo.otherwise = true;
    const askedBefore = echo.asked;
    vad.speak(30);
    expect(echo.asked - askedBefore).toBe(2);
    silence(vad);
    await until(() => llmRequests.length === 2);
    expect(events.filter((e) => e.type === 'interrupted')).toHaveLength(1);
    expect(llmRequests[1]!.messages.at(-1)).toEqual({ role: 'user', content: 'stop that' });
    session.end('test');
  });

  it('with BACKCHANNEL_MAX_MS=0, interrupts at the barge-in minimum as before', async () => {
    const { session, vad, events } = await agentSpeaking(['tell me everything', 'yeah'], LONG_REPLY, { backchannelMaxMs: 0 });
    vad.speak(5); // 160 ms
    expect(events.filter((e) => e.type === 'interrupted')).toHaveLength(1);
    expect(session.state.phase).toBe('listening');
    session.end('test');
  });
});
