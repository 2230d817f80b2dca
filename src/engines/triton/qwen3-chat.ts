/**
 * Qwen3 prompt rendering and output parsing for a raw-prompt backend (Triton's vLLM backend takes a
 * `text_input` string, so the server applies the chat template itself and parses the raw completion).
 *
 * `renderQwen3Prompt` reproduces Qwen3's official chat template (the Jinja `chat_template` shipped in
 * Qwen3's tokenizer_config.json, the hybrid-thinking Qwen3-0.6B … 235B-A22B release) as
 * `apply_chat_template(messages, tools=tools, add_generation_prompt=True, enable_thinking=False)`
 * renders it. Any divergence from that template changes what the model sees, so the branches below
 * follow the template line by line, including its quirks.
 *
 * `Qwen3StreamParser` turns the streamed completion back into engine events: speakable text as soon
 * as it is known to be text, `<tool_call>{json}</tool_call>` blocks as tool calls, and everything that
 * must never reach the caller's ear (think blocks, special tokens, whitespace between blocks) removed.
 *
 * Pure: no I/O.
 */
import type { ChatMessage, LlmEvent, ToolCall, ToolSpec } from '../types.js';

/** Stop strings for the sampling parameters: the end-of-turn and end-of-text special tokens. */
export const QWEN3_STOP: readonly string[] = ['<|im_end|>', '<|endoftext|>'];

export interface Qwen3RenderOptions {
  /**
   * Render the generation prompt as `enable_thinking=True` does (`<|im_start|>assistant\n`, the model
   * may think first). Default false: the empty think block is pre-filled and the model answers
   * directly, which is what a voice agent wants.
   */
  enableThinking?: boolean;
}

const TOOLS_PREAMBLE =
  '# Tools\n\nYou may call one or more functions to assist with the user query.\n\n' +
  'You are provided with function signatures within <tools></tools> XML tags:\n<tools>';
const TOOLS_POSTAMBLE =
  '\n</tools>\n\nFor each function call, return a json object with function name and arguments within ' +
  '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n' +
  '</tool_call><|im_end|>\n';

/** Renders the conversation into the prompt text Qwen3 continues (generation prompt included). */
export function renderQwen3Prompt(
  messages: readonly ChatMessage[],
  tools: readonly ToolSpec[],
  options: Qwen3RenderOptions = {},
): string {
  let out = '';
  const first = messages[0];

  // System block: with tools it always opens, even without a system message.
  if (tools.length > 0) {
    out += '<|im_start|>system\n';
    if (first?.role === 'system') out += first.content + '\n\n';
    out += TOOLS_PREAMBLE;
    for (const tool of tools) {
      out += '\n' + toPythonJson({ type: 'function', function: { name: tool.name, description: tool.description, parameters: tool.parameters } });
    }
    out += TOOLS_POSTAMBLE;
  } else if (first?.role === 'system') {
    out += '<|im_start|>system\n' + first.content + '<|im_end|>\n';
  }

  // The last real user query (tool responses passed as user text do not count).
  let lastQueryIndex = messages.length - 1;
  for (let i = messages.length - 1; i >= 0; i--) {
    const message = messages[i];
    if (message?.role === 'user' && !(message.content.startsWith('<tool_response>') && message.content.endsWith('</tool_response>'))) {
      lastQueryIndex = i;
      break;
    }
  }

  messages.forEach((message, index) => {
    const isLast = index === messages.length - 1;
    switch (message.role) {
      case 'system':
        if (index === 0) return; // already rendered in the system block
        out += '<|im_start|>system\n' + message.content + '<|im_end|>\n';
        return;
      case 'user':
        out += '<|im_start|>user\n' + message.content + '<|im_end|>\n';
        return;
      case 'assistant': {
        let content = message.content;
        let reasoning = '';
        if (content.includes('</think>')) {
          const parts = content.split('</think>');
          reasoning = lstripNewlines(lastOf(rstripNewlines(parts[0] ?? '').split('<think>')));
          content = lstripNewlines(lastOf(parts));
        }
        if (index > lastQueryIndex && (isLast || reasoning !== '')) {
          out += '<|im_start|>assistant\n<think>\n' + stripNewlines(reasoning) + '\n</think>\n\n' + lstripNewlines(content);
        } else {
          out += '<|im_start|>assistant\n' + content;
        }
        (message.toolCalls ?? []).forEach((call, callIndex) => {
          if ((callIndex === 0 && content !== '') || callIndex > 0) out += '\n';
          out += '<tool_call>\n{"name": "' + call.name + '", "arguments": ' + toPythonJson(call.arguments) + '}\n</tool_call>';
        });
        out += '<|im_end|>\n';
        return;
      }
      case 'tool': {
        if (index === 0 || messages[index - 1]?.role !== 'tool') out += '<|im_start|>user';
        out += '\n<tool_response>\n' + message.content + '\n</tool_response>';
        if (isLast || messages[index + 1]?.role !== 'tool') out += '<|im_end|>\n';
        return;
      }
    }
  });

  out += '<|im_start|>assistant\n';
  if (options.enableThinking !== true) out += '<think>\n\n</think>\n\n';
  return out;
}

