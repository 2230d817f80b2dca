/**
 * HTTP tools declared in an agent script: the specs offered to the LLM and the runner that performs
 * a call. A call never throws: every outcome, good or bad, becomes a `ToolResult` whose `content` goes
 * back into the LLM context as the tool message, so failures read as plain sentences the model can
 * act on ("The tool lookup_order timed out after 3000 ms.").
 */
import type { HttpToolSpec } from '../engines/local/agent-script.js';
import type { ToolCall, ToolSpec } from '../engines/types.js';

export type { HttpToolSpec } from '../engines/local/agent-script.js';

/** A tool still pending after this long gets its filler line spoken. */
export const TOOL_FILLER_AFTER_MS = 1000;
/** Tool content handed back to the LLM is cut to this many characters. */
export const MAX_TOOL_CONTENT_CHARS = 2000;
/** At most this much of a response body is read; the rest is dropped unread. */
const MAX_BODY_BYTES = 64 * 1024;
/** How much of an error response's body a failure content quotes. */
const ERROR_EXCERPT_CHARS = 200;

export type ToolFailureReason = 'timeout' | 'http_error' | 'network' | 'invalid_arguments' | 'unknown_tool' | 'aborted';

export type ToolResult = { ok: true; content: string } | { ok: false; content: string; reason: ToolFailureReason };

/** The logging surface the runner uses; a pino logger satisfies it. */
export interface ToolLogger {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
}

/** The script's tools as the LLM sees them. */
export function toolSpecs(tools: readonly HttpToolSpec[]): ToolSpec[] {
  return tools.map((tool) => ({ name: tool.name, description: tool.description, parameters: tool.parameters }));
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function matchesType(value: unknown, type: string): boolean {
  switch (type) {
    case 'string':
      return typeof value === 'string';
    case 'number':
      return typeof value === 'number' && Number.isFinite(value);
    case 'integer':
      return typeof value === 'number' && Number.isInteger(value);
    case 'boolean':
      return typeof value === 'boolean';
    case 'object':
      return isRecord(value);
    case 'array':
      return Array.isArray(value);
    case 'null':
      return value === null;
    default:
      return true; // not a type we check
  }
}

function withArticle(type: string): string {
  return /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`;
}

function shortJson(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 40)}…` : text;
}

/**
 * Problems with a call's arguments against the tool's schema: required properties present (and not
 * null), the declared top-level types and enums respected, no extra arguments where
 * `additionalProperties` is false. Empty when the arguments are fine.
 */
export function argumentProblems(schema: Record<string, unknown>, args: unknown): string[] {
  if (!isRecord(args)) return [`the arguments must be a JSON object (got ${shortJson(args)})`];
  const problems: string[] = [];
  const properties = isRecord(schema['properties']) ? schema['properties'] : {};
  const required = Array.isArray(schema['required']) ? schema['required'].filter((r): r is string => typeof r === 'string') : [];
  for (const key of required) {
    if (args[key] === undefined || args[key] === null) problems.push(`"${key}" is required`);
  }
  for (const [key, value] of Object.entries(args)) {
    const property = properties[key];
    if (property === undefined) {
      if (schema['additionalProperties'] === false) {
        const known = Object.keys(properties);
        problems.push(`"${key}" is not an argument of this tool (${known.length === 0 ? 'it takes none' : `its arguments: ${known.join(', ')}`})`);
      }
      continue;
    }
    // null for an optional argument means "not given"; for a required one it was reported above.
    if (!isRecord(property) || value === undefined || value === null) continue;
    const declared = property['type'];
    const types = (Array.isArray(declared) ? declared : [declared]).filter((t): t is string => typeof t === 'string');
    if (types.length > 0 && !types.some((type) => matchesType(value, type))) {
      problems.push(`"${key}" must be ${types.map(withArticle).join(' or ')} (got ${shortJson(value)})`);
      continue;
    }
    const allowed = property['enum'];
    if (Array.isArray(allowed) && !allowed.some((option) => JSON.stringify(option) === JSON.stringify(value))) {
      problems.push(`"${key}" must be one of ${allowed.map(shortJson).join(', ')} (got ${shortJson(value)})`);
    }
  }
  return problems;
}

/** A GET call's URL: the declared URL with the arguments appended as query parameters. */
export function queryUrl(base: string, args: Record<string, unknown>): string {
  const url = new URL(base);
  for (const [key, value] of Object.entries(args)) {
    if (value === undefined || value === null) continue;
    // Strings, numbers and booleans as they are; arrays and objects as JSON.
    url.searchParams.append(key, typeof value === 'object' ? JSON.stringify(value) : String(value));
  }
  return url.href;
}

/** Cuts tool content to `MAX_TOOL_CONTENT_CHARS`, saying so in the content. */
export function capContent(text: string, moreUnread = false): string {
  if (text.length <= MAX_TOOL_CONTENT_CHARS && !moreUnread) return text;
  let head = text.slice(0, MAX_TOOL_CONTENT_CHARS);
  // Do not leave half of a surrogate pair at the cut.
  if (/[\uD800-\uDBFF]$/.test(head)) head = head.slice(0, -1);
  const total = moreUnread ? `more than ${text.length}` : String(text.length);
  return `${head}… [truncated: the response had ${total} characters; only the first ${head.length} are shown]`;
}

async function readBody(response: Response): Promise<{ text: string; cut: boolean }> {
  if (response.body === null) return { text: '', cut: false };
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  let cut = false;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.byteLength;
    if (size >= MAX_BODY_BYTES) {
      cut = size > MAX_BODY_BYTES;
      await reader.cancel().catch(() => {});
      break;
    }
  }
  const bytes = Buffer.concat(chunks).subarray(0, MAX_BODY_BYTES);
  return { text: new TextDecoder().decode(bytes), cut };
}

