/**
 * A keyword-driven agent that answers from an agent script. It is the agent when no LLM is
 * configured and the fallback when the LLM fails, so it must never fail itself: no I/O, no delays,
 * and a reply for every input (the script's fallback line when nothing matches).
 */
import { randomUUID } from 'node:crypto';
import type { ChatMessage, Llm, LlmEvent, LlmRequest, ToolCall } from '../types.js';
import type { AgentIntent, AgentScript } from './agent-script.js';

/** Words per streamed text delta: small enough that TTS can start on the first clause early. */
const WORDS_PER_DELTA = 3;

/** Lower-cases and splits into words; apostrophes join ("that's" → "thats"), other punctuation separates. */
export function toWords(text: string): string[] {
  return text
    .toLowerCase()
    .normalize('NFKC')
    .replace(/['’`]/g, '')
    .split(/[^\p{L}\p{N}]+/u)
    .filter((word) => word !== '');
}

function containsPhrase(words: readonly string[], phrase: readonly string[]): boolean {
  if (phrase.length === 0 || phrase.length > words.length) return false;
  outer: for (let start = 0; start + phrase.length <= words.length; start++) {
    for (let j = 0; j < phrase.length; j++) {
      if (words[start + j] !== phrase[j]) continue outer;
    }
    return true;
  }
  return false;
}

/** Number of the intent's distinct keywords that occur in the words as whole words/phrases. */
function countHits(words: readonly string[], keywords: readonly (readonly string[])[]): number {
  let hits = 0;
  for (const keyword of keywords) if (containsPhrase(words, keyword)) hits++;
  return hits;
}

/**
 * The intent whose keywords occur most often in `text` (each keyword counts once); ties go to the
 * intent listed first. Undefined when no keyword matches.
 */
export function matchIntent(script: AgentScript, text: string): AgentIntent | undefined {
  const words = toWords(text);
  let best: AgentIntent | undefined;
  let bestHits = 0;
  for (const intent of script.intents) {
    const hits = countHits(words, intent.keywords.map(toWords));
    if (hits > bestHits) {
      best = intent;
      bestHits = hits;
    }
  }
  return best;
}

/** Splits a reply into deltas of a few words that concatenate back to exactly the reply. */
export function chunkReply(reply: string, wordsPerDelta = WORDS_PER_DELTA): string[] {
  const pieces = reply.match(/\s*\S+\s*/g) ?? [];
  const deltas: string[] = [];
  for (let i = 0; i < pieces.length; i += wordsPerDelta) deltas.push(pieces.slice(i, i + wordsPerDelta).join(''));
  return deltas;
}

function latestUserText(messages: readonly ChatMessage[]): string | undefined {
  for (let i = messages.length - 1; i >= 0; i--) {
    const message = messages[i];
    if (message?.role === 'user') return message.content;
  }
  return undefined;
}

function actionCall(intent: AgentIntent): ToolCall | undefined {
  const action = intent.action;
  if (action === undefined) return undefined;
  const id = `call_scripted_${randomUUID()}`;
  const reason = `caller intent: ${intent.name}`;
  if (action.type === 'hang_up') return { id, name: 'end_call', arguments: { reason } };
  return { id, name: 'transfer_call', arguments: { to: action.to, reason } };
}

export class ScriptedAgent implements Llm {
  readonly name = 'scripted';

  constructor(readonly script: AgentScript) {}

  async *generate(request: LlmRequest): AsyncGenerator<LlmEvent> {
    const { signal } = request;
    if (signal.aborted) return;
    const latest = request.messages[request.messages.length - 1];
    // A tool result (e.g. a transfer that failed) needs no spoken follow-up from a script.
    if (latest?.role !== 'tool') {
      const userText = latestUserText(request.messages);
      const intent = userText === undefined ? undefined : matchIntent(this.script, userText);
      for (const delta of chunkReply(intent?.reply ?? this.script.fallback)) {
        yield { type: 'text', delta };
        if (signal.aborted) return;
      }
      const call = intent === undefined ? undefined : actionCall(intent);
      if (call !== undefined) {
        yield { type: 'tool_call', call };
        if (signal.aborted) return;
      }
    }
    yield { type: 'done' };
  }
}
