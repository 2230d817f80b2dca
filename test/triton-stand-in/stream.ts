/**
 * ModelStreamInfer as Triton's stream handler does it: many requests per stream, each answered
 * independently (responses of different requests interleave), `triton_final_response` on every
 * response, flag-only finals only on request, errors as `error_message` on a stream that stays open
 * (or, with the `triton_grpc_error: true` header, a gRPC status that ends it). The stream ends with
 * OK once the client half-closed and every request is complete; a client cancel aborts every
 * request in flight.
 */
import * as grpc from '@grpc/grpc-js';
import type { ModelInferRequest, ModelInferResponse, ModelStreamInferResponse } from '../../src/engines/triton/protocol.js';
import type { RawTensor } from '../../src/engines/triton/tensors.js';
import {
  bareResponse, context, dataResponse, errorText, findModel, isAbort, markFinal, prepare, record,
  type Prepared, type StandInState,
} from './dispatch.js';
import { applyDelay, CUT_DETAILS } from './faults.js';
import { ModelError, RequestError, type ResponseSink } from './model.js';
import type { ObservedRequest } from './observed.js';

type StreamCall = grpc.ServerDuplexStream<ModelInferRequest, ModelStreamInferResponse>;

interface InFlight {
  request: ModelInferRequest;
  observed: ObservedRequest;
  controller: AbortController;
  /** The final (data or flag-only) was produced: a cancel after it cancels nothing. */
  complete: boolean;
}

export class StreamSession {
  private readonly inflight = new Set<InFlight>();
  /** Responses written per model, for the cut fault. */
  private readonly written = new Map<string, number>();
  private readEnded = false;
  private closed = false;
  private readonly grpcErrorMode: boolean;

  constructor(
    private readonly state: StandInState,
    private readonly call: StreamCall,
  ) {
    state.active.add(this);
    this.grpcErrorMode = String(call.metadata.get('triton_grpc_error')[0] ?? '').toLowerCase() === 'true';
    call.on('data', (request: ModelInferRequest) => this.onRequest(request));
    call.on('end', () => {
      this.readEnded = true;
      this.finishIfDone();
    });
    call.on('cancelled', () => this.onCancelled());
    call.on('error', () => {}); // a failed write after a client reset; 'cancelled' does the cleanup
  }

  /** Server stop: the stream ends with UNAVAILABLE, its work is aborted, and no client cancel is recorded. */
  shutdown(details: string): void {
    this.end({ code: grpc.status.UNAVAILABLE, details });
  }

  private abortAll(): void {
    for (const entry of this.inflight) entry.controller.abort();
  }

  private onRequest(request: ModelInferRequest): void {
    if (this.closed) return;
    const entry: InFlight = { request, observed: record(this.state, 'ModelStreamInfer', request), controller: new AbortController(), complete: false };
    this.inflight.add(entry);
    void this.run(entry).finally(() => {
      this.inflight.delete(entry);
      this.finishIfDone();
    });
  }

  private async run(entry: InFlight): Promise<void> {
    const { request, controller } = entry;
    let prepared: Prepared;
    try {
      prepared = prepare(findModel(this.state, request.model_name), request);
    } catch (error) {
      this.requestError(entry, error);
      return;
    }
    const faults = this.state.faults[request.model_name];
    if (faults?.cutAfterResponses === 0) {
      this.cut();
      return;
    }
    const sink = new StreamSink(this, entry, prepared);
    try {
      await applyDelay(faults, controller.signal);
      if (faults?.error !== undefined) throw new ModelError(faults.error);
      await prepared.model.execute(context(request, prepared, controller.signal), sink);
      if (!entry.complete && !controller.signal.aborted) sink.complete();
    } catch (error) {
      if (isAbort(error, controller.signal) || entry.complete) return;
      if (error instanceof RequestError && sink.sent === 0) this.requestError(entry, error);
      else this.modelError(entry, error);
    }
  }

