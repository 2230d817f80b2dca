/**
 * Keeps a call's conversation under a token budget by hierarchical summarization: the system prompt
 * stays on top, the most recent turns stay verbatim, and the turns before them are replaced by one
 * "Summary of the earlier conversation: …" note. The note is a real LLM summary when the caller has
 * one (made off the hot path, between turns, with `summaryRequestMessages` and a
 * `ConversationSummarizer`), else an extractive stand-in built from the older turns themselves.
 *
 * A turn is a user message and everything after it up to the next user message, so an assistant
 * tool call always stays with its tool results. Messages before the first user message (a greeting)
 * form a turn of their own.
 *
 * Pure: no I/O, no clock.
 */
import type { ChatMessage, ToolSpec } from '../engines/types.js';

// ── Token estimate ───────────────────────────────────────────────────────────────────────────────
/**
 * Chat-template tokens around each message: `<|im_start|>`, the role, a newline, `<|im_end|>`, a
 * newline (Qwen/ChatML); other templates use about as many.
 */
export const MESSAGE_OVERHEAD_TOKENS = 5;

/**
 * A cheap, deliberately conservative token count (no tokenizer is available offline): ASCII text at
 * 3.5 characters a token (BPE vocabularies like Qwen's or GPT's average about 4 for English prose,
 * less for numbers, JSON and ids), and one token for every non-ASCII character (CJK runs about 1.4
 * characters a token; accented Latin is overcounted). Overestimating only makes the context compact a
 * little early; underestimating would overflow the model's window.
 */
export function estimateTokens(text: string): number {
  let ascii = 0;
  let other = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) ascii++;
    else if (code >= 0xdc00 && code <= 0xdfff) continue; // low surrogate: its pair is counted once
    else other++;
  }
  return Math.ceil(ascii / 3.5) + other;
}

/** One message with its template overhead; an assistant's tool calls count as their rendered JSON. */
export function estimateMessageTokens(message: ChatMessage): number {
  let tokens = MESSAGE_OVERHEAD_TOKENS + estimateTokens(message.content);
  if (message.role === 'assistant') {
    for (const call of message.toolCalls ?? []) {
      // `<tool_call>\n{"name": "…", "arguments": …}\n</tool_call>`
      tokens += 12 + estimateTokens(call.name) + estimateTokens(JSON.stringify(call.arguments));
    }
  }
  if (message.role === 'tool') tokens += 6; // `<tool_response>` … `</tool_response>`
  return tokens;
}

export function estimateMessagesTokens(messages: readonly ChatMessage[]): number {
  let total = 0;
  for (const message of messages) total += estimateMessageTokens(message);
  return total;
}

/**
 * Tokens the tool definitions add to the prompt (their JSON plus the template's tool instructions),
 * for callers that size `budgetTokens` as the model's window minus tools minus the reply's headroom.
 */
export function estimateToolsTokens(tools: readonly ToolSpec[]): number {
  if (tools.length === 0) return 0;
  let total = 80;
  for (const tool of tools) total += 8 + estimateTokens(JSON.stringify(tool));
  return total;
}

// ── Fitting the context to the budget ────────────────────────────────────────────────────────────
export const SUMMARY_NOTE_PREFIX = 'Summary of the earlier conversation';
/** Marks a summary made without an LLM: excerpts of the older turns, not a real summary. */
export const EXTRACTIVE_SUMMARY_MARKER = '(automatic excerpts, abridged)';
export const DEFAULT_KEEP_RECENT_TURNS = 4;
export const DEFAULT_MAX_SUMMARY_TOKENS = 200;
/** Below this many tokens a summary note carries too little to be worth its place. */
const MIN_SUMMARY_TOKENS = 16;

export interface FitOptions {
  /** Tokens (by `estimateMessagesTokens`) the returned messages may use. */
  budgetTokens: number;
  /** Turns kept verbatim when the conversation has to be compacted (default 4, at least 1). */
  keepRecentTurns?: number;
  /** An LLM summary of the older turns; without it an extractive one is built. */
  summary?: string;
  /**
   * Input index up to which (exclusive) `summary` covers the conversation, i.e. the `summarizedUpTo`
   * the summary was requested for. When the compaction boundary moves past it, the uncovered older
   * messages are added to the note as excerpts; when it has not, the boundary stays at the summary's,
   * so the verbatim window grows again until the next summary. Without it the summary is taken to
   * cover everything before the boundary.
   */
  summaryCoversUpTo?: number;
  /** Cap of the summary note's text (default 200 tokens). */
  maxSummaryTokens?: number;
}

