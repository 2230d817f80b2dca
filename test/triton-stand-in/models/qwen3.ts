/**
 * `qwen3` on Triton's vLLM backend: decoupled, the prompt already rendered with Qwen3's chat
 * template, replies scripted. Streaming sends one response per token-sized piece holding only the
 * new text; the last one carries the final flag (vLLM has no flag-only final). By default that last
 * response is the end-of-sequence step, whose delta is '' (<|im_end|> is a special token), as vLLM
 * sends it when the model stops on its own.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { bytesTensor, readBool, readStrings } from '../../../src/engines/triton/tensors.js';
import { ModelError, type InferContext, type ModelSpec, type ResponseSink, type StandInModel } from '../model.js';
import type { ObservedInputs } from '../observed.js';
import type { RawTensor } from '../../../src/engines/triton/tensors.js';

export interface LlmRule {
  /** A case-insensitive substring or a RegExp, tried against the last user turn of the prompt. */
  match: string | RegExp;
  reply: string;
}

/** A function of the whole prompt, or rules tried in order. */
export type LlmReply = ((prompt: string) => string | Promise<string>) | readonly LlmRule[];

export interface LlmOptions {
  reply?: LlmReply;
  /** What rules answer when none matches. */
  defaultReply?: string;
  /** Pace after the first piece (default 100). */
  tokensPerSecond?: number;
  /** Time to the first piece (default 50 ms). */
  firstTokenDelayMs?: number;
  /** End with an empty end-of-sequence delta marked final (default true); false marks the last text piece final. */
  emptyFinalDelta?: boolean;
}

export const DEFAULT_REPLY = 'Hello! How can I help you today?';

export const QWEN3_SPEC: ModelSpec = {
  name: 'qwen3',
  platform: 'vllm',
  backend: 'vllm',
  decoupled: true,
  instanceKind: 'KIND_MODEL',
  // The inputs the vLLM backend's auto-complete adds; all but text_input are optional.
  inputs: [
    { name: 'text_input', datatype: 'BYTES', dims: [1] },
    { name: 'image', datatype: 'BYTES', dims: [-1], optional: true },
    { name: 'stream', datatype: 'BOOL', dims: [1], optional: true },
    { name: 'sampling_parameters', datatype: 'BYTES', dims: [1], optional: true },
    { name: 'exclude_input_in_output', datatype: 'BOOL', dims: [1], optional: true },
    { name: 'return_finish_reason', datatype: 'BOOL', dims: [1], optional: true },
    { name: 'return_cumulative_logprob', datatype: 'BOOL', dims: [1], optional: true },
    { name: 'return_logprobs', datatype: 'BOOL', dims: [1], optional: true },
    { name: 'return_num_input_tokens', datatype: 'BOOL', dims: [1], optional: true },
    { name: 'return_num_output_tokens', datatype: 'BOOL', dims: [1], optional: true },
  ],
  outputs: [{ name: 'text_output', datatype: 'BYTES', dims: [-1] }],
};

// Qwen3's control tokens are single tokens; everything else goes out as up to 4 characters, with
// the spaces before a word attached to it, and newlines on their own.
const SPECIAL = /^(?:<\/?tool_call>|<\/?think>|<\|[a-z_]+\|>)/;
const PIECE = /^[ \t]*(?:(?!<\/?tool_call>|<\/?think>|<\|[a-z_]+\|>)[^\s]){1,4}/u;

/** Splits text into token-sized pieces whose concatenation is the text. */
export function tokenPieces(text: string): string[] {
  const pieces: string[] = [];
  let rest = text;
  while (rest.length > 0) {
    const piece = SPECIAL.exec(rest)?.[0] ?? /^\n+/.exec(rest)?.[0] ?? PIECE.exec(rest)?.[0] ?? /^\s+?(?=\n|$)|^[ \t]+/.exec(rest)?.[0] ?? rest[0]!;
    pieces.push(piece);
    rest = rest.slice(piece.length);
  }
  return pieces;
}

/** The text of the last user turn of a ChatML (Qwen3) prompt; the whole prompt when it has none. */
export function lastUserMessage(prompt: string): string {
  const start = prompt.lastIndexOf('<|im_start|>user\n');
  if (start < 0) return prompt;
  const body = prompt.slice(start + '<|im_start|>user\n'.length);
  const end = body.indexOf('<|im_end|>');
  return end < 0 ? body : body.slice(0, end);
}

function matches(rule: LlmRule, text: string): boolean {
  if (typeof rule.match === 'string') return text.toLowerCase().includes(rule.match.toLowerCase());
  rule.match.lastIndex = 0;
  return rule.match.test(text);
}