/**
 * JSON as the template's `tojson` writes it: transformers renders chat templates with `tojson` bound to
 * Python's `json.dumps(x, ensure_ascii=False)`, i.e. `", "` / `": "` separators, keys in insertion
 * order, non-ASCII characters unescaped. (Numbers follow JavaScript: a float with a zero fraction,
 * which JavaScript cannot tell from an integer, prints as the integer.)
 */
export function toPythonJson(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (Number.isNaN(value)) return 'NaN';
    if (!Number.isFinite(value)) return value > 0 ? 'Infinity' : '-Infinity';
    return JSON.stringify(value);
  }
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'bigint') return value.toString();
  if (Array.isArray(value)) return '[' + value.map((item) => toPythonJson(item)).join(', ') + ']';
  if (typeof value === 'object') {
    const withToJson = value as { toJSON?: unknown };
    if (typeof withToJson.toJSON === 'function') return toPythonJson((withToJson.toJSON as () => unknown).call(value));
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined && typeof v !== 'function');
    return '{' + entries.map(([k, v]) => JSON.stringify(k) + ': ' + toPythonJson(v)).join(', ') + '}';
  }
  return 'null';
}

function lastOf(parts: string[]): string {
  return parts[parts.length - 1] ?? '';
}
function lstripNewlines(text: string): string {
  return text.replace(/^\n+/, '');
}
function rstripNewlines(text: string): string {
  return text.replace(/\n+$/, '');
}
function stripNewlines(text: string): string {
  return rstripNewlines(lstripNewlines(text));
}

// ── Streaming output parser ──────────────────────────────────────────────────────────────────────

const THINK_OPEN = '<think>';
const THINK_CLOSE = '</think>';
const TOOL_OPEN = '<tool_call>';
const TOOL_CLOSE = '</tool_call>';
/** Special tokens that end the turn if they leak into the text (stop strings not applied). */
const TERMINATORS = ['<|im_end|>', '<|endoftext|>', '<|im_start|>'];
/** Every tag the text state reacts to. */
const TEXT_TAGS = [THINK_OPEN, THINK_CLOSE, TOOL_OPEN, TOOL_CLOSE, ...TERMINATORS];

export interface Qwen3ParserOptions {
  /** Prefix of generated tool-call ids (`<prefix><n>`, n counting from 1 per parser). Default `call_`. */
  idPrefix?: string;
  /**
   * The prompt left the model inside an open think block (rendered with `enableThinking: true`):
   * everything up to the first `</think>` is reasoning and never spoken. Default false.
   */
  startsInThink?: boolean;
}

type ParserState = 'text' | 'think' | 'tool' | 'done';

