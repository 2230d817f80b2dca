/**
 * Tensors in and out of KServe v2 requests, in Triton's raw binary form: `raw_input_contents` holds
 * one buffer per input in input order, little-endian and row-major, with BYTES elements written as a
 * 4-byte little-endian length followed by the bytes (protocols.md §1.3). Outputs are read from
 * `raw_output_contents` (which Triton uses) or from typed `contents` (which other KServe servers may).
 */
import { endianness } from 'node:os';
import type { InferOutputTensor, InferParameter, ModelInferRequest, ModelInferResponse } from './protocol.js';

export type Datatype = 'BOOL' | 'UINT8' | 'UINT16' | 'UINT32' | 'UINT64' | 'INT8' | 'INT16' | 'INT32' | 'INT64' | 'FP16' | 'FP32' | 'FP64' | 'BYTES' | 'BF16';

/** A tensor with its data in raw wire form. */
export interface RawTensor {
  name: string;
  datatype: Datatype | string;
  shape: number[];
  data: Buffer;
}

// Typed arrays are viewed as bytes without copying, which is only the wire form on little-endian hosts.
const LITTLE_ENDIAN_HOST = endianness() === 'LE';

function bytesOf(array: Float32Array | Int32Array | BigInt64Array | Uint8Array): Buffer {
  if (!LITTLE_ENDIAN_HOST) throw new Error('raw tensors need a little-endian host');
  return Buffer.from(array.buffer, array.byteOffset, array.byteLength);
}

export function fp32Tensor(name: string, values: Float32Array, shape: number[] = [values.length]): RawTensor {
  return { name, datatype: 'FP32', shape, data: bytesOf(values) };
}

export function int32Tensor(name: string, values: Int32Array | number[], shape?: number[]): RawTensor {
  const array = values instanceof Int32Array ? values : Int32Array.from(values);
  return { name, datatype: 'INT32', shape: shape ?? [array.length], data: bytesOf(array) };
}

export function int64Tensor(name: string, values: ReadonlyArray<number | bigint>, shape?: number[]): RawTensor {
  const array = BigInt64Array.from(values, (v) => BigInt(v));
  return { name, datatype: 'INT64', shape: shape ?? [array.length], data: bytesOf(array) };
}

export function boolTensor(name: string, values: readonly boolean[], shape?: number[]): RawTensor {
  return { name, datatype: 'BOOL', shape: shape ?? [values.length], data: Buffer.from(values.map((v) => (v ? 1 : 0))) };
}

/** BYTES elements (UTF-8 strings or raw bytes), each as uint32le length + bytes. */
export function bytesTensor(name: string, items: ReadonlyArray<string | Buffer>, shape?: number[]): RawTensor {
  const parts: Buffer[] = [];
  for (const item of items) {
    const body = typeof item === 'string' ? Buffer.from(item, 'utf8') : item;
    const length = Buffer.allocUnsafe(4);
    length.writeUInt32LE(body.length, 0);
    parts.push(length, body);
  }
  return { name, datatype: 'BYTES', shape: shape ?? [items.length], data: Buffer.concat(parts) };
}

export interface InferRequestSpec {
  model: string;
  id?: string;
  inputs: readonly RawTensor[];
  parameters?: Record<string, InferParameter>;
  /** Output names to return; all when omitted. */
  outputs?: readonly string[];
}

export function inferRequest(spec: InferRequestSpec): ModelInferRequest {
  return {
    model_name: spec.model,
    model_version: '',
    id: spec.id ?? '',
    parameters: spec.parameters ?? {},
    inputs: spec.inputs.map((t) => ({ name: t.name, datatype: t.datatype, shape: t.shape, parameters: {} })),
    outputs: (spec.outputs ?? []).map((name) => ({ name, parameters: {} })),
    raw_input_contents: spec.inputs.map((t) => t.data),
  };
}

/** The request's inputs by name, from raw contents or typed contents (what a server reads). */
export function requestInputs(request: ModelInferRequest): Map<string, RawTensor> {
  const raw = request.raw_input_contents ?? [];
  const out = new Map<string, RawTensor>();
  request.inputs.forEach((input, i) => {
    const data = raw.length > 0 ? raw[i] : contentsToRaw(input.datatype, input.contents ?? undefined);
    if (data === undefined) throw new TensorError(`input '${input.name}' has no data`);
    out.set(input.name, { name: input.name, datatype: input.datatype, shape: input.shape.map(Number), data });
  });
  return out;
}

