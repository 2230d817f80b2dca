/**
 * The per-number agent script: what the scripted agent says, which caller phrases select which reply,
 * and which replies end or transfer the call. Scripts are JSON files; every problem found while
 * validating one is reported with the file and the field path, so a bad script stops start-up with a
 * message that says exactly what to fix.
 *
 * A script may also declare HTTP tools (`tools`): endpoints the LLM can call mid-call, such as an
 * order-status lookup. Each declares its JSON Schema arguments, its URL and method, a timeout, headers
 * (which may reference environment variables as `${NAME}`, resolved when the script is loaded) and a
 * filler line spoken while a slow call is pending.
 */
import { readFileSync } from 'node:fs';

export type IntentAction = { type: 'hang_up' } | { type: 'transfer'; to: string };

export interface AgentIntent {
  name: string;
  /** Words or short phrases; matched case-insensitively as whole words, punctuation ignored. */
  keywords: string[];
  reply: string;
  /** Performed after the reply is spoken. */
  action?: IntentAction;
}

export interface AgentScript {
  name: string;
  /** Spoken when the call starts. */
  greeting: string;
  /** Said when no intent matches the caller. */
  fallback: string;
  /** Short line said when the LLM fails mid-call. */
  apology: string;
  /** Said before the server ends a call on its own (e.g. maximum call length). */
  goodbye?: string;
  /** System prompt for a real LLM answering for this number. */
  systemPrompt?: string;
  /** TTS voice for this number. */
  voice?: string;
  intents: AgentIntent[];
  /** HTTP tools the LLM may call; absent or empty when the script declares none. */
  tools?: HttpToolSpec[];
}

/** An HTTP endpoint the LLM can call as a tool, validated and with every default filled in. */
export interface HttpToolSpec {
  name: string;
  description: string;
  /** JSON Schema of the arguments object (`type: "object"`), offered to the LLM as is. */
  parameters: Record<string, unknown>;
  /** Absolute http(s) URL. */
  url: string;
  /** POST sends the arguments as a JSON body; GET sends them as query parameters. */
  method: 'GET' | 'POST';
  timeoutMs: number;
  /** Extra request headers, with `${NAME}` references already resolved from the environment. */
  headers: Record<string, string>;
  /** Said when the call takes longer than a moment. */
  filler: string;
}

export const DEFAULT_TOOL_TIMEOUT_MS = 3000;
export const MIN_TOOL_TIMEOUT_MS = 100;
export const MAX_TOOL_TIMEOUT_MS = 30_000;
export const DEFAULT_TOOL_FILLER = 'One moment please.';
/** The built-in tools' names (see `agent/built-in-tools.ts`); a script's tools may not take them. */
export const RESERVED_TOOL_NAMES: readonly string[] = ['end_call', 'transfer_call'];

export class AgentScriptError extends Error {
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(problems.map((problem) => `${source}: ${problem}`).join('\n'));
    this.name = 'AgentScriptError';
  }
}

/** E.164 number or a SIP URI: the forms a telephony provider can dial. */
const TRANSFER_TARGET = /^(\+[1-9]\d{6,14}|sips?:\S+@\S+)$/;

const TOP_LEVEL_KEYS = new Set(['name', 'greeting', 'fallback', 'apology', 'goodbye', 'systemPrompt', 'voice', 'intents', 'tools']);
const INTENT_KEYS = new Set(['name', 'keywords', 'reply', 'action']);
const TOOL_KEYS = new Set(['name', 'description', 'parameters', 'url', 'method', 'timeoutMs', 'headers', 'filler']);

/** The names LLM APIs accept for a function. */
const TOOL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]{0,63}$/;
/** An HTTP header name (RFC 9110 token). */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const ENV_REFERENCE = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;
const JSON_SCHEMA_TYPES = new Set(['string', 'number', 'integer', 'boolean', 'object', 'array', 'null']);

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** True when the text still has a word left once punctuation is ignored (otherwise it can never match). */
function hasWord(text: string): boolean {
  return /[\p{L}\p{N}]/u.test(text);
}

class Checker {
  readonly problems: string[] = [];

