/**
 * What the stand-in saw, for assertions: every request (with its decoded inputs), every request the
 * client cancelled while it was in flight, and events for tests that wait on them.
 */
import { EventEmitter } from 'node:events';
import type { ParameterValue, SequenceId } from './model.js';

/** Decoded inputs, per model kind; a field is absent when that input was missing or malformed. */
export interface ObservedInputs {
  llm?: {
    prompt: string;
    stream: boolean | undefined;
    /** The raw JSON string. */
    samplingParameters: string | undefined;
    excludeInputInOutput: boolean | undefined;
  };
  tts?: { text: string; voice: string | undefined };
  asr?: { sequenceId: SequenceId | undefined; start: boolean; end: boolean; samples: number };
  vad?: { batch: number };
}

export type Rpc = 'ModelInfer' | 'ModelStreamInfer';

export interface ObservedRequest extends ObservedInputs {
  /** Arrival order across the whole stand-in. */
  seq: number;
  rpc: Rpc;
  model: string;
  id: string;
  /** Every request parameter as a plain value (reserved ones included). */
  parameters: Record<string, ParameterValue>;
  inputNames: string[];
  at: number;
  /** The error the request was answered with, if any. */
  error?: string;
  /** Responses written to the client for it. */
  responses: number;
}

export interface ObservedCancel {
  rpc: Rpc;
  model: string;
  id: string;
  /** How many responses had reached the client before the cancel. */
  responses: number;
  at: number;
}

export interface StandInEvents {
  request: [ObservedRequest];
  response: [{ request: ObservedRequest; final: boolean; error?: string }];
  cancelled: [ObservedCancel];
}

export class Observed {
  readonly requests: ObservedRequest[] = [];
  readonly cancelled: ObservedCancel[] = [];
  private seq = 0;

  constructor(private readonly events: EventEmitter<StandInEvents>) {}

  /** Requests for one model, in arrival order. */
  forModel(model: string): ObservedRequest[] {
    return this.requests.filter((r) => r.model === model);
  }

  /** The qwen3 prompts, in arrival order. */
  prompts(): string[] {
    return this.requests.flatMap((r) => (r.llm !== undefined ? [r.llm.prompt] : []));
  }

  /** The tts texts, in arrival order. */
  ttsTexts(): string[] {
    return this.requests.flatMap((r) => (r.tts !== undefined ? [r.tts.text] : []));
  }

  cancelledIds(model?: string): string[] {
    return this.cancelled.filter((c) => model === undefined || c.model === model).map((c) => c.id);
  }

  cancelledCount(model: string): number {
    return this.cancelled.filter((c) => c.model === model).length;
  }

  clear(): void {
    this.requests.length = 0;
    this.cancelled.length = 0;
  }

  // ── used by the server ────────────────────────────────────────────────────────────────────────
  recordRequest(entry: Omit<ObservedRequest, 'seq' | 'at' | 'responses'>): ObservedRequest {
    const request: ObservedRequest = { ...entry, seq: ++this.seq, at: Date.now(), responses: 0 };
    this.requests.push(request);
    this.events.emit('request', request);
    return request;
  }

  recordResponse(request: ObservedRequest, final: boolean, error?: string): void {
    request.responses++;
    if (error !== undefined) request.error = error;
    this.events.emit('response', error === undefined ? { request, final } : { request, final, error });
  }

  recordCancel(rpc: Rpc, request: ObservedRequest): void {
    const cancel: ObservedCancel = { rpc, model: request.model, id: request.id, responses: request.responses, at: Date.now() };
    this.cancelled.push(cancel);
    this.events.emit('cancelled', cancel);
  }
}
