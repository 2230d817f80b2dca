/**
 * Bounded inbound audio buffer (seed 003 §6.3): when the consumer falls behind, the oldest audio is
 * dropped so the call stays in real time and memory stays flat. Dropped samples are counted, so a
 * call that lost audio says so in its logs.
 *
 * A fixed ring of samples: every call pushes 50 frames a second through one of these, and a ring
 * costs no allocation per frame and keeps no reference to the frames pushed (which would otherwise
 * outlive a garbage-collector cycle and be promoted). Hand-written: a few lines no library offers
 * for Int16Array with drop-oldest semantics.
 */
export class DropOldestAudioBuffer {
  private readonly ring: Int16Array;
  /** Index in `ring` of the oldest buffered sample. */
  private start = 0;
  private samples = 0;
  private droppedSamples = 0;
  /** Where reads that wrap around the ring's end are assembled (reused). */
  private scratch: Int16Array | undefined;

  constructor(readonly capacitySamples: number) {
    if (capacitySamples <= 0) throw new Error('capacity must be positive');
    this.ring = new Int16Array(capacitySamples);
  }

  push(chunk: Int16Array): void {
    const capacity = this.capacitySamples;
    let data = chunk;
    if (data.length > capacity) {
      this.droppedSamples += data.length - capacity;
      data = data.subarray(data.length - capacity);
    }
    const overflow = this.samples + data.length - capacity;
    if (overflow > 0) {
      this.start = (this.start + overflow) % capacity;
      this.samples -= overflow;
      this.droppedSamples += overflow;
    }
    const write = (this.start + this.samples) % capacity;
    const first = Math.min(data.length, capacity - write);
    if (first === data.length) this.ring.set(data, write);
    else {
      this.ring.set(data.subarray(0, first), write);
      this.ring.set(data.subarray(first), 0);
    }
    this.samples += data.length;
  }

  /**
   * The next `count` samples without taking them, or undefined if fewer are buffered. The array is
   * this buffer's own memory: read it before the next push, take or skip.
   */
  peek(count: number): Int16Array | undefined {
    if (this.samples < count) return undefined;
    const capacity = this.capacitySamples;
    if (this.start + count <= capacity) return this.ring.subarray(this.start, this.start + count);
    if (this.scratch === undefined || this.scratch.length !== count) this.scratch = new Int16Array(count);
    const first = capacity - this.start;
    this.scratch.set(this.ring.subarray(this.start, capacity), 0);
    this.scratch.set(this.ring.subarray(0, count - first), first);
    return this.scratch;
  }

  /**
   * Takes exactly `count` samples if that many are buffered; otherwise undefined. Like `peek`, the
   * array is this buffer's own memory until the next push, take or skip.
   */
  take(count: number): Int16Array | undefined {
    const out = this.peek(count);
    if (out !== undefined) this.skip(count);
    return out;
  }

  /** A copy of the newest `count` samples (all buffered ones if fewer), leaving them buffered. */
  latest(count: number): Int16Array {
    const n = Math.max(0, Math.min(Math.floor(count), this.samples));
    const out = new Int16Array(n);
    const capacity = this.capacitySamples;
    const from = (this.start + this.samples - n) % capacity;
    const first = Math.min(n, capacity - from);
    out.set(this.ring.subarray(from, from + first), 0);
    if (first < n) out.set(this.ring.subarray(0, n - first), first);
    return out;
  }

  /** Drops the next `count` samples (all buffered ones if fewer). */
  skip(count: number): void {
    const n = Math.min(count, this.samples);
    this.start = (this.start + n) % this.capacitySamples;
    this.samples -= n;
  }

  get bufferedSamples(): number {
    return this.samples;
  }

  get dropped(): number {
    return this.droppedSamples;
  }

  clear(): void {
    this.start = 0;
    this.samples = 0;
  }
}
