// Guards the backchannel classifier: "yeah" / "mhm" must not cut the agent off, and a real interruption must never pass for one.
import { describe, expect, it } from 'vitest';
import { hasOtherWords, isBackchannel } from '../../src/agent/backchannel.js';

describe('isBackchannel', () => {
  it('accepts acknowledgement alone, in any case and punctuation, single or repeated', () => {
    for (const text of ['yeah', 'Mhm.', 'uh-huh', 'uh huh', 'okay', 'OK!', 'right right', 'yeah okay', 'I see', 'got it', 'mm hmm', 'sure, sounds good']) {
      expect(isBackchannel(text), text).toBe(true);
    }
  });

  it('refuses anything with a word that is not acknowledgement, and empty transcripts', () => {
    for (const text of ['no', 'wait', 'stop', 'yeah but', 'okay what about tuesday', 'i', 'i want', 'hold on', '', '   ', '...']) {
      expect(isBackchannel(text), JSON.stringify(text)).toBe(false);
    }
  });
});

describe('hasOtherWords (partial transcripts)', () => {
  it('is false while the words so far are only acknowledgement, or may still become a listed pair', () => {
    for (const text of ['', 'yeah', 'okay', 'i', 'yeah i', 'mm', 'got']) expect(hasOtherWords(text), JSON.stringify(text)).toBe(false);
  });

  it('is true as soon as a word rules acknowledgement out', () => {
    for (const text of ['wait', 'yeah but', 'i want', 'okay so', 'no']) expect(hasOtherWords(text), text).toBe(true);
  });
});
