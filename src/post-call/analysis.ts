/**
 * The heavy LLM work on a (redacted) transcript: summary, disposition from the number's list,
 * sentiment and action items, asked for as JSON and validated. A reply that fails validation is
 * answered once with the error and asked again; a second bad reply fails the attempt (BullMQ
 * retries the job). Long calls are summarized in chunks (~3000 tokens by a chars/3.5 estimate),
 * then the chunk notes are combined (and, were the notes themselves too long, combined in
 * rounds). With no LLM, an extractive fallback whose result says so (`extractive: true`).
 */
import type { ChatMessage, Llm } from '../engines/types.js';
import { errorMessage } from './logger.js';

export const DEFAULT_DISPOSITIONS: readonly string[] = ['resolved', 'follow_up', 'transferred', 'no_answer', 'other'];
export const SENTIMENTS = ['positive', 'neutral', 'negative'] as const;
export type Sentiment = (typeof SENTIMENTS)[number];

/** Tokens per chunk of transcript sent to the LLM. */
export const DEFAULT_CHUNK_TOKENS = 3000;
/** The rough token estimate used for chunking: characters / 3.5. */
export const CHARS_PER_TOKEN = 3.5;
export const DEFAULT_LLM_TIMEOUT_MS = 120_000;

const MAX_SUMMARY_CHARS = 4000;
const MAX_ACTION_ITEMS = 20;
const MAX_ACTION_ITEM_CHARS = 500;
/** Rounds of combining notes before giving up on shrinking them (never reached in practice). */
const MAX_REDUCE_ROUNDS = 10;

export interface TranscriptLine {
  speaker: 'caller' | 'agent';
  text: string;
}

export interface CallFacts {
  callSid: string;
  direction: 'inbound' | 'outbound';
  endReason: string;
  durationSeconds: number;
}

export interface CallAnalysis {
  summary: string;
  /** One of the allowed dispositions; null only when the extractive fallback found none fitting. */
  disposition: string | null;
  sentiment: Sentiment;
  actionItems: string[];
  /** Made by the extractive fallback, not an LLM. */
  extractive: boolean;
  /** The LLM's name (engine), or null for the extractive fallback. */
  model: string | null;
  /** LLM requests made (retries included). */
  llmRequests: number;
  /** Transcript chunks summarized separately (1 for a call that fit in one request). */
  chunks: number;
}

export interface AnalyzeOptions {
  llm: Llm;
  /** The number's dispositions; DEFAULT_DISPOSITIONS when empty. */
  dispositions: readonly string[];
  chunkTokens?: number;
  /** Per LLM request. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Reported as the result's model; default the LLM's name. */
  modelName?: string;
}

/** The model's JSON failed validation twice (or an LLM request failed). */
export class PostCallLlmError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PostCallLlmError';
  }
}

export function estimateTokens(text: string): number {
  return Math.ceil(text.length / CHARS_PER_TOKEN);
}

export function effectiveDispositions(dispositions: readonly string[]): readonly string[] {
  const cleaned = dispositions.map((d) => d.trim()).filter((d) => d !== '');
  return cleaned.length > 0 ? cleaned : DEFAULT_DISPOSITIONS;
}

export function formatTranscript(lines: readonly TranscriptLine[]): string[] {
  return lines
    .filter((l) => l.text.trim() !== '')
    .map((l) => `${l.speaker === 'caller' ? 'Caller' : 'Agent'}: ${l.text.trim().replace(/\s+/g, ' ')}`);
}

/**
 * Packs lines into chunks of at most `maxChars` (joined by newlines); a line longer than that is
 * cut at spaces into pieces of its own.
 */
