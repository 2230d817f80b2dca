/**
 * PII redaction for call transcripts, run by the post-call worker before anything is stored.
 *
 * Input is what an ASR engine writes: numbers may come as numerals ("555-123-4567"), as words
 * ("five five five one two three…"), or mixed; e-mail addresses may come spoken ("john dot smith
 * at example dot com"). Everything here is data (word tables, patterns) plus small pure functions;
 * nothing does I/O. Every finding's `start`/`end` are offsets into the ORIGINAL text.
 *
 * How one text is processed:
 *   1. E-mail addresses, written and spoken, are found first; their characters are not re-read as
 *      digit runs (the digits in "john5@x.com" belong to the address).
 *   2. Things that look numeric but are not PII (prices, amounts with thousands separators,
 *      decimals, clock times, ISO dates, percentages, ordinals) are masked.
 *   3. The rest is read as "units": numerals, digit words (zero/oh/o…nine, "double five", "five
 *      hundred"), and tens/teens words that only ever extend a run ("forty five").
 *   4. Units separated only by spaces or light punctuation form a run. A run is split, where
 *      needed, into segments that each classify as card > ssn > phone; what is left is a generic
 *      digit run, redacted as `[DIGITS]` when it is long enough to be an identifier.
 *   5. Overlaps are resolved by priority (card > ssn > phone > email > spelled_digits).
 */

export type PiiCategory = 'card' | 'ssn' | 'phone' | 'email' | 'spelled_digits';

/** Most specific first: on overlap, the earlier category wins. */
export const PII_CATEGORIES: readonly PiiCategory[] = ['card', 'ssn', 'phone', 'email', 'spelled_digits'];

export const PII_PLACEHOLDERS: Readonly<Record<PiiCategory, string>> = {
  card: '[CARD]',
  ssn: '[SSN]',
  phone: '[PHONE]',
  email: '[EMAIL]',
  spelled_digits: '[DIGITS]',
};

export interface PiiFinding {
  category: PiiCategory;
  /** Offset of the first redacted character in the original text. */
  start: number;
  /** Offset just past the last redacted character in the original text. */
  end: number;
}

export interface RedactOptions {
  /**
   * Categories to replace; default all. Detection is the same either way: a span is classified
   * once, by its most specific rule, and spans of a category left out are kept as they were
   * (a card number is not re-labelled `[DIGITS]` when `card` is left out).
   */
  categories?: readonly PiiCategory[];
  /**
   * Text said just before (the previous turn), read only for context cues such as "what is your
   * social security number?" — it is never redacted or returned.
   */
  precedingText?: string;
}

export interface RedactionResult {
  text: string;
  findings: PiiFinding[];
}

// ---------------------------------------------------------------------------------------------
// Data: words and patterns

/** Word tables are Maps, so words like "constructor" never hit Object.prototype. */
function lookup<V>(entries: Record<string, V>): ReadonlyMap<string, V> {
  return new Map(Object.entries(entries));
}

/** Digit words as ASR engines spell them. "oh"/"o" are zero only next to other digits (see OH_WORDS). */
const DIGIT_WORDS: ReadonlyMap<string, string> = lookup({
  zero: '0', oh: '0', o: '0', nought: '0', naught: '0',
  one: '1', two: '2', three: '3', four: '4', five: '5',
  six: '6', seven: '7', eight: '8', nine: '9', niner: '9',
});

/** "oh" is also an interjection and "o" a letter: they count as zero only inside a run. */
const OH_WORDS: ReadonlySet<string> = new Set(['oh', 'o']);

/** "double five" → 55, "triple two" → 222: how people read repeated digits aloud. */
const MULTIPLIERS: ReadonlyMap<string, number> = lookup({ double: 2, triple: 3 });

/**
 * Tens and teens: people group phone numbers as "forty five sixty seven". They only extend a run
 * that already has digit words, so "twelve fifteen" (a time) or "twenty twenty four" (a year)
 * alone are never redacted.
 */