  constructor(private readonly env: NodeJS.ProcessEnv) {}

  requiredString(obj: Record<string, unknown>, key: string, path: string): string {
    const value = obj[key];
    if (typeof value !== 'string' || value.trim() === '') {
      this.problems.push(`${path} must be a non-empty string`);
      return '';
    }
    return value.trim();
  }

  optionalString(obj: Record<string, unknown>, key: string, path: string): string | undefined {
    if (obj[key] === undefined) return undefined;
    return this.requiredString(obj, key, path);
  }

  unknownKeys(obj: Record<string, unknown>, allowed: Set<string>, prefix: string): void {
    for (const key of Object.keys(obj)) {
      if (!allowed.has(key)) this.problems.push(`${prefix}${key} is not a known field (allowed: ${[...allowed].join(', ')})`);
    }
  }

  intent(value: unknown, path: string): AgentIntent | undefined {
    if (!isRecord(value)) {
      this.problems.push(`${path} must be an object`);
      return undefined;
    }
    this.unknownKeys(value, INTENT_KEYS, `${path}.`);
    const name = this.requiredString(value, 'name', `${path}.name`);
    const reply = this.requiredString(value, 'reply', `${path}.reply`);
    const keywords = this.keywords(value['keywords'], `${path}.keywords`);
    const action = value['action'] === undefined ? undefined : this.action(value['action'], `${path}.action`);
    const intent: AgentIntent = { name, keywords, reply };
    if (action !== undefined) intent.action = action;
    return intent;
  }

  keywords(value: unknown, path: string): string[] {
    if (!Array.isArray(value) || value.length === 0 || !value.every((k): k is string => typeof k === 'string')) {
      this.problems.push(`${path} must be a non-empty array of strings`);
      return [];
    }
    value.forEach((keyword, i) => {
      if (!hasWord(keyword)) this.problems.push(`${path}[${i}] must contain at least one word (got ${JSON.stringify(keyword)})`);
    });
    return value.map((keyword) => keyword.trim());
  }

  action(value: unknown, path: string): IntentAction | undefined {
    if (!isRecord(value)) {
      this.problems.push(`${path} must be an object`);
      return undefined;
    }
    const type = value['type'];
    if (type === 'hang_up') {
      this.unknownKeys(value, new Set(['type']), `${path}.`);
      return { type: 'hang_up' };
    }
    if (type === 'transfer') {
      this.unknownKeys(value, new Set(['type', 'to']), `${path}.`);
      const to = value['to'];
      if (typeof to !== 'string' || !TRANSFER_TARGET.test(to.trim())) {
        this.problems.push(`${path}.to must be an E.164 phone number such as +15555550123 or a sip: URI (got ${JSON.stringify(to)})`);
        return undefined;
      }
      return { type: 'transfer', to: to.trim() };
    }
    this.problems.push(`${path}.type must be "hang_up" or "transfer" (got ${JSON.stringify(type)})`);
    return undefined;
  }

  tool(value: unknown, path: string): HttpToolSpec | undefined {
    if (!isRecord(value)) {
      this.problems.push(`${path} must be an object`);
      return undefined;
    }
    this.unknownKeys(value, TOOL_KEYS, `${path}.`);
    const before = this.problems.length;
    const rawName = value['name'];
    let name = '';
    if (typeof rawName !== 'string' || !TOOL_NAME.test(rawName)) {
      this.problems.push(
        `${path}.name must be 1 to 64 letters, digits or underscores, not starting with a digit (got ${JSON.stringify(rawName)})`,
      );
    } else if (RESERVED_TOOL_NAMES.includes(rawName.toLowerCase())) {
      this.problems.push(`${path}.name ${JSON.stringify(rawName)} is the name of a built-in tool (${RESERVED_TOOL_NAMES.join(', ')})`);
    } else {
      name = rawName;
    }
    const description = this.requiredString(value, 'description', `${path}.description`);
    const parameters = this.parameters(value['parameters'], `${path}.parameters`);
    const url = this.url(value['url'], `${path}.url`);
    const method = this.method(value['method'], `${path}.method`);
    const timeoutMs = this.timeoutMs(value['timeoutMs'], `${path}.timeoutMs`);
    const headers = this.headers(value['headers'], `${path}.headers`);
    const filler = this.optionalString(value, 'filler', `${path}.filler`) ?? DEFAULT_TOOL_FILLER;
    if (this.problems.length > before) return undefined;
    return { name, description, parameters, url, method, timeoutMs, headers, filler };
  }

