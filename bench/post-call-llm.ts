/**
 * The stand-in LLM of bench/post-call.ts, run in a child process so that its CPU is not counted as
 * the worker's: two OpenAI-compatible streaming chat endpoints (test/helpers/openai-stand-in.ts)
 * that answer every request with the same valid post-call analysis (a JSON object: a 3-sentence
 * summary, disposition, sentiment, two action items), streamed as ~150 tokens —
 *   - instant: every token written at once (the pipeline's own ceiling);
 *   - paced: one token every 1000 / tokens-per-s ms (the stand-in has no separate first-token
 *     delay: the first token comes after one interval too).
 * Prints one JSON line, `{"instant": url, "paced": url, "tokens": n}`, once both listen; closes both
 * and exits on SIGTERM/SIGINT or when its stdin closes (the parent went away).
 *
 *   npx tsx bench/post-call-llm.ts --tokens-per-s 100
 */
import { parseArgs } from 'node:util';
import { OpenAiStandIn } from '../test/helpers/openai-stand-in.js';
import { isMain } from './common.js';

/** The model's reply: valid against the default dispositions (and the bench number's profile). */
export const SUMMARY_REPLY = JSON.stringify({
  summary:
    'The caller contacted support about an open issue with their account and gave the details needed to look it up. ' +
    'The agent verified the caller, updated the contact details on file and resolved the request during the call, ' +
    'confirming the next steps and the timeline. The caller thanked the agent and had no further questions.',
  disposition: 'resolved',
  sentiment: 'positive',
  action_items: ['Send the written confirmation to the updated contact details', 'Check in two days that the change took effect'],
});

/**
 * The reply as a model would stream it: words of up to 6 letters whole with their leading space,
 * longer ones in pieces of 4 characters, punctuation on its own (~4 characters a token, as BPE
 * averages on English: 150 tokens for SUMMARY_REPLY).
 */
export function replyTokens(text: string): string[] {
  const tokens: string[] = [];
  for (const match of text.matchAll(/\s*[A-Za-z]+|\s*\d+|\s*[^\sA-Za-z\d]/g)) {
    const piece = match[0];
    if (piece.length <= 7) tokens.push(piece);
    else for (let i = 0; i < piece.length; i += 4) tokens.push(piece.slice(i, i + 4));
  }
  return tokens;
}

if (isMain(import.meta.url)) {
  const { values } = parseArgs({ options: { 'tokens-per-s': { type: 'string', default: '100' } } });
  const tokensPerS = Number(values['tokens-per-s']);
  if (!Number.isFinite(tokensPerS) || tokensPerS <= 0) throw new Error('--tokens-per-s must be a positive number');
  const tokens = replyTokens(SUMMARY_REPLY);
  const instant = await OpenAiStandIn.start({ tokens });
  const paced = await OpenAiStandIn.start({ tokens, tokenDelayMs: 1000 / tokensPerS });
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    void Promise.allSettled([instant.close(), paced.close()]).then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.stdin.resume();
  process.stdout.write(`${JSON.stringify({ instant: instant.url, paced: paced.url, tokens: tokens.length })}\n`);
}
