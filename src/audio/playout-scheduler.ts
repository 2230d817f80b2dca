/**
 * One timer for the outbound audio of every call in the process. Each wake serves the queues that
 * are due and re-arms for the earliest next due time, so a process with hundreds of calls runs one
 * timer, not hundreds, and sends land on their due time instead of on a coarse fixed tick.
 */
import { performance } from 'node:perf_hooks';
import type { PlayoutMessage, PlayoutQueue } from './playout-queue.js';
import { LatencyHistogram } from '../metrics/histogram.js';

export interface PlayoutSink {
  readonly queue: PlayoutQueue;
  deliver(message: PlayoutMessage): void;
}

export class PlayoutScheduler {
  private readonly active = new Set<PlayoutSink>();
  private timer: NodeJS.Timeout | undefined;
  private timerDueMs = Infinity;
  /** Lateness of each audio message against its ideal send time (for the pacing benchmark). */
  readonly lateness = new LatencyHistogram();

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** Call after enqueuing: sends what is due at once and arms the timer for the rest. */
  wake(sink: PlayoutSink): void {
    this.active.add(sink);
    this.serve(sink, this.now());
    this.arm();
  }

  remove(sink: PlayoutSink): void {
    this.active.delete(sink);
  }

  get activeCount(): number {
    return this.active.size;
  }

  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerDueMs = Infinity;
    this.active.clear();
  }

  private serve(sink: PlayoutSink, nowMs: number): void {
    for (const message of sink.queue.pull(nowMs)) {
      if (message.kind === 'audio') this.lateness.record(message.latenessMs);
      sink.deliver(message);
    }
    if (!sink.queue.hasPending) this.active.delete(sink);
  }

  private arm(): void {
    const nowMs = this.now();
    let earliest = Infinity;
    for (const sink of this.active) earliest = Math.min(earliest, sink.queue.nextDueMs(nowMs) ?? Infinity);
    this.armAt(earliest, nowMs);
  }

  private armAt(earliest: number, nowMs: number): void {
    if (earliest === Infinity) return;
    if (this.timer !== undefined && this.timerDueMs <= earliest) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timerDueMs = earliest;
    this.timer = setTimeout(() => this.onTimer(), Math.max(0, earliest - nowMs));
  }

  private onTimer(): void {
    this.timer = undefined;
    this.timerDueMs = Infinity;
    // Half a millisecond of slack: timers fire on whole-ms boundaries, and waking again for a
    // frame due 0.3 ms later costs more than it gains. One pass serves the due queues and finds the
    // next wake (hundreds of calls: each wake walks the set once, not twice).
    const nowMs = this.now();
    let earliest = Infinity;
    for (const sink of this.active) {
      let due = sink.queue.nextDueMs(nowMs);
      if (due !== undefined && due <= nowMs + 0.5) {
        this.serve(sink, nowMs);
        due = sink.queue.nextDueMs(nowMs);
      }
      if (due !== undefined && due < earliest) earliest = due;
    }
    // The pass itself took time: the timer's delay counts from now, not from the wake.
    this.armAt(earliest, this.now());
  }
}