/**
 * Incremental parser of Qwen3's streamed completion.
 *
 * - Text is emitted as soon as it is known not to be part of a tag: only a possible partial tag at the
 *   end of a delta (`<tool_c`) is held back, plus trailing whitespace, which is released with the next
 *   visible text — so whitespace before a tool call, between blocks or at the end never becomes a
 *   lone `"\n\n"` text event. Leading whitespace of the reply is dropped; text after a block (tool
 *   call, think block) that follows earlier text starts with a single separating space instead of
 *   whatever whitespace surrounded the block.
 * - `<think>…</think>` blocks (and a stray `</think>`) are removed.
 * - `<|im_end|>`, `<|endoftext|>`, `<|im_start|>` end the reply: they and anything after are dropped.
 * - Each complete `<tool_call>{"name": …, "arguments": …}</tool_call>` becomes a `tool_call` event;
 *   `arguments` may be an object or a string holding a JSON object. A malformed block is dropped and
 *   described in `errors` (never thrown), so the caller can log it.
 */
export class Qwen3StreamParser {
  /** Descriptions of the tool-call blocks that were dropped as malformed, in order. */
  readonly errors: string[] = [];
  private state: ParserState;
  private buffer = '';
  /** Whitespace held back until visible text follows it. */
  private pendingSpace = '';
  /** Drop whitespace until visible text: at the start and after every block. */
  private atBoundary = true;
  /** Some text has been emitted. */
  private spokeText = false;
  private callCount = 0;
  private readonly idPrefix: string;

  constructor(options: Qwen3ParserOptions = {}) {
    this.idPrefix = options.idPrefix ?? 'call_';
    this.state = options.startsInThink === true ? 'think' : 'text';
  }

  /** Feeds one streamed delta; returns the events it completed. */
  push(delta: string): LlmEvent[] {
    if (this.state === 'done') return [];
    this.buffer += delta;
    const events: LlmEvent[] = [];
    this.drain(events, false);
    return events;
  }

  /** The stream is over: flushes what is left (an unterminated tool call is parsed if it is complete JSON). */
  end(): LlmEvent[] {
    const events: LlmEvent[] = [];
    if (this.state !== 'done') this.drain(events, true);
    if (this.state === 'tool') {
      const body = this.buffer;
      this.buffer = '';
      if (body.trim() !== '') this.finishToolCall(body, events, 'unterminated tool call');
    }
    // An unclosed think block and trailing whitespace are dropped.
    this.buffer = '';
    this.pendingSpace = '';
    this.state = 'done';
    return events;
  }

  private drain(events: LlmEvent[], final: boolean): void {
    for (;;) {
      if (this.state === 'text') {
        const found = findFirstTag(this.buffer, TEXT_TAGS);
        if (found === null) {
          // At the end a leftover partial tag (`<tool_c`) is markup, not speech: it is dropped.
          const hold = partialTagStart(this.buffer, TEXT_TAGS);
          this.emitText(this.buffer.slice(0, hold), events);
          this.buffer = final ? '' : this.buffer.slice(hold);
          return;
        }
        this.emitText(this.buffer.slice(0, found.index), events);
        this.buffer = this.buffer.slice(found.index + found.tag.length);
        this.pendingSpace = '';
        this.atBoundary = true;
        if (found.tag === THINK_OPEN) this.state = 'think';
        else if (found.tag === TOOL_OPEN) this.state = 'tool';
        else if (TERMINATORS.includes(found.tag)) {
          this.buffer = '';
          this.state = 'done';
          return;
        }
        // A stray `</think>` or `</tool_call>` is simply removed.
        continue;
      }
      if (this.state === 'think') {
        const close = this.buffer.indexOf(THINK_CLOSE);
        if (close < 0) {
          // Keep only what could still be the start of `</think>`.
          this.buffer = this.buffer.slice(partialTagStart(this.buffer, [THINK_CLOSE]));
          return;
        }
        this.buffer = this.buffer.slice(close + THINK_CLOSE.length);
        this.state = 'text';
        this.atBoundary = true;
        continue;
      }
      if (this.state === 'tool') {
        const close = this.buffer.indexOf(TOOL_CLOSE);
        if (close < 0) return;
        const body = this.buffer.slice(0, close);
        this.buffer = this.buffer.slice(close + TOOL_CLOSE.length);
        this.state = 'text';
        this.atBoundary = true;
        this.finishToolCall(body, events, 'malformed tool call');
        continue;
      }
      return;
    }
  }