/** A JSON body re-serialized compactly; anything else (or JSON that does not parse) as it came. */
function bodyContent(text: string, contentType: string | null): string {
  const trimmed = text.trim();
  const looksJson = /\bjson\b/i.test(contentType ?? '') || /^[[{]/.test(trimmed);
  if (!looksJson || trimmed === '') return text;
  try {
    return JSON.stringify(JSON.parse(trimmed));
  } catch {
    return text;
  }
}

function errorCode(error: unknown): string {
  const cause = error instanceof Error ? error.cause : undefined;
  if (isRecord(cause) && typeof cause['code'] === 'string') return cause['code'];
  if (cause instanceof Error) return cause.message;
  return error instanceof Error ? error.message : String(error);
}

/** Performs the HTTP tool calls of one agent's LLM. */
export class HttpToolRunner {
  private readonly byName: Map<string, HttpToolSpec>;

  constructor(
    tools: readonly HttpToolSpec[],
    private readonly logger: ToolLogger,
  ) {
    this.byName = new Map(tools.map((tool) => [tool.name, tool]));
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  /** The declaration of a tool (for its filler line), or undefined when there is none by that name. */
  spec(name: string): HttpToolSpec | undefined {
    return this.byName.get(name);
  }

  /** Calls the tool; resolves with the outcome and never rejects. `signal` is the caller's (barge-in, hang-up). */
  async run(call: ToolCall, signal: AbortSignal): Promise<ToolResult> {
    const tool = this.byName.get(call.name);
    if (tool === undefined) {
      const names = [...this.byName.keys()];
      this.logger.warn({ event: 'http_tool_unknown', tool: call.name }, 'LLM called an HTTP tool we do not have');
      return {
        ok: false,
        reason: 'unknown_tool',
        content: `There is no tool named ${call.name}. ${names.length === 0 ? 'No tools are available.' : `Available tools: ${names.join(', ')}.`}`,
      };
    }
    const problems = argumentProblems(tool.parameters, call.arguments);
    if (problems.length > 0) {
      this.logger.warn({ event: 'http_tool_invalid_arguments', tool: tool.name, problems }, 'LLM called an HTTP tool with bad arguments');
      return {
        ok: false,
        reason: 'invalid_arguments',
        content: `The arguments for ${tool.name} are invalid: ${problems.join('; ')}. Call ${tool.name} again with corrected arguments.`,
      };
    }
    if (signal.aborted) return this.aborted(tool, 0);

    const startedAt = performance.now();
    const elapsed = (): number => Math.round(performance.now() - startedAt);
    const timeout = AbortSignal.timeout(tool.timeoutMs);
    const combined = AbortSignal.any([signal, timeout]);
    const headers: Record<string, string> = { accept: 'application/json, text/plain;q=0.9, */*;q=0.5' };
    if (tool.method === 'POST') headers['content-type'] = 'application/json';
    Object.assign(headers, tool.headers);
    try {
      const response = await fetch(tool.method === 'GET' ? queryUrl(tool.url, call.arguments) : tool.url, {
        method: tool.method,
        headers,
        ...(tool.method === 'POST' ? { body: JSON.stringify(call.arguments) } : {}),
        signal: combined,
      });
      const { text, cut } = await readBody(response);
      if (!response.ok) {
        const excerpt = text.replace(/\s+/g, ' ').trim();
        const quoted = excerpt === '' ? '' : `: ${excerpt.length > ERROR_EXCERPT_CHARS ? `${excerpt.slice(0, ERROR_EXCERPT_CHARS)}…` : excerpt}`;
        this.logger.warn(
          { event: 'http_tool_failed', tool: tool.name, reason: 'http_error', status: response.status, ms: elapsed() },
          'HTTP tool answered with an error status',
        );
        const status = `HTTP ${response.status}${response.statusText === '' ? '' : ` ${response.statusText}`}`;
        return { ok: false, reason: 'http_error', content: `The tool ${tool.name} failed: the server answered ${status}${quoted}.` };
      }
      const body = bodyContent(text, response.headers.get('content-type'));
      const content = body.trim() === '' ? `The tool ${tool.name} succeeded and returned no content.` : capContent(body, cut);
      this.logger.info({ event: 'http_tool', tool: tool.name, status: response.status, ms: elapsed(), chars: body.length }, 'HTTP tool answered');
      return { ok: true, content };
    } catch (error) {
      if (signal.aborted) return this.aborted(tool, elapsed());
      if (timeout.aborted) {
        this.logger.warn({ event: 'http_tool_failed', tool: tool.name, reason: 'timeout', ms: elapsed() }, 'HTTP tool timed out');
        return { ok: false, reason: 'timeout', content: `The tool ${tool.name} timed out after ${tool.timeoutMs} ms.` };
      }
      const code = errorCode(error);
      this.logger.warn({ event: 'http_tool_failed', tool: tool.name, reason: 'network', err: code, ms: elapsed() }, 'HTTP tool unreachable');
      return { ok: false, reason: 'network', content: `The tool ${tool.name} could not be reached (${code}).` };
    }
  }

  private aborted(tool: HttpToolSpec, ms: number): ToolResult {
    this.logger.info({ event: 'http_tool_aborted', tool: tool.name, ms }, 'HTTP tool call cancelled');
    return { ok: false, reason: 'aborted', content: `The call to ${tool.name} was cancelled.` };
  }
}