const TENS: ReadonlyMap<string, string> = lookup({
  twenty: '2', thirty: '3', forty: '4', fourty: '4', fifty: '5', sixty: '6', seventy: '7', eighty: '8', ninety: '9',
});
const TEENS: ReadonlyMap<string, string> = lookup({
  ten: '10', eleven: '11', twelve: '12', thirteen: '13', fourteen: '14',
  fifteen: '15', sixteen: '16', seventeen: '17', eighteen: '18', nineteen: '19',
});

/** Letters glued to a numeral that make it an ordinal, a time or a quantity: 21st, 3pm, 1990s, 5k. */
const NUMERAL_SUFFIX = /^(?:st|nd|rd|th|am|pm|s|k)$/i;

/**
 * Numeric text that is not PII; its digits never join a run. Each pattern is global and is
 * applied to the whole text.
 */
const NOT_PII_NUMBERS: ReadonlyArray<{ why: string; pattern: RegExp }> = [
  { why: 'prices: "$19.99", "£1,200", "€ 5"', pattern: /[$€£¥]\s?\d[\d,]*(?:\.\d+)?/g },
  { why: 'amounts with thousands separators: "1,250,000"', pattern: /(?<![\d,])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,]\d)/g },
  { why: 'decimals: "2.5", "19.99" (a dotted phone number has two dots and is not matched)', pattern: /(?<![\d.])\d+\.\d+(?![.\d])/g },
  { why: 'clock times: "9:30", "10:45:00"', pattern: /(?<!\d)\d{1,2}:\d{2}(?::\d{2})?(?!\d)/g },
  { why: 'ISO dates: "2024-05-01"', pattern: /(?<![\d-])\d{4}-\d{2}-\d{2}(?![\d-])/g },
  { why: 'percentages: "15%", "15 %"', pattern: /(?<![\d.])\d+(?:\.\d+)?\s?%/g },
  {
    why: 'amounts named by their unit: "150000 dollars", "2500 euros", "40 percent"',
    pattern: /(?<![\d.,])\d[\d,]*(?:\.\d+)?\s?(?:dollars?|bucks|cents?|euros?|pounds?|usd|eur|gbp|percent|per\s?cent)\b/gi,
  },
];

/** Words that announce an SSN nearby: a bare 9-digit run is an SSN only with one of these. */
const SSN_CONTEXT = /\b(?:ssn|s\.?\s?s\.?\s?n\.?|social(?:\s+security)?(?:\s+number)?)(?![a-z])/i;
/** "the last four of your social": four digits of an SSN are still an SSN. */
const LAST_FOUR = /\blast\s+(?:four|4)\b/i;
/** How much text around a run is read for context cues. */
const CONTEXT_BEFORE_CHARS = 80;
const CONTEXT_AFTER_CHARS = 40;

/** Top-level domains accepted at the end of a spoken address; a closed list keeps "dot" in speech safe. */
const SPOKEN_TLDS = [
  'com', 'net', 'org', 'edu', 'gov', 'mil', 'int', 'io', 'co', 'us', 'uk', 'ca', 'au', 'de', 'fr', 'es',
  'it', 'nl', 'ie', 'nz', 'in', 'mx', 'br', 'info', 'biz', 'me', 'ai', 'app', 'dev', 'xyz', 'tv', 'ly',
];

/**
 * A spoken "<word> at <domain> dot com" whose local part is one of these words is a sentence
 * ("I work at acme dot com", "find us at acme dot com"), not an address.
 */
const NOT_A_LOCAL_PART: ReadonlySet<string> = new Set([
  'i', 'me', 'you', 'us', 'we', 'him', 'her', 'them', 'it', 'this', 'that', 'here', 'there', 'and', 'or',
  'is', 'am', 'are', 'was', 'were', 'be', 'been', 'being', 'up', 'out', 'in', 'on', 'online', 'home',
  'work', 'works', 'worked', 'working', 'job', 'employed', 'live', 'lives', 'living', 'stay', 'stayed',
  'look', 'looking', 'looked', 'see', 'find', 'found', 'visit', 'visited', 'go', 'going', 'went',
  'shop', 'shopping', 'shopped', 'buy', 'bought', 'order', 'ordered', 'ordering', 'sign', 'signed',
  'register', 'registered', 'log', 'logged', 'available', 'listed', 'posted', 'hosted', 'reach', 'email',
  'mail', 'write', 'message', 'also', 'just', 'only', 'directly', 'anytime', 'too', 'site', 'website', 'page',
]);

