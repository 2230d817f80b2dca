/**
 * What Triton's gRPC frontend and core check before a backend sees a request: the parameters it
 * reserves (`SetInferenceRequestMetadata` in infer_handler.cc) and the inputs against the model
 * config. Messages follow Triton's wording, since clients and people match on them.
 */
import * as grpc from '@grpc/grpc-js';
import { ENABLE_EMPTY_FINAL_PARAMETER, type InferParameter, type ModelInferRequest } from '../../src/engines/triton/protocol.js';
import { requestInputs, TensorError, type RawTensor } from '../../src/engines/triton/tensors.js';
import { logRequest, RequestError, type ModelSpec, type ParameterValue, type SequenceControl, type TensorSpec } from './model.js';

export interface ParsedParameters {
  sequence: { id: number | string | undefined; start: boolean; end: boolean };
  enableEmptyFinal: boolean;
  /** Non-reserved parameters, passed on to the model. */
  user: Record<string, ParameterValue>;
}

const ALLOWED_TRITON_PARAMETERS = [ENABLE_EMPTY_FINAL_PARAMETER];

function choice(parameter: InferParameter): InferParameter['parameter_choice'] {
  if (parameter.parameter_choice !== undefined) return parameter.parameter_choice;
  // Messages built in-process (not decoded) carry no discriminator.
  if (parameter.bool_param !== undefined) return 'bool_param';
  if (parameter.int64_param !== undefined) return 'int64_param';
  if (parameter.string_param !== undefined) return 'string_param';
  if (parameter.double_param !== undefined) return 'double_param';
  if (parameter.uint64_param !== undefined) return 'uint64_param';
  return undefined;
}

export function parameterValue(parameter: InferParameter): ParameterValue | undefined {
  const which = choice(parameter);
  return which === undefined ? undefined : parameter[which];
}

/** All parameters as plain values (for the record of what was received). */
export function plainParameters(request: ModelInferRequest): Record<string, ParameterValue> {
  const out: Record<string, ParameterValue> = {};
  for (const [key, parameter] of Object.entries(request.parameters ?? {})) {
    const value = parameterValue(parameter);
    if (value !== undefined) out[key] = value;
  }
  return out;
}

export function parseParameters(request: ModelInferRequest): ParsedParameters {
  const parsed: ParsedParameters = { sequence: { id: undefined, start: false, end: false }, enableEmptyFinal: false, user: {} };
  for (const [key, parameter] of Object.entries(request.parameters ?? {})) {
    const which = choice(parameter);
    const flag = (): boolean => {
      if (which !== 'bool_param') throw new RequestError(`invalid value type for '${key}' parameter, expected bool_param.`);
      return parameter.bool_param === true;
    };
    if (key === 'sequence_id') {
      if (which === 'int64_param') parsed.sequence.id = Number(parameter.int64_param);
      else if (which === 'string_param') parsed.sequence.id = parameter.string_param ?? '';
      else throw new RequestError("invalid value type for 'sequence_id' parameter, expected int64_param or string_param.");
    } else if (key === 'sequence_start') {
      parsed.sequence.start = flag();
    } else if (key === 'sequence_end') {
      parsed.sequence.end = flag();
    } else if (key === 'priority') {
      if (which === 'int64_param' && (parameter.int64_param ?? 0) < 0) throw new RequestError("invalid value for 'priority', expected value >= 0.");
      if (which !== 'int64_param' && which !== 'uint64_param') {
        throw new RequestError("invalid value type for 'priority' parameter, expected int64_param or uint64_param.");
      }
    } else if (key === 'timeout') {
      if (which !== 'int64_param') throw new RequestError("invalid value type for 'timeout' parameter, expected int64_param.");
    } else if (key.startsWith('triton_')) {
      if (!ALLOWED_TRITON_PARAMETERS.includes(key)) {
        throw new RequestError(
          "parameter keys starting with 'triton_' are reserved for Triton usage. Only the following keys starting with 'triton_' are allowed: " +
            ALLOWED_TRITON_PARAMETERS.join(' '),
        );
      }
      parsed.enableEmptyFinal = flag();
    } else {
      if (which !== 'int64_param' && which !== 'bool_param' && which !== 'string_param' && which !== 'double_param') {
        throw new RequestError(`invalid value type for '${key}' parameter, expected int64_param, bool_param, or string_param.`);
      }
      const value = parameterValue(parameter);
      if (value !== undefined) parsed.user[key] = value;
    }
  }
  return parsed;
}

/** The sequence batcher's view: a sequence model needs a correlation id; 0 and "" mean none. */
export function sequenceControl(spec: ModelSpec, parsed: ParsedParameters): SequenceControl | undefined {
  const { id, start, end } = parsed.sequence;
  const none = id === undefined || id === 0 || id === '';
  if (spec.sequenceBatching === undefined) return undefined;
  if (none) throw new RequestError(`inference request to model '${spec.name}' must specify a non-zero or non-empty correlation ID`);
  return { id, key: typeof id === 'number' ? `i:${id}` : `s:${id}`, start, end };
}

function dimsString(dims: readonly number[]): string {
  return `[${dims.join(',')}]`;
}

