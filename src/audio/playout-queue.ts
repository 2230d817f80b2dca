/**
 * Per-call outbound playout, as a pure object driven by a monotonic clock passed in.
 *
 * Audio goes out in whole 20 ms frames, grouped `frameMs` to a message, never more than `leadMs`
 * ahead of real time: Twilio plays what it receives in order, so the lead is what absorbs our own
 * scheduling jitter, and `clear` discards whatever of it was not yet played. Marks travel in order
 * with the audio they follow, so their echoes tell which audio the caller has heard.
 */
import { FRAME_BYTES, FRAME_MS, bytesToMs } from './frames.js';

export type PlayoutItem =
  | { kind: 'audio'; data: Uint8Array }
  | { kind: 'mark'; name: string };

export type PlayoutMessage =
  | { kind: 'audio'; data: Uint8Array; /** ms past its ideal send time */ latenessMs: number }
  | { kind: 'mark'; name: string };

/** How far outbound audio may ever run ahead of real time (the lead plus any early send). */
export const MAX_AHEAD_MS = 200;

/** The most a message may be sent early with this lead without exceeding MAX_AHEAD_MS. */
export function maxEarlyMs(leadMs: number): number {
  return Math.max(0, MAX_AHEAD_MS - leadMs);
}

export interface PlayoutOptions {
  frameMs: number;
  leadMs: number;
}

export class PlayoutQueue {
  private readonly items: PlayoutItem[] = [];
  private head = 0;
  /** Byte offset already sent within the head audio item. */
  private headOffset = 0;
  /** Monotonic time at which the first sent byte starts playing; undefined when idle. */
  private epochMs: number | undefined;
  private sentMs = 0;
  private paused = false;
  /** What was sent on the current timeline and may still be unplayed at the far end. */
  private readonly inFlight: Array<{ kind: 'audio'; data: Uint8Array; startMs: number } | { kind: 'mark'; name: string; atMs: number }> = [];
  private readonly messageBytes: number;
  private readonly maxEarlyMs: number;

  constructor(private readonly options: PlayoutOptions) {
    if (options.frameMs % FRAME_MS !== 0 || options.frameMs <= 0) {
      throw new Error(`frameMs must be a positive multiple of ${FRAME_MS}, got ${options.frameMs}`);
    }
    if (options.leadMs < options.frameMs) {
      // A message goes out once it fits in the lead: with less than one message of lead, none ever would.
      throw new Error(`leadMs (${options.leadMs}) must be at least frameMs (${options.frameMs})`);
    }
    this.messageBytes = (options.frameMs / FRAME_MS) * FRAME_BYTES;
    this.maxEarlyMs = maxEarlyMs(options.leadMs);
  }

  enqueueAudio(data: Uint8Array): void {
    if (data.length === 0) return;
    if (data.length % FRAME_BYTES !== 0) {
      throw new Error(`outbound audio must be whole ${FRAME_BYTES}-byte frames, got ${data.length} bytes`);
    }
    this.items.push({ kind: 'audio', data });
  }

  enqueueMark(name: string): void {
    this.items.push({ kind: 'mark', name });
  }

  /** True while there is queued audio or marks not yet sent. */
  get hasPending(): boolean {
    return this.head < this.items.length;
  }

  /** Audio queued and not yet sent, in ms (after `pause`, that includes what was taken back). */
  pendingAudioMs(): number {
    let bytes = -this.headOffset;
    for (let i = this.head; i < this.items.length; i++) {
      const item = this.items[i]!;
      if (item.kind === 'audio') bytes += item.data.length;
    }
    return bytesToMs(Math.max(0, bytes));
  }

  /** How far the sent audio runs ahead of the playback position, in ms (0 when drained). */
  bufferedMs(nowMs: number): number {
    if (this.epochMs === undefined) return 0;
    return Math.max(0, this.sentMs - (nowMs - this.epochMs));
  }

  /** When `pull` next has something to send; undefined when nothing is queued. */
  nextDueMs(nowMs: number): number | undefined {
    if (this.paused) return undefined;
    const item = this.items[this.head];
    if (item === undefined) return undefined;
    if (item.kind === 'mark' || this.epochMs === undefined) return nowMs;
    const messageMs = bytesToMs(Math.min(this.messageBytes, item.data.length - this.headOffset));
    return Math.max(nowMs, this.epochMs + this.sentMs + messageMs - this.options.leadMs);
  }