export interface FitResult {
  messages: ChatMessage[];
  /**
   * Input index of the first conversation (non-leading-system) message kept verbatim: the messages
   * between the leading system messages and this index are the ones the summary note stands for, and
   * the ones a real LLM summary must cover. Equals the number of leading system messages when nothing
   * was summarized.
   */
  summarizedUpTo: number;
  /** Estimated tokens of the input messages that were not kept verbatim. */
  droppedTokens: number;
  /** Which summary the note holds: none (nothing compacted), the given one, or extractive excerpts. */
  summaryKind: 'none' | 'provided' | 'extractive';
}

interface Turn {
  start: number;
  messages: ChatMessage[];
  tokens: number;
}

/**
 * Fits the conversation into `budgetTokens`: unchanged when it fits; otherwise the leading system
 * messages, one summary note, and the most recent `keepRecentTurns` turns verbatim. If that is still
 * over budget, older verbatim turns move into the summary one by one (never the latest user turn),
 * then the summary is shortened, then dropped. A latest turn that alone exceeds the budget is still
 * kept whole (best effort: the result is then over budget).
 */
export function fitToBudget(messages: readonly ChatMessage[], options: FitOptions): FitResult {
  let headEnd = 0;
  while (headEnd < messages.length && messages[headEnd]?.role === 'system') headEnd++;
  const head = messages.slice(0, headEnd);
  const turns = splitTurns(messages, headEnd);
  const total = estimateMessagesTokens(messages);

  if (total <= options.budgetTokens || turns.length <= 1) {
    return { messages: [...messages], summarizedUpTo: headEnd, droppedTokens: 0, summaryKind: 'none' };
  }

  const headTokens = estimateMessagesTokens(head);
  const keep = Math.max(1, Math.floor(options.keepRecentTurns ?? DEFAULT_KEEP_RECENT_TURNS));
  const maxSummaryTokens = options.maxSummaryTokens ?? DEFAULT_MAX_SUMMARY_TOKENS;
  const summary = options.summary?.trim() ?? '';
  const covers = summary === '' ? headEnd : (options.summaryCoversUpTo ?? messages.length);

  // Tokens of turns[b..] for every boundary b.
  const suffix = new Array<number>(turns.length + 1).fill(0);
  for (let b = turns.length - 1; b >= 0; b--) suffix[b] = (suffix[b + 1] ?? 0) + (turns[b]?.tokens ?? 0);

  const build = (boundary: number, noteBudget: number): { note: ChatMessage | null; kind: FitResult['summaryKind'] } => {
    const boundaryIndex = turns[boundary]?.start ?? messages.length;
    let text: string;
    let kind: FitResult['summaryKind'];
    if (summary !== '') {
      kind = 'provided';
      text = `${SUMMARY_NOTE_PREFIX}: ${summary}`;
      // Messages that aged out after the summary was made: excerpts until the next summary covers them.
      const missing = messages.slice(Math.max(covers, headEnd), boundaryIndex);
      const later = extractiveSummary(missing, noteBudget - estimateTokens(text) - 4);
      if (later !== '') text += ` Later: ${later}`;
    } else {
      kind = 'extractive';
      const prefix = `${SUMMARY_NOTE_PREFIX} ${EXTRACTIVE_SUMMARY_MARKER}: `;
      const body = extractiveSummary(messages.slice(headEnd, boundaryIndex), noteBudget - estimateTokens(prefix) - 1);
      if (body === '') return { note: null, kind: 'none' };
      text = prefix + body;
    }
    return { note: { role: 'system', content: truncateToTokens(text, noteBudget) }, kind };
  };

  const result = (boundary: number, note: ChatMessage | null, kind: FitResult['summaryKind']): FitResult => {
    const kept = turns.slice(boundary).flatMap((turn) => turn.messages);
    const dropped = turns.slice(0, boundary).reduce((sum, turn) => sum + turn.tokens, 0);
    return {
      messages: [...head, ...(note === null ? [] : [note]), ...kept],
      summarizedUpTo: turns[boundary]?.start ?? messages.length,
      droppedTokens: dropped,
      summaryKind: note === null ? 'none' : kind,
    };
  };

  // The boundary the summary was made for keeps the prefix stable between summaries.
  let first = Math.max(1, turns.length - keep);
  if (summary !== '' && options.summaryCoversUpTo !== undefined) {
    const coveredTurn = turnAt(turns, options.summaryCoversUpTo);
    if (coveredTurn >= 1 && coveredTurn < first) first = coveredTurn;
  }
  const last = turns.length - 1;

  for (let boundary = Math.min(first, last); boundary <= last; boundary++) {
    const available = options.budgetTokens - headTokens - (suffix[boundary] ?? 0) - MESSAGE_OVERHEAD_TOKENS;
    if (available < MIN_SUMMARY_TOKENS) continue;
    const { note, kind } = build(boundary, Math.min(maxSummaryTokens, available));
    const candidate = result(boundary, note, kind);
    if (estimateMessagesTokens(candidate.messages) <= options.budgetTokens) return candidate;
  }

  // Only the latest turn fits, or nothing does: no room for a note.
  return result(last, null, 'none');
}

