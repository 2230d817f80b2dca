// Guards against a WER that miscounts edits (e.g. scores a shifted sentence as all substitutions) or trips on case and punctuation.
import { describe, expect, it } from 'vitest';
import { normalizeWords, wordErrorRate } from '../../src/engines/local/word-error-rate.js';

describe('wordErrorRate', () => {
  it('scores an identical transcript as zero errors', () => {
    const result = wordErrorRate('go forward ten meters', 'go forward ten meters');
    expect(result).toMatchObject({ rate: 0, errors: 0, referenceWords: 4, hypothesisWords: 4 });
  });

  it('ignores case, punctuation and extra whitespace but keeps apostrophes inside words', () => {
    expect(wordErrorRate('Go forward, ten meters!', '  go FORWARD ten   meters ').errors).toBe(0);
    expect(normalizeWords("He said: 'don't stop.'")).toEqual(['he', 'said', "don't", 'stop']);
  });

  it('counts one substitution, one deletion and one insertion separately', () => {
    // ref:  he was not an ill disposed young man
    // hyp:  he was    an ill disposed old   man today
    const result = wordErrorRate('he was not an ill disposed young man', 'he was an ill disposed old man today');
    expect(result).toMatchObject({ substitutions: 1, deletions: 1, insertions: 1, errors: 3, referenceWords: 8 });
    expect(result.rate).toBeCloseTo(3 / 8);
  });

  it('finds the minimal alignment when words are shifted rather than substituting every word', () => {
    const result = wordErrorRate('a b c d', 'b c d e');
    expect(result).toMatchObject({ errors: 2, deletions: 1, insertions: 1, substitutions: 0 });
  });

  it('scores an empty hypothesis as every reference word deleted', () => {
    expect(wordErrorRate('seven of clubs', '')).toMatchObject({ rate: 1, deletions: 3, errors: 3 });
  });

  it('counts insertions against an empty reference as if it had one word', () => {
    expect(wordErrorRate('', 'uh huh')).toMatchObject({ rate: 2, insertions: 2, referenceWords: 0 });
    expect(wordErrorRate('', '')).toMatchObject({ rate: 0, errors: 0 });
  });

  it('can exceed 100% when the hypothesis adds more words than the reference has', () => {
    expect(wordErrorRate('five five', 'an up close the apart').rate).toBeGreaterThan(1);
  });
});