function firstOf(tensor: RawTensor | undefined, read: (t: RawTensor) => boolean[]): boolean | undefined {
  return tensor === undefined ? undefined : read(tensor)[0];
}

export class Qwen3Model implements StandInModel {
  readonly spec = QWEN3_SPEC;

  constructor(private readonly options: LlmOptions = {}) {}

  observe(inputs: ReadonlyMap<string, RawTensor>): ObservedInputs {
    const text = inputs.get('text_input');
    if (text === undefined) return {};
    const sampling = inputs.get('sampling_parameters');
    return {
      llm: {
        prompt: readStrings(text)[0] ?? '',
        stream: firstOf(inputs.get('stream'), readBool),
        samplingParameters: sampling !== undefined ? readStrings(sampling)[0] : undefined,
        excludeInputInOutput: firstOf(inputs.get('exclude_input_in_output'), readBool),
      },
    };
  }

  async reply(prompt: string): Promise<string> {
    const reply = this.options.reply;
    if (reply === undefined) return DEFAULT_REPLY;
    if (typeof reply === 'function') return reply(prompt);
    const user = lastUserMessage(prompt);
    return reply.find((rule) => matches(rule, user))?.reply ?? this.options.defaultReply ?? DEFAULT_REPLY;
  }

  async execute(context: InferContext, sink: ResponseSink): Promise<void> {
    const prompt = readStrings(context.inputs.get('text_input')!)[0] ?? '';
    const stream = firstOf(context.inputs.get('stream'), readBool) ?? false;
    const exclude = firstOf(context.inputs.get('exclude_input_in_output'), readBool);
    // The backend's rule: prepend the prompt unless told not to, or when streaming without the input.
    const prependInput = exclude !== undefined ? !exclude : !stream;
    if (prependInput && stream) throw generationError('When streaming, `exclude_input_in_output` = False is not allowed.');
    const sampling = this.samplingParameters(context);
    const maxTokens = Number(sampling['max_tokens']);

    let pieces = tokenPieces(applyStop(await this.reply(prompt), sampling['stop']));
    const truncated = Number.isFinite(maxTokens) && maxTokens > 0 && pieces.length > maxTokens;
    if (truncated) pieces = pieces.slice(0, Math.floor(maxTokens));
    const interval = 1000 / (this.options.tokensPerSecond ?? 100);
    const signal = context.signal;

    await sleep(this.options.firstTokenDelayMs ?? 50, undefined, { signal });
    if (!stream) {
      await sleep(interval * Math.max(0, pieces.length - 1), undefined, { signal });
      sink.send([textOutput((prependInput ? prompt : '') + pieces.join(''))], true);
      return;
    }
    // Stopped by max_tokens, the last piece is the last step; stopped by the model, an EOS step follows.
    const eosStep = !truncated && (this.options.emptyFinalDelta ?? true);
    if (pieces.length === 0 || eosStep) pieces.push('');
    for (const [i, piece] of pieces.entries()) {
      if (i > 0) await sleep(interval, undefined, { signal });
      sink.send([textOutput(piece)], i === pieces.length - 1);
    }
  }

  /** The sampling_parameters JSON, or else the request parameters (as the vLLM backend reads them). */
  private samplingParameters(context: InferContext): Record<string, unknown> {
    const tensor = context.inputs.get('sampling_parameters');
    const json = tensor !== undefined ? readStrings(tensor)[0] : undefined;
    let parameters: Record<string, unknown> = { ...context.parameters };
    if (json !== undefined) {
      try {
        const parsed: unknown = JSON.parse(json);
        if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not a JSON object');
        parameters = parsed as Record<string, unknown>;
      } catch (error) {
        throw generationError(`invalid sampling_parameters: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    return parameters;
  }
}

/** vLLM's `stop`: generation ends before the first stop string, which is not part of the output. */
function applyStop(reply: string, stop: unknown): string {
  const strings = typeof stop === 'string' ? [stop] : Array.isArray(stop) ? stop.filter((s): s is string => typeof s === 'string' && s !== '') : [];
  const cut = Math.min(...strings.map((s) => reply.indexOf(s)).filter((i) => i >= 0));
  return Number.isFinite(cut) ? reply.slice(0, cut) : reply;
}

/** The vLLM backend reports every failure as a final response with this wording. */
function generationError(message: string): ModelError {
  return new ModelError(`Error generating stream: ${message}`);
}

function textOutput(text: string): RawTensor {
  return bytesTensor('text_output', [text]);
}
