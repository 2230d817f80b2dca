// Guards against the OpenAI-compatible engine mis-parsing the real SSE stream, sending a malformed request, hanging on a stalled server, or leaving the socket open after an abort.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OpenAiCompatibleLlm, SseDataParser, type OpenAiCompatibleLlmOptions } from '../../src/engines/openai/openai-llm.js';
import { LlmConnectionError, LlmHttpError, LlmProtocolError, LlmTimeoutError } from '../../src/engines/llm-errors.js';
import type { ChatMessage, LlmEvent, LlmRequest, ToolSpec } from '../../src/engines/types.js';
import { OpenAiStandIn } from '../helpers/openai-stand-in.js';

// A fresh server per test, so a connection closing late cannot be counted in the next test.
let standIn: OpenAiStandIn;
beforeEach(async () => {
  standIn = await OpenAiStandIn.start();
});
afterEach(async () => {
  await standIn.close();
});

/** How the stand-in's only response ended, waiting at most `ms` for it to end. */
async function outcomeOfOnlyRequest(ms = 2000): Promise<string> {
  expect(standIn.requests).toHaveLength(1);
  const timeout = new Promise<string>((resolve) => setTimeout(() => resolve(`still open after ${ms} ms`), ms));
  return Promise.race([standIn.requests[0]!.outcome, timeout]);
}

function llm(options: Partial<OpenAiCompatibleLlmOptions> = {}): OpenAiCompatibleLlm {
  return new OpenAiCompatibleLlm({ url: standIn.url, model: 'test-model', firstTokenTimeoutMs: 2000, idleTimeoutMs: 2000, ...options });
}

function request(overrides: Partial<LlmRequest> = {}): LlmRequest {
  return {
    callId: 'CA-openai',
    messages: [{ role: 'user', content: 'Hi' }],
    tools: [],
    signal: new AbortController().signal,
    ...overrides,
  };
}

async function collect(events: AsyncIterable<LlmEvent>): Promise<LlmEvent[]> {
  const out: LlmEvent[] = [];
  for await (const event of events) out.push(event);
  return out;
}

/** Runs the iteration and returns what it threw, along with the events it yielded first. */
async function failure(events: AsyncIterable<LlmEvent>): Promise<{ error: unknown; events: LlmEvent[]; ms: number }> {
  const out: LlmEvent[] = [];
  const start = Date.now();
  try {
    for await (const event of events) out.push(event);
  } catch (error) {
    return { error, events: out, ms: Date.now() - start };
  }
  throw new Error(`expected the stream to fail, but it ended normally with ${JSON.stringify(out)}`);
}

const endCall: ToolSpec = {
  name: 'end_call',
  description: 'Hang up.',
  parameters: { type: 'object', properties: { reason: { type: 'string' } } },
};
const transferCall: ToolSpec = {
  name: 'transfer_call',
  description: 'Transfer the call.',
  parameters: { type: 'object', properties: { to: { type: 'string' } }, required: ['to'] },
};