/** Turns of the conversation after the leading system messages (see the module comment). */
function splitTurns(messages: readonly ChatMessage[], from: number): Turn[] {
  const turns: Turn[] = [];
  let current: Turn | null = null;
  for (let i = from; i < messages.length; i++) {
    const message = messages[i];
    if (message === undefined) continue;
    if (current === null || message.role === 'user') {
      current = { start: i, messages: [], tokens: 0 };
      turns.push(current);
    }
    current.messages.push(message);
    current.tokens += estimateMessageTokens(message);
  }
  return turns;
}

/** Index of the turn holding input index `index` (the last turn starting at or before it). */
function turnAt(turns: readonly Turn[], index: number): number {
  let found = 0;
  for (let t = 0; t < turns.length; t++) if ((turns[t]?.start ?? Infinity) <= index) found = t;
  return found;
}

// ── Extractive fallback ──────────────────────────────────────────────────────────────────────────
const WORDS_PER_LINE = 24;

/**
 * Excerpts of older messages within `maxTokens`: each caller and agent line shortened, tool calls as
 * `name {args}` with their results. When they do not all fit, the agent's plain lines go first (the
 * caller's lines and tool results carry the facts); then only the first caller line (usually why they
 * called) and as many of the latest lines as fit are kept, with "…" between.
 */
