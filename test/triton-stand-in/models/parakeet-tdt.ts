/**
 * `parakeet_tdt`: streaming ASR under Triton's sequence batcher, as a decoupled Python model. One
 * sequence (sequence_start … sequence_end) is one utterance. Each non-final chunk is answered with at
 * most one partial (when the hypothesis changed) and then the flag-only final; the sequence_end chunk
 * with one response holding the full transcript, is_final=true, marked final.
 *
 * Sequences outlive streams, as in Triton: a sequence is dropped at its end, when a new START reuses
 * its id, or after `max_sequence_idle_microseconds` without a request.
 */
import { boolTensor, bytesTensor, readFp32 } from '../../../src/engines/triton/tensors.js';
import type { ModelInferRequest } from '../../../src/engines/triton/protocol.js';
import { ModelError, RequestError, type InferContext, type ModelSpec, type ResponseSink, type SequenceControl, type StandInModel } from '../model.js';
import type { ObservedInputs } from '../observed.js';
import { parameterValue } from '../request.js';
import { PocketsphinxPool, ScriptedTranscriber, type Transcriber } from './transcribers.js';

export type RecognizerOption =
  | 'pocketsphinx'
  | { pocketsphinx: { workers?: number } }
  | {
      /**
       * The n-th utterance gets the n-th transcript ('' once the list is used up). Counted per
       * sequence id by default (the n-th START of that id), or across the whole stand-in.
       */
      scripted: readonly string[];
      per?: 'sequence' | 'server';
      /** Partials reveal one more word per this much audio (default 300 ms). */
      msPerWord?: number;
    };

const IDLE_MICROSECONDS = 5_000_000;

export const PARAKEET_SPEC: ModelSpec = {
  name: 'parakeet_tdt',
  platform: 'python',
  backend: 'python',
  decoupled: true,
  inputs: [{ name: 'audio_chunk', datatype: 'FP32', dims: [-1] }],
  outputs: [
    { name: 'transcript', datatype: 'BYTES', dims: [1] },
    { name: 'is_final', datatype: 'BOOL', dims: [1] },
  ],
  sequenceBatching: { maxSequenceIdleMicroseconds: IDLE_MICROSECONDS },
};

interface Sequence {
  transcriber: Transcriber;
  lastPartial: string;
  /** Chunks of one sequence run in order, as the sequence batcher runs them. */
  queue: Promise<void>;
  idle: NodeJS.Timeout | undefined;
}

export class ParakeetModel implements StandInModel {
  readonly spec = PARAKEET_SPEC;
  private readonly sequences = new Map<string, Sequence>();
  private readonly utterances = new Map<string, number>();
  private serverUtterances = 0;

  private constructor(
    private readonly recognizer: RecognizerOption,
    private readonly pool: PocketsphinxPool | undefined,
  ) {}

  static async load(recognizer: RecognizerOption = 'pocketsphinx'): Promise<ParakeetModel> {
    if (recognizer !== 'pocketsphinx' && 'scripted' in recognizer) return new ParakeetModel(recognizer, undefined);
    const workers = recognizer === 'pocketsphinx' ? 2 : (recognizer.pocketsphinx.workers ?? 2);
    return new ParakeetModel(recognizer, await PocketsphinxPool.start(workers));
  }

  observe(inputs: ReadonlyMap<string, { shape: number[] }>, request: ModelInferRequest): ObservedInputs {
    const p = request.parameters ?? {};
    const value = (key: string) => (p[key] !== undefined ? parameterValue(p[key]) : undefined);
    const id = value('sequence_id');
    const samples = inputs.get('audio_chunk')?.shape[0] ?? 0;
    return {
      asr: { sequenceId: typeof id === 'boolean' ? undefined : id, start: value('sequence_start') === true, end: value('sequence_end') === true, samples },
    };
  }

  execute(context: InferContext, sink: ResponseSink): Promise<void> {
    const control = context.sequence!;
    // Synchronous up to the queueing, so chunks keep their arrival order.
    let sequence = this.sequences.get(control.key);
    if (control.start) {
      if (sequence !== undefined) this.drop(control.key, sequence);
      sequence = { transcriber: this.newTranscriber(control), lastPartial: '', queue: Promise.resolve(), idle: undefined };
      this.sequences.set(control.key, sequence);
    } else if (sequence === undefined) {
      return Promise.reject(
        new RequestError(`inference request for sequence ${control.id} to model '${this.spec.name}' must specify the START flag on the first request of the sequence`),
      );
    }
    const active = sequence;
    this.touch(control.key, active);
    if (control.end) this.sequences.delete(control.key);
    // Copied now: the request buffer is a view into the gRPC message.
    const audio = Float32Array.from(readFp32(context.inputs.get('audio_chunk')!));
    const run = active.queue.then(() => this.chunk(active, audio, control, context, sink));
    active.queue = run.catch(() => {});
    return run;
  }

  private async chunk(sequence: Sequence, audio: Float32Array, control: SequenceControl, context: InferContext, sink: ResponseSink): Promise<void> {
    const transcriber = sequence.transcriber;
    if (context.signal.aborted) return;
    transcriber.push(audio);
    if (!control.end) {
      const text = transcriber.partial();
      if (text !== '' && text !== sequence.lastPartial) {
        sequence.lastPartial = text;
        sink.send(outputs(text, false), false);
      }
      sink.complete();
      return;
    }
    clearTimeout(sequence.idle);
    // A cancelled recognizer never answers, so the abort itself ends the wait.
    const aborted = new Promise<never>((_resolve, reject) => {
      context.signal.addEventListener('abort', () => {
        transcriber.cancel();
        reject(context.signal.reason);
      }, { once: true });
    });
    aborted.catch(() => {});
    try {
      const text = await Promise.race([transcriber.finish(), aborted]);
      sink.send(outputs(text, true), true);
    } catch (error) {
      if (context.signal.aborted) return;
      throw new ModelError(`recognition failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  private newTranscriber(control: SequenceControl): Transcriber {
    const recognizer = this.recognizer;
    if (this.pool !== undefined || recognizer === 'pocketsphinx' || !('scripted' in recognizer)) return this.pool!.transcriber(control.key);
    const count = this.utterances.get(control.key) ?? 0;
    this.utterances.set(control.key, count + 1);
    const index = recognizer.per === 'server' ? this.serverUtterances++ : count;
    return new ScriptedTranscriber(recognizer.scripted[index] ?? '', recognizer.msPerWord ?? 300);
  }

  /** max_sequence_idle_microseconds: an abandoned sequence frees its recognizer. */
  private touch(key: string, sequence: Sequence): void {
    clearTimeout(sequence.idle);
    sequence.idle = setTimeout(() => {
      if (this.sequences.get(key) === sequence) this.drop(key, sequence);
    }, IDLE_MICROSECONDS / 1000);
    sequence.idle.unref();
  }

  private drop(key: string, sequence: Sequence): void {
    clearTimeout(sequence.idle);
    if (this.sequences.get(key) === sequence) this.sequences.delete(key);
    sequence.transcriber.cancel();
  }

  reset(): void {
    for (const [key, sequence] of this.sequences) this.drop(key, sequence);
  }

  async close(): Promise<void> {
    this.reset();
    await this.pool?.close();
  }
}

function outputs(text: string, final: boolean) {
  return [bytesTensor('transcript', [text]), boolTensor('is_final', [final])];
}
