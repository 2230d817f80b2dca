/**
 * Streaming engine interfaces. The call session only ever sees these; local CPU engines, the Triton
 * pipeline and OpenAI-compatible endpoints plug in behind them. Everything streams: the session never
 * waits for a whole utterance or a whole reply, and every long-running stream is cancellable.
 */

// ── VAD ──────────────────────────────────────────────────────────────────────────────────────────
/** Speech probability for one chunk of a call's audio. */
export interface VadResult {
  probability: number;
  /** Stream position (in 8 kHz samples) at the end of the chunk this result is for. */
  endSample: number;
}

export interface VadStream {
  /** 8 kHz PCM16 of any length; results arrive through the stream's callback, in order. */
  push(pcm8k: Int16Array): void;
  /** Stops the stream; pending chunks are discarded and no more callbacks fire. */
  close(): void;
}

/** One shared detector per process; it batches the pending chunks of all live calls. */
export interface Vad {
  readonly chunkSamples: number;
  /** Set once the detector has failed for good (reported by `/ready`). */
  readonly failure?: Error | undefined;
  createStream(onResult: (result: VadResult) => void): VadStream;
  close(): Promise<void>;
}

// ── ASR ──────────────────────────────────────────────────────────────────────────────────────────
export type AsrEvent =
  | { type: 'partial'; text: string }
  | { type: 'final'; text: string }
  | { type: 'error'; error: Error };

/** One stream per caller utterance: audio in, hypotheses out; ends with exactly one final or error. */
export interface AsrStream {
  push(pcm8k: Int16Array): void;
  /** The utterance is over: a final follows. */
  end(): void;
  /** Drop the utterance: no further events. */
  cancel(): void;
}

export interface Asr {
  createStream(callId: string, onEvent: (event: AsrEvent) => void): AsrStream;
  close(): Promise<void>;
}

// ── LLM ──────────────────────────────────────────────────────────────────────────────────────────
export type ChatMessage =
  | { role: 'system'; content: string }
  | { role: 'user'; content: string }
  | { role: 'assistant'; content: string; toolCalls?: ToolCall[] }
  | { role: 'tool'; toolCallId: string; content: string };

export interface ToolCall {
  id: string;
  name: string;
  arguments: Record<string, unknown>;
}

export interface ToolSpec {
  name: string;
  description: string;
  /** JSON Schema of the arguments object. */
  parameters: Record<string, unknown>;
}

export type LlmEvent =
  | { type: 'text'; delta: string }
  | { type: 'tool_call'; call: ToolCall }
  | { type: 'done' };

export interface LlmRequest {
  callId: string;
  messages: readonly ChatMessage[];
  tools: readonly ToolSpec[];
  /** Aborting ends the stream promptly and releases the request upstream. */
  signal: AbortSignal;
  /**
   * Told when a wrapper (FallbackLlm) gives up on its primary for this request, before the fallback
   * speaks (`before_first_event`) or when the reply is cut short (`mid_reply`): the session apologizes
   * and lets the scripted agent take over the rest of the call.
   */
  onFallback?: (info: { phase: 'before_first_event' | 'mid_reply'; reason: string }) => void;
}

export interface Llm {
  readonly name: string;
  generate(request: LlmRequest): AsyncIterable<LlmEvent>;
}

// ── TTS ──────────────────────────────────────────────────────────────────────────────────────────
/** A piece of synthesized speech belonging to one text segment of the reply. */
export interface TtsChunk {
  /** Index of the text segment (in input order) this audio belongs to. */
  segment: number;
  /** The segment's text, so the session can tell what the caller heard. */
  text: string;
  pcm: Int16Array;
  sampleRate: number;
  /** Last chunk of this segment. */
  segmentEnd: boolean;
}

export interface TtsRequest {
  callId: string;
  /** Speakable text segments (sentences or clauses) in order, as the LLM produces them. */
  text: AsyncIterable<string>;
  voice?: string;
  signal: AbortSignal;
}

export interface Tts {
  readonly name: string;
  synthesize(request: TtsRequest): AsyncIterable<TtsChunk>;
}

/** The engines all calls share; the LLM is chosen per call, by the number called. */
export type SharedEngines = Pick<Engines, 'vad' | 'asr' | 'tts'>;

export interface Engines {
  vad: Vad;
  asr: Asr;
  llm: Llm;
  /** Answers when `llm` fails or times out; also the agent when no LLM is configured. */
  fallbackLlm: Llm;
  tts: Tts;
}
