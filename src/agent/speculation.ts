/**
 * Speculative generation (seed 001): while the caller pauses, the LLM already answers the partial
 * transcript. Its events are buffered, not spoken. If the final transcript turns out to be the
 * same words, the reply adopts the buffered stream and has its first tokens at once; if the caller
 * goes on, or said something else, the speculation is cancelled — upstream too, through its signal.
 */
import type { LlmEvent } from '../engines/types.js';
import { AsyncQueue } from '../util/async-queue.js';

/** Case, punctuation and spacing differences between a partial and the final don't change the words. */
export function normalizeUtterance(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^\p{L}\p{N}' ]+/gu, ' ')
    .replace(/\s+/g, ' ')
    .trim();
}

export function sameUtterance(a: string, b: string): boolean {
  return normalizeUtterance(a) === normalizeUtterance(b);
}

export class Speculation {
  private readonly controller = new AbortController();
  private readonly buffered = new AsyncQueue<LlmEvent>();
  private adopted = false;
  readonly startedAt: number;

  constructor(
    readonly userText: string,
    start: (signal: AbortSignal) => AsyncIterable<LlmEvent>,
    now: number,
  ) {
    this.startedAt = now;
    void this.pump(start(this.controller.signal));
  }

  get cancelled(): boolean {
    return this.controller.signal.aborted;
  }

  /** Drops the speculation and aborts its LLM request. */
  cancel(): void {
    if (this.controller.signal.aborted) return;
    this.controller.abort();
    this.buffered.end();
  }

  /** The reply takes over the stream (buffered events first); aborting `signal` aborts the request. */
  adopt(signal: AbortSignal): AsyncIterable<LlmEvent> {
    this.adopted = true;
    if (signal.aborted) this.cancel();
    else signal.addEventListener('abort', () => this.cancel(), { once: true });
    return this.buffered;
  }

  get isAdopted(): boolean {
    return this.adopted;
  }

  private async pump(events: AsyncIterable<LlmEvent>): Promise<void> {
    try {
      for await (const event of events) {
        if (this.controller.signal.aborted) return;
        this.buffered.push(event);
      }
      this.buffered.end();
    } catch (error) {
      this.buffered.fail(error as Error);
    }
  }
}
