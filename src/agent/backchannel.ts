/**
 * Backchannels: the "mhm", "yeah", "okay" a listener says while the other person talks, to show
 * they follow. On a phone call they are the commonest caller speech during the agent's reply, and
 * an agent that treats them as interruptions stops mid-sentence and answers "yeah". Pure: the words
 * of an utterance in, whether it was only a backchannel out.
 *
 * Conservative on purpose: only an utterance made up entirely of listed tokens counts. Anything
 * else — a question, "no", "wait", "stop", or nothing recognizable at all — is an interruption,
 * since resuming over a caller who meant to cut in is worse than pausing for one who did not. So
 * are a lone "uh" (it usually opens a turn: "uh, actually…") and "huh?" (it means "what?").
 *
 * Hand-written: a word list tied to our turn-taking, not a library's job.
 */

/** Single tokens heard as acknowledgement (as recognizers spell them, after normalization). */
const BACKCHANNEL_TOKENS = new Set([
  'mhm', 'mm', 'mmm', 'hm', 'hmm', 'mm-hmm', 'mmhmm', 'uh-huh', 'uhhuh', 'ah', 'oh',
  'yeah', 'yea', 'yep', 'yup', 'yes', 'ok', 'okay', 'right', 'sure', 'alright', 'aha', 'ahh', 'ooh',
  'cool', 'great', 'good', 'fine', 'gotcha', 'exactly', 'totally', 'absolutely', 'indeed', 'wow',
]);

/** Two-word acknowledgements whose words alone are not all in the list ("i see", "got it"). */
const BACKCHANNEL_PAIRS = new Set(['i see', 'got it', 'of course', 'makes sense', 'all right', 'uh huh', 'mm hmm', 'sounds good']);

function tokens(text: string): string[] {
  return text
    .toLowerCase()
    .replace(/[^a-z' -]+/g, ' ')
    .split(/\s+/)
    .filter((token) => token !== '' && token !== '-');
}

/** True when the recognized words are nothing but acknowledgement ("yeah", "mhm okay", "i see"). */
export function isBackchannel(text: string): boolean {
  const words = tokens(text);
  if (words.length === 0) return false;
  for (let i = 0; i < words.length; i++) {
    const pair = i + 1 < words.length ? `${words[i]} ${words[i + 1]}` : '';
    if (BACKCHANNEL_PAIRS.has(pair)) {
      i++;
      continue;
    }
    if (!BACKCHANNEL_TOKENS.has(words[i]!)) return false;
  }
  return true;
}

/** Words that close a call, beside acknowledgement ("thanks, bye", "thank you so much, take care"). */
const CLOSING_TOKENS = new Set([
  'bye', 'goodbye', 'bye-bye', 'byebye', 'thanks', 'thank', 'you', 'cheers', 'later', 'see', 'ya',
  'have', 'a', 'nice', 'day', 'evening', 'night', 'weekend', 'too', 'much', 'so', 'very', 'appreciate', 'it', 'take', 'care',
]);

/**
 * True when the words only acknowledge or return a goodbye ("okay", "thanks bye", "you too, bye"):
 * said over the agent's closing line, they do not keep the call open. Anything else ("wait", "one
 * more thing", a question) does.
 */
export function isClosingAcknowledgement(text: string): boolean {
  if (isBackchannel(text)) return true;
  const words = tokens(text);
  return words.length > 0 && words.every((word) => BACKCHANNEL_TOKENS.has(word) || CLOSING_TOKENS.has(word));
}
