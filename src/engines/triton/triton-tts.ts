/**
 * Streaming TTS on Triton (`tts`: Python backend, decoupled; CosyVoice 2 in production). One request
 * per speakable text segment (`text` BYTES [1], optional `voice`), answered by several responses of
 * `audio` FP32 [N] + `sample_rate` INT32 [1], then a flag-only final. Segments are sent the moment
 * the LLM produces them, on one stream per reply, so the GPU works on segment 2 while segment 1
 * plays; audio is handed on strictly in segment order, each chunk as soon as it exists.
 *
 * Cancelling the reply cancels the stream, and with it every segment still synthesizing.
 */
import type { Tts, TtsChunk, TtsRequest } from '../types.js';
import { TritonError, type TritonClient } from './client.js';
import { bytesTensor, inferRequest, readFp32, readInt32, responseOutputs } from './tensors.js';

export const TTS_MODEL = 'tts';

export interface TritonTtsOptions {
  /** Longest wait for a segment's first audio (and between its chunks). */
  chunkDeadlineMs?: number;
  onFailure?: (error: TritonError) => void;
}

interface SegmentState {
  index: number;
  text: string;
  chunks: TtsChunk[];
  done: boolean;
  sentAt: number;
}

export class TritonTts implements Tts {
  readonly name = 'triton:tts';

  constructor(
    private readonly client: TritonClient,
    private readonly options: TritonTtsOptions = {},
  ) {}

  async *synthesize(request: TtsRequest): AsyncIterable<TtsChunk> {
    const { signal } = request;
    if (signal.aborted) return;
    const stream = this.client.openStream();
    const segments: SegmentState[] = [];
    let inputDone = false;
    let completed = false;
    let failure: Error | undefined;
    let deadlineTimer: NodeJS.Timeout | undefined;
    let wake: (() => void) | undefined;
    const notify = (): void => {
      const resolve = wake;
      wake = undefined;
      resolve?.();
    };
    const deadlineMs = this.options.chunkDeadlineMs ?? 2000;
    const onAbort = (): void => {
      stream.cancel();
      notify();
    };
    signal.addEventListener('abort', onAbort, { once: true });

    const send = (segment: SegmentState): void => {
      const inputs = [bytesTensor('text', [segment.text]), ...(request.voice ? [bytesTensor('voice', [request.voice])] : [])];
      stream.send(inferRequest({ model: TTS_MODEL, id: `seg${segment.index}`, inputs, outputs: ['audio', 'sample_rate'] }), {
        onResponse: (response, final) => {
          if (response.outputs.length > 0) {
            const outputs = responseOutputs(response);
            const audio = outputs.get('audio');
            const rate = outputs.get('sample_rate');
            if (audio === undefined || rate === undefined) throw new Error('response lacks audio/sample_rate');
            const sampleRate = readInt32(rate)[0] ?? 0;
            if (sampleRate < 8000 || sampleRate > 48_000) throw new Error(`implausible sample_rate ${sampleRate}`);
            segment.chunks.push({ segment: segment.index, text: segment.text, pcm: floatToPcm16(readFp32(audio)), sampleRate, segmentEnd: false });
          }
          if (final) segment.done = true;
          notify();
        },
        onError: (error) => {
          failure ??= error;
          this.options.onFailure?.(error);
          notify();
        },
      });
    };

    // Feed segments as the LLM produces them; this runs beside the loop below.
    const feeding = (async () => {
      try {
        let index = 0;
        for await (const text of request.text) {
          if (signal.aborted || failure !== undefined) break;
          if (text.trim() === '') continue;
          const segment: SegmentState = { index: index++, text, chunks: [], done: false, sentAt: Date.now() };
          segments.push(segment);
          send(segment);
          notify();
        }
      } catch (error) {
        failure ??= error as Error;
      } finally {
        inputDone = true;
        notify();
      }
    })();

    try {
      let head = 0;
      let lastProgress = Date.now();
      for (;;) {
        if (signal.aborted) return;
        if (failure !== undefined) throw failure;
        const segment = segments[head];
        if (segment !== undefined) {
          let chunk: TtsChunk | undefined;
          while ((chunk = segment.chunks.shift()) !== undefined) {
            lastProgress = Date.now();
            yield chunk;
            if (signal.aborted) return;
          }
          if (segment.done) {
            // The segment's end is only known at its (possibly empty) final response.
            yield { segment: segment.index, text: segment.text, pcm: new Int16Array(0), sampleRate: 8000, segmentEnd: true };
            head++;
            lastProgress = Date.now();
            continue;
          }
        } else if (inputDone) {
          break;
        }
        const waitingOnTriton = segment !== undefined;
        const since = Math.max(lastProgress, segment?.sentAt ?? 0);
        const remaining = deadlineMs - (Date.now() - since);
        if (waitingOnTriton && remaining <= 0) {
          throw new TritonError(`${TTS_MODEL}: no audio for segment ${segment.index} within ${deadlineMs} ms`, 'deadline');
        }
        await new Promise<void>((resolve) => {
          wake = resolve;
          clearTimeout(deadlineTimer);
          if (waitingOnTriton) deadlineTimer = setTimeout(notify, remaining).unref();
        });
      }
      completed = true;
      stream.end();
    } catch (error) {
      stream.cancel();
      if (error instanceof TritonError && error.kind === 'deadline') this.options.onFailure?.(error);
      throw error;
    } finally {
      clearTimeout(deadlineTimer);
      signal.removeEventListener('abort', onAbort);
      // Aborted, failed, or the consumer stopped iterating early: release the segments in Triton.
      if (!completed) stream.cancel();
      // Not awaited: the text source may still be waiting on the LLM; it stops at its next segment.
      void feeding;
    }
  }
}

function floatToPcm16(samples: Float32Array): Int16Array {
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) {
    const s = samples[i]!;
    out[i] = s >= 1 ? 32767 : s <= -1 ? -32768 : Math.round(s * 32767);
  }
  return out;
}
