import { describe, expect, it } from 'vitest';
import { QWEN3_STOP, Qwen3StreamParser, renderQwen3Prompt, toPythonJson } from '../../src/engines/triton/qwen3-chat.js';
import type { ChatMessage, LlmEvent, ToolCall, ToolSpec } from '../../src/engines/types.js';

// Expected strings are written by hand from Qwen3's official chat template (tokenizer_config.json
// `chat_template` of Qwen/Qwen3-*, as kept in llama.cpp's models/templates/Qwen-Qwen3-0.6B.jinja),
// rendered with add_generation_prompt=True, enable_thinking=False.

const lookupOrder: ToolSpec = {
  name: 'lookup_order',
  description: 'Look up an order by its id.',
  parameters: {
    type: 'object',
    properties: { order_id: { type: 'string', description: 'The order id, e.g. "A-17".' } },
    required: ['order_id'],
  },
};
const endCall: ToolSpec = { name: 'end_call', description: 'Hang up.', parameters: { type: 'object', properties: {} } };

const GENERATION_PROMPT = '<|im_start|>assistant\n<think>\n\n</think>\n\n';
const TOOLS_INSTRUCTIONS_END =
  '\n</tools>\n\n' +
  'For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n' +
  '<tool_call>\n' +
  '{"name": <function-name>, "arguments": <args-json-object>}\n' +
  '</tool_call><|im_end|>\n';

