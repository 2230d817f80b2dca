/**
 * TTS audio (any rate) → 8 kHz G.711 whole frames: resample with Speex, encode, frame. One encoder
 * per agent utterance, so the resampler's filter state runs across the utterance's chunks.
 */
import { encodeG711, type G711Encoding } from '../audio/g711.js';
import { FrameAssembler, SAMPLE_RATE_8K } from '../audio/frames.js';
import { Resampler } from '../audio/resampler.js';

export class SpeechEncoder {
  private resampler: Resampler | undefined;
  private readonly frames: FrameAssembler;

  constructor(private readonly encoding: G711Encoding) {
    this.frames = new FrameAssembler(encoding);
  }

  /** Returns whole frames ready to queue (may be empty). */
  encode(pcm: Int16Array, sampleRate: number): Uint8Array {
    if (pcm.length === 0) return new Uint8Array(0);
    let pcm8k = pcm;
    if (sampleRate !== SAMPLE_RATE_8K) {
      if (this.resampler === undefined || this.resampler.inRate !== sampleRate) {
        this.resampler?.destroy();
        this.resampler = new Resampler(sampleRate, SAMPLE_RATE_8K);
      }
      pcm8k = this.resampler.process(pcm);
    }
    return this.frames.push(encodeG711(this.encoding, pcm8k));
  }

  /** End of a segment: the partial last frame, padded with silence. */
  flush(): Uint8Array {
    return this.frames.flush();
  }

  destroy(): void {
    this.resampler?.destroy();
    this.resampler = undefined;
  }
}