export function extractiveSummary(older: readonly ChatMessage[], maxTokens: number): string {
  if (maxTokens <= 0) return '';
  const lines: { text: string; agentText: boolean; caller: boolean }[] = [];
  for (const message of older) {
    switch (message.role) {
      case 'user':
        if (message.content.trim() !== '') lines.push({ text: `Caller: ${shortenWords(message.content, WORDS_PER_LINE)}`, agentText: false, caller: true });
        break;
      case 'assistant':
        if (message.content.trim() !== '') lines.push({ text: `Agent: ${shortenWords(message.content, WORDS_PER_LINE)}`, agentText: true, caller: false });
        for (const call of message.toolCalls ?? []) {
          lines.push({ text: `Agent used ${call.name} ${shortenChars(JSON.stringify(call.arguments), 120)}`, agentText: false, caller: false });
        }
        break;
      case 'tool':
        if (message.content.trim() !== '') lines.push({ text: `Result: ${shortenChars(oneLine(message.content), 160)}`, agentText: false, caller: false });
        break;
      case 'system':
        break;
    }
  }
  const join = (kept: readonly { text: string }[]): string => kept.map((line) => line.text).join(' | ');
  if (lines.length === 0) return '';
  if (estimateTokens(join(lines)) <= maxTokens) return join(lines);
  const facts = lines.filter((line) => !line.agentText);
  if (facts.length > 0 && estimateTokens(join(facts)) <= maxTokens) return join(facts);

  const pool = facts.length > 0 ? facts : lines;
  const firstIndex = Math.max(0, pool.findIndex((line) => line.caller));
  const first = pool[firstIndex];
  const tail: { text: string }[] = [];
  let used = first === undefined ? 0 : estimateTokens(first.text) + 3;
  for (let i = pool.length - 1; i > firstIndex; i--) {
    const line = pool[i];
    if (line === undefined) continue;
    const cost = estimateTokens(line.text) + 1;
    if (used + cost > maxTokens) break;
    tail.unshift(line);
    used += cost;
  }
  const gap = tail.length > 0 && pool.indexOf(tail[0] as (typeof pool)[number]) === firstIndex + 1 ? [] : [{ text: '…' }];
  if (first !== undefined && used > maxTokens) return truncateToTokens(first.text, maxTokens);
  const kept = first !== undefined ? [first, ...gap, ...tail] : tail;
  return truncateToTokens(join(kept), maxTokens);
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

function shortenWords(text: string, maxWords: number): string {
  const words = oneLine(text).split(' ');
  return words.length <= maxWords ? words.join(' ') : words.slice(0, maxWords).join(' ') + ' …';
}

function shortenChars(text: string, maxChars: number): string {
  return text.length <= maxChars ? text : text.slice(0, maxChars - 1) + '…';
}

/** Cuts `text` (at a word boundary where possible) so that `estimateTokens` stays within `maxTokens`. */
export function truncateToTokens(text: string, maxTokens: number): string {
  if (estimateTokens(text) <= maxTokens) return text;
  if (maxTokens <= 1) return '';
  let low = 0;
  let high = text.length;
  while (low < high) {
    const mid = Math.ceil((low + high) / 2);
    if (estimateTokens(text.slice(0, mid)) + 1 <= maxTokens) low = mid;
    else high = mid - 1;
  }
  let cut = text.slice(0, low);
  const space = cut.lastIndexOf(' ');
  if (space > cut.length * 0.6) cut = cut.slice(0, space);
  return cut.trimEnd() + '…';
}

// ── LLM summary (run by the caller, off the hot path) ────────────────────────────────────────────
export interface ConversationSummarizer {
  /** `previousSummary` covers what came before `messages`; the answer must fold it in. */
  summarize(messages: readonly ChatMessage[], signal: AbortSignal, previousSummary?: string): Promise<string>;
}

const SUMMARY_INSTRUCTIONS =
  'You summarize the earlier part of a phone call between a caller and a voice agent, so the agent can ' +
  'continue the call without the full transcript. Write a short, factual summary of at most 80 words. ' +
  'Keep names, numbers, dates, times, amounts, order or account identifiers, what the caller wants, and ' +
  'every decision, promise or tool result that still matters. Leave out greetings and small talk. Do ' +
  'not invent anything. Reply with the summary only, as plain sentences.';

/**
 * The messages to ask an LLM for a summary of `older` (the input messages before `summarizedUpTo`,
 * leading system messages excluded). With `previousSummary` (the summary that already stands for the
 * turns before `older`) the new summary folds it in, so summaries stack as the call goes on.
 */
export function summaryRequestMessages(older: readonly ChatMessage[], previousSummary?: string): ChatMessage[] {
  const lines: string[] = [];
  for (const message of older) {
    switch (message.role) {
      case 'user':
        lines.push(`Caller: ${oneLine(message.content)}`);
        break;
      case 'assistant':
        if (message.content.trim() !== '') lines.push(`Agent: ${oneLine(message.content)}`);
        for (const call of message.toolCalls ?? []) lines.push(`Agent called ${call.name} with ${JSON.stringify(call.arguments)}`);
        break;
      case 'tool':
        lines.push(`Tool result: ${shortenChars(oneLine(message.content), 600)}`);
        break;
      case 'system':
        if (message.content.startsWith(SUMMARY_NOTE_PREFIX)) lines.push(`Earlier summary: ${oneLine(message.content)}`);
        else lines.push(`Note: ${shortenChars(oneLine(message.content), 300)}`);
        break;
    }
  }
  const previous = previousSummary?.trim() ?? '';
  const user =
    (previous === '' ? '' : `Summary of the call so far:\n${previous}\n\nWhat was said after that:\n`) +
    (lines.length === 0 ? '(nothing)' : lines.join('\n')) +
    '\n\nSummarize this in at most 80 words.';
  return [
    { role: 'system', content: SUMMARY_INSTRUCTIONS },
    { role: 'user', content: user },
  ];
}
