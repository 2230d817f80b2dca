/**
 * `parakeet_tdt`: streaming ASR under Triton's sequence batcher, as a decoupled Python model. One
 * sequence (sequence_start … sequence_end) is one utterance. Each non-final chunk is answered with at
 * most one partial (when the hypothesis changed) and then the flag-only final; the sequence_end chunk
 * with one response holding the full transcript, is_final=true, marked final.
 *
 * Sequences outlive streams, as in Triton: a sequence is dropped at its end, when a new START reuses
 * its id, or after `max_sequence_idle_microseconds` without a request (`sequenceIdleMs`; while it
 * lives, a pocketsphinx sequence holds one of the workers).
 */
import { boolTensor, bytesTensor, readFp32 } from '../../../src/engines/triton/tensors.js';
import type { ModelInferRequest } from '../../../src/engines/triton/protocol.js';
import { ModelError, RequestError, type InferContext, type ModelSpec, type ResponseSink, type SequenceControl, type StandInModel } from '../model.js';
import type { ObservedInputs } from '../observed.js';
import { parameterValue } from '../request.js';
import { PocketsphinxPool, ScriptedTranscriber, type Transcriber } from './transcribers.js';

export interface ScriptedRecognizer {
  /**
   * The n-th utterance gets the n-th transcript ('' once the list is used up). Counted per sequence
   * id by default (the n-th START of that id), or across the whole stand-in.
   */
  scripted: readonly string[];
  per?: 'sequence' | 'server';
  /** Partials reveal one more word per this much audio (default 300 ms). */
  msPerWord?: number;
}

/** Real recognition ('pocketsphinx': 2 worker processes) or a script. */
export type RecognizerOption = 'pocketsphinx' | { pocketsphinx: { workers?: number } } | ScriptedRecognizer;

/** triton/parakeet_tdt/config.pbtxt's max_sequence_idle_microseconds. */
export const DEFAULT_SEQUENCE_IDLE_MS = 60_000;

/** As triton/parakeet_tdt/config.pbtxt. */
export function parakeetSpec(idleMs: number): ModelSpec {
  const control = (name: string, kind: string, extra: object) => ({ name, control: [{ kind, ...extra }] });
  return {
    name: 'parakeet_tdt',
    platform: 'python',
    backend: 'python',
    decoupled: true,
    instanceKind: 'KIND_GPU',
    inputs: [{ name: 'audio_chunk', datatype: 'FP32', dims: [-1] }],
    outputs: [
      { name: 'transcript', datatype: 'BYTES', dims: [1] },
      { name: 'is_final', datatype: 'BOOL', dims: [1] },
    ],
    sequenceBatching: {
      max_sequence_idle_microseconds: idleMs * 1000,
      oldest: { max_candidate_sequences: 1024, max_queue_delay_microseconds: 0 },
      control_input: [
        control('START', 'CONTROL_SEQUENCE_START', { int32_false_true: [0, 1] }),
        control('END', 'CONTROL_SEQUENCE_END', { int32_false_true: [0, 1] }),
        control('CORRID', 'CONTROL_SEQUENCE_CORRID', { data_type: 'TYPE_STRING' }),
      ],
    },
  };
}

interface Sequence {
  transcriber: Transcriber;
  lastPartial: string;
  /** Chunks of one sequence run in order, as the sequence batcher runs them. */
  queue: Promise<void>;
  idle: NodeJS.Timeout | undefined;
}

export class ParakeetModel implements StandInModel {
  readonly spec: ModelSpec;
  private readonly sequences = new Map<string, Sequence>();
  private readonly utterances = new Map<string, number>();
  private serverUtterances = 0;

  private constructor(
    private readonly source: { script: ScriptedRecognizer } | { pool: PocketsphinxPool },
    private readonly idleMs: number,
  ) {
    this.spec = parakeetSpec(idleMs);
  }

  /** `idleMs`: a sequence without a request this long is dropped (and its recognizer freed). */
  static async load(recognizer: RecognizerOption = 'pocketsphinx', idleMs = DEFAULT_SEQUENCE_IDLE_MS): Promise<ParakeetModel> {
    if (recognizer !== 'pocketsphinx' && 'scripted' in recognizer) return new ParakeetModel({ script: recognizer }, idleMs);
    const workers = recognizer === 'pocketsphinx' ? 2 : (recognizer.pocketsphinx.workers ?? 2);
    return new ParakeetModel({ pool: await PocketsphinxPool.start(workers) }, idleMs);
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
    if (control.end) {
      clearTimeout(active.idle);
      this.sequences.delete(control.key);
    } else {
      this.touch(control.key, active);
    }
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
    if ('pool' in this.source) return this.source.pool.transcriber(control.key);
    const script = this.source.script;
    const count = this.utterances.get(control.key) ?? 0;
    this.utterances.set(control.key, count + 1);
    const index = script.per === 'server' ? this.serverUtterances++ : count;
    return new ScriptedTranscriber(script.scripted[index] ?? '', script.msPerWord ?? 300);
  }

  /** max_sequence_idle_microseconds: an abandoned sequence frees its recognizer. */
  private touch(key: string, sequence: Sequence): void {
    clearTimeout(sequence.idle);
    sequence.idle = setTimeout(() => {
      if (this.sequences.get(key) === sequence) this.drop(key, sequence);
    }, this.idleMs);
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
    if ('pool' in this.source) await this.source.pool.close();
  }
}

function outputs(text: string, final: boolean) {
  return [bytesTensor('transcript', [text]), boolTensor('is_final', [final])];
}
