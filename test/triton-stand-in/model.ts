/**
 * What a stand-in model is to the server: its contract (the tensors Triton validates a request
 * against, shown in ModelMetadata and ModelConfig) and an `execute` that answers one request through
 * a ResponseSink, the way a Triton backend answers through its response sender.
 */
import * as grpc from '@grpc/grpc-js';
import type { ModelInferRequest } from '../../src/engines/triton/protocol.js';
import type { Datatype, RawTensor } from '../../src/engines/triton/tensors.js';
import type { ObservedInputs } from './observed.js';

export interface TensorSpec {
  name: string;
  datatype: Datatype;
  /** Config dims; -1 is a variable dimension (max_batch_size is 0 for every model here). */
  dims: readonly number[];
  /** Config `reshape`: what the model sees instead of dims ([] = a scalar). */
  reshape?: readonly number[];
  optional?: boolean;
}

export interface ModelSpec {
  name: string;
  /** What ModelMetadata reports as `platform`. */
  platform: string;
  /** ModelConfig `backend`. */
  backend: string;
  decoupled: boolean;
  instanceKind: 'KIND_GPU' | 'KIND_CPU' | 'KIND_MODEL';
  inputs: readonly TensorSpec[];
  outputs: readonly TensorSpec[];
  /**
   * Present for models under the sequence batcher (requests need a correlation id): the
   * `sequence_batching` block of its ModelConfig.
   */
  sequenceBatching?: { max_sequence_idle_microseconds: number; [field: string]: unknown };
}

export type SequenceId = number | string;

/** The sequence parameters of a request, as Triton's sequence batcher sees them. */
export interface SequenceControl {
  id: SequenceId;
  /** `i:<int64>` or `s:<string>`: int64 5 and string "5" are different correlation ids. */
  key: string;
  start: boolean;
  end: boolean;
}

export type ParameterValue = boolean | number | string;

export interface InferContext {
  readonly id: string;
  readonly modelName: string;
  /** Inputs after Triton's validation against the spec (names, datatypes, shapes, byte sizes). */
  readonly inputs: ReadonlyMap<string, RawTensor>;
  readonly sequence: SequenceControl | undefined;
  /** Non-reserved request parameters (what a backend gets from `request.parameters()`). */
  readonly parameters: Readonly<Record<string, ParameterValue>>;
  /** Aborted when the client cancels the call or the stream is lost. */
  readonly signal: AbortSignal;
}

export interface ResponseSink {
  /** One data response; `final` sets TRITONSERVER_RESPONSE_COMPLETE_FINAL on it. */
  send(outputs: readonly RawTensor[], final: boolean): void;
  /**
   * The flag-only final (`response_sender.send(flags=COMPLETE_FINAL)`): reaches the client only when
   * the request set `triton_enable_empty_final_response`.
   */
  complete(): void;
}

export interface StandInModel {
  readonly spec: ModelSpec;
  /** Decodes what tests assert on (prompt, text, sequence flags…); must not throw. */
  observe(inputs: ReadonlyMap<string, RawTensor>, request: ModelInferRequest): ObservedInputs;
  execute(context: InferContext, sink: ResponseSink): Promise<void>;
  /** Forgets per-sequence state: a restarted Triton remembers no sequence. */
  reset?(): void;
  close?(): Promise<void>;
}

/**
 * An error Triton's core raises before the backend sees the request (unknown model, bad parameter,
 * bad tensor, sequence without START). On a stream it comes back as `error_message` with only the
 * request id in `infer_response`.
 */
export class RequestError extends Error {
  override name = 'RequestError';
  constructor(
    message: string,
    readonly code: grpc.status = grpc.status.INVALID_ARGUMENT,
  ) {
    super(message);
  }
}

/** An error the backend sends as a response: `error_message` plus id/model and the final flag. */
export class ModelError extends Error {
  override name = 'ModelError';
  constructor(
    message: string,
    readonly code: grpc.status = grpc.status.INTERNAL,
  ) {
    super(message);
  }
}

/** Triton's `[request id: X] ` prefix on core validation messages. */
export function logRequest(id: string): string {
  return id === '' ? '' : `[request id: ${id}] `;
}
