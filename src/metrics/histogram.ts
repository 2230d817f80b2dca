/**
 * A fixed-bucket latency histogram (0.1 ms buckets up to 100 ms, then an overflow list): O(1) to
 * record on a hot path, exact enough for p50/p95/p99 of pacing and reaction times.
 */
const BUCKET_MS = 0.1;
const BUCKETS = 1000;

export class LatencyHistogram {
  private readonly counts = new Uint32Array(BUCKETS);
  private readonly overflow: number[] = [];
  private total = 0;
  private maxMs = 0;

  record(ms: number): void {
    const bucket = Math.floor(Math.max(0, ms) / BUCKET_MS);
    if (bucket < BUCKETS) this.counts[bucket]!++;
    else this.overflow.push(ms);
    this.total++;
    if (ms > this.maxMs) this.maxMs = ms;
  }

  get count(): number {
    return this.total;
  }

  get max(): number {
    return this.maxMs;
  }

  /** q in [0, 1]; the upper edge of the bucket holding that quantile. */
  quantile(q: number): number {
    if (this.total === 0) return NaN;
    const rank = Math.ceil(q * this.total);
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return (i + 1) * BUCKET_MS;
    }
    const sorted = [...this.overflow].sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, rank - seen - 1)] ?? this.maxMs;
  }

  reset(): void {
    this.counts.fill(0);
    this.overflow.length = 0;
    this.total = 0;
    this.maxMs = 0;
  }
}
