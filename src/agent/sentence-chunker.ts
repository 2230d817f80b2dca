/**
 * Cuts a streaming reply into speakable segments, so TTS starts on the first clause while the LLM
 * is still writing the rest. Sentence ends always cut; the first segment also cuts at a clause
 * boundary once it is long enough to sound natural, since that is what the caller waits for.
 */
const SENTENCE_END = /[.!?…]+["')\]]*\s/g;
const CLAUSE_END = /[,;:—]\s/g;

export interface ChunkerOptions {
  /** Minimum length of the first segment before a clause boundary may cut it. */
  firstClauseMinChars: number;
  /** Longer segments than this cut at a clause boundary even after the first. */
  maxChars: number;
}

const DEFAULTS: ChunkerOptions = { firstClauseMinChars: 24, maxChars: 160 };

export class SentenceChunker {
  private buffer = '';
  private emitted = 0;
  private readonly options: ChunkerOptions;

  constructor(options: Partial<ChunkerOptions> = {}) {
    this.options = { ...DEFAULTS, ...options };
  }

  /** Adds streamed text; returns the segments it completed. */
  push(delta: string): string[] {
    this.buffer += delta;
    const out: string[] = [];
    for (let cut = this.findCut(); cut > 0; cut = this.findCut()) {
      const segment = this.buffer.slice(0, cut).trim();
      this.buffer = this.buffer.slice(cut);
      if (segment !== '') {
        out.push(segment);
        this.emitted++;
      }
    }
    return out;
  }

  /** The end of the reply: whatever is left is the last segment. */
  flush(): string[] {
    const rest = this.buffer.trim();
    this.buffer = '';
    if (rest === '') return [];
    this.emitted++;
    return [rest];
  }

  private findCut(): number {
    const sentence = lastMatchEnd(SENTENCE_END, this.buffer, 1);
    if (sentence > 0) return sentence;
    const clauseMin = this.emitted === 0 ? this.options.firstClauseMinChars : this.options.maxChars;
    if (this.buffer.length >= clauseMin) {
      const clause = lastMatchEnd(CLAUSE_END, this.buffer, clauseMin);
      if (clause > 0) return clause;
    }
    if (this.buffer.length > this.options.maxChars * 1.5) {
      const space = this.buffer.lastIndexOf(' ', this.options.maxChars);
      if (space > 0) return space + 1;
    }
    return 0;
  }
}

/** End of the first match that ends at or after `minEnd` (0 if none). */
function lastMatchEnd(pattern: RegExp, text: string, minEnd: number): number {
  pattern.lastIndex = 0;
  for (let match = pattern.exec(text); match !== null; match = pattern.exec(text)) {
    const end = match.index + match[0].length;
    if (end >= minEnd) return end;
  }
  return 0;
}
