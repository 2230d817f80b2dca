/**
 * What turns one utterance's audio into text for `parakeet_tdt`: real recognition (pocketsphinx
 * worker processes) or a script (a fixed transcript revealed word by word as audio arrives).
 */
import { PocketsphinxAsr } from '../../../src/engines/local/pocketsphinx-asr.js';

export interface Transcriber {
  /** 16 kHz mono float audio. */
  push(audio: Float32Array): void;
  /** The current hypothesis ('' while there is none). */
  partial(): string;
  /** No more audio: resolves with the final transcript. */
  finish(): Promise<string>;
  cancel(): void;
}

export const SAMPLE_RATE = 16000;

export class ScriptedTranscriber implements Transcriber {
  private samples = 0;
  private readonly words: string[];

  constructor(
    private readonly text: string,
    private readonly msPerWord: number,
  ) {
    this.words = text.split(/\s+/).filter((w) => w !== '');
  }

  push(audio: Float32Array): void {
    this.samples += audio.length;
  }

  partial(): string {
    const revealed = Math.min(this.words.length, Math.floor((this.samples * 1000) / SAMPLE_RATE / this.msPerWord));
    return this.words.slice(0, revealed).join(' ');
  }

  finish(): Promise<string> {
    return Promise.resolve(this.text);
  }

  cancel(): void {}
}

function toPcm16(audio: Float32Array): Int16Array {
  const pcm = new Int16Array(audio.length);
  for (let i = 0; i < audio.length; i++) pcm[i] = Math.max(-32768, Math.min(32767, Math.round(audio[i]! * 32768)));
  return pcm;
}

export class PocketsphinxTranscriber implements Transcriber {
  private latest = '';
  private readonly final: Promise<string>;
  private readonly stream: ReturnType<PocketsphinxAsr['createStream']>;

  constructor(asr: PocketsphinxAsr, callId: string) {
    let stream: ReturnType<PocketsphinxAsr['createStream']> | undefined;
    this.final = new Promise<string>((resolve, reject) => {
      stream = asr.createStream(callId, (event) => {
        if (event.type === 'partial') this.latest = event.text;
        else if (event.type === 'final') resolve(event.text);
        else reject(event.error);
      });
    });
    this.final.catch(() => {}); // an utterance dropped before finish() may still fail; nobody waits for it
    this.stream = stream!;
  }

  push(audio: Float32Array): void {
    if (audio.length > 0) this.stream.push(toPcm16(audio));
  }

  partial(): string {
    return this.latest;
  }

  finish(): Promise<string> {
    this.stream.end();
    return this.final;
  }

  cancel(): void {
    this.stream.cancel();
  }
}

/** The worker pool shared by every sequence. */
export class PocketsphinxPool {
  private constructor(private readonly asr: PocketsphinxAsr) {}

  /** Resolves once every worker has loaded the model (Triton serves only loaded models). */
  static async start(workers: number): Promise<PocketsphinxPool> {
    return new PocketsphinxPool(await PocketsphinxAsr.start({ workers, inputSampleRate: SAMPLE_RATE }));
  }

  transcriber(callId: string): Transcriber {
    return new PocketsphinxTranscriber(this.asr, callId);
  }

  close(): Promise<void> {
    return this.asr.close();
  }
}
