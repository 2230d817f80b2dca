/**
 * Bounded inbound audio buffer (seed 003 §6.3): when the consumer falls behind, the oldest audio is
 * dropped so the call stays in real time and memory stays flat. Dropped samples are counted, so a
 * call that lost audio says so in its logs.
 */
export class DropOldestAudioBuffer {
  private readonly chunks: Int16Array[] = [];
  private samples = 0;
  private droppedSamples = 0;

  constructor(readonly capacitySamples: number) {
    if (capacitySamples <= 0) throw new Error('capacity must be positive');
  }

  push(chunk: Int16Array): void {
    this.chunks.push(chunk);
    this.samples += chunk.length;
    while (this.samples > this.capacitySamples && this.chunks.length > 0) {
      const oldest = this.chunks[0]!;
      const excess = this.samples - this.capacitySamples;
      if (oldest.length <= excess) {
        this.chunks.shift();
        this.samples -= oldest.length;
        this.droppedSamples += oldest.length;
      } else {
        this.chunks[0] = oldest.subarray(excess);
        this.samples -= excess;
        this.droppedSamples += excess;
      }
    }
  }

  /** The next `count` samples without taking them (a view when they lie in one chunk). */
  peek(count: number): Int16Array | undefined {
    if (this.samples < count) return undefined;
    const head = this.chunks[0]!;
    if (head.length >= count) return head.subarray(0, count);
    const out = new Int16Array(count);
    let filled = 0;
    for (const chunk of this.chunks) {
      const part = chunk.subarray(0, Math.min(chunk.length, count - filled));
      out.set(part, filled);
      filled += part.length;
      if (filled === count) break;
    }
    return out;
  }

  /** Takes exactly `count` samples if that many are buffered; otherwise undefined. */
  take(count: number): Int16Array | undefined {
    if (this.samples < count) return undefined;
    const out = new Int16Array(count);
    let filled = 0;
    while (filled < count) {
      const head = this.chunks[0]!;
      const need = count - filled;
      if (head.length <= need) {
        out.set(head, filled);
        filled += head.length;
        this.chunks.shift();
      } else {
        out.set(head.subarray(0, need), filled);
        this.chunks[0] = head.subarray(need);
        filled += need;
      }
    }
    this.samples -= count;
    return out;
  }

  get bufferedSamples(): number {
    return this.samples;
  }

  get dropped(): number {
    return this.droppedSamples;
  }

  clear(): void {
    this.chunks.length = 0;
    this.samples = 0;
  }
}
