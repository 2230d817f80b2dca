// Guards against replies that wait for the whole LLM answer before speaking, or that cut words apart.
import { describe, expect, it } from 'vitest';
import { SentenceChunker } from '../../src/agent/sentence-chunker.js';

describe('sentence chunker', () => {
  it('emits each sentence as soon as its end arrives', () => {
    const chunker = new SentenceChunker();
    expect(chunker.push('We are open ')).toEqual([]);
    expect(chunker.push('from eight. On Fri')).toEqual(['We are open from eight.']);
    expect(chunker.push('days we close early! ')).toEqual(['On Fridays we close early!']);
    expect(chunker.flush()).toEqual([]);
  });

  it('cuts the first segment at a clause once it is long enough, so speech starts sooner', () => {
    const chunker = new SentenceChunker({ firstClauseMinChars: 20 });
    expect(chunker.push('Thanks for waiting, ')).toEqual(['Thanks for waiting,']);
    expect(chunker.push('I looked that up, and ')).toEqual([]);
  });

  it('does not cut inside a number or an abbreviation without a following space', () => {
    const chunker = new SentenceChunker();
    expect(chunker.push('It costs 3.50 dollars')).toEqual([]);
    expect(chunker.flush()).toEqual(['It costs 3.50 dollars']);
  });

  it('breaks a very long run without punctuation at a space', () => {
    const chunker = new SentenceChunker({ maxChars: 40 });
    const words = Array.from({ length: 30 }, (_, i) => `word${i}`).join(' ');
    const segments = chunker.push(words);
    expect(segments.length).toBeGreaterThan(0);
    for (const segment of segments) expect(segment.length).toBeLessThanOrEqual(40);
    expect([...segments, ...chunker.flush()].join(' ')).toBe(words);
  });
});
