/**
 * Streaming ASR on Triton (`parakeet_tdt`: Python backend, decoupled, sequence batching). Each
 * caller utterance is one Triton sequence whose id is the call id (sent as `string_param`: Triton
 * rejects uint64 here); its first request carries `sequence_start`, its last `sequence_end`. Audio
 * goes up as it arrives, resampled 8 → 16 kHz with the Speex resampler, in 80 ms requests — short
 * enough for partials within 200 ms of speech, long enough to keep the request rate modest.
 * Responses: `transcript` BYTES [1] and `is_final` BOOL [1]; non-final ones are partials.
 *
 * One ModelStreamInfer stream per utterance, so cancelling the utterance (barge-in handled, hang-up)
 * cancels exactly its work in Triton. A missing final — stream lost, model error, or no final within
 * the deadline after the utterance ended — is an `error` event, never a hang.
 *
 * Utterances of one call share the sequence id, so they must reach Triton one after the other: a
 * new utterance's START would otherwise reset the model's state while the previous one's END is
 * still queued. Each utterance waits (buffering its audio) until the previous one of its call has
 * its final, or has been cancelled and given Triton a moment to drop it.
 */
import { Resampler } from '../../audio/resampler.js';
import type { Asr, AsrEvent, AsrStream } from '../types.js';
import { TritonError, type InferStream, type TritonClient } from './client.js';
import { fp32Tensor, inferRequest, param, readBool, readStrings, responseOutputs } from './tensors.js';

export const PARAKEET_MODEL = 'parakeet_tdt';
const ASR_RATE = 16_000;
/** After cancelling an utterance, time for Triton to drop its requests before the next START. */
const CANCEL_SETTLE_MS = 50;

export interface TritonAsrOptions {
  /** Audio per request, ms (the model contract allows 80–160). */
  chunkMs?: number;
  /** Longest wait for the final after the utterance ended. */
  finalDeadlineMs?: number;
  /** Told when a stream fails, so readiness is re-checked at once. */
  onFailure?: (error: TritonError) => void;
}

export class TritonAsr implements Asr {
  readonly name = 'triton:parakeet_tdt';
  private readonly chunkSamples: number;
  private readonly finalDeadlineMs: number;
  /** Per call: settles when its latest utterance is done with the sequence. */
  private readonly sequenceFree = new Map<string, Promise<void>>();

  constructor(
    private readonly client: TritonClient,
    private readonly options: TritonAsrOptions = {},
  ) {
    this.chunkSamples = Math.round(((options.chunkMs ?? 80) * ASR_RATE) / 1000);
    this.finalDeadlineMs = options.finalDeadlineMs ?? 1500;
  }

  createStream(callId: string, onEvent: (event: AsrEvent) => void): AsrStream {
    const previous = this.sequenceFree.get(callId) ?? Promise.resolve();
    let release!: () => void;
    const done = new Promise<void>((resolve) => (release = resolve));
    const chained = previous.then(() => done);
    this.sequenceFree.set(callId, chained);
    void chained.then(() => {
      if (this.sequenceFree.get(callId) === chained) this.sequenceFree.delete(callId);
    });
    return new TritonAsrStream(this.client, callId, this.chunkSamples, this.finalDeadlineMs, onEvent, this.options.onFailure, previous, release);
  }

  async close(): Promise<void> {
    // The channel belongs to the shared TritonClient.
  }
}

class TritonAsrStream implements AsrStream {
  private readonly stream: InferStream;
  private readonly resampler = new Resampler(8000, ASR_RATE);
  private pending = new Float32Array(0);
  private started = false;
  private ended = false;
  private done = false;
  private lastPartial = '';
  private finalTimer: NodeJS.Timeout | undefined;
  /** Requests held back until the previous utterance of the call is done with the sequence. */
  private held: Array<{ audio: Float32Array; last: boolean }> | undefined = [];