  parameters(value: unknown, path: string): Record<string, unknown> {
    if (!isRecord(value)) {
      this.problems.push(`${path} must be a JSON Schema object such as {"type": "object", "properties": {...}}`);
      return {};
    }
    if (value['type'] !== 'object') this.problems.push(`${path}.type must be "object" (got ${JSON.stringify(value['type'])})`);
    const properties = value['properties'];
    let names = new Set<string>();
    if (properties !== undefined) {
      if (!isRecord(properties)) {
        this.problems.push(`${path}.properties must be an object mapping each argument name to its schema`);
      } else {
        names = new Set(Object.keys(properties));
        for (const [key, schema] of Object.entries(properties)) this.propertySchema(schema, `${path}.properties.${key}`);
      }
    }
    const required = value['required'];
    if (required !== undefined) {
      if (!Array.isArray(required) || !required.every((r): r is string => typeof r === 'string')) {
        this.problems.push(`${path}.required must be an array of property names`);
      } else {
        required.forEach((key, i) => {
          if (!names.has(key)) this.problems.push(`${path}.required[${i}] names ${JSON.stringify(key)}, which is not in ${path}.properties`);
        });
      }
    }
    return value;
  }

  propertySchema(value: unknown, path: string): void {
    if (!isRecord(value)) {
      this.problems.push(`${path} must be a JSON Schema object such as {"type": "string"}`);
      return;
    }
    const type = value['type'];
    if (type === undefined) return;
    const types = Array.isArray(type) ? type : [type];
    if (types.length === 0 || !types.every((t) => typeof t === 'string' && JSON_SCHEMA_TYPES.has(t))) {
      this.problems.push(`${path}.type must be one of ${[...JSON_SCHEMA_TYPES].join(', ')} (got ${JSON.stringify(type)})`);
    }
  }

  url(value: unknown, path: string): string {
    let url: URL | undefined;
    try {
      url = typeof value === 'string' ? new URL(value.trim()) : undefined;
    } catch {
      url = undefined;
    }
    if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      this.problems.push(`${path} must be an absolute http:// or https:// URL (got ${JSON.stringify(value)})`);
      return '';
    }
    return url.href;
  }

  method(value: unknown, path: string): 'GET' | 'POST' {
    if (value === undefined || value === 'POST') return 'POST';
    if (value === 'GET') return 'GET';
    this.problems.push(`${path} must be "POST" or "GET" (got ${JSON.stringify(value)})`);
    return 'POST';
  }

  timeoutMs(value: unknown, path: string): number {
    if (value === undefined) return DEFAULT_TOOL_TIMEOUT_MS;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < MIN_TOOL_TIMEOUT_MS || value > MAX_TOOL_TIMEOUT_MS) {
      this.problems.push(`${path} must be a whole number of milliseconds from ${MIN_TOOL_TIMEOUT_MS} to ${MAX_TOOL_TIMEOUT_MS} (got ${JSON.stringify(value)})`);
      return DEFAULT_TOOL_TIMEOUT_MS;
    }
    return value;
  }

  headers(value: unknown, path: string): Record<string, string> {
    const headers: Record<string, string> = {};
    if (value === undefined) return headers;
    if (!isRecord(value)) {
      this.problems.push(`${path} must be an object mapping header names to string values`);
      return headers;
    }
    for (const [key, raw] of Object.entries(value)) {
      const at = `${path}.${key}`;
      if (!HEADER_NAME.test(key)) {
        this.problems.push(`${at}: ${JSON.stringify(key)} is not a valid HTTP header name`);
        continue;
      }
      if (typeof raw !== 'string') {
        this.problems.push(`${at} must be a string (got ${JSON.stringify(raw)})`);
        continue;
      }
      const missing: string[] = [];
      const resolved = raw.replace(ENV_REFERENCE, (_match, name: string) => {
        const envValue = this.env[name];
        if (envValue === undefined || envValue === '') {
          missing.push(name);
          return '';
        }
        return envValue;
      });
      if (missing.length > 0) {
        for (const name of missing) this.problems.push(`${at} uses \${${name}}, but the environment variable ${name} is not set`);
        continue;
      }
      if (/[\r\n\0]/.test(resolved)) {
        this.problems.push(`${at} must not contain line breaks${resolved === raw ? '' : ' (after resolving environment variables)'}`);
        continue;
      }
      headers[key] = resolved;
    }
    return headers;
  }
}

