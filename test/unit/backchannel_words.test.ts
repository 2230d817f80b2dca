// Guards the backchannel classifier: "yeah" / "mhm" must not cut the agent off, and a real interruption must never pass for one.
import { describe, expect, it } from 'vitest';
import { isBackchannel, isClosingAcknowledgement } from '../../src/agent/backchannel.js';

describe('isBackchannel', () => {
  it('accepts acknowledgement alone, in any case and punctuation, single or repeated', () => {
    for (const text of ['yeah', 'Mhm.', 'uh-huh', 'uh huh', 'okay', 'OK!', 'right right', 'yeah okay', 'I see', 'got it', 'mm hmm', 'sure, sounds good']) {
      expect(isBackchannel(text), text).toBe(true);
    }
  });

  it('refuses anything with a word that is not acknowledgement, and empty transcripts', () => {
    for (const text of ['no', 'wait', 'stop', 'yeah but', 'okay what about tuesday', 'i', 'i want', 'hold on', 'uh', 'huh', 'uh actually', '', '   ', '...']) {
      expect(isBackchannel(text), JSON.stringify(text)).toBe(false);
    }
  });
});

describe('isClosingAcknowledgement', () => {
  it('accepts a goodbye back, thanks and acknowledgement', () => {
    for (const text of ['bye', 'Okay, bye!', 'thanks bye', 'thank you so much', 'you too, bye-bye', 'alright, have a nice day', 'yeah', 'ok thank you take care']) {
      expect(isClosingAcknowledgement(text), text).toBe(true);
    }
  });

  it('refuses anything that asks or goes on, and empty transcripts', () => {
    for (const text of ['wait', 'no', 'one more thing', 'thank you but i have a question', 'bye wait', 'can you', 'have a question', '', '  ']) {
      expect(isClosingAcknowledgement(text), JSON.stringify(text)).toBe(false);
    }
  });
});