export function chunkLines(lines: readonly string[], maxChars: number): string[] {
  const pieces: string[] = [];
  for (const line of lines) {
    if (line.length <= maxChars) {
      pieces.push(line);
      continue;
    }
    let rest = line;
    while (rest.length > maxChars) {
      let cut = rest.lastIndexOf(' ', maxChars);
      if (cut < maxChars / 2) cut = maxChars;
      pieces.push(rest.slice(0, cut));
      rest = rest.slice(cut).trimStart();
    }
    if (rest !== '') pieces.push(rest);
  }
  const chunks: string[] = [];
  let current = '';
  for (const piece of pieces) {
    if (current === '') current = piece;
    else if (current.length + 1 + piece.length <= maxChars) current += `\n${piece}`;
    else {
      chunks.push(current);
      current = piece;
    }
  }
  if (current !== '') chunks.push(current);
  return chunks;
}

// ---------------------------------------------------------------------------------------------
// JSON replies

/** Reads the JSON object out of a model reply: thinking blocks, code fences and chatter around it are dropped. */
export function extractJsonObject(reply: string): unknown {
  const text = reply.replace(/<think>[\s\S]*?<\/think>/g, '').trim();
  const fenced = /```(?:json)?\s*([\s\S]*?)```/i.exec(text);
  const body = fenced?.[1] ?? text;
  const start = body.indexOf('{');
  const end = body.lastIndexOf('}');
  if (start < 0 || end <= start) throw new Error('the reply holds no JSON object');
  try {
    return JSON.parse(body.slice(start, end + 1));
  } catch (err) {
    throw new Error(`the reply's JSON does not parse (${errorMessage(err)})`);
  }
}

function normalizeKey(value: string): string {
  return value.trim().toLowerCase().replace(/[\s-]+/g, '_');
}

function field(obj: Record<string, unknown>, ...names: string[]): unknown {
  for (const name of names) if (name in obj) return obj[name];
  return undefined;
}

function readSummary(obj: Record<string, unknown>): string {
  const summary = obj.summary;
  if (typeof summary !== 'string' || summary.trim() === '') throw new Error('"summary" must be a non-empty string');
  return summary.trim().slice(0, MAX_SUMMARY_CHARS);
}

function readActionItems(obj: Record<string, unknown>): string[] {
  const items = field(obj, 'action_items', 'actionItems');
  if (items === undefined || items === null) return [];
  if (!Array.isArray(items) || !items.every((i) => typeof i === 'string')) throw new Error('"action_items" must be an array of strings');
  return (items as string[])
    .map((i) => i.trim())
    .filter((i) => i !== '')
    .slice(0, MAX_ACTION_ITEMS)
    .map((i) => i.slice(0, MAX_ACTION_ITEM_CHARS));
}

function asObject(value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('the reply must be one JSON object');
  return value as Record<string, unknown>;
}

export interface AnalysisJson {
  summary: string;
  disposition: string;
  sentiment: Sentiment;
  actionItems: string[];
}

/** Validates a final-analysis reply; the disposition is returned spelled as in the list. */
export function parseAnalysisReply(reply: string, dispositions: readonly string[]): AnalysisJson {
  const obj = asObject(extractJsonObject(reply));
  const summary = readSummary(obj);
  const rawDisposition = obj.disposition;
  if (typeof rawDisposition !== 'string') throw new Error(`"disposition" must be one of ${JSON.stringify(dispositions)}`);
  const disposition = dispositions.find((d) => normalizeKey(d) === normalizeKey(rawDisposition));
  if (disposition === undefined) {
    throw new Error(`"disposition" ${JSON.stringify(rawDisposition)} is not one of ${JSON.stringify(dispositions)}`);
  }
  const rawSentiment = obj.sentiment;
  const sentiment = typeof rawSentiment === 'string' ? SENTIMENTS.find((s) => s === rawSentiment.trim().toLowerCase()) : undefined;
  if (sentiment === undefined) throw new Error(`"sentiment" must be one of ${JSON.stringify(SENTIMENTS)}`);
  return { summary, disposition, sentiment, actionItems: readActionItems(obj) };
}

export interface ChunkNotes {
  summary: string;
  actionItems: string[];
}

export function parseNotesReply(reply: string): ChunkNotes {
  const obj = asObject(extractJsonObject(reply));
  return { summary: readSummary(obj), actionItems: readActionItems(obj) };
}

// ---------------------------------------------------------------------------------------------
// Prompts

