/**
 * One timer for the outbound audio of every call in the process. Each wake serves the queues that
 * are due, and those due within the next few ms (`earlyMs`: sent that much early, inside the far
 * end's buffer), and re-arms for the earliest next due time. So a process with hundreds of calls runs
 * one timer, not hundreds, and wakes at most once per early window; a send is late only by as much
 * as the timer itself fires late.
 *
 * Due times sit in a min-heap (`tinyqueue`): a wake costs O(log n) per queue served, not a walk over
 * every call (at 200 calls, ~1000 wakes a second each walked all 200 queues). Entries go stale
 * rather than being removed: a queue's live entry is the one whose time `scheduled` holds; any other
 * entry for it is skipped when it comes up. `wake` (more audio, a mark, a resume) gives the queue a
 * fresh entry at its due time; pause, clear and finishing only move it later or away, which the
 * entry's own turn finds out.
 */
import { performance } from 'node:perf_hooks';
import TinyQueue from 'tinyqueue';
import { maxEarlyMs, type PlayoutMessage, type PlayoutQueue } from './playout-queue.js';
import { LatencyHistogram } from '../metrics/histogram.js';

export interface PlayoutSink {
  readonly queue: PlayoutQueue;
  deliver(message: PlayoutMessage): void;
}

interface DueEntry {
  dueMs: number;
  sink: PlayoutSink;
}

/**
 * Half a millisecond of slack at least: timers fire on whole-ms boundaries, and waking again for a
 * frame due 0.3 ms later costs more than it gains.
 */
const SLACK_MS = 0.5;

/**
 * How early a message may go out so that one wake serves every call due within that window. A
 * wake of the event loop from sleep costs 42–68 µs of CPU on the 2-core development VM (a bare 1 ms
 * timer chain, `bench/pacing.ts`); with each call on its own cadence, 200 calls made ~870 wakes a
 * second, 5 ms windows make at most 200 (scheduler CPU per call-second 0.37 → 0.28 ms there;
 * server 2.37 → 2.04 ms in paired load runs). The far end holds at most `lead + early`: see
 * `pacingEarlyMs`.
 */
export const DEFAULT_PACING_EARLY_MS = 5;

/** The early window for a lead: as much of DEFAULT_PACING_EARLY_MS as keeps lead + early within MAX_AHEAD_MS. */
export function pacingEarlyMs(leadMs: number): number {
  return Math.min(DEFAULT_PACING_EARLY_MS, maxEarlyMs(leadMs));
}

/** Entries due within this of a wake are served by it: the early window, at least the timer-granularity slack. */
export function wakeWindowMs(earlyMs: number): number {
  return Math.max(SLACK_MS, earlyMs);
}

export interface PlayoutSchedulerOptions {
  /** How long before its due time a message may be sent (default DEFAULT_PACING_EARLY_MS). */
  earlyMs?: number;
}

export class PlayoutScheduler {
  private readonly due = new TinyQueue<DueEntry>([], (a, b) => a.dueMs - b.dueMs);
  /** Each queue with something to send, and the due time of its live heap entry. */
  private readonly scheduled = new Map<PlayoutSink, number>();
  /** The queues one timer pass served (reused: a pass runs ~1000 times a second at 200 calls). */
  private readonly served: PlayoutSink[] = [];
  private timer: NodeJS.Timeout | undefined;
  private timerDueMs = Infinity;
  /** Lateness of each audio message against its ideal send time (for the pacing benchmark). */
  readonly lateness = new LatencyHistogram();
  /** Timer wakes so far (each costs a wake of the event loop; see DEFAULT_PACING_EARLY_MS). */
  wakes = 0;

  private readonly earlyMs: number;
  /** See `wakeWindowMs`. */
  private readonly windowMs: number;

  constructor(
    private readonly now: () => number = () => performance.now(),
    options: PlayoutSchedulerOptions = {},
  ) {
    this.earlyMs = options.earlyMs ?? DEFAULT_PACING_EARLY_MS;
    if (!(this.earlyMs >= 0)) throw new Error(`earlyMs must be 0 or more, got ${this.earlyMs}`);
    this.windowMs = wakeWindowMs(this.earlyMs);
  }

  /** Call after enqueuing: sends what is due at once and arms the timer for the rest. */
  wake(sink: PlayoutSink): void {
    const nowMs = this.now();
    this.serve(sink, nowMs);
    this.schedule(sink, nowMs);
    this.arm(nowMs);
  }

  remove(sink: PlayoutSink): void {
    this.scheduled.delete(sink);
  }

  get activeCount(): number {
    return this.scheduled.size;
  }

  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerDueMs = Infinity;
    this.scheduled.clear();
    while (this.due.length > 0) this.due.pop();
  }

  private serve(sink: PlayoutSink, nowMs: number): void {
    for (const message of sink.queue.pull(nowMs, this.earlyMs)) {
      if (message.kind === 'audio') this.lateness.record(message.latenessMs);
      sink.deliver(message);
    }
  }

  /**
   * Gives the queue a heap entry at its next due time (its older entry, if any, goes stale). A live
   * entry earlier than the due time would wake the loop for nothing: `wake` may have sent, up to
   * `earlyMs` early, the very message the old entry was for.
   */
  private schedule(sink: PlayoutSink, nowMs: number): void {
    const dueMs = sink.queue.nextDueMs(nowMs);
    if (dueMs === undefined) {
      this.scheduled.delete(sink);
      return;
    }
    if (this.scheduled.get(sink) === dueMs) return;
    this.scheduled.set(sink, dueMs);
    this.due.push({ dueMs, sink });
  }

  /** Arms the timer for the earliest live entry (stale entries at the top are dropped on the way). */
  private arm(nowMs: number): void {
    let head = this.due.peek();
    while (head !== undefined && this.scheduled.get(head.sink) !== head.dueMs) {
      this.due.pop();
      head = this.due.peek();
    }
    // A timer armed for an entry that went stale (or for none left) would wake the loop for nothing.
    if (head === undefined || (this.timer !== undefined && this.timerDueMs !== head.dueMs)) {
      if (this.timer !== undefined) clearTimeout(this.timer);
      this.timer = undefined;
      this.timerDueMs = Infinity;
    }
    if (head === undefined || this.timer !== undefined) return;
    this.timerDueMs = head.dueMs;
    this.timer = setTimeout(() => this.onTimer(), Math.max(0, head.dueMs - nowMs));
  }

  private onTimer(): void {
    this.wakes++;
    this.timer = undefined;
    this.timerDueMs = Infinity;
    const nowMs = this.now();
    // Queues served in this pass get their next entry after it, so none is served twice in a pass.
    const served = this.served;
    served.length = 0;
    for (let head = this.due.peek(); head !== undefined && head.dueMs <= nowMs + this.windowMs; head = this.due.peek()) {
      this.due.pop();
      const { sink, dueMs } = head;
      if (this.scheduled.get(sink) !== dueMs) continue; // stale
      this.scheduled.delete(sink);
      const nextMs = sink.queue.nextDueMs(nowMs);
      if (nextMs !== undefined && nextMs <= nowMs + this.windowMs) this.serve(sink, nowMs);
      served.push(sink);
    }
    for (const sink of served) this.schedule(sink, nowMs);
    served.length = 0;
    // The pass itself took time: the timer's delay counts from now, not from the wake.
    this.arm(this.now());
  }
}