const EMAIL_WRITTEN = /(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![A-Za-z0-9-])/g;

/** Spoken addresses: "john dot smith at example dot com", "j o h n at gmail dot com", "jane_doe at yahoo.co.uk". */
const EMAIL_SPOKEN = (() => {
  const atom = String.raw`(?:[a-z0-9](?![a-z0-9])(?:\s+[a-z0-9](?![a-z0-9])){1,64}|[a-z0-9]+)`; // spelled letters, or a word
  const connector = String.raw`(?:\s+(?:dot|period|underscore|dash|hyphen)\s+|[._-])`;
  const local = `(${atom}(?:${connector}${atom})*)`;
  const at = String.raw`(?:\s*@\s*|\s+at(?:\s+the\s+rate(?:\s+of)?)?\s+)`;
  const label = String.raw`[a-z0-9]+(?:-[a-z0-9]+)*`;
  // The first label may be two words ("g mail", "hot mail"), never "the office" or "my company".
  const firstLabel = String.raw`(?!(?:the|a|an|my|our|your|his|her|their|this|that)\b)${label}(?:\s+(?!dot\b)${label})?`;
  const dot = String.raw`(?:\s+dot\s+|\.)`;
  const domain = `${firstLabel}(?:${dot}${label})*${dot}(?:${SPOKEN_TLDS.join('|')})`;
  return new RegExp(String.raw`(?<![a-z0-9._%+'-])${local}${at}${domain}(?![a-z0-9])`, 'gi');
})();

// ---------------------------------------------------------------------------------------------
// Small pure checks