  /** Emits visible text, holding back trailing whitespace and dropping whitespace at a boundary. */
  private emitText(text: string, events: LlmEvent[]): void {
    if (text === '') return;
    let trailingStart = text.length;
    while (trailingStart > 0 && /\s/.test(text.charAt(trailingStart - 1))) trailingStart--;
    const visible = text.slice(0, trailingStart);
    const trailing = text.slice(trailingStart);
    if (visible === '') {
      if (!this.atBoundary) this.pendingSpace += trailing;
      return;
    }
    // After a block, text that follows earlier text is set off by one space, so the two never run
    // together ("check.Done"); at the very start nothing is added.
    const lead = this.atBoundary ? (this.spokeText ? ' ' : '') + visible.replace(/^\s+/, '') : this.pendingSpace + visible;
    this.pendingSpace = trailing;
    this.atBoundary = false;
    this.spokeText = true;
    events.push({ type: 'text', delta: lead });
  }

  private finishToolCall(body: string, events: LlmEvent[], what: string): void {
    const parsed = parseToolCallBody(body);
    if (typeof parsed === 'string') {
      this.errors.push(`${what}: ${parsed}: ${truncate(body.trim(), 200)}`);
      return;
    }
    this.callCount++;
    const call: ToolCall = { id: `${this.idPrefix}${this.callCount}`, name: parsed.name, arguments: parsed.arguments };
    events.push({ type: 'tool_call', call });
  }
}

/** The body of a `<tool_call>` block as a name and arguments, or the reason it is not one. */
function parseToolCallBody(body: string): { name: string; arguments: Record<string, unknown> } | string {
  let value: unknown;
  try {
    value = JSON.parse(body.trim());
  } catch (error) {
    return `invalid JSON (${(error as Error).message})`;
  }
  if (!isPlainObject(value)) return 'not a JSON object';
  const name = value['name'];
  if (typeof name !== 'string' || name.trim() === '') return 'missing function name';
  let args: unknown = 'arguments' in value ? value['arguments'] : value['parameters'];
  if (args === undefined || args === null) args = {};
  if (typeof args === 'string') {
    if (args.trim() === '') args = {};
    else {
      try {
        args = JSON.parse(args);
      } catch {
        return 'arguments string is not JSON';
      }
    }
  }
  if (!isPlainObject(args)) return 'arguments are not a JSON object';
  return { name: name.trim(), arguments: args };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The earliest complete tag in `text`, if any. */
function findFirstTag(text: string, tags: readonly string[]): { index: number; tag: string } | null {
  let best: { index: number; tag: string } | null = null;
  for (const tag of tags) {
    const index = text.indexOf(tag);
    if (index >= 0 && (best === null || index < best.index)) best = { index, tag };
  }
  return best;
}

/** Where a possible partial tag at the end of `text` starts (`text.length` if none). */
function partialTagStart(text: string, tags: readonly string[]): number {
  const longest = Math.max(...tags.map((tag) => tag.length));
  for (let i = Math.max(0, text.length - longest + 1); i < text.length; i++) {
    if (text.charCodeAt(i) !== 0x3c /* '<' */) continue;
    const tail = text.slice(i);
    if (tags.some((tag) => tag.length > tail.length && tag.startsWith(tail))) return i;
  }
  return text.length;
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : text.slice(0, max) + '…';
}