describe('OpenAiCompatibleLlm streaming', () => {
  it('yields each content delta as its own text event, then done', async () => {
    standIn.configure({ tokens: ['Our ', 'hours ', 'are ', 'nine ', 'to ', 'five.'] });
    const events = await collect(llm().generate(request()));
    expect(events).toEqual([
      ...['Our ', 'hours ', 'are ', 'nine ', 'to ', 'five.'].map((delta) => ({ type: 'text', delta })),
      { type: 'done' },
    ]);
  });

  it('yields the first delta before the rest of a slow stream has been sent', async () => {
    standIn.configure({ tokens: ['one', ' two', ' three', ' four'], tokenDelayMs: 100 });
    const iterator = llm().generate(request())[Symbol.asyncIterator]();
    const start = Date.now();
    const first = await iterator.next();
    const firstMs = Date.now() - start;
    const rest = await collect({ [Symbol.asyncIterator]: () => iterator });
    expect(first.value).toEqual({ type: 'text', delta: 'one' });
    expect(firstMs).toBeLessThan(300);
    expect(rest.at(-1)).toEqual({ type: 'done' });
  });

  it('parses events split across reads at arbitrary bytes, including inside a multi-byte character, with comments and blank lines', async () => {
    const tokens = ['Café ', '☕ at ', 'nine – ', 'see you 😀'];
    standIn.configure({ tokens, fragmentBytes: 7, keepAliveComments: true });
    const events = await collect(llm().generate(request()));
    expect(events.filter((e) => e.type === 'text').map((e) => (e.type === 'text' ? e.delta : ''))).toEqual(tokens);
    expect(events.at(-1)).toEqual({ type: 'done' });
  });

  it('assembles tool-call fragments streamed across chunks into whole calls with parsed arguments', async () => {
    standIn.configure({
      tokens: ['Connecting you now.'],
      toolCalls: [
        { id: 'call_abc', name: 'transfer_call', arguments: '{"to":"+15555550123","reason":"caller asked for a person"}' },
        { id: 'call_def', name: 'end_call', arguments: '{"reason":"transferred"}' },
      ],
      argumentPieces: 5,
    });
    const events = await collect(llm().generate(request({ tools: [transferCall, endCall] })));
    expect(events).toEqual([
      { type: 'text', delta: 'Connecting you now.' },
      {
        type: 'tool_call',
        call: { id: 'call_abc', name: 'transfer_call', arguments: { to: '+15555550123', reason: 'caller asked for a person' } },
      },
      { type: 'tool_call', call: { id: 'call_def', name: 'end_call', arguments: { reason: 'transferred' } } },
      { type: 'done' },
    ]);
  });

  it('fails with a protocol error when streamed tool-call arguments are not valid JSON', async () => {
    standIn.configure({ tokens: [], toolCalls: [{ id: 'call_bad', name: 'end_call', arguments: '{"reason": "bye"' }] });
    const { error, events } = await failure(llm().generate(request({ tools: [endCall] })));
    expect(error).toBeInstanceOf(LlmProtocolError);
    expect((error as Error).message).toMatch(/end_call.*malformed JSON/);
    expect(events.some((e) => e.type === 'tool_call')).toBe(false);
  });

  it('sends a streaming request in OpenAI format to {url}/chat/completions', async () => {
    const messages: ChatMessage[] = [
      { role: 'system', content: 'You are a receptionist.' },
      { role: 'user', content: 'Put me through to sales.' },
      { role: 'assistant', content: 'Transferring you.', toolCalls: [{ id: 'call_1', name: 'transfer_call', arguments: { to: '+15555550100' } }] },
      { role: 'tool', toolCallId: 'call_1', content: 'transfer failed: busy' },
    ];
    await collect(llm({ apiKey: 'sk-test-123' }).generate(request({ messages, tools: [transferCall] })));
    expect(standIn.requests).toHaveLength(1);
    const recorded = standIn.requests[0]!;
    expect(recorded.method).toBe('POST');
    expect(recorded.path).toBe('/v1/chat/completions');
    expect(recorded.headers['authorization']).toBe('Bearer sk-test-123');
    expect(recorded.headers['content-type']).toBe('application/json');
    expect(recorded.body).toEqual({
      model: 'test-model',
      stream: true,
      messages: [
        { role: 'system', content: 'You are a receptionist.' },
        { role: 'user', content: 'Put me through to sales.' },
        {
          role: 'assistant',
          content: 'Transferring you.',
          tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'transfer_call', arguments: '{"to":"+15555550100"}' } }],
        },
        { role: 'tool', tool_call_id: 'call_1', content: 'transfer failed: busy' },
      ],
      tools: [{ type: 'function', function: { name: 'transfer_call', description: 'Transfer the call.', parameters: transferCall.parameters } }],
    });
  });

  it('omits tools and the authorization header when there are none, and tolerates a trailing slash in the URL', async () => {
    await collect(llm({ url: `${standIn.url}/` }).generate(request()));
    const recorded = standIn.requests[0]!;
    expect(recorded.path).toBe('/v1/chat/completions');
    expect(recorded.body).not.toHaveProperty('tools');
    expect(recorded.headers).not.toHaveProperty('authorization');
  });
});