const SYSTEM_PROMPT =
  'You analyse phone-call transcripts for a call centre. Personal data in them has been replaced by ' +
  'placeholders such as [PHONE], [CARD], [SSN], [EMAIL] and [DIGITS]: keep those as they are and never ' +
  'guess what they hide. Reply with one JSON object only: no prose, no code fences.';

function analysisInstructions(dispositions: readonly string[]): string {
  return [
    'Return a JSON object with exactly these fields:',
    '- "summary": what the call was about and how it ended, in 2 to 4 sentences;',
    `- "disposition": the outcome, exactly one of ${JSON.stringify(dispositions)};`,
    `- "sentiment": the caller's overall sentiment, one of ${JSON.stringify(SENTIMENTS)};`,
    '- "action_items": follow-ups someone has to do after the call, as short strings ([] when none).',
  ].join('\n');
}

function callHeader(facts: CallFacts): string {
  return `Call: ${facts.direction}, ${Math.round(facts.durationSeconds)} s, ended by ${facts.endReason}.`;
}

function finalMessages(facts: CallFacts, transcript: string, dispositions: readonly string[]): ChatMessage[] {
  return [
    { role: 'system', content: SYSTEM_PROMPT },
    {
      role: 'user',
      content: `${callHeader(facts)}\n\nTranscript:\n${transcript === '' ? '(nothing was said)' : transcript}\n\n${analysisInstructions(dispositions)}`,
    },
  ];
}

function chunkMessages(facts: CallFacts, chunk: string, part: number, parts: number): ChatMessage[] {
  return [
    { role: 'system', content: SYSTEM_PROMPT },
    {
      role: 'user',
      content:
        `${callHeader(facts)} The transcript is long; this is part ${part} of ${parts}.\n\nTranscript part ${part}:\n${chunk}\n\n` +
        'Return a JSON object with exactly these fields:\n' +
        '- "summary": what happened in this part, in 2 to 5 sentences (names of products, requests, promises, outcomes);\n' +
        '- "action_items": follow-ups agreed or requested in this part, as short strings ([] when none).',
    },
  ];
}

function formatNotes(notes: readonly ChunkNotes[], firstPart = 1): string[] {
  return notes.map((n, i) => {
    const items = n.actionItems.length === 0 ? '' : `\n  Action items: ${n.actionItems.map((a) => `- ${a}`).join(' ')}`;
    return `Part ${firstPart + i}: ${n.summary.replace(/\s+/g, ' ')}${items}`;
  });
}

/**
 * Consecutive notes packed into groups that fit `maxChars`; where that would leave every note
 * alone (each near the limit), pairs instead, so a round always shrinks the count.
 */
export function groupNotes(notes: readonly ChunkNotes[], maxChars: number): ChunkNotes[][] {
  const groups: ChunkNotes[][] = [];
  let current: ChunkNotes[] = [];
  let size = 0;
  for (const note of notes) {
    const length = (formatNotes([note])[0] ?? '').length + 1;
    if (current.length > 0 && size + length > maxChars) {
      groups.push(current);
      current = [];
      size = 0;
    }
    current.push(note);
    size += length;
  }
  if (current.length > 0) groups.push(current);
  if (groups.length < notes.length) return groups;
  const pairs: ChunkNotes[][] = [];
  for (let i = 0; i < notes.length; i += 2) pairs.push(notes.slice(i, i + 2));
  return pairs;
}

function combineNotesMessages(facts: CallFacts, notes: string, dispositions: readonly string[]): ChatMessage[] {
  return [
    { role: 'system', content: SYSTEM_PROMPT },
    {
      role: 'user',
      content:
        `${callHeader(facts)} The call was long, so it was summarized in parts; here are the notes on each part, in order:\n\n${notes}\n\n` +
        `${analysisInstructions(dispositions)}\nThe summary covers the whole call; merge duplicate action items.`,
    },
  ];
}