describe('renderQwen3Prompt', () => {
  it('renders system, tools, an assistant tool call and its results exactly as the Qwen3 template', () => {
    const messages: ChatMessage[] = [
      { role: 'system', content: 'You are Ava, the phone agent of Acme.' },
      { role: 'user', content: 'Hi, where is my order A-17?' },
      {
        role: 'assistant',
        content: '',
        toolCalls: [{ id: 'call_1', name: 'lookup_order', arguments: { order_id: 'A-17', details: true, items: [1, 2.5], note: null } }],
      },
      { role: 'tool', toolCallId: 'call_1', content: '{"status":"shipped","eta":"Friday"}' },
      { role: 'assistant', content: 'It shipped and arrives on Friday.' },
      { role: 'user', content: 'Great. Can you check my other order, B-2, and then hang up?' },
      {
        role: 'assistant',
        content: 'Sure, one moment.',
        toolCalls: [
          { id: 'call_2', name: 'lookup_order', arguments: { order_id: 'B-2' } },
          { id: 'call_3', name: 'end_call', arguments: {} },
        ],
      },
      { role: 'tool', toolCallId: 'call_2', content: 'delivered' },
      { role: 'tool', toolCallId: 'call_3', content: 'ok' },
    ];
    const expected =
      '<|im_start|>system\n' +
      'You are Ava, the phone agent of Acme.\n\n' +
      '# Tools\n\n' +
      'You may call one or more functions to assist with the user query.\n\n' +
      'You are provided with function signatures within <tools></tools> XML tags:\n' +
      '<tools>\n' +
      '{"type": "function", "function": {"name": "lookup_order", "description": "Look up an order by its id.", "parameters": {"type": "object", "properties": {"order_id": {"type": "string", "description": "The order id, e.g. \\"A-17\\"."}}, "required": ["order_id"]}}}\n' +
      '{"type": "function", "function": {"name": "end_call", "description": "Hang up.", "parameters": {"type": "object", "properties": {}}}}' +
      TOOLS_INSTRUCTIONS_END +
      '<|im_start|>user\nHi, where is my order A-17?<|im_end|>\n' +
      '<|im_start|>assistant\n' +
      '<tool_call>\n{"name": "lookup_order", "arguments": {"order_id": "A-17", "details": true, "items": [1, 2.5], "note": null}}\n</tool_call>' +
      '<|im_end|>\n' +
      '<|im_start|>user\n<tool_response>\n{"status":"shipped","eta":"Friday"}\n</tool_response><|im_end|>\n' +
      '<|im_start|>assistant\nIt shipped and arrives on Friday.<|im_end|>\n' +
      '<|im_start|>user\nGreat. Can you check my other order, B-2, and then hang up?<|im_end|>\n' +
      '<|im_start|>assistant\nSure, one moment.\n' +
      '<tool_call>\n{"name": "lookup_order", "arguments": {"order_id": "B-2"}}\n</tool_call>\n' +
      '<tool_call>\n{"name": "end_call", "arguments": {}}\n</tool_call>' +
      '<|im_end|>\n' +
      '<|im_start|>user\n<tool_response>\ndelivered\n</tool_response>\n<tool_response>\nok\n</tool_response><|im_end|>\n' +
      GENERATION_PROMPT;
    expect(renderQwen3Prompt(messages, [lookupOrder, endCall])).toBe(expected);
  });

  it('renders a plain conversation without tools', () => {
    const messages: ChatMessage[] = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hello' },
      { role: 'assistant', content: 'Hi there!' },
      { role: 'user', content: 'Bye' },
    ];
    expect(renderQwen3Prompt(messages, [])).toBe(
      '<|im_start|>system\nBe brief.<|im_end|>\n' +
        '<|im_start|>user\nHello<|im_end|>\n' +
        '<|im_start|>assistant\nHi there!<|im_end|>\n' +
        '<|im_start|>user\nBye<|im_end|>\n' +
        GENERATION_PROMPT,
    );
  });

  it('renders no system block without a system message or tools', () => {
    expect(renderQwen3Prompt([{ role: 'user', content: 'Hello' }], [])).toBe('<|im_start|>user\nHello<|im_end|>\n' + GENERATION_PROMPT);
  });

  it('still opens a system block for tools when there is no system message', () => {
    expect(renderQwen3Prompt([{ role: 'user', content: 'Bye' }], [endCall])).toBe(
      '<|im_start|>system\n# Tools\n\n' +
        'You may call one or more functions to assist with the user query.\n\n' +
        'You are provided with function signatures within <tools></tools> XML tags:\n' +
        '<tools>\n' +
        '{"type": "function", "function": {"name": "end_call", "description": "Hang up.", "parameters": {"type": "object", "properties": {}}}}' +
        TOOLS_INSTRUCTIONS_END +
        '<|im_start|>user\nBye<|im_end|>\n' +
        GENERATION_PROMPT,
    );
  });

  it('drops past reasoning from assistant turns and renders later system messages in place', () => {
    const messages: ChatMessage[] = [
      { role: 'user', content: 'q1' },
      { role: 'assistant', content: '<think>\nhmm\n</think>\n\nA1' },
      { role: 'system', content: 'The caller is on hold.' },
      { role: 'user', content: 'q2' },
    ];
    expect(renderQwen3Prompt(messages, [])).toBe(
      '<|im_start|>user\nq1<|im_end|>\n' +
        '<|im_start|>assistant\nA1<|im_end|>\n' +
        '<|im_start|>system\nThe caller is on hold.<|im_end|>\n' +
        '<|im_start|>user\nq2<|im_end|>\n' +
        GENERATION_PROMPT,
    );
  });

  it('leaves the think block open when thinking is enabled', () => {
    expect(renderQwen3Prompt([{ role: 'user', content: 'Hi' }], [], { enableThinking: true })).toBe(
      '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n',
    );
  });

  it('serializes JSON the way Python json.dumps(ensure_ascii=False) does', () => {
    expect(toPythonJson({ a: 1, b: [true, null, 'x'], c: {}, d: [], e: 'Café "q"\n\u0001', f: undefined })).toBe(
      '{"a": 1, "b": [true, null, "x"], "c": {}, "d": [], "e": "Café \\"q\\"\\n\\u0001"}',
    );
    expect(toPythonJson({ z: 1, a: 2 })).toBe('{"z": 1, "a": 2}'); // insertion order, not sorted
  });

  it('exports the stop strings', () => {
    expect(QWEN3_STOP).toEqual(['<|im_end|>', '<|endoftext|>']);
  });
});

