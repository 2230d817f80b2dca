/**
 * The unary RPCs: health and metadata as Triton answers them, and ModelInfer for models that are not
 * decoupled (decoupled ones are refused as Triton refuses them).
 */
import * as grpc from '@grpc/grpc-js';
import type { ModelInferRequest, ModelInferResponse } from '../../src/engines/triton/protocol.js';
import type { RawTensor } from '../../src/engines/triton/tensors.js';
import { context, dataResponse, errorText, findModel, isAbort, MODEL_VERSION, prepare, record, type StandInState } from './dispatch.js';
import { applyDelay, CUT_DETAILS } from './faults.js';
import { ModelError, RequestError, type ModelSpec, type ResponseSink, type StandInModel } from './model.js';

export const SERVER_VERSION = '2.59.0';
/** What tritonserver lists in ServerMetadata (the `sequence` one is what our client looks for). */
export const EXTENSIONS = [
  'classification', 'sequence', 'model_repository', 'model_repository(unload_dependents)', 'schedule_policy',
  'model_configuration', 'system_shared_memory', 'cuda_shared_memory', 'binary_tensor_data', 'parameters',
  'statistics', 'trace', 'logging',
];

type Unary<Req, Res> = grpc.handleUnaryCall<Req, Res>;
interface NameRequest {
  name: string;
  version: string;
}

export function modelReady(state: StandInState, name: string): boolean {
  return state.models.has(name) && state.faults[name]?.unready !== true;
}

/** Triton's default strict readiness: the server is ready when every model is. */
export function serverReady(state: StandInState): boolean {
  return [...state.models.keys()].every((name) => modelReady(state, name));
}

function metadata(spec: ModelSpec): object {
  const tensor = (t: ModelSpec['inputs'][number]) => ({ name: t.name, datatype: t.datatype, shape: [...t.dims] });
  return { name: spec.name, versions: [MODEL_VERSION], platform: spec.platform, inputs: spec.inputs.map(tensor), outputs: spec.outputs.map(tensor) };
}

function typeName(datatype: string): string {
  return datatype === 'BYTES' ? 'TYPE_STRING' : `TYPE_${datatype}`;
}

/** The ModelConfig Triton would hold for the spec (what `config.pbtxt` plus auto-complete give). */
export function modelConfig(spec: ModelSpec): object {
  return {
    name: spec.name,
    platform: spec.platform === spec.backend ? '' : spec.platform,
    backend: spec.backend,
    max_batch_size: 0,
    version_policy: { latest: { num_versions: 1 } },
    input: spec.inputs.map((t) => ({
      name: t.name,
      data_type: typeName(t.datatype),
      dims: [...t.dims],
      optional: t.optional === true,
      ...(t.reshape !== undefined ? { reshape: { shape: [...t.reshape] } } : {}),
    })),
    output: spec.outputs.map((t) => ({ name: t.name, data_type: typeName(t.datatype), dims: [...t.dims] })),
    instance_group: [{ name: spec.name, kind: spec.instanceKind, count: 1 }],
    model_transaction_policy: { decoupled: spec.decoupled },
    ...(spec.sequenceBatching !== undefined ? { sequence_batching: spec.sequenceBatching } : {}),
  };
}

function withModel<Res>(state: StandInState, name: string, callback: grpc.sendUnaryData<Res>, answer: (model: StandInModel) => Res): void {
  try {
    callback(null, answer(findModel(state, name)));
  } catch (error) {
    callback({ code: error instanceof RequestError ? error.code : grpc.status.INTERNAL, details: errorText(error) });
  }
}

export function unaryHandlers(state: StandInState): grpc.UntypedServiceImplementation {
  const ServerLive: Unary<object, object> = (_call, callback) => callback(null, { live: true });
  const ServerReady: Unary<object, object> = (_call, callback) => callback(null, { ready: serverReady(state) });
  const ModelReady: Unary<NameRequest, object> = (call, callback) => callback(null, { ready: modelReady(state, call.request.name) });
  const ServerMetadata: Unary<object, object> = (_call, callback) =>
    callback(null, { name: 'triton', version: SERVER_VERSION, extensions: EXTENSIONS });
  const ModelMetadata: Unary<NameRequest, object> = (call, callback) =>
    withModel(state, call.request.name, callback, (model) => metadata(model.spec));
  const ModelConfig: Unary<NameRequest, object> = (call, callback) =>
    withModel(state, call.request.name, callback, (model) => ({ config: modelConfig(model.spec) }));
  const ModelInfer: Unary<ModelInferRequest, ModelInferResponse> = (call, callback) => void modelInfer(state, call, callback);
  return { ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelConfig, ModelInfer };
}

export function healthHandlers(state: StandInState): grpc.UntypedServiceImplementation {
  const Check: Unary<{ service: string }, object> = (_call, callback) =>
    callback(null, { status: serverReady(state) ? 'SERVING' : 'NOT_SERVING' });
  return { Check };
}

async function modelInfer(
  state: StandInState,
  call: grpc.ServerUnaryCall<ModelInferRequest, ModelInferResponse>,
  callback: grpc.sendUnaryData<ModelInferResponse>,
): Promise<void> {
  const request = call.request;
  const observed = record(state, 'ModelInfer', request);
  const controller = new AbortController();
  let answered = false;
  const fail = (code: grpc.status, details: string): void => {
    if (answered) return;
    answered = true;
    state.observed.recordResponse(observed, true, details);
    callback({ code, details });
  };
  const active = {
    shutdown: (details: string) => {
      fail(grpc.status.UNAVAILABLE, details);
      controller.abort();
    },
  };
  state.active.add(active);
  call.on('cancelled', () => {
    if (!answered) state.observed.recordCancel('ModelInfer', observed);
    answered = true;
    controller.abort();
  });
  try {
    const model = findModel(state, request.model_name);
    if (model.spec.decoupled) {
      throw new RequestError("ModelInfer RPC doesn't support models with decoupled transaction policy", grpc.status.UNIMPLEMENTED);
    }
    const prepared = prepare(model, request);
    const faults = state.faults[request.model_name];
    if (faults?.cutAfterResponses === 0) return fail(grpc.status.UNAVAILABLE, CUT_DETAILS);
    await applyDelay(faults, controller.signal);
    if (faults?.error !== undefined) throw new ModelError(faults.error);
    let response: ModelInferResponse | undefined;
    const sink: ResponseSink = {
      send: (outputs: readonly RawTensor[]) => {
        response ??= dataResponse(request, outputs, prepared.outputs);
      },
      complete: () => {},
    };
    await model.execute(context(request, prepared, controller.signal), sink);
    if (answered) return;
    if (response === undefined) return fail(grpc.status.INTERNAL, `model '${model.spec.name}' sent no response`);
    answered = true;
    state.observed.recordResponse(observed, true);
    callback(null, response);
  } catch (error) {
    if (isAbort(error, controller.signal)) return;
    const code = error instanceof RequestError || error instanceof ModelError ? error.code : grpc.status.INTERNAL;
    fail(code, errorText(error));
  } finally {
    state.active.delete(active);
  }
}
