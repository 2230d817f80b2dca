/**
 * Silero VAD on Triton (`silero_vad`, onnxruntime backend, the v5 ONNX as it ships). The batching
 * across calls, the per-call recurrent state and the silence gate stay in `SileroVad`; only the
 * batched inference moves to the GPU: one ModelInfer per batch with `input` [B, 288], `state`
 * [2, B, 128] and `sr` = 8000.
 *
 * Speech detection must never stop mid-call, so the Triton backend is wrapped in a failover: when a
 * batch fails or misses its deadline, it runs on the local CPU model instead, and Triton is tried
 * again after a cool-down.
 */
import { performance } from 'node:perf_hooks';
import { CHUNK, CONTEXT, SAMPLE_RATE, STATE_SIZE, type InferenceReply, type SileroInference } from '../local/silero-vad.js';
import type { TritonClient } from './client.js';
import { TritonError } from './client.js';
import { fp32Tensor, inferRequest, int64Tensor, readFp32, responseOutputs } from './tensors.js';

export const SILERO_MODEL = 'silero_vad';

export class TritonSileroInference implements SileroInference {
  readonly name = 'triton';

  constructor(
    private readonly client: TritonClient,
    /** A batch is 32 ms of audio for every call: an answer later than this is no use. */
    private readonly deadlineMs = 250,
  ) {}

  async run(size: number, input: Float32Array, state: Float32Array): Promise<InferenceReply> {
    const started = performance.now();
    const request = inferRequest({
      model: SILERO_MODEL,
      inputs: [
        fp32Tensor('input', input, [size, CONTEXT + CHUNK]),
        fp32Tensor('state', state, [2, size, STATE_SIZE]),
        int64Tensor('sr', [SAMPLE_RATE], [1]),
      ],
      outputs: ['output', 'stateN'],
    });
    const response = await this.client.infer(request, { deadlineMs: this.deadlineMs });
    const outputs = responseOutputs(response);
    const output = outputs.get('output');
    const stateN = outputs.get('stateN');
    if (output === undefined || stateN === undefined) throw new TritonError(`${SILERO_MODEL} answered without output/stateN`, 'protocol');
    const probabilities = readFp32(output);
    const nextState = readFp32(stateN);
    if (probabilities.length !== size || nextState.length !== 2 * size * STATE_SIZE) {
      throw new TritonError(`${SILERO_MODEL} answered shapes [${output.shape}] / [${stateN.shape}] for a batch of ${size}`, 'protocol');
    }
    return { probabilities, nextState, inferenceMs: performance.now() - started };
  }

  async close(): Promise<void> {
    // The channel belongs to the shared TritonClient.
  }
}

export interface FailoverLogger {
  warn(obj: Record<string, unknown>, msg: string): void;
  info(obj: Record<string, unknown>, msg: string): void;
}

/** Primary (Triton) with a local fallback for the batches it cannot answer. */
/**
 * A batch is 32 ms of audio for every call, and a call's next chunk needs this one's state: a
 * backend slower than that makes every call's speech detection fall behind. Three slow batches in a
 * row count as a failure.
 */
const SLOW_BATCH_MS = 32;
const SLOW_BATCHES_TO_FAIL = 3;

export class FailoverSileroInference implements SileroInference {
  readonly name: string;
  private primaryDownUntil = 0;
  private slowBatches = 0;

  constructor(
    private readonly primary: SileroInference,
    private readonly fallback: SileroInference,
    private readonly logger: FailoverLogger,
    private readonly coolDownMs = 5000,
    private readonly onPrimaryFailure?: () => void,
  ) {
    this.name = `${primary.name}|${fallback.name}`;
  }

  async run(size: number, input: Float32Array, state: Float32Array): Promise<InferenceReply> {
    if (performance.now() >= this.primaryDownUntil) {
      // Triton only reads the buffers (serialized when the request goes out), so after a failure they
      // are intact for the local worker, which takes ownership of them: no copy per batch.
      try {
        const reply = await this.primary.run(size, input, state);
        this.slowBatches = reply.inferenceMs > SLOW_BATCH_MS ? this.slowBatches + 1 : 0;
        if (this.slowBatches >= SLOW_BATCHES_TO_FAIL) {
          this.slowBatches = 0;
          this.primaryDownUntil = performance.now() + this.coolDownMs;
          this.logger.warn(
            { event: 'vad_failover', backend: this.primary.name, err: `batches slower than ${SLOW_BATCH_MS} ms`, coolDownMs: this.coolDownMs },
            'speech detection moved to the local model',
          );
          this.onPrimaryFailure?.();
          return reply;
        }
        if (this.primaryDownUntil !== 0) {
          this.primaryDownUntil = 0;
          this.logger.info({ event: 'vad_primary_back', backend: this.primary.name }, 'speech detection back on Triton');
        }
        return reply;
      } catch (error) {
        this.primaryDownUntil = performance.now() + this.coolDownMs;
        this.logger.warn(
          { event: 'vad_failover', backend: this.primary.name, err: (error as Error).message, coolDownMs: this.coolDownMs },
          'speech detection moved to the local model',
        );
        this.onPrimaryFailure?.();
        return this.fallback.run(size, input, state);
      }
    }
    return this.fallback.run(size, input, state);
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.primary.close(), this.fallback.close()]);
  }
}
