// Guards against a failing or stalled LLM leaving the caller in silence, or throwing out of the reply stream, instead of falling back to the script.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FallbackLlm } from '../../src/engines/fallback-llm.js';
import { LlmTimeoutError, type LlmLogger } from '../../src/engines/llm-errors.js';
import type { AgentScript } from '../../src/engines/local/agent-script.js';
import { ScriptedAgent } from '../../src/engines/local/scripted-agent.js';
import { OpenAiCompatibleLlm } from '../../src/engines/openai/openai-llm.js';
import type { Llm, LlmEvent, LlmRequest } from '../../src/engines/types.js';
import { OpenAiStandIn } from '../helpers/openai-stand-in.js';
import { collect, text } from '../helpers/llm-events.js';

const script: AgentScript = {
  name: 'Test Shop',
  greeting: 'Hello.',
  fallback: 'Sorry, I can help with our hours.',
  apology: 'Sorry, I had trouble with that.',
  intents: [{ name: 'hours', keywords: ['hours'], reply: 'We are open nine to five.' }],
};

interface LogLine {
  level: 'warn' | 'debug';
  obj: Record<string, unknown>;
  msg: string;
}

function recordingLogger(): LlmLogger & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  return {
    lines,
    warn: (obj, msg) => void lines.push({ level: 'warn', obj, msg }),
    debug: (obj, msg) => void lines.push({ level: 'debug', obj, msg }),
  };
}

/** A stand-in primary that yields the given events, then throws `error` (if any). */
function scriptedPrimary(events: LlmEvent[], error?: Error, onAbortThrow = false): Llm & { calls: number } {
  const llm = {
    name: 'fake-primary',
    calls: 0,
    async *generate(request: LlmRequest): AsyncGenerator<LlmEvent> {
      llm.calls++;
      for (const event of events) {
        await Promise.resolve();
        yield event;
      }
      if (onAbortThrow) {
        await new Promise<void>((resolve) => request.signal.addEventListener('abort', () => resolve(), { once: true }));
        throw new DOMException('This operation was aborted', 'AbortError');
      }
      if (error !== undefined) throw error;
    },
  };
  return llm;
}

function request(text: string, signal = new AbortController().signal): LlmRequest {
  return { callId: 'CA-fallback-1', messages: [{ role: 'user', content: text }], tools: [], signal };
}