  /** Core errors: `error_message` and an infer_response holding only the request id. */
  private requestError(entry: InFlight, error: unknown): void {
    entry.complete = true;
    const message = errorText(error);
    const code = error instanceof RequestError ? error.code : grpc.status.INTERNAL;
    const infer: ModelInferResponse = { model_name: '', model_version: '', id: entry.request.id ?? '', parameters: {}, outputs: [], raw_output_contents: [] };
    this.writeError(entry, message, code, infer);
  }

  /** Backend errors: id, model and the final flag survive; outputs are dropped. */
  private modelError(entry: InFlight, error: unknown): void {
    entry.complete = true;
    const code = error instanceof ModelError ? error.code : grpc.status.INTERNAL;
    this.writeError(entry, errorText(error), code, markFinal(bareResponse(entry.request), true));
  }

  private writeError(entry: InFlight, message: string, code: grpc.status, infer: ModelInferResponse): void {
    if (this.closed) return;
    this.state.observed.recordResponse(entry.observed, true, message);
    if (this.grpcErrorMode) {
      this.end({ code, details: message });
      return;
    }
    this.call.write({ error_message: message, infer_response: infer });
  }

  /** Writes one response; returns false when the stream is gone. */
  write(entry: InFlight, response: ModelInferResponse, final: boolean): boolean {
    if (this.closed || entry.controller.signal.aborted) return false;
    if (final) entry.complete = true;
    this.call.write({ error_message: '', infer_response: response });
    this.state.observed.recordResponse(entry.observed, final);
    const model = entry.request.model_name;
    const count = (this.written.get(model) ?? 0) + 1;
    this.written.set(model, count);
    const cutAfter = this.state.faults[model]?.cutAfterResponses;
    if (cutAfter !== undefined && count >= cutAfter) this.cut();
    return true;
  }

  /** The cut fault: the stream ends with UNAVAILABLE mid-work, after what was already written. */
  private cut(): void {
    this.end({ code: grpc.status.UNAVAILABLE, details: CUT_DETAILS });
  }

  private end(status: { code: grpc.status; details: string }): void {
    if (this.closed) return;
    this.closed = true;
    this.abortAll();
    // grpc-js turns an 'error' on a server stream into the call's status, sent after pending writes.
    this.call.emit('error', status);
    this.state.active.delete(this);
  }

  private onCancelled(): void {
    if (this.closed) return;
    this.closed = true;
    for (const entry of this.inflight) {
      if (!entry.complete) this.state.observed.recordCancel('ModelStreamInfer', entry.observed);
      entry.controller.abort();
    }
    this.state.active.delete(this);
  }

  private finishIfDone(): void {
    if (this.closed || !this.readEnded || this.inflight.size > 0) return;
    this.closed = true;
    this.call.end();
    this.state.active.delete(this);
  }
}

class StreamSink implements ResponseSink {
  sent = 0;

  constructor(
    private readonly session: StreamSession,
    private readonly entry: InFlight,
    private readonly prepared: Prepared,
  ) {}

  send(outputs: readonly RawTensor[], final: boolean): void {
    if (this.entry.complete) throw new Error(`response for '${this.entry.request.id}' after its final`);
    const response = markFinal(dataResponse(this.entry.request, outputs, this.prepared.outputs), final);
    if (this.session.write(this.entry, response, final)) this.sent++;
  }

  complete(): void {
    if (this.entry.complete) throw new Error(`second final for '${this.entry.request.id}'`);
    if (this.entry.controller.signal.aborted) return;
    // Non-decoupled models always answer with data; a flag-only final exists for decoupled ones.
    if (this.prepared.parsed.enableEmptyFinal && this.prepared.model.spec.decoupled) {
      if (this.session.write(this.entry, markFinal(bareResponse(this.entry.request), true), true)) this.sent++;
    } else {
      this.entry.complete = true;
    }
  }
}
