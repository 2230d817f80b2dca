/**
 * The KServe v2 gRPC client for one Triton endpoint. One channel per endpoint (HTTP/2, keepalive,
 * reconnect with backoff — grpc-js does the reconnecting) is shared by every call in the process;
 * unary calls carry deadlines; `ModelStreamInfer` streams are opened per logical stream (an
 * utterance, a reply, a spoken segment list) so that cancelling one — barge-in, hang-up — cancels
 * exactly that work in Triton and nothing else.
 */
import * as grpc from '@grpc/grpc-js';
import {
  ENABLE_EMPTY_FINAL_PARAMETER,
  isFinalResponse,
  tritonProtocol,
  type HealthStatus,
  type ModelConfig,
  type ModelInferRequest,
  type ModelInferResponse,
  type ModelMetadataResponse,
  type ModelStreamInferResponse,
  type ServerMetadataResponse,
} from './protocol.js';

export const DEFAULT_UNARY_DEADLINE_MS = 2000;

/** A Triton failure: a gRPC status, a stream `error_message`, a deadline, or a lost stream. */
export class TritonError extends Error {
  override name = 'TritonError';
  constructor(
    message: string,
    readonly kind: 'grpc' | 'model' | 'deadline' | 'stream_lost' | 'protocol',
    readonly code?: grpc.status,
  ) {
    super(message);
  }
}

export interface TritonClientOptions {
  /** host:port of Triton's gRPC endpoint (8001 by default on tritonserver). */
  url: string;
  keepaliveMs?: number;
  unaryDeadlineMs?: number;
}

type MethodName = 'ServerLive' | 'ServerReady' | 'ModelReady' | 'ServerMetadata' | 'ModelMetadata' | 'ModelInfer' | 'ModelConfig';

export interface CallOptions {
  deadlineMs?: number;
  signal?: AbortSignal;
}

export class TritonClient {
  readonly url: string;
  private readonly inference: grpc.Client;
  private readonly health: grpc.Client;
  private readonly unaryDeadlineMs: number;
  private closed = false;

  constructor(options: TritonClientOptions) {
    this.url = options.url;
    this.unaryDeadlineMs = options.unaryDeadlineMs ?? DEFAULT_UNARY_DEADLINE_MS;
    const { InferenceClient, HealthClient } = tritonProtocol();
    const keepalive = options.keepaliveMs ?? 10_000;
    const channelOptions: grpc.ChannelOptions = {
      // Pings keep NATs and load balancers from silently dropping an idle channel mid-call, and
      // find a dead Triton within seconds instead of at the next request.
      'grpc.keepalive_time_ms': keepalive,
      'grpc.keepalive_timeout_ms': Math.min(5000, keepalive),
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.http2.max_pings_without_data': 0,
      'grpc.initial_reconnect_backoff_ms': 250,
      'grpc.max_reconnect_backoff_ms': 5000,
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
      'grpc.max_send_message_length': 64 * 1024 * 1024,
    };
    this.inference = new InferenceClient(options.url, grpc.credentials.createInsecure(), channelOptions);
    this.health = new HealthClient(options.url, grpc.credentials.createInsecure(), { channelOverride: this.inference.getChannel() });
  }

  serverLive(options?: CallOptions): Promise<boolean> {
    return this.unary<object, { live: boolean }>('ServerLive', {}, options).then((r) => r.live);
  }

  serverReady(options?: CallOptions): Promise<boolean> {
    return this.unary<object, { ready: boolean }>('ServerReady', {}, options).then((r) => r.ready);
  }

  modelReady(name: string, options?: CallOptions): Promise<boolean> {
    return this.unary<{ name: string; version: string }, { ready: boolean }>('ModelReady', { name, version: '' }, options).then((r) => r.ready);
  }

  serverMetadata(options?: CallOptions): Promise<ServerMetadataResponse> {
    return this.unary('ServerMetadata', {}, options);
  }

  modelMetadata(name: string, options?: CallOptions): Promise<ModelMetadataResponse> {
    return this.unary('ModelMetadata', { name, version: '' }, options);
  }

  modelConfig(name: string, options?: CallOptions): Promise<ModelConfig> {
    return this.unary<{ name: string; version: string }, { config: ModelConfig }>('ModelConfig', { name, version: '' }, options).then((r) => r.config);
  }

  infer(request: ModelInferRequest, options?: CallOptions): Promise<ModelInferResponse> {
    return this.unary('ModelInfer', request, options);
  }

  /** `grpc.health.v1.Health/Check` for the whole server. */
  healthCheck(options?: CallOptions): Promise<HealthStatus> {
    const definition = tritonProtocol().healthService.Check!;
    return this.call(this.health, definition, { service: '' }, options).then((r) => (r as { status: HealthStatus }).status);
  }

  /** Opens a `ModelStreamInfer` stream; see InferStream. */
  openStream(): InferStream {
    if (this.closed) throw new TritonError('Triton client is closed', 'stream_lost');
    const definition = tritonProtocol().inferenceService.ModelStreamInfer!;
    const call = this.inference.makeBidiStreamRequest(
      definition.path,
      definition.requestSerialize as (value: ModelInferRequest) => Buffer,
      definition.responseDeserialize as (bytes: Buffer) => ModelStreamInferResponse,
      new grpc.Metadata(),
      {},
    );
    return new InferStream(call);
  }