describe('FallbackLlm with fake engines', () => {
  it('passes the primary reply through untouched when it succeeds, without logging', async () => {
    const primaryEvents: LlmEvent[] = [{ type: 'text', delta: 'Hi ' }, { type: 'text', delta: 'there.' }, { type: 'done' }];
    const logger = recordingLogger();
    const events = await collect(new FallbackLlm(scriptedPrimary(primaryEvents), new ScriptedAgent(script), logger).generate(request('hours')));
    expect(events).toEqual(primaryEvents);
    expect(logger.lines).toEqual([]);
  });

  it('answers with the fallback and logs the call id and reason when the primary throws before any event', async () => {
    const logger = recordingLogger();
    const llm = new FallbackLlm(scriptedPrimary([], new Error('connection refused')), new ScriptedAgent(script), logger);
    const events = await collect(llm.generate(request('what are your hours')));
    expect(text(events)).toBe('We are open nine to five.');
    expect(events.at(-1)).toEqual({ type: 'done' });
    expect(logger.lines).toHaveLength(1);
    expect(logger.lines[0]?.level).toBe('warn');
    expect(logger.lines[0]?.obj).toMatchObject({ callId: 'CA-fallback-1' });
    expect(String(logger.lines[0]?.obj['reason'])).toContain('connection refused');
  });

  it('cuts the reply and ends with done, without throwing, when the primary fails after partial text', async () => {
    const logger = recordingLogger();
    const fallback = scriptedPrimary([{ type: 'text', delta: 'never used' }, { type: 'done' }]);
    const llm = new FallbackLlm(scriptedPrimary([{ type: 'text', delta: 'We are open ' }], new Error('socket hang up')), fallback, logger);
    const events = await collect(llm.generate(request('hours')));
    expect(events).toEqual([{ type: 'text', delta: 'We are open ' }, { type: 'done' }]);
    expect(fallback.calls).toBe(0);
    expect(logger.lines.filter((l) => l.level === 'warn')).toHaveLength(1);
    expect(logger.lines[0]?.obj).toMatchObject({ callId: 'CA-fallback-1' });
    expect(String(logger.lines[0]?.obj['reason'])).toContain('socket hang up');
  });

  it('ends with done when the fallback fails too, instead of throwing', async () => {
    const logger = recordingLogger();
    const llm = new FallbackLlm(scriptedPrimary([], new Error('primary down')), scriptedPrimary([], new Error('fallback down')), logger);
    expect(await collect(llm.generate(request('hours')))).toEqual([{ type: 'done' }]);
    expect(logger.lines.map((l) => String(l.obj['reason']))).toEqual([
      expect.stringContaining('primary down'),
      expect.stringContaining('fallback down'),
    ]);
  });

  it('treats a caller abort as no failure: no fallback, no warning, no done', async () => {
    const logger = recordingLogger();
    const fallback = scriptedPrimary([{ type: 'text', delta: 'fallback' }, { type: 'done' }]);
    const controller = new AbortController();
    const llm = new FallbackLlm(scriptedPrimary([{ type: 'text', delta: 'Hel' }], undefined, true), fallback, logger);
    const events: LlmEvent[] = [];
    for await (const event of llm.generate(request('hours', controller.signal))) {
      events.push(event);
      setTimeout(() => controller.abort(), 10);
    }
    expect(events).toEqual([{ type: 'text', delta: 'Hel' }]);
    expect(fallback.calls).toBe(0);
    expect(logger.lines.filter((l) => l.level === 'warn')).toEqual([]);
  });

  it('does not fall back when the caller aborted before the primary failed', async () => {
    const logger = recordingLogger();
    const fallback = scriptedPrimary([{ type: 'text', delta: 'fallback' }, { type: 'done' }]);
    const controller = new AbortController();
    controller.abort();
    const llm = new FallbackLlm(scriptedPrimary([], new DOMException('aborted', 'AbortError')), fallback, logger);
    expect(await collect(llm.generate(request('hours', controller.signal)))).toEqual([]);
    expect(fallback.calls).toBe(0);
    expect(logger.lines).toEqual([]);
  });
});

describe('FallbackLlm around the OpenAI-compatible engine', () => {
  let standIn: OpenAiStandIn;
  beforeEach(async () => {
    standIn = await OpenAiStandIn.start();
  });
  afterEach(async () => {
    await standIn.close();
  });

  function wrapped(logger: LlmLogger): FallbackLlm {
    const primary = new OpenAiCompatibleLlm({ url: standIn.url, model: 'm', firstTokenTimeoutMs: 200, idleTimeoutMs: 200 });
    return new FallbackLlm(primary, new ScriptedAgent(script), logger);
  }

  it('speaks the scripted answer when the endpoint produces no first token in time', async () => {
    standIn.configure({ mode: 'stall' });
    const logger = recordingLogger();
    const start = Date.now();
    const events = await collect(wrapped(logger).generate(request('what are your hours?')));
    expect(text(events)).toBe('We are open nine to five.');
    expect(events.at(-1)).toEqual({ type: 'done' });
    expect(Date.now() - start).toBeLessThan(1500);
    expect(logger.lines[0]?.obj).toMatchObject({ callId: 'CA-fallback-1' });
    expect(String(logger.lines[0]?.obj['reason'])).toContain(LlmTimeoutError.name);
  });

  it('speaks the scripted answer when the endpoint answers HTTP 500', async () => {
    standIn.configure({ mode: 'http_error', errorStatus: 500 });
    const logger = recordingLogger();
    const events = await collect(wrapped(logger).generate(request('tell me a joke')));
    expect(text(events)).toBe(script.fallback);
    expect(String(logger.lines[0]?.obj['reason'])).toContain('500');
  });

  it('keeps the partial reply and ends cleanly when the endpoint stalls mid-reply', async () => {
    standIn.configure({ mode: 'stall', tokens: ['We ', 'open ', 'at'], afterTokens: 2 });
    const logger = recordingLogger();
    const events = await collect(wrapped(logger).generate(request('hours')));
    expect(events).toEqual([{ type: 'text', delta: 'We ' }, { type: 'text', delta: 'open ' }, { type: 'done' }]);
    expect(logger.lines.filter((l) => l.level === 'warn')).toHaveLength(1);
  });
});
