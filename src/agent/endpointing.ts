/**
 * Endpointing: VAD probabilities per chunk in, speech events out. Pure and clock-free: time is the
 * caller's audio timeline (chunk durations), so the same audio always yields the same events.
 *
 * Hysteresis as Silero recommends: speech counts from `threshold` and only ends below
 * `threshold - 0.15`, so a soft syllable inside a word does not split it.
 */
export interface EndpointingConfig {
  threshold: number;
  /** Speech shorter than this is a blip (cough, click) and never opens a turn. */
  minSpeechMs: number;
  /** Silence after speech that ends the caller's turn. */
  endOfTurnSilenceMs: number;
  /** Silence inside speech after which a `silence_gap` is reported (lets paused output resume). */
  gapMs: number;
}

export type EndpointEvent =
  /** First chunk over threshold: tentative, may be a blip. `atMs` is the chunk's start. */
  | { type: 'speech_onset'; atMs: number }
  /** Speech goes on; `speechMs` since onset, counting short dips inside speech. */
  | { type: 'speech_progress'; speechMs: number; atMs: number }
  /** Speech paused for `gapMs` (maybe more to come). */
  | { type: 'silence_gap'; speechMs: number; atMs: number }
  /** Speech ended before `minSpeechMs`: it was never a turn. */
  | { type: 'speech_lost'; atMs: number }
  /** Confirmed speech followed by `endOfTurnSilenceMs` of silence. `speechEndMs` is where it stopped. */
  | { type: 'turn_end'; speechMs: number; speechEndMs: number; atMs: number };

/** Silero's recommended gap between the speech threshold and the threshold that ends speech. */
export const HYSTERESIS = 0.15;

export class Endpointer {
  private inSpeech = false;
  /** A chunk of this run reached the full threshold (before that it is only a candidate). */
  private heardVoice = false;
  private confirmed = false;
  private speechMs = 0;
  private silenceMs = 0;
  private gapReported = false;
  private positionMs = 0;

  constructor(private readonly config: EndpointingConfig) {}

  get speaking(): boolean {
    return this.inSpeech;
  }

  /** Feeds the probability of the next chunk of `chunkMs`; returns what it caused. */
  push(probability: number, chunkMs: number): EndpointEvent[] {
    const start = this.positionMs;
    this.positionMs += chunkMs;
    const now = this.positionMs;
    const { threshold, minSpeechMs, endOfTurnSilenceMs, gapMs } = this.config;
    const lower = threshold - HYSTERESIS;
    if (!this.inSpeech) {
      // Onset is reported at the lower (hysteresis) threshold: it only pauses output, which is
      // undone at once if no real speech follows, and it wins a chunk (32 ms) on soft word starts.
      if (probability < lower) return [];
      this.inSpeech = true;
      this.heardVoice = probability >= threshold;
      this.confirmed = false;
      this.speechMs = chunkMs;
      this.silenceMs = 0;
      this.gapReported = false;
      const events: EndpointEvent[] = [{ type: 'speech_onset', atMs: start }];
      if (this.heardVoice) {
        this.confirmed = this.speechMs >= minSpeechMs;
        events.push({ type: 'speech_progress', speechMs: this.speechMs, atMs: now });
      }
      return events;
    }
    if (probability >= lower) {
      this.speechMs += this.silenceMs + chunkMs;
      this.silenceMs = 0;
      this.gapReported = false;
      if (probability >= threshold) this.heardVoice = true;
      // Nothing counts as speech until one chunk has passed the real threshold.
      if (!this.heardVoice) return [];
      if (this.speechMs >= minSpeechMs) this.confirmed = true;
      return [{ type: 'speech_progress', speechMs: this.speechMs, atMs: now }];
    }
    this.silenceMs += chunkMs;
    const events: EndpointEvent[] = [];
    if (!this.confirmed) {
      if (this.silenceMs >= gapMs) {
        this.inSpeech = false;
        events.push({ type: 'speech_lost', atMs: now });
      }
      return events;
    }
    if (!this.gapReported && this.silenceMs >= gapMs) {
      this.gapReported = true;
      events.push({ type: 'silence_gap', speechMs: this.speechMs, atMs: now });
    }
    if (this.silenceMs >= endOfTurnSilenceMs) {
      this.inSpeech = false;
      events.push({ type: 'turn_end', speechMs: this.speechMs, speechEndMs: now - this.silenceMs, atMs: now });
    }
    return events;
  }

  reset(): void {
    this.inSpeech = false;
    this.confirmed = false;
    this.speechMs = 0;
    this.silenceMs = 0;
  }
}