// ── Parser ───────────────────────────────────────────────────────────────────────────────────────

interface Parsed {
  events: LlmEvent[];
  text: string;
  calls: ToolCall[];
  errors: string[];
}

function parse(deltas: readonly string[], parser = new Qwen3StreamParser()): Parsed {
  const events: LlmEvent[] = [];
  for (const delta of deltas) events.push(...parser.push(delta));
  events.push(...parser.end());
  return {
    events,
    text: events.map((event) => (event.type === 'text' ? event.delta : '')).join(''),
    calls: events.flatMap((event) => (event.type === 'tool_call' ? [event.call] : [])),
    errors: parser.errors,
  };
}

/** Every way of cutting `text` in two, plus one character per delta. */
function splits(text: string): string[][] {
  const out: string[][] = [];
  for (let i = 1; i < text.length; i++) out.push([text.slice(0, i), text.slice(i)]);
  out.push([...text]);
  return out;
}

describe('Qwen3StreamParser', () => {
  it('passes plain text through as it streams', () => {
    const parser = new Qwen3StreamParser();
    expect(parser.push('Hello')).toEqual([{ type: 'text', delta: 'Hello' }]);
    expect(parser.push(', how can I')).toEqual([{ type: 'text', delta: ', how can I' }]);
    expect(parser.push(' help?')).toEqual([{ type: 'text', delta: ' help?' }]);
    expect(parser.end()).toEqual([]);
  });

  it('holds back only a possible partial tag', () => {
    const parser = new Qwen3StreamParser();
    expect(parser.push('Checking <tool_c')).toEqual([{ type: 'text', delta: 'Checking' }]);
    expect(parser.push('all>')).toEqual([]);
    const ltParser = new Qwen3StreamParser();
    expect(ltParser.push('3 < 4 and a<b')).toEqual([{ type: 'text', delta: '3 < 4 and a<b' }]);
  });

  it('strips think blocks, a leading empty one included', () => {
    expect(parse(['<think>\n\n</think>\n\nHello there.']).text).toBe('Hello there.');
    expect(parse(['<think>\nThe user wants the time.\n</think>\n\nIt is noon.']).text).toBe('It is noon.');
    for (const deltas of splits('<think>\nplan <b>x</b>\n</think>\n\nIt is noon.')) {
      expect(parse(deltas).text, JSON.stringify(deltas)).toBe('It is noon.');
    }
  });

  it('skips the reasoning when the prompt left a think block open', () => {
    expect(parse(['Reasoning here.\n</think>\n\nAnswer.'], new Qwen3StreamParser({ startsInThink: true })).text).toBe('Answer.');
  });

  it('turns a tool call in one delta into a tool_call event', () => {
    const result = parse(['<tool_call>\n{"name": "lookup_order", "arguments": {"order_id": "A-17"}}\n</tool_call>']);
    expect(result.events).toEqual([
      { type: 'tool_call', call: { id: 'call_1', name: 'lookup_order', arguments: { order_id: 'A-17' } } },
    ]);
    expect(result.errors).toEqual([]);
  });

  it('parses a tool call split at every character position', () => {
    const text = 'One moment.\n<tool_call>\n{"name": "lookup_order", "arguments": {"order_id": "A<1>"}}\n</tool_call>';
    for (const deltas of splits(text)) {
      const result = parse(deltas);
      expect(result.text, JSON.stringify(deltas)).toBe('One moment.');
      expect(result.calls, JSON.stringify(deltas)).toEqual([{ id: 'call_1', name: 'lookup_order', arguments: { order_id: 'A<1>' } }]);
      expect(result.errors).toEqual([]);
    }
  });

  it('parses two tool calls with no junk text between them', () => {
    const text =
      '<tool_call>\n{"name": "lookup_order", "arguments": {"order_id": "B-2"}}\n</tool_call>\n' +
      '<tool_call>\n{"name": "end_call", "arguments": {}}\n</tool_call>';
    for (const deltas of [[text], ...splits(text)]) {
      const result = parse(deltas);
      expect(result.events.map((event) => event.type)).toEqual(['tool_call', 'tool_call']);
      expect(result.calls.map((call) => [call.id, call.name])).toEqual([
        ['call_1', 'lookup_order'],
        ['call_2', 'end_call'],
      ]);
    }
  });

  it('emits text before and after a tool call, without the whitespace around it', () => {
    const text = 'Let me check.\n\n<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>\n\nDone, it shipped.\n';
    for (const deltas of [[text], ...splits(text)]) {
      const result = parse(deltas);
      expect(result.events.map((event) => event.type === 'text' ? event.delta.trim() === '' ? 'blank' : 'text' : event.type)).not.toContain('blank');
      expect(result.text).toBe('Let me check. Done, it shipped.');
      expect(result.calls).toHaveLength(1);
    }
    const ordered = parse([text]).events;
    expect(ordered).toEqual([
      { type: 'text', delta: 'Let me check.' },
      { type: 'tool_call', call: { id: 'call_1', name: 'f', arguments: {} } },
      { type: 'text', delta: ' Done, it shipped.' },
    ]);
  });

  it('keeps whitespace inside the text, releasing it with the next word', () => {
    const parser = new Qwen3StreamParser();
    expect(parser.push('Hello.\n')).toEqual([{ type: 'text', delta: 'Hello.' }]);
    expect(parser.push('How ')).toEqual([{ type: 'text', delta: '\nHow' }]);
    expect(parser.push('are you?')).toEqual([{ type: 'text', delta: ' are you?' }]);
  });

  it('records a malformed tool call in errors and drops it', () => {
    const result = parse(['Sure. <tool_call>\n{"name": "f", "arguments": {oops}\n</tool_call> Anything else?']);
    expect(result.calls).toEqual([]);
    expect(result.text).toBe('Sure. Anything else?');
    expect(result.errors).toHaveLength(1);
    expect(result.errors[0]).toMatch(/invalid JSON/);
    const noName = parse(['<tool_call>{"arguments": {}}</tool_call>']);
    expect(noName.calls).toEqual([]);
    expect(noName.errors[0]).toMatch(/missing function name/);
  });

  it('accepts arguments given as a JSON string', () => {
    const result = parse(['<tool_call>\n{"name": "lookup_order", "arguments": "{\\"order_id\\": \\"C-3\\"}"}\n</tool_call>']);
    expect(result.calls).toEqual([{ id: 'call_1', name: 'lookup_order', arguments: { order_id: 'C-3' } }]);
    const bad = parse(['<tool_call>{"name": "f", "arguments": "[1]"}</tool_call>']);
    expect(bad.calls).toEqual([]);
    expect(bad.errors).toHaveLength(1);
  });

  it('strips leaked end-of-turn tokens and ignores what follows them', () => {
    expect(parse(['Goodbye!<|im_end|>']).text).toBe('Goodbye!');
    expect(parse(['Goodbye!<|im_e', 'nd|>\n<|im_start|>user\nhi']).text).toBe('Goodbye!');
    expect(parse(['Bye.<|endoftext|>']).text).toBe('Bye.');
  });

  it('parses an unterminated tool call at the end when its JSON is complete', () => {
    expect(parse(['<tool_call>\n{"name": "end_call", "arguments": {}}\n']).calls).toEqual([{ id: 'call_1', name: 'end_call', arguments: {} }]);
    const cut = parse(['<tool_call>\n{"name": "end_ca']);
    expect(cut.calls).toEqual([]);
    expect(cut.errors[0]).toMatch(/unterminated/);
  });

  it('uses the id prefix it is given', () => {
    const result = parse(['<tool_call>{"name": "f", "arguments": {}}</tool_call>'], new Qwen3StreamParser({ idPrefix: 'call_t3_' }));
    expect(result.calls[0]?.id).toBe('call_t3_1');
  });
});
