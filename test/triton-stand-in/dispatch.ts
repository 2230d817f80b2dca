/**
 * The part of request handling that ModelInfer and ModelStreamInfer share: recording the request,
 * Triton's checks before the backend, the faults, and building responses as Triton fills them.
 */
import { FINAL_RESPONSE_PARAMETER, type ModelInferRequest, type ModelInferResponse } from '../../src/engines/triton/protocol.js';
import { requestInputs, type RawTensor } from '../../src/engines/triton/tensors.js';
import type { Faults } from './faults.js';
import type { InferContext, SequenceControl, StandInModel } from './model.js';
import type { Observed, ObservedRequest, Rpc } from './observed.js';
import { parseParameters, plainParameters, requestedOutputs, sequenceControl, unknownModel, validateInputs, type ParsedParameters } from './request.js';

export const MODEL_VERSION = '1';

export interface StandInState {
  readonly models: ReadonlyMap<string, StandInModel>;
  readonly faults: Faults;
  readonly observed: Observed;
  /**
   * Calls in progress, so stop()/restart() can end them: `shutdown` ends the call with UNAVAILABLE
   * and aborts its work without recording a client cancel.
   */
  readonly active: Set<{ shutdown(details: string): void }>;
}

export interface Prepared {
  model: StandInModel;
  parsed: ParsedParameters;
  inputs: Map<string, RawTensor>;
  sequence: SequenceControl | undefined;
  /** Output names to return; undefined = all. */
  outputs: Set<string> | undefined;
}

export function record(state: StandInState, rpc: Rpc, request: ModelInferRequest): ObservedRequest {
  const model = state.models.get(request.model_name);
  let inputs: Map<string, RawTensor> | undefined;
  try {
    inputs = requestInputs(request);
  } catch {
    inputs = undefined;
  }
  const decoded = model !== undefined && inputs !== undefined ? safeObserve(model, inputs, request) : {};
  return state.observed.recordRequest({
    rpc,
    model: request.model_name,
    id: request.id ?? '',
    parameters: plainParameters(request),
    inputNames: request.inputs.map((i) => i.name),
    ...decoded,
  });
}

function safeObserve(model: StandInModel, inputs: Map<string, RawTensor>, request: ModelInferRequest): ReturnType<StandInModel['observe']> {
  try {
    return model.observe(inputs, request);
  } catch {
    return {};
  }
}

export function findModel(state: StandInState, name: string): StandInModel {
  const model = state.models.get(name);
  if (model === undefined) throw unknownModel(name);
  return model;
}

/** Triton's checks in its order: parameters, inputs, requested outputs, then the sequence batcher. Throws RequestError. */
export function prepare(model: StandInModel, request: ModelInferRequest): Prepared {
  const parsed = parseParameters(request);
  const inputs = validateInputs(model.spec, request);
  const outputs = requestedOutputs(model.spec, request);
  const sequence = sequenceControl(model.spec, parsed);
  return { model, parsed, inputs, sequence, outputs };
}

export function context(request: ModelInferRequest, prepared: Prepared, signal: AbortSignal): InferContext {
  return {
    id: request.id ?? '',
    modelName: request.model_name,
    inputs: prepared.inputs,
    sequence: prepared.sequence,
    parameters: prepared.parsed.user,
    signal,
  };
}

/** A data response as Triton fills it: outputs and raw_output_contents in the same order. */
export function dataResponse(request: ModelInferRequest, outputs: readonly RawTensor[], wanted: Set<string> | undefined): ModelInferResponse {
  const chosen = wanted === undefined ? outputs : outputs.filter((o) => wanted.has(o.name));
  return {
    model_name: request.model_name,
    model_version: MODEL_VERSION,
    id: request.id ?? '',
    parameters: {},
    outputs: chosen.map((o) => ({ name: o.name, datatype: o.datatype, shape: o.shape, parameters: {} })),
    raw_output_contents: chosen.map((o) => o.data),
  };
}

/** The empty final and backend errors carry the request's own model_version string (stream_infer_handler.cc). */
export function bareResponse(request: ModelInferRequest): ModelInferResponse {
  return {
    model_name: request.model_name,
    model_version: request.model_version ?? '',
    id: request.id ?? '',
    parameters: {},
    outputs: [],
    raw_output_contents: [],
  };
}

export function markFinal(response: ModelInferResponse, final: boolean): ModelInferResponse {
  response.parameters = { ...response.parameters, [FINAL_RESPONSE_PARAMETER]: { bool_param: final } };
  return response;
}

export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export function isAbort(error: unknown, signal: AbortSignal): boolean {
  return signal.aborted || (error instanceof Error && error.name === 'AbortError');
}