/** The response's outputs by name, from raw contents or typed contents. */
export function responseOutputs(response: ModelInferResponse): Map<string, RawTensor> {
  const raw = response.raw_output_contents ?? [];
  const out = new Map<string, RawTensor>();
  response.outputs.forEach((output: InferOutputTensor, i) => {
    const data = raw.length > 0 ? raw[i] : contentsToRaw(output.datatype, output.contents ?? undefined);
    if (data === undefined) throw new TensorError(`output '${output.name}' has no data`);
    out.set(output.name, { name: output.name, datatype: output.datatype, shape: output.shape.map(Number), data });
  });
  return out;
}

export class TensorError extends Error {
  override name = 'TensorError';
}

function elementCount(tensor: RawTensor): number {
  return tensor.shape.reduce((n, d) => n * d, 1);
}

function expect(tensor: RawTensor, datatype: Datatype, elementBytes: number): void {
  if (tensor.datatype !== datatype) throw new TensorError(`'${tensor.name}' is ${tensor.datatype}, expected ${datatype}`);
  if (tensor.data.length !== elementCount(tensor) * elementBytes) {
    throw new TensorError(`'${tensor.name}' has ${tensor.data.length} bytes for shape [${tensor.shape.join(',')}]`);
  }
}

/** Copies when the bytes are not 4-byte aligned (protobuf gives no alignment guarantee). */
function aligned(data: Buffer, alignment: number): Buffer {
  return data.byteOffset % alignment === 0 ? data : Buffer.from(data);
}

export function readFp32(tensor: RawTensor): Float32Array {
  expect(tensor, 'FP32', 4);
  const data = aligned(tensor.data, 4);
  return new Float32Array(data.buffer, data.byteOffset, data.length / 4);
}

export function readInt32(tensor: RawTensor): Int32Array {
  expect(tensor, 'INT32', 4);
  const data = aligned(tensor.data, 4);
  return new Int32Array(data.buffer, data.byteOffset, data.length / 4);
}

export function readInt64(tensor: RawTensor): BigInt64Array {
  expect(tensor, 'INT64', 8);
  const data = aligned(tensor.data, 8);
  return new BigInt64Array(data.buffer, data.byteOffset, data.length / 8);
}

export function readBool(tensor: RawTensor): boolean[] {
  expect(tensor, 'BOOL', 1);
  return [...tensor.data].map((b) => b !== 0);
}

/** BYTES elements as buffers; throws on a length prefix that runs past the data. */
export function readBytes(tensor: RawTensor): Buffer[] {
  if (tensor.datatype !== 'BYTES') throw new TensorError(`'${tensor.name}' is ${tensor.datatype}, expected BYTES`);
  const items: Buffer[] = [];
  let offset = 0;
  while (offset < tensor.data.length) {
    if (offset + 4 > tensor.data.length) throw new TensorError(`'${tensor.name}': truncated length prefix`);
    const length = tensor.data.readUInt32LE(offset);
    offset += 4;
    if (offset + length > tensor.data.length) throw new TensorError(`'${tensor.name}': element runs past the data`);
    items.push(tensor.data.subarray(offset, offset + length));
    offset += length;
  }
  if (items.length !== elementCount(tensor)) throw new TensorError(`'${tensor.name}' has ${items.length} elements for shape [${tensor.shape.join(',')}]`);
  return items;
}

export function readStrings(tensor: RawTensor): string[] {
  return readBytes(tensor).map((b) => b.toString('utf8'));
}

/** Typed `contents` → raw bytes, for servers that answer without raw contents. */
function contentsToRaw(datatype: string, contents: InferOutputTensor['contents'] | undefined): Buffer | undefined {
  if (contents == null) return undefined;
  switch (datatype) {
    case 'FP32':
      return bytesOf(Float32Array.from(contents.fp32_contents ?? []));
    case 'INT32':
    case 'INT16':
    case 'INT8':
      return datatype === 'INT32' ? bytesOf(Int32Array.from(contents.int_contents ?? [])) : undefined;
    case 'INT64':
      return bytesOf(BigInt64Array.from((contents.int64_contents ?? []).map((v) => BigInt(v))));
    case 'BOOL':
      return Buffer.from((contents.bool_contents ?? []).map((v) => (v ? 1 : 0)));
    case 'BYTES':
      return bytesTensor('', contents.bytes_contents ?? []).data;
    default:
      return undefined;
  }
}

/** Request-parameter helpers (the `InferParameter` oneof). */
export const param = {
  bool: (value: boolean): InferParameter => ({ bool_param: value }),
  int64: (value: number): InferParameter => ({ int64_param: value }),
  string: (value: string): InferParameter => ({ string_param: value }),
  double: (value: number): InferParameter => ({ double_param: value }),
};

export type { ModelInferRequest, ModelInferResponse };
