/**
 * Which inbound chunks the VAD model has to look at. Most of a call's inbound audio is the caller
 * listening: digital silence, idle-channel hiss, or a steady line/background noise. None of it can
 * be speech, and running Silero on it is most of the server's CPU per call. This gate answers such
 * chunks without inference and lets the model decide everything else.
 *
 * Per stream it tracks the line's noise floor (chunk RMS level, dBFS). The floor falls at once to
 * a quieter chunk. It rises only from chunks the model itself judged not to be speech, and only
 * once several in a row agree (then towards the quietest of them): Silero often scores the first
 * chunks of a soft onset low, and learning from those would raise the floor into the voice and
 * gate out the rest of the utterance. Chunks the gate answers never raise it.
 *
 * A chunk goes to the model when it is louder than the absolute gate (−55 dBFS: nothing quieter
 * is speech on a phone line) AND louder than the noise floor by a margin — speech sits 20–40 dB
 * above steady line noise, its softest onsets well over 8 dB — or while a recent chunk looked like
 * speech (the hold, so word gaps and trailing syllables are the model's call and endpointing sees
 * its answers).
 *
 * Hand-written: a few lines of level tracking tied to our VAD's feedback, not a library's job.
 */

export interface SpeechGateOptions {
  /** Chunks quieter than this never reach the model (dBFS). */
  absoluteGateDbfs?: number;
  /** A chunk must be this much louder than the noise floor to reach the model (dB). */
  marginDb?: number;
  /** Fraction of the distance to the quietest of `riseAfterChunks` non-speech chunks the floor moves (0..1]. */
  riseRate?: number;
  /** Consecutive model answers of "not speech" needed before the floor may rise. */
  riseAfterChunks?: number;
  /** Chunks that go to the model regardless of level after one it called speech. */
  holdChunks?: number;
  /** A model answer at or above this counts as speech for the hold (below the turn threshold on purpose). */
  holdProbability?: number;
}


export class SpeechGate {
  private readonly absoluteGate: number;
  private readonly margin: number;
  private readonly riseRate: number;
  private readonly riseAfter: number;
  private readonly holdChunks: number;
  private readonly holdProbability: number;
  /** The line's estimated noise floor, dBFS. Starts at a quiet line's level. */
  private noiseFloor: number;
  private hold = 0;
  /** Consecutive non-speech answers so far, and the quietest level among them. */
  private quietAnswers = 0;
  private quietestAnswered = Infinity;

  constructor(options: SpeechGateOptions = {}) {
    this.absoluteGate = options.absoluteGateDbfs ?? -55;
    this.margin = options.marginDb ?? 8;
    this.riseRate = options.riseRate ?? 0.3;
    this.riseAfter = options.riseAfterChunks ?? 4;
    this.holdChunks = options.holdChunks ?? 10;
    this.holdProbability = options.holdProbability ?? 0.3;
    this.noiseFloor = this.absoluteGate - this.margin;
  }

  get noiseFloorDbfs(): number {
    return this.noiseFloor;
  }

  /**
   * Whether the chunk at `level` dBFS must go to the model. A `false` answer consumes the chunk (the
   * floor learns from it); a `true` answer changes nothing, so asking again about the same waiting
   * chunk gives the same answer.
   */
  needsModel(level: number): boolean {
    if (this.hold > 0 || level >= Math.max(this.absoluteGate, this.noiseFloor + this.margin)) return true;
    if (level < this.noiseFloor) this.noiseFloor = level;
    return false;
  }

  /** The model's answer for a chunk that went to it. */
  modelAnswered(level: number, probability: number): void {
    if (probability >= this.holdProbability) {
      this.hold = this.holdChunks;
      this.quietAnswers = 0;
      this.quietestAnswered = Infinity;
      return;
    }
    if (this.hold > 0) this.hold--;
    if (level < this.noiseFloor) this.noiseFloor = level;
    this.quietestAnswered = Math.min(this.quietestAnswered, level);
    if (++this.quietAnswers < this.riseAfter) return;
    if (this.quietestAnswered > this.noiseFloor) this.noiseFloor += (this.quietestAnswered - this.noiseFloor) * this.riseRate;
    this.quietAnswers = 0;
    this.quietestAnswered = Infinity;
  }

  /** The model could not answer (inference failed): no hold is left waiting on its answer. */
  modelFailed(): void {
    this.hold = 0;
    this.quietAnswers = 0;
    this.quietestAnswered = Infinity;
  }
}