describe('OpenAiCompatibleLlm failures', () => {
  it('turns an HTTP 500 into an LlmHttpError carrying the status and the start of the body', async () => {
    standIn.configure({ mode: 'http_error', errorStatus: 500, errorBody: '{"error":{"message":"model overloaded"}}' });
    const { error, events } = await failure(llm().generate(request()));
    expect(error).toBeInstanceOf(LlmHttpError);
    expect((error as LlmHttpError).status).toBe(500);
    expect((error as LlmHttpError).bodyExcerpt).toContain('model overloaded');
    expect(events).toEqual([]);
  });

  it('times out with a first-token LlmTimeoutError when the server accepts the request but sends no token', async () => {
    standIn.configure({ mode: 'stall', afterTokens: 0 });
    const { error, ms } = await failure(llm({ firstTokenTimeoutMs: 200 }).generate(request()));
    expect(error).toBeInstanceOf(LlmTimeoutError);
    expect((error as LlmTimeoutError).phase).toBe('first_token');
    expect(ms).toBeGreaterThanOrEqual(150);
    expect(ms).toBeLessThan(1500);
    expect(await outcomeOfOnlyRequest()).toBe('client_closed');
  });

  it('times out with a first-token LlmTimeoutError when the server never even sends headers', async () => {
    standIn.configure({ mode: 'hang' });
    const { error } = await failure(llm({ firstTokenTimeoutMs: 200 }).generate(request()));
    expect(error).toBeInstanceOf(LlmTimeoutError);
    expect((error as LlmTimeoutError).phase).toBe('first_token');
    expect(await outcomeOfOnlyRequest()).toBe('client_closed');
  });

  it('times out with an idle LlmTimeoutError when the stream stalls mid-reply, after yielding what arrived', async () => {
    standIn.configure({ mode: 'stall', tokens: ['Sure, ', 'our ', 'address ', 'is'], afterTokens: 2 });
    const { error, events, ms } = await failure(llm({ firstTokenTimeoutMs: 5000, idleTimeoutMs: 200 }).generate(request()));
    expect(error).toBeInstanceOf(LlmTimeoutError);
    expect((error as LlmTimeoutError).phase).toBe('idle');
    expect(events).toEqual([
      { type: 'text', delta: 'Sure, ' },
      { type: 'text', delta: 'our ' },
    ]);
    expect(ms).toBeLessThan(1500);
    expect(await outcomeOfOnlyRequest()).toBe('client_closed');
  });

  it('does not count a slow consumer as an idle stall', async () => {
    standIn.configure({ tokens: ['a', 'b', 'c'] });
    const events: LlmEvent[] = [];
    for await (const event of llm({ idleTimeoutMs: 50 }).generate(request())) {
      events.push(event);
      await new Promise((resolve) => setTimeout(resolve, 150));
    }
    expect(events.at(-1)).toEqual({ type: 'done' });
  });

  it('fails with a protocol error when the response ends before the completion finished', async () => {
    standIn.configure({ mode: 'truncate', tokens: ['partial', ' reply'], afterTokens: 1 });
    const { error, events } = await failure(llm().generate(request()));
    expect(error).toBeInstanceOf(LlmProtocolError);
    expect(events).toEqual([{ type: 'text', delta: 'partial' }]);
  });

  it('fails with an LlmConnectionError when the server drops the connection mid-stream', async () => {
    standIn.configure({ mode: 'reset', tokens: ['partial', ' reply'], afterTokens: 1, tokenDelayMs: 30 });
    const { error, events } = await failure(llm().generate(request()));
    expect(error).toBeInstanceOf(LlmConnectionError);
    expect(events).toEqual([{ type: 'text', delta: 'partial' }]);
  });

  it('fails with an LlmConnectionError when nothing listens at the URL', async () => {
    const { error } = await failure(llm({ url: 'http://127.0.0.1:1/v1' }).generate(request()));
    expect(error).toBeInstanceOf(LlmConnectionError);
  });
});

describe('OpenAiCompatibleLlm abort', () => {
  it('ends the iteration quietly and promptly, and closes the HTTP connection, when the caller aborts mid-stream', async () => {
    standIn.configure({ tokens: Array.from({ length: 20 }, (_, i) => `w${i} `), tokenDelayMs: 400 });
    const controller = new AbortController();
    const events: LlmEvent[] = [];
    let abortedAt = 0;
    const iteration = (async () => {
      for await (const event of llm().generate(request({ signal: controller.signal }))) {
        events.push(event);
        // Abort while the engine is waiting for the next token, not between events.
        if (events.length === 1) setTimeout(() => ((abortedAt = Date.now()), controller.abort()), 50);
      }
    })();
    await expect(iteration).resolves.toBeUndefined();
    expect(Date.now() - abortedAt).toBeLessThan(200);
    expect(events).toEqual([{ type: 'text', delta: 'w0 ' }]);
    expect(await outcomeOfOnlyRequest()).toBe('client_closed');
  });

  it('closes the HTTP connection when the consumer stops iterating early', async () => {
    standIn.configure({ tokens: Array.from({ length: 100 }, (_, i) => `w${i} `), tokenDelayMs: 30 });
    for await (const event of llm().generate(request())) {
      expect(event.type).toBe('text');
      break;
    }
    expect(await outcomeOfOnlyRequest()).toBe('client_closed');
  });

  it('ends quietly when aborted while still waiting for the first token', async () => {
    standIn.configure({ mode: 'stall' });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    const start = Date.now();
    const events = await collect(llm({ firstTokenTimeoutMs: 5000 }).generate(request({ signal: controller.signal })));
    expect(events).toEqual([]);
    expect(Date.now() - start).toBeLessThan(500);
    expect(await outcomeOfOnlyRequest()).toBe('client_closed');
  });

  it('does not cut the connection of a response that finished normally', async () => {
    const events = await collect(llm().generate(request()));
    expect(events.at(-1)).toEqual({ type: 'done' });
    expect(await outcomeOfOnlyRequest()).toBe('completed');
  });
});

describe('SseDataParser', () => {
  it('joins lines split across pushes, handles CRLF, skips comments and dispatches on blank lines', () => {
    const parser = new SseDataParser();
    expect(parser.push(': hello\r\ndata: {"a"')).toEqual([]);
    expect(parser.push(':1}\r\n\r\nevent: x\ndata:[DONE]\n')).toEqual(['{"a":1}']);
    expect(parser.push('\n')).toEqual(['[DONE]']);
  });

  it('joins multi-line data fields and delivers a final event that lacks its blank line', () => {
    const parser = new SseDataParser();
    expect(parser.push('data: one\ndata: two\n\ndata: last')).toEqual(['one\ntwo']);
    expect(parser.end()).toEqual(['last']);
  });
});