  /**
   * Everything due by `nowMs + earlyMs`, in order. A message may leave up to `earlyMs` before its
   * due time (the far end then holds up to `leadMs + earlyMs`), so that one timer wake can serve
   * every call due within that window; its lateness still counts from its due time.
   */
  pull(nowMs: number, earlyMs = 0): PlayoutMessage[] {
    // Never beyond MAX_AHEAD_MS of audio at the far end, whatever window the caller asks for.
    const early = Math.min(earlyMs, this.maxEarlyMs);
    const out: PlayoutMessage[] = [];
    if (this.paused) return out;
    if (this.epochMs !== undefined && this.sentMs <= nowMs - this.epochMs) {
      // The far end has played all we sent: new audio starts a fresh timeline now.
      this.epochMs = undefined;
      this.inFlight.length = 0;
    }
    this.forgetPlayed(nowMs);
    while (this.head < this.items.length) {
      const item = this.items[this.head]!;
      if (item.kind === 'mark') {
        out.push(item);
        if (this.epochMs !== undefined) this.inFlight.push({ kind: 'mark', name: item.name, atMs: this.sentMs });
        this.advance();
        continue;
      }
      if (this.epochMs === undefined) {
        this.epochMs = nowMs;
        this.sentMs = 0;
      }
      const end = Math.min(this.headOffset + this.messageBytes, item.data.length);
      // Due when sending it keeps the far end's buffer within the lead.
      const idealSendMs = this.epochMs + this.sentMs + bytesToMs(end - this.headOffset) - this.options.leadMs;
      if (idealSendMs > nowMs + early) break;
      const data = item.data.subarray(this.headOffset, end);
      this.inFlight.push({ kind: 'audio', data, startMs: this.sentMs });
      this.sentMs += bytesToMs(data.length);
      // Nothing can go out before its timeline starts: the lead's worth sent at the start is on time.
      out.push({ kind: 'audio', data, latenessMs: Math.max(0, nowMs - Math.max(idealSendMs, this.epochMs)) });
      if (end === item.data.length) this.advance();
      else this.headOffset = end;
    }
    this.compact();
    return out;
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /**
   * Holds output and takes back what was sent but (by our clock) not yet played, frame-aligned, to
   * send again on `resume`. The caller sends `clear` to the far end, which echoes the marks still
   * pending there: those names are returned so their flushed echoes can be told from real ones.
   */
  pause(nowMs: number): { flushedMarks: string[]; rewoundMs: number } {
    if (this.paused) return { flushedMarks: [], rewoundMs: 0 };
    this.paused = true;
    const playedMs = this.epochMs === undefined ? Infinity : nowMs - this.epochMs;
    const requeue: PlayoutItem[] = [];
    const flushedMarks: string[] = [];
    let rewoundMs = 0;
    for (const sent of this.inFlight) {
      if (sent.kind === 'mark') {
        if (sent.atMs > playedMs) {
          requeue.push({ kind: 'mark', name: sent.name });
          flushedMarks.push(sent.name);
        }
        continue;
      }
      const endMs = sent.startMs + bytesToMs(sent.data.length);
      if (endMs <= playedMs) continue;
      const playedFrames = Math.max(0, Math.floor((playedMs - sent.startMs) / FRAME_MS));
      const rest = sent.data.subarray(playedFrames * FRAME_BYTES);
      rewoundMs += bytesToMs(rest.length);
      requeue.push({ kind: 'audio', data: rest });
    }
    if (this.headOffset > 0) {
      const current = this.items[this.head] as { kind: 'audio'; data: Uint8Array };
      this.items[this.head] = { kind: 'audio', data: current.data.subarray(this.headOffset) };
      this.headOffset = 0;
    }
    this.items.splice(this.head, 0, ...requeue);
    this.inFlight.length = 0;
    this.epochMs = undefined;
    this.sentMs = 0;
    return { flushedMarks, rewoundMs };
  }

  resume(): void {
    this.paused = false;
  }

  /** Drops everything not yet sent (barge-in). The far end is told separately, with `clear`. */
  clear(): void {
    this.items.length = 0;
    this.head = 0;
    this.headOffset = 0;
    this.epochMs = undefined;
    this.sentMs = 0;
    this.paused = false;
    this.inFlight.length = 0;
  }

  private forgetPlayed(nowMs: number): void {
    if (this.epochMs === undefined) return;
    const playedMs = nowMs - this.epochMs;
    let drop = 0;
    for (const sent of this.inFlight) {
      const endMs = sent.kind === 'audio' ? sent.startMs + bytesToMs(sent.data.length) : sent.atMs;
      if (endMs > playedMs) break;
      drop++;
    }
    if (drop > 0) this.inFlight.splice(0, drop);
  }

  private advance(): void {
    this.head++;
    this.headOffset = 0;
  }

  private compact(): void {
    if (this.head > 64 && this.head * 2 > this.items.length) {
      this.items.splice(0, this.head);
      this.head = 0;
    }
  }
}
