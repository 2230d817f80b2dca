/**
 * One thing the agent says (greeting, reply, fixed prompt), with its own lifecycle and its own
 * `interrupt()`. It knows its text segments and the marks that follow each one's audio, so after a
 * barge-in it can tell exactly which words the caller heard.
 *
 * Marks are named `u<id>:start`, `u<id>:s<segment>` and `u<id>:end`.
 */
import type { ChatMessage, ToolCall } from '../engines/types.js';

export type UtteranceKind = 'greeting' | 'reply' | 'prompt';
export type UtteranceStatus = 'preparing' | 'speaking' | 'done' | 'interrupted' | 'cancelled';

interface Segment {
  text: string;
  audioMs: number;
  /** Monotonic time its mark came back, i.e. its audio finished playing. */
  playedAtMs?: number;
}

export class AgentUtterance {
  readonly controller = new AbortController();
  status: UtteranceStatus = 'preparing';
  readonly segments: Segment[] = [];
  readonly toolCalls: ToolCall[] = [];
  /** HTTP tool calls made while generating this reply and their results, for the conversation. */
  readonly toolMessages: ChatMessage[] = [];
  /** Everything the LLM wrote, heard or not. */
  generatedText = '';
  private startedPlayingAtMs: number | undefined;
  /** Set when output was paused for a possible barge-in: nothing after it was heard. */
  private heardUntilMs: number | undefined;
  private allQueued = false;
  private endEchoed = false;

  constructor(
    readonly id: number,
    readonly kind: UtteranceKind,
  ) {}

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get isActive(): boolean {
    return this.status === 'preparing' || this.status === 'speaking';
  }

  markName(which: 'start' | 'end' | number): string {
    return typeof which === 'number' ? `u${this.id}:s${which}` : `u${this.id}:${which}`;
  }

  static parseMark(name: string): { utteranceId: number; which: 'start' | 'end' | number } | undefined {
    const match = /^u(\d+):(start|end|s(\d+))$/.exec(name);
    if (match === null) return undefined;
    const which = match[2] === 'start' ? 'start' : match[2] === 'end' ? 'end' : Number(match[3]);
    return { utteranceId: Number(match[1]), which };
  }

  addSegment(index: number, text: string, audioMs: number): void {
    this.segments[index] = { text, audioMs };
  }

  /** All audio and the end mark are queued; done once the end mark comes back. */
  markAllQueued(): void {
    this.allQueued = true;
  }

  /** Every segment's audio is queued: nothing more will be generated. */
  get fullyQueued(): boolean {
    return this.allQueued;
  }

  /** Returns true when this echo completes the utterance. */
  onMarkEcho(which: 'start' | 'end' | number, nowMs: number): boolean {
    if (!this.isActive) return false;
    if (which === 'start') this.startedPlayingAtMs ??= nowMs;
    else if (which === 'end') this.endEchoed = true;
    else {
      const segment = this.segments[which];
      if (segment !== undefined) segment.playedAtMs ??= nowMs;
    }
    if (this.endEchoed && this.allQueued) {
      this.status = 'done';
      return true;
    }
    return false;
  }

  /** Output paused at `nowMs` pending a barge-in decision: anything later was not heard yet. */
  notePaused(nowMs: number): void {
    this.heardUntilMs ??= nowMs;
  }

  /** Output resumed: the held audio will be heard after all. */
  noteResumed(): void {
    this.heardUntilMs = undefined;
  }

  /** Stops everything: LLM, TTS and any later audio. */
  interrupt(nowMs: number): void {
    if (!this.isActive) return;
    this.heardUntilMs ??= nowMs;
    this.status = this.startedPlayingAtMs === undefined && this.segments.every((s) => s.playedAtMs === undefined) ? 'cancelled' : 'interrupted';
    this.controller.abort();
  }

  /** Drop before any audio was heard (the caller went on talking). */
  cancel(): void {
    if (!this.isActive) return;
    this.status = 'cancelled';
    this.controller.abort();
  }

  /**
   * The words the caller heard: whole segments whose marks came back before the cut, and of the
   * segment playing at the cut, the share of its words matching the share of its audio played.
   */
  heardText(): string {
    if (this.status === 'done') return this.segments.map((s) => s.text).join(' ').trim();
    if (this.status === 'cancelled' || this.startedPlayingAtMs === undefined) return '';
    const cut = this.heardUntilMs ?? Infinity;
    const words: string[] = [];
    let segmentStart = this.startedPlayingAtMs;
    for (const segment of this.segments) {
      if (segment === undefined) break;
      if (segment.playedAtMs !== undefined && segment.playedAtMs <= cut) {
        words.push(segment.text);
        segmentStart = segment.playedAtMs;
        continue;
      }
      const played = Math.max(0, Math.min(cut, segment.playedAtMs ?? cut) - segmentStart);
      const share = segment.audioMs > 0 ? Math.min(1, played / segment.audioMs) : 0;
      const segmentWords = segment.text.split(/\s+/).filter(Boolean);
      const heard = segmentWords.slice(0, Math.floor(share * segmentWords.length));
      if (heard.length > 0) words.push(heard.join(' '));
      break;
    }
    return words.join(' ').trim();
  }
}