/**
 * Validates parsed JSON as an agent script; `source` (usually the file path) prefixes every error.
 * `${NAME}` references in tool headers are resolved from `env`.
 */
export function parseAgentScript(json: unknown, source: string, env: NodeJS.ProcessEnv = process.env): AgentScript {
  const check = new Checker(env);
  if (!isRecord(json)) throw new AgentScriptError(source, ['the script must be a JSON object']);
  check.unknownKeys(json, TOP_LEVEL_KEYS, '');

  const script: AgentScript = {
    name: check.requiredString(json, 'name', 'name'),
    greeting: check.requiredString(json, 'greeting', 'greeting'),
    fallback: check.requiredString(json, 'fallback', 'fallback'),
    apology: check.requiredString(json, 'apology', 'apology'),
    intents: [],
  };
  const goodbye = check.optionalString(json, 'goodbye', 'goodbye');
  if (goodbye !== undefined) script.goodbye = goodbye;
  const systemPrompt = check.optionalString(json, 'systemPrompt', 'systemPrompt');
  if (systemPrompt !== undefined) script.systemPrompt = systemPrompt;
  const voice = check.optionalString(json, 'voice', 'voice');
  if (voice !== undefined) script.voice = voice;

  const intents = json['intents'];
  if (!Array.isArray(intents)) {
    check.problems.push('intents must be an array');
  } else {
    const seen = new Map<string, number>();
    intents.forEach((value, i) => {
      const intent = check.intent(value, `intents[${i}]`);
      if (intent === undefined) return;
      const first = seen.get(intent.name.toLowerCase());
      if (intent.name !== '' && first !== undefined) {
        check.problems.push(`intents[${i}].name ${JSON.stringify(intent.name)} repeats intents[${first}].name`);
      } else {
        seen.set(intent.name.toLowerCase(), i);
      }
      script.intents.push(intent);
    });
  }

  const tools = json['tools'];
  if (tools !== undefined) {
    if (!Array.isArray(tools)) {
      check.problems.push('tools must be an array');
    } else {
      const declared: HttpToolSpec[] = [];
      const seen = new Map<string, number>();
      tools.forEach((value, i) => {
        // Report a repeated name even when the rest of the tool is invalid.
        const rawName = isRecord(value) ? value['name'] : undefined;
        if (typeof rawName === 'string' && TOOL_NAME.test(rawName)) {
          const first = seen.get(rawName.toLowerCase());
          if (first !== undefined) check.problems.push(`tools[${i}].name ${JSON.stringify(rawName)} repeats tools[${first}].name`);
          else seen.set(rawName.toLowerCase(), i);
        }
        const tool = check.tool(value, `tools[${i}]`);
        if (tool !== undefined) declared.push(tool);
      });
      script.tools = declared;
    }
  }

  if (check.problems.length > 0) throw new AgentScriptError(source, check.problems);
  return script;
}

/** Reads and validates a script file; read and JSON errors name the file too. */
export function loadAgentScript(path: string, env: NodeJS.ProcessEnv = process.env): AgentScript {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new AgentScriptError(path, [`cannot read the file (${err instanceof Error ? err.message : String(err)})`]);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new AgentScriptError(path, [`invalid JSON (${err instanceof Error ? err.message : String(err)})`]);
  }
  return parseAgentScript(json, path, env);
}
