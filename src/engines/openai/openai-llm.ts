/**
 * LLM engine for any OpenAI-compatible streaming chat endpoint (OpenAI, vLLM, llama.cpp server,
 * Ollama, TGI …). Text deltas are yielded the moment they are parsed; tool calls are assembled from
 * their streamed fragments and yielded whole. Two timers guard the call: the first token must arrive
 * within `firstTokenTimeoutMs` of sending the request, and afterwards the stream may not go quiet for
 * longer than `idleTimeoutMs`. Aborting the request's signal cancels the HTTP request (the socket is
 * closed) and ends the iteration without an error.
 */
import { randomUUID } from 'node:crypto';
import type { ChatMessage, Llm, LlmEvent, LlmRequest, ToolCall, ToolSpec } from '../types.js';
import {
  LlmConnectionError,
  LlmHttpError,
  LlmProtocolError,
  LlmTimeoutError,
  describeError,
  type LlmLogger,
} from '../llm-errors.js';

export interface OpenAiCompatibleLlmOptions {
  /** Base URL including the API version, e.g. http://host:8000/v1; requests go to `${url}/chat/completions`. */
  url: string;
  model: string;
  apiKey?: string;
  /** Longest wait from sending the request to the first text or tool-call fragment. */
  firstTokenTimeoutMs: number;
  /** Longest silence between reads once the first token has arrived. */
  idleTimeoutMs: number;
  logger?: LlmLogger;
}

const BODY_EXCERPT_CHARS = 500;

// ── Wire format ──────────────────────────────────────────────────────────────────────────────────

type OpenAiMessage =
  | { role: 'system' | 'user'; content: string }
  | {
      role: 'assistant';
      content: string;
      tool_calls?: { id: string; type: 'function'; function: { name: string; arguments: string } }[];
    }
  | { role: 'tool'; tool_call_id: string; content: string };

export function toOpenAiMessage(message: ChatMessage): OpenAiMessage {
  switch (message.role) {
    case 'system':
    case 'user':
      return { role: message.role, content: message.content };
    case 'assistant': {
      const out: OpenAiMessage = { role: 'assistant', content: message.content };
      if (message.toolCalls !== undefined && message.toolCalls.length > 0) {
        out.tool_calls = message.toolCalls.map((call) => ({
          id: call.id,
          type: 'function',
          function: { name: call.name, arguments: JSON.stringify(call.arguments) },
        }));
      }
      return out;
    }
    case 'tool':
      return { role: 'tool', tool_call_id: message.toolCallId, content: message.content };
  }
}

export function toOpenAiTool(tool: ToolSpec): { type: 'function'; function: ToolSpec } {
  return { type: 'function', function: { name: tool.name, description: tool.description, parameters: tool.parameters } };
}

// ── SSE ──────────────────────────────────────────────────────────────────────────────────────────

/**
 * Incremental Server-Sent Events parser that returns the data payload of each complete event. Lines
 * may be split anywhere across pushes; comments and non-data fields are ignored.
 */
export class SseDataParser {
  private partial = '';
  private data: string[] = [];

  push(text: string): string[] {
    const lines = (this.partial + text).split('\n');
    this.partial = lines.pop() ?? '';
    const out: string[] = [];
    for (const line of lines) this.line(line, out);
    return out;
  }

  /** End of stream: a final event without its trailing blank line is still delivered. */
  end(): string[] {
    const out: string[] = [];
    if (this.partial !== '') this.line(this.partial, out);
    this.partial = '';
    this.line('', out);
    return out;
  }

  private line(raw: string, out: string[]): void {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line === '') {
      if (this.data.length > 0) out.push(this.data.join('\n'));
      this.data = [];
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    if (field !== 'data') return;
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    this.data.push(value);
  }
}

// ── Chunk handling ───────────────────────────────────────────────────────────────────────────────

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function excerpt(text: string, max = BODY_EXCERPT_CHARS): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}

interface PartialToolCall {
  id: string;
  name: string;
  arguments: string;
}

/** Collects streamed `tool_calls` fragments by index and turns them into complete calls. */
class ToolCallAssembler {
  private readonly calls = new Map<number, PartialToolCall>();
  private lastIndex = -1;