function mergeNotesMessages(facts: CallFacts, notes: string): ChatMessage[] {
  return [
    { role: 'system', content: SYSTEM_PROMPT },
    {
      role: 'user',
      content:
        `${callHeader(facts)} Notes on consecutive parts of a long call:\n\n${notes}\n\n` +
        'Return a JSON object with exactly these fields:\n' +
        '- "summary": what happened across these parts, in 3 to 6 sentences;\n' +
        '- "action_items": the follow-ups from these parts, duplicates merged ([] when none).',
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// Running the LLM

class LlmSession {
  requests = 0;
  constructor(
    private readonly llm: Llm,
    private readonly callSid: string,
    private readonly timeoutMs: number,
    private readonly signal: AbortSignal | undefined,
  ) {}

  /** One request's whole text reply. */
  async complete(messages: readonly ChatMessage[]): Promise<string> {
    this.requests++;
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, this.timeoutMs);
    const onAbort = (): void => controller.abort();
    this.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      let text = '';
      for await (const event of this.llm.generate({ callId: this.callSid, messages, tools: [], signal: controller.signal })) {
        if (event.type === 'text') text += event.delta;
        else if (event.type === 'done') break;
      }
      // Engines end the stream quietly on abort: that is still no answer.
      if (timedOut) throw new PostCallLlmError(`the LLM did not answer within ${this.timeoutMs} ms`);
      if (this.signal?.aborted === true) throw new PostCallLlmError('post-call processing was cancelled');
      return text;
    } catch (err) {
      if (err instanceof PostCallLlmError) throw err;
      throw new PostCallLlmError(`LLM request failed: ${errorMessage(err)}`);
    } finally {
      clearTimeout(timer);
      this.signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Asks, validates, and on a bad reply asks once more with the validation error. */
  async json<T>(messages: ChatMessage[], parse: (reply: string) => T, what: string): Promise<T> {
    const first = await this.complete(messages);
    try {
      return parse(first);
    } catch (err) {
      const problem = errorMessage(err);
      const retry: ChatMessage[] = [
        ...messages,
        { role: 'assistant', content: first },
        { role: 'user', content: `That reply is not valid: ${problem}. Reply again with only the corrected JSON object.` },
      ];
      const second = await this.complete(retry);
      try {
        return parse(second);
      } catch (err2) {
        throw new PostCallLlmError(`the LLM's ${what} was invalid twice: ${problem}; then ${errorMessage(err2)}`);
      }
    }
  }
}

/** Summary, disposition, sentiment and action items of a transcript through the LLM. */
export async function analyzeWithLlm(facts: CallFacts, lines: readonly TranscriptLine[], options: AnalyzeOptions): Promise<CallAnalysis> {
  const dispositions = effectiveDispositions(options.dispositions);
  const maxChars = Math.max(200, Math.floor((options.chunkTokens ?? DEFAULT_CHUNK_TOKENS) * CHARS_PER_TOKEN));
  const session = new LlmSession(options.llm, facts.callSid, options.timeoutMs ?? DEFAULT_LLM_TIMEOUT_MS, options.signal);
  const chunks = chunkLines(formatTranscript(lines), maxChars);
  const parseFinal = (reply: string): AnalysisJson => parseAnalysisReply(reply, dispositions);

  let result: AnalysisJson;
  if (chunks.length <= 1) {
    result = await session.json(finalMessages(facts, chunks[0] ?? '', dispositions), parseFinal, 'analysis');
  } else {
    let notes: ChunkNotes[] = [];
    for (const [i, chunk] of chunks.entries()) {
      notes.push(await session.json(chunkMessages(facts, chunk, i + 1, chunks.length), parseNotesReply, `notes on part ${i + 1}`));
    }
    // Notes too long for one request are merged in rounds until they fit (every round merges
    // at least one group of two or more, so their number shrinks and this ends).
    for (let round = 0; round < MAX_REDUCE_ROUNDS && notes.length > 1 && formatNotes(notes).join('\n').length > maxChars; round++) {
      const merged: ChunkNotes[] = [];
      for (const group of groupNotes(notes, maxChars)) {
        const only = group[0];
        if (group.length === 1 && only !== undefined) merged.push(only);
        else merged.push(await session.json(mergeNotesMessages(facts, formatNotes(group).join('\n')), parseNotesReply, 'merged notes'));
      }
      notes = merged;
    }
    result = await session.json(combineNotesMessages(facts, formatNotes(notes).join('\n'), dispositions), parseFinal, 'analysis');
  }
  return {
    ...result,
    extractive: false,
    model: options.modelName ?? options.llm.name,
    llmRequests: session.requests,
    chunks: Math.max(1, chunks.length),
  };
}

// ---------------------------------------------------------------------------------------------
// Extractive fallback

const EXTRACT_CALLER_LINES = 3;
const EXTRACT_SUMMARY_CHARS = 400;

/** Canonical outcomes and the words that suggest them, checked in this order. */
const DISPOSITION_KEYWORDS: ReadonlyArray<{ disposition: string; pattern: RegExp }> = [
  { disposition: 'transferred', pattern: /\b(?:transfer(?:red|ring)?|connect(?:ing)? you (?:to|with)|put(?:ting)? you through)\b/i },
  {
    disposition: 'follow_up',
    pattern: /\b(?:call (?:you|me) back|callback|follow(?:[- ])?up|get back to (?:you|me)|send (?:you|me)|email (?:you|me)|text (?:you|me)|schedule|appointment)\b/i,
  },
  { disposition: 'resolved', pattern: /\b(?:resolved|sorted|fixed|that'?s all|that helps|all set|perfect|thank(?:s| you)(?: so much)?)\b/i },
];

function truncateAtWord(text: string, max: number): string {
  if (text.length <= max) return text;
  const cut = text.lastIndexOf(' ', max - 1);
  return `${text.slice(0, cut > max / 2 ? cut : max - 1)}…`;
}

/**
 * A result without an LLM: the caller's first lines as the summary, a keyword-picked disposition
 * (only ever one of the allowed list, else null), neutral sentiment, no action items.
 */
export function extractiveAnalysis(facts: CallFacts, lines: readonly TranscriptLine[], dispositionList: readonly string[]): CallAnalysis {
  const dispositions = effectiveDispositions(dispositionList);
  const spoken = lines.filter((l) => l.text.trim() !== '');
  const callerLines = spoken.filter((l) => l.speaker === 'caller').map((l) => l.text.trim().replace(/\s+/g, ' '));
  const said = callerLines.slice(0, EXTRACT_CALLER_LINES).join(' ');
  const ending = `The call (${facts.direction}) ended by ${facts.endReason} after ${Math.round(facts.durationSeconds)} s and ${spoken.length} transcribed line${spoken.length === 1 ? '' : 's'}.`;
  const summary = said === '' ? `The caller said nothing that was transcribed. ${ending}` : `The caller said: "${truncateAtWord(said, EXTRACT_SUMMARY_CHARS)}" ${ending}`;

  const allText = spoken.map((l) => l.text).join('\n');
  const inList = (name: string): string | undefined => dispositions.find((d) => normalizeKey(d) === normalizeKey(name));
  let disposition: string | undefined;
  if (callerLines.length === 0) disposition = inList('no_answer');
  if (disposition === undefined && /transfer/i.test(facts.endReason)) disposition = inList('transferred');
  // A number's own dispositions first: one whose words (4+ letters) appear in the call.
  if (disposition === undefined) {
    disposition = dispositions.find((d) => {
      const words = d.toLowerCase().split(/[^a-z0-9]+/).filter((w) => w.length >= 4 && !DEFAULT_DISPOSITIONS.includes(normalizeKey(d)));
      return words.length > 0 && words.some((w) => new RegExp(`\\b${w}`, 'i').test(allText));
    });
  }
  for (const { disposition: canonical, pattern } of DISPOSITION_KEYWORDS) {
    if (disposition !== undefined) break;
    if (pattern.test(allText)) disposition = inList(canonical);
  }
  disposition ??= inList('other');

  return {
    summary,
    disposition: disposition ?? null,
    sentiment: 'neutral',
    actionItems: [],
    extractive: true,
    model: null,
    llmRequests: 0,
    chunks: 0,
  };
}