  constructor(
    client: TritonClient,
    private readonly callId: string,
    private readonly chunkSamples: number,
    private readonly finalDeadlineMs: number,
    private readonly onEvent: (event: AsrEvent) => void,
    private readonly onFailure: ((error: TritonError) => void) | undefined,
    sequenceFree: Promise<void>,
    private readonly releaseSequence: () => void,
  ) {
    this.stream = client.openStream();
    void sequenceFree.then(() => {
      const held = this.held ?? [];
      this.held = undefined;
      if (this.done) return;
      for (const request of held) this.send(request.audio, request.last);
      if (this.ended) this.stream.end();
    });
  }

  push(pcm8k: Int16Array): void {
    if (this.ended || this.done) return;
    const pcm16k = this.resampler.process(pcm8k);
    const joined = new Float32Array(this.pending.length + pcm16k.length);
    joined.set(this.pending);
    for (let i = 0; i < pcm16k.length; i++) joined[this.pending.length + i] = pcm16k[i]! / 32768;
    let offset = 0;
    while (joined.length - offset >= this.chunkSamples) {
      this.send(joined.subarray(offset, offset + this.chunkSamples), false);
      offset += this.chunkSamples;
    }
    this.pending = joined.slice(offset);
  }

  end(): void {
    if (this.ended || this.done) return;
    this.ended = true;
    // The last request carries what is left (possibly nothing) and closes the sequence.
    this.send(this.pending, true);
    this.pending = new Float32Array(0);
    // Half-close once the last request is written (it may still be held back).
    if (this.held === undefined) this.stream.end();
  }

  /** The final is due this long after the END request went to Triton (not while it was held back). */
  private armFinalDeadline(): void {
    this.finalTimer = setTimeout(
      () => this.fail(new TritonError(`${PARAKEET_MODEL}: no final transcript within ${this.finalDeadlineMs} ms`, 'deadline')),
      this.finalDeadlineMs,
    );
    this.finalTimer.unref();
  }

  cancel(): void {
    if (this.done) return;
    const started = this.started;
    this.finish(started ? CANCEL_SETTLE_MS : 0);
    this.stream.cancel();
  }

  private send(audio: Float32Array, last: boolean): void {
    if (this.held !== undefined) {
      this.held.push({ audio, last });
      return;
    }
    const parameters = {
      sequence_id: param.string(this.callId),
      ...(this.started ? {} : { sequence_start: param.bool(true) }),
      ...(last ? { sequence_end: param.bool(true) } : {}),
    };
    this.started = true;
    if (last) this.armFinalDeadline();
    // No copy: `audio` views an array that push()/end() never write again.
    const request = inferRequest({ model: PARAKEET_MODEL, inputs: [fp32Tensor('audio_chunk', audio)], parameters, outputs: ['transcript', 'is_final'] });
    this.stream.send(request, {
      onResponse: (response) => {
        if (this.done || response.outputs.length === 0) return; // the empty final of a chunk
        const outputs = responseOutputs(response);
        const transcript = outputs.get('transcript');
        const isFinal = outputs.get('is_final');
        if (transcript === undefined || isFinal === undefined) throw new Error('response lacks transcript/is_final');
        const text = (readStrings(transcript)[0] ?? '').trim();
        if (readBool(isFinal)[0] === true) {
          this.finish();
          this.onEvent({ type: 'final', text });
        } else if (text !== this.lastPartial) {
          this.lastPartial = text;
          this.onEvent({ type: 'partial', text });
        }
      },
      onError: (error) => this.fail(error),
    });
  }

  private fail(error: TritonError): void {
    if (this.done) return;
    this.finish(CANCEL_SETTLE_MS);
    this.stream.cancel();
    this.onFailure?.(error);
    this.onEvent({ type: 'error', error });
  }

  private finish(settleMs = 0): void {
    this.done = true;
    this.held = undefined;
    clearTimeout(this.finalTimer);
    this.resampler.destroy();
    if (settleMs === 0) this.releaseSequence();
    else setTimeout(this.releaseSequence, settleMs).unref();
  }
}