  add(fragment: unknown): void {
    if (!isRecord(fragment)) throw new LlmProtocolError(`tool_calls fragment is not an object: ${excerpt(JSON.stringify(fragment))}`);
    const id = typeof fragment['id'] === 'string' && fragment['id'] !== '' ? fragment['id'] : undefined;
    let index: number;
    if (typeof fragment['index'] === 'number') index = fragment['index'];
    // Servers that omit `index` start a new call with each new id.
    else if (id !== undefined && this.calls.get(this.lastIndex)?.id !== id) index = this.lastIndex + 1;
    else index = Math.max(this.lastIndex, 0);
    this.lastIndex = Math.max(this.lastIndex, index);

    let call = this.calls.get(index);
    if (call === undefined) {
      call = { id: '', name: '', arguments: '' };
      this.calls.set(index, call);
    }
    if (id !== undefined) call.id = id;
    const fn = fragment['function'];
    if (isRecord(fn)) {
      if (typeof fn['name'] === 'string' && fn['name'] !== '') call.name = fn['name'];
      if (typeof fn['arguments'] === 'string') call.arguments += fn['arguments'];
      else if (isRecord(fn['arguments'])) call.arguments += JSON.stringify(fn['arguments']);
    }
  }

  /** The complete calls in index order; the assembler is empty afterwards. */
  flush(): ToolCall[] {
    const calls = [...this.calls.entries()].sort(([a], [b]) => a - b).map(([, call]) => call);
    this.calls.clear();
    this.lastIndex = -1;
    return calls.map((call) => {
      if (call.name === '') throw new LlmProtocolError('streamed tool call has no function name');
      let args: unknown;
      try {
        args = call.arguments.trim() === '' ? {} : JSON.parse(call.arguments);
      } catch {
        throw new LlmProtocolError(`tool call ${call.name} has malformed JSON arguments: ${excerpt(call.arguments, 200)}`);
      }
      if (!isRecord(args)) {
        throw new LlmProtocolError(`tool call ${call.name} arguments are not a JSON object: ${excerpt(call.arguments, 200)}`);
      }
      return { id: call.id === '' ? `call_${randomUUID()}` : call.id, name: call.name, arguments: args };
    });
  }
}

interface ChunkResult {
  events: LlmEvent[];
  /** A text or tool-call fragment arrived (ends the first-token wait). */
  progressed: boolean;
  finished: boolean;
}

function handleChunk(payload: string, tools: ToolCallAssembler): ChunkResult {
  let chunk: unknown;
  try {
    chunk = JSON.parse(payload);
  } catch {
    throw new LlmProtocolError(`stream chunk is not JSON: ${excerpt(payload, 200)}`);
  }
  if (!isRecord(chunk)) throw new LlmProtocolError(`stream chunk is not an object: ${excerpt(payload, 200)}`);
  if (chunk['error'] !== undefined) {
    const error = chunk['error'];
    const message = isRecord(error) && typeof error['message'] === 'string' ? error['message'] : JSON.stringify(error);
    throw new LlmProtocolError(`endpoint reported an error mid-stream: ${excerpt(message, 300)}`);
  }
  const choices = chunk['choices'];
  if (!Array.isArray(choices)) throw new LlmProtocolError(`stream chunk has no choices array: ${excerpt(payload, 200)}`);

  const result: ChunkResult = { events: [], progressed: false, finished: false };
  // Usage-only chunks have an empty choices array; only the first choice is ever requested.
  const choice: unknown = choices.find((c: unknown) => isRecord(c) && (c['index'] === undefined || c['index'] === 0));
  if (!isRecord(choice)) return result;
  const delta = choice['delta'];
  if (isRecord(delta)) {
    const content = delta['content'];
    if (typeof content === 'string' && content !== '') {
      result.events.push({ type: 'text', delta: content });
      result.progressed = true;
    }
    const toolCalls = delta['tool_calls'];
    if (Array.isArray(toolCalls) && toolCalls.length > 0) {
      for (const fragment of toolCalls) tools.add(fragment);
      result.progressed = true;
    }
  }
  const finishReason = choice['finish_reason'];
  if (typeof finishReason === 'string' && finishReason !== '') {
    // Some servers report `stop` even after tool calls, so any finish completes the pending calls.
    for (const call of tools.flush()) result.events.push({ type: 'tool_call', call });
    result.progressed = true;
    result.finished = true;
  }
  return result;
}

/** Longest wait for the end of the body after [DONE] before the connection is closed instead. */
const DRAIN_AFTER_DONE_MS = 1000;

/** Reads what is left of a finished response in the background, bounded in time, then releases it. */
async function drain(reader: ReadableStreamDefaultReader<Uint8Array>, http: AbortController): Promise<void> {
  const timer = setTimeout(() => http.abort(), DRAIN_AFTER_DONE_MS);
  try {
    for (;;) if ((await reader.read()).done) return;
  } catch {
    // Aborted or reset: the connection is gone either way.
  } finally {
    clearTimeout(timer);
  }
}

// ── Engine ───────────────────────────────────────────────────────────────────────────────────────

export class OpenAiCompatibleLlm implements Llm {
  readonly name: string;
  private readonly endpoint: string;

  constructor(private readonly options: OpenAiCompatibleLlmOptions) {
    this.endpoint = `${options.url.replace(/\/+$/, '')}/chat/completions`;
    this.name = `openai-compatible:${options.model}`;
  }

