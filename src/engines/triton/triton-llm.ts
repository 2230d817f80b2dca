/**
 * Qwen3 on Triton's vLLM backend (`qwen3`, decoupled, so ModelStreamInfer only). The backend takes a
 * raw prompt, so the server renders Qwen3's chat template itself (thinking disabled: a voice turn
 * cannot wait for a reasoning trace), offers tools in Qwen3's format, and parses `<tool_call>` blocks
 * out of the token stream. Streaming responses carry only the new text (`text_output`), and the
 * last one is marked final.
 *
 * Aborting the request (barge-in, hang-up, a superseded speculative start) cancels the gRPC call,
 * which makes vLLM abort the sequence and free its KV cache at once.
 */
import { performance } from 'node:perf_hooks';
import { AsyncQueue } from '../../util/async-queue.js';
import { LlmConnectionError, LlmProtocolError, LlmTimeoutError, type LlmLogger } from '../llm-errors.js';
import type { Llm, LlmEvent, LlmRequest } from '../types.js';
import type { TritonClient, TritonError } from './client.js';
import { QWEN3_STOP, Qwen3StreamParser, renderQwen3Prompt } from './qwen3-chat.js';
import { boolTensor, bytesTensor, inferRequest, readStrings, responseOutputs } from './tensors.js';

export const QWEN3_MODEL = 'qwen3';

export interface TritonLlmOptions {
  /** Longest wait for the first token, and for each next one. */
  firstTokenTimeoutMs?: number;
  idleTimeoutMs?: number;
  /** Replies on the phone are short; this caps a runaway one. */
  maxTokens?: number;
  temperature?: number;
  logger?: LlmLogger;
  onFailure?: (error: TritonError) => void;
}

export class TritonLlm implements Llm {
  readonly name = 'triton:qwen3';
  private requests = 0;

  constructor(
    private readonly client: TritonClient,
    private readonly options: TritonLlmOptions = {},
  ) {}

  async *generate(request: LlmRequest): AsyncGenerator<LlmEvent> {
    const { signal } = request;
    if (signal.aborted) return;
    const prompt = renderQwen3Prompt(request.messages, request.tools);
    // Qwen3's recommended non-thinking sampling (temperature 0.7, top_p 0.8, top_k 20).
    const sampling = {
      temperature: this.options.temperature ?? 0.7,
      top_p: 0.8,
      top_k: 20,
      max_tokens: this.options.maxTokens ?? 400,
      stop: QWEN3_STOP,
    };
    const events = new AsyncQueue<LlmEvent>();
    // Tool-call ids stay unique across the requests of a call (tool rounds, later turns).
    const parser = new Qwen3StreamParser({ idPrefix: `call_${++this.requests}_` });
    const stream = this.client.openStream();
    const firstTokenMs = this.options.firstTokenTimeoutMs ?? 2000;
    const idleMs = this.options.idleTimeoutMs ?? firstTokenMs;
    let timer: NodeJS.Timeout | undefined;
    let gotToken = false;
    let completed = false;
    const fail = (error: Error): void => {
      clearTimeout(timer);
      stream.cancel();
      events.fail(error);
    };
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => fail(new LlmTimeoutError(gotToken ? 'idle' : 'first_token', gotToken ? idleMs : firstTokenMs)), gotToken ? idleMs : firstTokenMs);
      timer.unref();
    };
    const onAbort = (): void => {
      clearTimeout(timer);
      stream.cancel();
      events.end();
    };
    signal.addEventListener('abort', onAbort, { once: true });
    arm();
    const startedAt = performance.now();
    stream.send(
      inferRequest({
        model: QWEN3_MODEL,
        id: `${request.callId}:${Math.round(startedAt)}`,
        inputs: [
          bytesTensor('text_input', [prompt]),
          boolTensor('stream', [true]),
          bytesTensor('sampling_parameters', [JSON.stringify(sampling)]),
          boolTensor('exclude_input_in_output', [true]),
        ],
        outputs: ['text_output'],
      }),
      {
        onResponse: (response, final) => {
          if (signal.aborted) return;
          if (response.outputs.length > 0) {
            const output = responseOutputs(response).get('text_output');
            if (output === undefined) throw new Error('response lacks text_output');
            const delta = readStrings(output).join('');
            if (delta !== '') {
              gotToken = true;
              for (const event of parser.push(delta)) events.push(event);
            }
          }
          if (final) {
            completed = true;
            clearTimeout(timer);
            for (const event of parser.end()) events.push(event);
            if (parser.errors.length > 0) {
              this.options.logger?.warn({ callId: request.callId, errors: parser.errors }, 'Qwen3 emitted malformed tool calls; ignored');
            }
            events.push({ type: 'done' });
            events.end();
            stream.end();
          } else {
            arm();
          }
        },
        onError: (error) => {
          if (signal.aborted) return;
          fail(error.kind === 'model' ? new LlmProtocolError(`${QWEN3_MODEL}: ${error.message}`) : new LlmConnectionError(`${QWEN3_MODEL}: ${error.message}`, { cause: error }));
          this.options.onFailure?.(error);
        },
      },
    );
    try {
      for await (const event of events) {
        if (signal.aborted) return;
        yield event;
      }
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      // The consumer stopped early (or it failed): release the sequence in vLLM.
      if (!completed) stream.cancel();
    }
  }
}