  /** Connectivity of the shared channel, for logs and readiness. */
  get connectivity(): string {
    return grpc.connectivityState[this.inference.getChannel().getConnectivityState(false)] ?? 'UNKNOWN';
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.inference.close();
  }

  private unary<Req, Res>(method: MethodName, request: Req, options?: CallOptions): Promise<Res> {
    const definition = tritonProtocol().inferenceService[method]!;
    return this.call(this.inference, definition, request, options) as Promise<Res>;
  }

  private call(client: grpc.Client, definition: grpc.MethodDefinition<object, object>, request: unknown, options: CallOptions = {}): Promise<unknown> {
    if (this.closed) return Promise.reject(new TritonError('Triton client is closed', 'stream_lost'));
    const deadlineMs = options.deadlineMs ?? this.unaryDeadlineMs;
    return new Promise((resolve, reject) => {
      const call = client.makeUnaryRequest(
        definition.path,
        definition.requestSerialize as (value: unknown) => Buffer,
        definition.responseDeserialize as (bytes: Buffer) => unknown,
        request,
        new grpc.Metadata(),
        { deadline: Date.now() + deadlineMs },
        (error, response) => {
          options.signal?.removeEventListener('abort', onAbort);
          if (error !== null) reject(toTritonError(error, definition.path));
          else resolve(response);
        },
      );
      const onAbort = (): void => call.cancel();
      options.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

function toTritonError(error: grpc.ServiceError, what: string): TritonError {
  const method = what.slice(what.lastIndexOf('/') + 1);
  if (error.code === grpc.status.DEADLINE_EXCEEDED) return new TritonError(`${method}: deadline exceeded`, 'deadline', error.code);
  return new TritonError(`${method}: ${error.details || grpc.status[error.code]}`, 'grpc', error.code);
}

export interface StreamRequestHandlers {
  /** A response for this request; `final` is Triton's `triton_final_response`. */
  onResponse(response: ModelInferResponse, final: boolean): void;
  /** The request failed (model error, stream lost). No further callbacks for this request. */
  onError(error: TritonError): void;
}

/**
 * One `ModelStreamInfer` call carrying one or more requests. Responses are routed to their request
 * by the echoed `id`; a request is done at its `triton_final_response`. Every request sent here asks
 * for Triton's empty final response, so decoupled models that end with a flag-only final (Python
 * backend) are seen to complete. Whatever happens to the stream, every pending request hears about
 * it exactly once: nothing waits forever.
 */
export class InferStream {
  private readonly pending = new Map<string, StreamRequestHandlers>();
  private nextId = 0;
  private cancelled = false;
  private finished = false;

  constructor(private readonly call: grpc.ClientDuplexStream<ModelInferRequest, ModelStreamInferResponse>) {
    call.on('data', (message: ModelStreamInferResponse) => this.onMessage(message));
    call.on('error', (error: grpc.ServiceError) => {
      this.finished = true;
      if (this.cancelled) return;
      this.failAll(
        error.code === grpc.status.UNAVAILABLE
          ? new TritonError(`Triton stream lost: ${error.details || 'unavailable'}`, 'stream_lost', error.code)
          : toTritonError(error, 'ModelStreamInfer'),
      );
    });
    call.on('end', () => {
      this.finished = true;
      this.failAll(new TritonError('Triton ended the stream before the final response', 'stream_lost'));
    });
  }

  get inFlight(): number {
    return this.pending.size;
  }

  /** Sends a request; returns the id its responses will carry. */
  send(request: ModelInferRequest, handlers: StreamRequestHandlers): string {
    const id = request.id !== undefined && request.id !== '' ? request.id : `r${this.nextId++}`;
    if (this.cancelled || this.finished) {
      queueMicrotask(() => handlers.onError(new TritonError('stream already closed', 'stream_lost')));
      return id;
    }
    this.pending.set(id, handlers);
    const parameters = { ...(request.parameters ?? {}), [ENABLE_EMPTY_FINAL_PARAMETER]: { bool_param: true } };
    this.call.write({ ...request, id, parameters });
    return id;
  }

  /** No more requests: Triton closes the stream after the last response. */
  end(): void {
    if (this.cancelled || this.finished) return;
    this.finished = true;
    this.call.end();
  }

  /** Cancels the call: Triton cancels every in-flight request on it. Pending requests get no callbacks. */
  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.pending.clear();
    this.call.cancel();
  }

  private onMessage(message: ModelStreamInferResponse): void {
    const response = message.infer_response;
    const id = response?.id ?? '';
    if (message.error_message !== '') {
      const error = new TritonError(message.error_message, 'model');
      const handlers = this.pending.get(id);
      if (handlers !== undefined) {
        this.pending.delete(id);
        handlers.onError(error);
      } else {
        // An error Triton could not tie to a request id: it may be any of them, so all fail.
        this.failAll(error);
      }
      return;
    }
    if (response === null) return;
    const handlers = this.pending.get(id);
    if (handlers === undefined) return; // a late response for a request we already gave up on
    const final = isFinalResponse(response);
    if (final) this.pending.delete(id);
    try {
      handlers.onResponse(response, final);
    } catch (error) {
      this.pending.delete(id);
      handlers.onError(new TritonError(`bad response from ${response.model_name}: ${(error as Error).message}`, 'protocol'));
    }
  }

  private failAll(error: TritonError): void {
    const handlers = [...this.pending.values()];
    this.pending.clear();
    for (const handler of handlers) handler.onError(error);
  }
}
