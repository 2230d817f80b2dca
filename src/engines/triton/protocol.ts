/**
 * Triton's KServe v2 gRPC protocol as TypeScript: our own .proto files (in `proto/`) loaded with
 * @grpc/proto-loader, and the message shapes the loader produces with the options below
 * (snake_case field names as in the proto, int64 as JS numbers, oneofs with their discriminator).
 * Both the client (`client.ts`) and the protocol-true stand-in under `test/` load the protocol here.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

export const PROTO_DIR = join(dirname(fileURLToPath(import.meta.url)), 'proto');

export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
};

// ── messages ────────────────────────────────────────────────────────────────────────────────────
/** What a request parameter carries; exactly one field is set. */
export interface InferParameter {
  bool_param?: boolean;
  int64_param?: number;
  string_param?: string;
  double_param?: number;
  uint64_param?: number;
  /** Set on decoded messages: which field is present. */
  parameter_choice?: 'bool_param' | 'int64_param' | 'string_param' | 'double_param' | 'uint64_param';
}

export interface InferTensorContents {
  bool_contents?: boolean[];
  int_contents?: number[];
  int64_contents?: number[];
  uint_contents?: number[];
  uint64_contents?: number[];
  fp32_contents?: number[];
  fp64_contents?: number[];
  bytes_contents?: Buffer[];
}

export interface InferInputTensor {
  name: string;
  datatype: string;
  shape: number[];
  parameters?: Record<string, InferParameter>;
  contents?: InferTensorContents | null;
}

export interface ModelInferRequest {
  model_name: string;
  model_version?: string;
  id?: string;
  parameters?: Record<string, InferParameter>;
  inputs: InferInputTensor[];
  outputs?: Array<{ name: string; parameters?: Record<string, InferParameter> }>;
  raw_input_contents?: Buffer[];
}

export interface InferOutputTensor {
  name: string;
  datatype: string;
  shape: number[];
  parameters?: Record<string, InferParameter>;
  contents?: InferTensorContents | null;
}

export interface ModelInferResponse {
  model_name: string;
  model_version: string;
  id: string;
  parameters: Record<string, InferParameter>;
  outputs: InferOutputTensor[];
  raw_output_contents: Buffer[];
}

export interface ModelStreamInferResponse {
  error_message: string;
  infer_response: ModelInferResponse | null;
}

export interface TensorMetadata {
  name: string;
  datatype: string;
  shape: number[];
}

export interface ModelMetadataResponse {
  name: string;
  versions: string[];
  platform: string;
  inputs: TensorMetadata[];
  outputs: TensorMetadata[];
}

export interface ServerMetadataResponse {
  name: string;
  version: string;
  extensions: string[];
}

/** The parts of ModelConfig the server reads; the full schema is `proto/model_config.proto`. */
export interface ModelConfig {
  name: string;
  platform: string;
  backend: string;
  max_batch_size: number;
  input: Array<{ name: string; data_type: string; dims: number[]; optional: boolean }>;
  output: Array<{ name: string; data_type: string; dims: number[] }>;
  model_transaction_policy: { decoupled: boolean } | null;
  [field: string]: unknown;
}

export type HealthStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

// ── service definitions ─────────────────────────────────────────────────────────────────────────
export interface TritonProtocol {
  /** `inference.GRPCInferenceService` */
  inferenceService: grpc.ServiceDefinition;
  InferenceClient: grpc.ServiceClientConstructor;
  /** `grpc.health.v1.Health` */
  healthService: grpc.ServiceDefinition;
  HealthClient: grpc.ServiceClientConstructor;
}

let loaded: TritonProtocol | undefined;

/** Loads the protos once per process (synchronously: a few ms, at start-up). */
export function tritonProtocol(): TritonProtocol {
  if (loaded !== undefined) return loaded;
  const definition = protoLoader.loadSync(['grpc_service.proto', 'health.proto'], LOADER_OPTIONS);
  const root = grpc.loadPackageDefinition(definition) as unknown as {
    inference: { GRPCInferenceService: grpc.ServiceClientConstructor };
    grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
  };
  const InferenceClient = root.inference.GRPCInferenceService;
  const HealthClient = root.grpc.health.v1.Health;
  loaded = { inferenceService: InferenceClient.service, InferenceClient, healthService: HealthClient.service, HealthClient };
  return loaded;
}

/** Triton marks the last response of each request with this response parameter. */
export const FINAL_RESPONSE_PARAMETER = 'triton_final_response';
/** Request parameter that makes Triton send a flag-only final response (decoupled models). */
export const ENABLE_EMPTY_FINAL_PARAMETER = 'triton_enable_empty_final_response';

export function isFinalResponse(response: ModelInferResponse): boolean {
  return response.parameters?.[FINAL_RESPONSE_PARAMETER]?.bool_param === true;
}