  requestBody(request: LlmRequest): Record<string, unknown> {
    const body: Record<string, unknown> = {
      model: this.options.model,
      messages: request.messages.map(toOpenAiMessage),
      stream: true,
    };
    if (request.tools.length > 0) body['tools'] = request.tools.map(toOpenAiTool);
    return body;
  }

  async *generate(request: LlmRequest): AsyncGenerator<LlmEvent> {
    const { signal } = request;
    if (signal.aborted) return;
    const { firstTokenTimeoutMs, idleTimeoutMs, logger } = this.options;

    const http = new AbortController();
    const onCallerAbort = (): void => http.abort(signal.reason);
    signal.addEventListener('abort', onCallerAbort, { once: true });

    const firstTokenDeadline = Date.now() + firstTokenTimeoutMs;
    let firstTokenSeen = false;
    let finished = false;
    let timeout: LlmTimeoutError | undefined;
    /** The idle timer fired after the completion had finished: end normally. */
    let lateStall = false;
    let timer: NodeJS.Timeout | undefined;
    let drainAfterDone: ReadableStreamDefaultReader<Uint8Array> | undefined;

    const stopTimer = (): void => {
      clearTimeout(timer);
      timer = undefined;
    };
    /** Arms the timer for the next wait: what is left of the first-token budget, or the idle budget. */
    const startTimer = (): void => {
      stopTimer();
      const phase = firstTokenSeen ? 'idle' : 'first_token';
      const ms = firstTokenSeen ? idleTimeoutMs : Math.max(0, firstTokenDeadline - Date.now());
      timer = setTimeout(() => {
        if (finished) lateStall = true;
        else timeout = new LlmTimeoutError(phase, phase === 'idle' ? idleTimeoutMs : firstTokenTimeoutMs);
        http.abort(timeout);
      }, ms);
    };
    /** What a rejected fetch/read means, given why the HTTP request may have been aborted. */
    const failure = (err: unknown, what: string): Error =>
      timeout ?? new LlmConnectionError(`LLM request to ${this.endpoint} failed ${what}: ${describeError(err)}`, { cause: err });

    try {
      startTimer();
      let response: Response;
      try {
        response = await fetch(this.endpoint, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            accept: 'text/event-stream',
            ...(this.options.apiKey === undefined ? {} : { authorization: `Bearer ${this.options.apiKey}` }),
          },
          body: JSON.stringify(this.requestBody(request)),
          signal: http.signal,
        });
      } catch (err) {
        if (signal.aborted) return;
        throw failure(err, 'before a response');
      }

      if (!response.ok) {
        let text = '';
        try {
          text = await response.text();
        } catch (err) {
          if (signal.aborted) return;
          logger?.debug({ callId: request.callId, err: describeError(err) }, 'could not read LLM error body');
        }
        throw new LlmHttpError(response.status, excerpt(text));
      }
      if (response.body === null) throw new LlmProtocolError('LLM endpoint answered without a body');

      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      const sse = new SseDataParser();
      const tools = new ToolCallAssembler();

      reading: for (;;) {
        startTimer();
        let read: Awaited<ReturnType<typeof reader.read>>;
        try {
          read = await reader.read();
        } catch (err) {
          if (signal.aborted) return;
          if (lateStall) {
            logger?.debug({ callId: request.callId }, 'LLM stream finished but stayed open; closing it');
            break;
          }
          throw failure(err, 'mid-stream');
        }
        stopTimer();
        const payloads = read.done
          ? [...sse.push(decoder.decode()), ...sse.end()]
          : sse.push(decoder.decode(read.value, { stream: true }));
        for (const payload of payloads) {
          if (payload.trim() === '[DONE]') {
            finished = true;
            // The body normally ends right after [DONE]; draining it lets the connection be reused.
            if (!read.done) drainAfterDone = reader;
            break reading;
          }
          const result = handleChunk(payload, tools);
          if (result.progressed) firstTokenSeen = true;
          if (result.finished) finished = true;
          for (const event of result.events) {
            yield event;
            if (signal.aborted) return;
          }
        }
        if (read.done) break;
      }

      if (!finished) throw new LlmProtocolError('LLM stream ended before the completion finished');
      // Calls still pending when the stream ends without a finish_reason.
      for (const call of tools.flush()) {
        yield { type: 'tool_call', call };
        if (signal.aborted) return;
      }
      yield { type: 'done' };
    } finally {
      stopTimer();
      signal.removeEventListener('abort', onCallerAbort);
      if (drainAfterDone !== undefined && !signal.aborted) void drain(drainAfterDone, http);
      // Otherwise close the connection if the body is still open (consumer stopped early, error, abort).
      else http.abort();
    }
  }
}
