/**
 * The per-number agent script: what the scripted agent says, which caller phrases select which reply,
 * and which replies end or transfer the call. Scripts are JSON files; every problem found while
 * validating one is reported with the file and the field path, so a bad script stops start-up with a
 * message that says exactly what to fix.
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
}

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

const TOP_LEVEL_KEYS = new Set(['name', 'greeting', 'fallback', 'apology', 'goodbye', 'systemPrompt', 'voice', 'intents']);
const INTENT_KEYS = new Set(['name', 'keywords', 'reply', 'action']);

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** True when the text still has a word left once punctuation is ignored (otherwise it can never match). */
function hasWord(text: string): boolean {
  return /[\p{L}\p{N}]/u.test(text);
}

class Checker {
  readonly problems: string[] = [];

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
}

/** Validates parsed JSON as an agent script; `source` (usually the file path) prefixes every error. */
export function parseAgentScript(json: unknown, source: string): AgentScript {
  const check = new Checker();
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

  if (check.problems.length > 0) throw new AgentScriptError(source, check.problems);
  return script;
}

/** Reads and validates a script file; read and JSON errors name the file too. */
export function loadAgentScript(path: string): AgentScript {
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
  return parseAgentScript(json, path);
}