/** Luhn mod-10 check used by every payment card number. */
export function luhnValid(digits: string): boolean {
  if (!/^\d+$/.test(digits)) return false;
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

/** SSA rules: area 000, 666 and 900–999 are never issued, nor group 00 or serial 0000. */
export function isValidSsn(digits: string): boolean {
  if (!/^\d{9}$/.test(digits)) return false;
  const area = Number(digits.slice(0, 3));
  return area !== 0 && area !== 666 && area < 900 && digits.slice(3, 5) !== '00' && digits.slice(5) !== '0000';
}

// ---------------------------------------------------------------------------------------------
// Digit runs

interface Token {
  text: string;
  lower: string;
  start: number;
  end: number;
  numeric: boolean;
}

/** numeral: "555"; word: a digit word (counts toward "spelled"); oh: "oh"/"o"; weak: tens/teens. */
type UnitKind = 'numeral' | 'word' | 'oh' | 'weak';

interface Unit {
  kind: UnitKind;
  digits: string;
  /** Digits this unit contributes as spelled digit words. */
  wordDigits: number;
  start: number;
  end: number;
  firstToken: number;
  lastToken: number;
}

/** A segment of a run, described for the classification rules. */
interface DigitSpan {
  digits: string;
  /** Preceded by "+" or the word "plus": an international number. */
  plus: boolean;
  numeralOnly: boolean;
  /** Digit counts of the groups as written ("123-45-6789" → [3, 2, 4]). */
  groups: number[];
  /** The gaps between the units, as written. */
  gaps: string[];
  /** Text around the span, for context cues. */
  before: string;
  after: string;
}

const TOKEN = /\d+|[A-Za-z]+(?:'[A-Za-z]+)?/g;

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  for (const m of text.matchAll(TOKEN)) {
    const start = m.index;
    tokens.push({ text: m[0], lower: m[0].toLowerCase(), start, end: start + m[0].length, numeric: /^\d/.test(m[0]) });
  }
  return tokens;
}

function makeUnit(kind: UnitKind, digits: string, wordDigits: number, tokens: Token[], first: number, last: number): Unit | null {
  const a = tokens[first];
  const b = tokens[last];
  if (!a || !b) return null;
  return { kind, digits, wordDigits, start: a.start, end: b.end, firstToken: first, lastToken: last };
}

/** Reads the unit starting at token i, if any. */
function unitAt(text: string, tokens: Token[], i: number): Unit | null {
  const t = tokens[i];
  if (!t) return null;
  const next = tokens[i + 1];
  const gap = next ? text.slice(t.end, next.start) : '';
  if (t.numeric) {
    if (next && !next.numeric && gap === '' && NUMERAL_SUFFIX.test(next.lower)) return null;
    return makeUnit('numeral', t.text, 0, tokens, i, i);
  }
  const w = t.lower;
  const times = MULTIPLIERS.get(w);
  if (times !== undefined && next && /^[\s-]+$/.test(gap)) {
    const d = next.numeric ? (next.text.length === 1 ? next.text : undefined) : DIGIT_WORDS.get(next.lower);
    if (d !== undefined) return makeUnit('word', d.repeat(times), times, tokens, i, i + 1);
  }
  const d = DIGIT_WORDS.get(w);
  if (d !== undefined) {
    if (d !== '0' && next?.lower === 'hundred' && /^\s+$/.test(gap)) return makeUnit('word', `${d}00`, 1, tokens, i, i + 1);
    return makeUnit(OH_WORDS.has(w) ? 'oh' : 'word', d, 1, tokens, i, i);
  }
  const tens = TENS.get(w);
  if (tens !== undefined) {
    const ones = next && !next.numeric && /^(?:\s+|-)$/.test(gap) ? DIGIT_WORDS.get(next.lower) : undefined;
    if (ones !== undefined && ones !== '0') return makeUnit('weak', tens + ones, 0, tokens, i, i + 1);
    return makeUnit('weak', `${tens}0`, 0, tokens, i, i);
  }
  const teen = TEENS.get(w);
  if (teen !== undefined) return makeUnit('weak', teen, 0, tokens, i, i);
  return null;
}

/** Characters allowed between two units of one run: spaces and light punctuation, on one line. */
function gapJoins(gap: string): boolean {
  if (gap.length > 4 || /\n/.test(gap) || !/^[\s\-.,()]*$/.test(gap)) return false;
  return gap.replace(/\s/g, '').length <= 2;
}

/** A gap with punctuation marks a possible boundary ("…one one, oh four two six"). */
function isPunctuated(gap: string): boolean {
  return /[,.]/.test(gap);
}

/**
 * "2019, 2020" or "1985. 2024": a comma or a sentence end between two multi-digit numerals. Such a
 * run is kept together only when it forms a card, SSN or phone ("4111, 1111, 1111, 1111").
 */
function isSoftBreak(prev: Unit, next: Unit, gap: string): boolean {
  return (
    prev.kind === 'numeral' && next.kind === 'numeral' && prev.digits.length >= 2 && next.digits.length >= 2 &&
    (gap.includes(',') || (gap.includes('.') && /\s/.test(gap)))
  );
}

function overlapsAny(start: number, end: number, spans: ReadonlyArray<readonly [number, number]>): boolean {
  return spans.some(([s, e]) => start < e && s < end);
}

function readUnits(text: string, tokens: Token[], masked: ReadonlyArray<readonly [number, number]>): Unit[] {
  const units: Unit[] = [];
  for (let i = 0; i < tokens.length; ) {
    const u = unitAt(text, tokens, i);
    if (u && !overlapsAny(u.start, u.end, masked)) {
      units.push(u);
      i = u.lastToken + 1;
    } else {
      i++;
    }
  }
  return units;
}

function buildRuns(text: string, units: Unit[]): Unit[][] {
  const runs: Unit[][] = [];
  let current: Unit[] = [];
  for (const u of units) {
    const prev = current[current.length - 1];
    if (prev && u.firstToken === prev.lastToken + 1 && gapJoins(text.slice(prev.end, u.start))) {
      current.push(u);
    } else {
      if (current.length > 0) runs.push(current);
      current = [u];
    }
  }
  if (current.length > 0) runs.push(current);
  return runs.flatMap((run) => refineRun(text, run));
}

/** Applies the "oh" and tens/teens rules to one run; may drop it or split it. */
function refineRun(text: string, run: Unit[]): Unit[][] {
  let units = run;
  // A leading "oh"/"o" followed by punctuation is an interjection: "Oh, 555-123-4567".
  while (units[0]?.kind === 'oh') {
    const next = units[1];
    if (next && !/[^\s]/.test(text.slice(units[0].end, next.start))) break;
    units = units.slice(1);
  }
  // Only "oh"s: "oh oh" is not a number.
  if (!units.some((u) => u.kind !== 'oh')) return [];
  // Tens/teens only extend runs that have digit words; otherwise drop them and split there.
  if (!units.some((u) => u.kind === 'word' || u.kind === 'oh') && units.some((u) => u.kind === 'weak')) {
    const parts: Unit[][] = [];
    let part: Unit[] = [];
    for (const u of units) {
      if (u.kind === 'weak') {
        if (part.length > 0) parts.push(part);
        part = [];
      } else {
        part.push(u);
      }
    }
    if (part.length > 0) parts.push(part);
    return parts;
  }
  return [units];
}

function describe(text: string, units: Unit[], precedingText: string | undefined): { span: DigitSpan; start: number; end: number } {
  const first = units[0];
  const last = units[units.length - 1];
  if (!first || !last) throw new Error('empty digit span');
  const gaps: string[] = [];
  for (let i = 1; i < units.length; i++) {
    const a = units[i - 1];
    const b = units[i];
    if (a && b) gaps.push(text.slice(a.end, b.start));
  }
  let start = first.start;
  // "(555) 123-4567": the opening parenthesis belongs to the number when its closing one does.
  if (text[start - 1] === '(' && gaps.some((g) => g.includes(')'))) start--;
  let plus = false;
  const plusMatch = /(?:\+\s?|\bplus\s+)$/i.exec(text.slice(Math.max(0, start - 6), start));
  if (plusMatch) {
    plus = true;
    start -= plusMatch[0].length;
  }
  const groups: number[] = [];
  let size = first.digits.length;
  for (let i = 1; i < units.length; i++) {
    const a = units[i - 1];
    const b = units[i];
    const gap = gaps[i - 1] ?? '';
    if (!a || !b) continue;
    if (/[^\s]/.test(gap) || a.kind === 'numeral' || b.kind === 'numeral') {
      groups.push(size);
      size = 0;
    }
    size += b.digits.length;
  }
  groups.push(size);
  const end = last.end;
  const near = text.slice(Math.max(0, start - CONTEXT_BEFORE_CHARS), start);
  const head = near.length < start || !precedingText ? near : `${precedingText.slice(-CONTEXT_BEFORE_CHARS)}\n${near}`;
  return {
    start,
    end,
    span: {
      digits: units.map((u) => u.digits).join(''),
      plus,
      numeralOnly: units.every((u) => u.kind === 'numeral'),
      groups,
      gaps,
      before: head.slice(-CONTEXT_BEFORE_CHARS),
      after: text.slice(end, end + CONTEXT_AFTER_CHARS),
    },
  };
}

const sameGroups = (groups: number[], want: number[]): boolean =>
  groups.length === want.length && groups.every((g, i) => g === want[i]);

const hasSsnContext = (s: DigitSpan): boolean => SSN_CONTEXT.test(s.before) || SSN_CONTEXT.test(s.after);

/** Ordered rules for a digit span: the first that matches names it. */
const DIGIT_RULES: ReadonlyArray<{ category: PiiCategory; why: string; matches: (s: DigitSpan) => boolean }> = [
  {
    category: 'card',
    why: 'payment cards are 13–19 digits with a Luhn check digit; "+" marks a phone number instead',
    matches: (s) => !s.plus && s.digits.length >= 13 && s.digits.length <= 19 && luhnValid(s.digits),
  },
  {
    category: 'ssn',
    why: 'written AAA-GG-SSSS / AAA GG SSSS, or any 9 digits where the caller was talking about an SSN',
    matches: (s) => s.digits.length === 9 && isValidSsn(s.digits) && (sameGroups(s.groups, [3, 2, 4]) || hasSsnContext(s)),
  },
  {
    category: 'ssn',
    why: '"the last four of my social": four digits right after an SSN cue',
    matches: (s) => s.digits.length === 4 && hasSsnContext(s) && LAST_FOUR.test(s.before),
  },
  {
    category: 'phone',
    why: 'E.164: "+" (or "plus") and 8–15 digits',
    matches: (s) => s.plus && s.digits.length >= 8 && s.digits.length <= 15,
  },
  {
    category: 'phone',
    why: 'NANP: 10 digits, or 11 with the leading country code 1',
    matches: (s) => s.digits.length === 10 || (s.digits.length === 11 && s.digits.startsWith('1')),
  },
  {
    category: 'phone',
    why: 'a local number written 555-1234',
    matches: (s) => s.numeralOnly && sameGroups(s.groups, [3, 4]) && (s.gaps[0] ?? '').includes('-'),
  },
];

function classifySpecific(span: DigitSpan): PiiCategory | null {
  return DIGIT_RULES.find((r) => r.matches(span))?.category ?? null;
}

/**
 * Whether a run that is not a card, SSN or phone is still an identifier: six or more written
 * digits (account numbers; "2024", "9 30" and "12345" stay), or spelled with at least four digit
 * words ("oh four two six"), or at least one digit word and six digits in all ("555 one two three").
 */
function qualifiesAsDigits(units: Unit[]): boolean {
  const wordDigits = units.reduce((n, u) => n + u.wordDigits, 0);
  if (wordDigits === 0) return units.reduce((n, u) => n + (u.kind === 'numeral' ? u.digits.length : 0), 0) >= 6;
  const total = units.reduce((n, u) => n + u.digits.length, 0);
  return wordDigits >= 4 || total >= 6;
}

/**
 * Splits one run into findings. Cuts are allowed at punctuation, where numerals meet words, and
 * after a leading "oh"; a dynamic programme picks the cut that covers the most digits with
 * card/SSN/phone segments (fewest segments on ties). The rest becomes `[DIGITS]` if it qualifies.
 */
function findingsForRun(text: string, run: Unit[], precedingText: string | undefined): PiiFinding[] {
  const cuts = [0];
  const soft = new Set<number>();
  for (let k = 1; k < run.length; k++) {
    const a = run[k - 1];
    const b = run[k];
    if (!a || !b) continue;
    const gap = text.slice(a.end, b.start);
    const kindSwitch = (a.kind === 'numeral') !== (b.kind === 'numeral');
    const afterLeadingOh = a.kind === 'oh' && b.kind !== 'oh' && run.slice(0, k).every((u) => u.kind === 'oh');
    if (isSoftBreak(a, b, gap)) soft.add(k);
    if (isPunctuated(gap) || kindSwitch || afterLeadingOh) cuts.push(k);
  }
  cuts.push(run.length);
  const m = cuts.length - 1;

  interface Best {
    covered: number;
    segments: number;
    from: number;
    category: PiiCategory | null;
  }
  const best: Array<Best | undefined> = [{ covered: 0, segments: 0, from: -1, category: null }];
  for (let j = 1; j <= m; j++) {
    const b = cuts[j];
    let digits = 0;
    let spansSoft = false;
    for (let i = j - 1; i >= 0; i--) {
      const prev = best[i];
      const a = cuts[i];
      const inner = cuts[i + 1];
      if (!prev || a === undefined || b === undefined || inner === undefined) continue;
      if (i < j - 1 && soft.has(inner)) spansSoft = true;
      for (let k = a; k < inner; k++) digits += run[k]?.digits.length ?? 0;
      // No card, SSN or phone is longer than 19 digits: longer segments are only ever generic.
      const category = digits <= 19 ? classifySpecific(describe(text, run.slice(a, b), precedingText).span) : null;
      if (category === null && spansSoft) continue;
      const covered = prev.covered + (category ? digits : 0);
      const segments = prev.segments + 1;
      const cur = best[j];
      if (!cur || covered > cur.covered || (covered === cur.covered && segments < cur.segments)) {
        best[j] = { covered, segments, from: i, category };
      }
    }
  }

  const findings: PiiFinding[] = [];
  for (let j = m; j > 0; ) {
    const b = best[j];
    if (!b) break;
    const units = run.slice(cuts[b.from] ?? 0, cuts[j] ?? run.length);
    const { start, end } = describe(text, units, precedingText);
    if (b.category) findings.push({ category: b.category, start, end });
    else if (qualifiesAsDigits(units)) findings.push({ category: 'spelled_digits', start, end });
    j = b.from;
  }
  return findings.reverse();
}

// ---------------------------------------------------------------------------------------------
// E-mail

function findEmails(text: string): PiiFinding[] {
  const found: PiiFinding[] = [];
  for (const m of text.matchAll(EMAIL_WRITTEN)) found.push({ category: 'email', start: m.index, end: m.index + m[0].length });
  for (const m of text.matchAll(EMAIL_SPOKEN)) {
    const local = (m[1] ?? '').trim().toLowerCase();
    // A single ordinary word before "at" is a sentence: "I work at acme dot com".
    if (NOT_A_LOCAL_PART.has(local)) continue;
    found.push({ category: 'email', start: m.index, end: m.index + m[0].length });
  }
  return found;
}

// ---------------------------------------------------------------------------------------------
// Public API

const RANK: Readonly<Record<PiiCategory, number>> = { card: 0, ssn: 1, phone: 2, email: 3, spelled_digits: 4 };

/** Keeps the most specific of overlapping findings (then the longest), sorted by position. */
function resolveOverlaps(candidates: PiiFinding[]): PiiFinding[] {
  const ordered = [...candidates].sort(
    (a, b) => RANK[a.category] - RANK[b.category] || b.end - b.start - (a.end - a.start) || a.start - b.start,
  );
  const kept: PiiFinding[] = [];
  for (const f of ordered) {
    if (!kept.some((k) => f.start < k.end && k.start < f.end)) kept.push(f);
  }
  return kept.sort((a, b) => a.start - b.start);
}

/** Finds PII in one piece of text and replaces each finding with its placeholder. */
export function redactPii(text: string, options: RedactOptions = {}): RedactionResult {
  const emails = findEmails(text);
  const masked: Array<readonly [number, number]> = emails.map((e) => [e.start, e.end] as const);
  for (const { pattern } of NOT_PII_NUMBERS) {
    for (const m of text.matchAll(pattern)) masked.push([m.index, m.index + m[0].length]);
  }
  const tokens = tokenize(text);
  const runs = buildRuns(text, readUnits(text, tokens, masked));
  const digitFindings = runs.flatMap((run) => findingsForRun(text, run, options.precedingText));

  const wanted = new Set<PiiCategory>(options.categories ?? PII_CATEGORIES);
  const findings = resolveOverlaps([...digitFindings, ...emails]).filter((f) => wanted.has(f.category));

  let out = '';
  let at = 0;
  for (const f of findings) {
    out += text.slice(at, f.start) + PII_PLACEHOLDERS[f.category];
    at = f.end;
  }
  out += text.slice(at);
  return { text: out, findings };
}

export interface TranscriptRedaction<T> {
  /** The turns in order, each with its text redacted; other fields are kept. */
  turns: T[];
  /** How many findings of each category were replaced, over all turns. */
  counts: Record<PiiCategory, number>;
}

/**
 * Redacts each turn. The previous turn (whoever said it) is read as context, so "what's your
 * social security number?" from the agent makes the caller's nine spoken digits an `[SSN]`.
 */
export function redactTranscript<T extends { speaker: string; text: string }>(
  turns: readonly T[],
  options: RedactOptions = {},
): TranscriptRedaction<T> {
  const counts: Record<PiiCategory, number> = { card: 0, ssn: 0, phone: 0, email: 0, spelled_digits: 0 };
  let preceding = options.precedingText;
  const out = turns.map((turn) => {
    const result = redactPii(turn.text, { ...options, precedingText: preceding });
    for (const f of result.findings) counts[f.category]++;
    preceding = turn.text;
    return { ...turn, text: result.text };
  });
  return { turns: out, counts };
}