function shapeMatches(spec: TensorSpec, shape: readonly number[]): boolean {
  // Leniency: a [1] input reshaped to a scalar also takes the scalar itself.
  if (shape.length === 0 && spec.reshape?.length === 0 && spec.dims.length === 1 && spec.dims[0] === 1) return true;
  return shape.length === spec.dims.length && spec.dims.every((d, i) => d === -1 || d === shape[i]);
}

const ELEMENT_BYTES: Record<string, number> = {
  BOOL: 1, UINT8: 1, INT8: 1, UINT16: 2, INT16: 2, FP16: 2, BF16: 2, UINT32: 4, INT32: 4, FP32: 4, UINT64: 8, INT64: 8, FP64: 8,
};

/** Validates inputs against the spec the way Triton's core does, and returns them by name. */
export function validateInputs(spec: ModelSpec, request: ModelInferRequest): Map<string, RawTensor> {
  const prefix = logRequest(request.id ?? '');
  if ((request.raw_input_contents ?? []).length > 0 && request.inputs.some((i) => i.contents != null && hasContents(i.contents))) {
    const input = request.inputs.find((i) => i.contents != null && hasContents(i.contents))!;
    throw new RequestError(`contents field must not be specified when using raw_input_contents for '${input.name}' for model '${spec.name}'`);
  }
  for (const [i, input] of request.inputs.entries()) {
    if ((request.raw_input_contents ?? []).length > 0 ? i >= (request.raw_input_contents ?? []).length : input.contents == null) {
      throw new RequestError(`unable to find data for input tensor '${input.name}' for model '${spec.name}' in request.`);
    }
  }
  const given = request.inputs.map((i) => i.name);
  const required = spec.inputs.filter((i) => i.optional !== true);
  const missing = required.filter((i) => !given.includes(i.name)).map((i) => i.name);
  const allowedMax = spec.inputs.length;
  if (missing.length > 0 || given.length < required.length || given.length > allowedMax) {
    const expected = required.length === allowedMax ? `expected ${allowedMax} inputs` : `expected number of inputs between ${required.length} and ${allowedMax}`;
    throw new RequestError(
      `${prefix}${expected} but got ${given.length} inputs for model '${spec.name}'. Got input(s) [${given.map((n) => `'${n}'`).join(',')}], ` +
        `but missing required input(s) [${missing.map((n) => `'${n}'`).join(',')}]. Please provide all required input(s).`,
    );
  }
  let inputs: Map<string, RawTensor>;
  try {
    inputs = requestInputs(request);
  } catch (error) {
    if (error instanceof TensorError) throw new RequestError(`${prefix}${error.message} for model '${spec.name}'`);
    throw error;
  }
  for (const tensor of inputs.values()) {
    const tensorSpec = spec.inputs.find((i) => i.name === tensor.name);
    if (tensorSpec === undefined) throw new RequestError(`${prefix}unexpected inference input '${tensor.name}' for model '${spec.name}'`);
    if (tensor.datatype !== tensorSpec.datatype) {
      throw new RequestError(`${prefix}inference input '${tensor.name}' data-type is '${tensor.datatype}', but model '${spec.name}' expects '${tensorSpec.datatype}'`);
    }
    if (!shapeMatches(tensorSpec, tensor.shape)) {
      throw new RequestError(
        `${prefix}unexpected shape for input '${tensor.name}' for model '${spec.name}'. Expected ${dimsString(tensorSpec.dims)}, got ${dimsString(tensor.shape)}`,
      );
    }
    const elements = tensor.shape.reduce((n, d) => n * d, 1);
    if (tensor.datatype === 'BYTES') {
      const count = countBytesElements(tensor.data);
      if (count !== elements) {
        throw new RequestError(`${prefix}expected ${elements} string elements for inference input '${tensor.name}' for model '${spec.name}', got ${Math.max(count, 0)}`);
      }
    } else {
      const expected = elements * (ELEMENT_BYTES[tensor.datatype] ?? 1);
      if (tensor.data.length !== expected) {
        throw new RequestError(`${prefix}input byte size mismatch for input '${tensor.name}' for model '${spec.name}'. Expected ${expected}, got ${tensor.data.length}`);
      }
    }
  }
  return inputs;
}

/** BYTES elements in raw form (uint32le length + bytes each); -1 when a length runs past the data. */
function countBytesElements(data: Buffer): number {
  let count = 0;
  let offset = 0;
  while (offset < data.length) {
    if (offset + 4 > data.length) return -1;
    offset += 4 + data.readUInt32LE(offset);
    if (offset > data.length) return -1;
    count++;
  }
  return count;
}

function hasContents(contents: NonNullable<ModelInferRequest['inputs'][number]['contents']>): boolean {
  return Object.values(contents).some((v) => Array.isArray(v) && v.length > 0);
}

/** The outputs the request asked for (all when it named none); unknown names are refused. */
export function requestedOutputs(spec: ModelSpec, request: ModelInferRequest): Set<string> | undefined {
  const names = (request.outputs ?? []).map((o) => o.name);
  if (names.length === 0) return undefined;
  for (const name of names) {
    if (!spec.outputs.some((o) => o.name === name)) {
      throw new RequestError(`${logRequest(request.id ?? '')}unexpected inference output '${name}' for model '${spec.name}'`);
    }
  }
  return new Set(names);
}

export function unknownModel(name: string): RequestError {
  return new RequestError(`Request for unknown model: '${name}' is not found`, grpc.status.INVALID_ARGUMENT);
}
