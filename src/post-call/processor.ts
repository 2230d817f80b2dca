/**
 * One post-call job, start to finish:
 *   1. PII redaction first (compliance/pii-redaction.ts). What is stored is the redacted
 *      transcript; the original text is kept as well only when the number's profile says
 *      `storeUnredacted`. The LLM only ever sees the redacted text.
 *   2. The call row (upsertCall + finishCall) and its turns, with their latency waterfall.
 *   3. The heavy LLM work (analysis.ts), or the extractive fallback with no LLM configured.
 *   4. The post-call result, upserted by call SID.
 * Every write is an idempotent upsert keyed by the call SID, so a rerun (a retry after a crash
 * anywhere in between, a duplicate delivery) converges on the same rows and never doubles one.
 */
import { redactTranscript, type PiiCategory } from '../../compliance/pii-redaction.js';
import type { Llm } from '../engines/types.js';
import type { CallStore } from '../store/call-store.js';
import type { TurnInput, TurnLatency } from '../store/types.js';
import { analyzeWithLlm, extractiveAnalysis, type CallAnalysis, type CallFacts } from './analysis.js';
import type { PostCallJob, PostCallTurn } from './job.js';

export interface PostCallProcessorOptions {
  store: CallStore;
  /** The configured LLM engine; without one, the extractive fallback. */
  llm?: Llm | undefined;
  /** Reported as the result's model (default the LLM's name), e.g. `openai:gpt-4o-mini`. */
  modelName?: string;
  /** Tokens per transcript chunk (chars/3.5 estimate); default 3000. */
  chunkTokens?: number;
  /** Per LLM request; default 120 s. */
  llmTimeoutMs?: number;
}

export interface ProcessContext {
  /** This attempt's number, 1-based (stored with the result). */
  attempt?: number;
  /** Aborts the LLM work (the worker is closing with force). */
  signal?: AbortSignal;
}

export interface PostCallOutcome {
  callSid: string;
  analysis: CallAnalysis;
  /** Findings replaced, by category. */
  redactionCounts: Record<PiiCategory, number>;
  /** The unredacted text was stored as well (the number's profile). */
  storedUnredacted: boolean;
  turnsStored: number;
}

/** Turns in transcript order: by idx, the caller's part before the agent's. */
export function orderTurns(turns: readonly PostCallTurn[]): PostCallTurn[] {
  return [...turns].sort((a, b) => a.idx - b.idx || (a.speaker === b.speaker ? 0 : a.speaker === 'caller' ? -1 : 1));
}

export class PostCallProcessor {
  constructor(private readonly options: PostCallProcessorOptions) {}

  get store(): CallStore {
    return this.options.store;
  }

  /** Whether results come from an LLM (false: extractive fallback). */
  get usesLlm(): boolean {
    return this.options.llm !== undefined;
  }

  async process(job: PostCallJob, context: ProcessContext = {}): Promise<PostCallOutcome> {
    const { store } = this.options;
    const profile = job.number === undefined ? undefined : await store.getNumber(job.number);
    const storeUnredacted = profile?.storeUnredacted ?? false;
    const dispositions = profile?.dispositions ?? [];

    // 1. Redaction before anything is written or sent anywhere.
    const ordered = orderTurns(job.turns);
    const { turns: redacted, counts } = redactTranscript(ordered);

    // 2. The call and its transcript (both idempotent: same rows however often this runs).
    await store.upsertCall({
      callSid: job.callSid,
      provider: job.provider,
      direction: job.direction,
      ...(job.from === undefined ? {} : { from: job.from }),
      ...(job.to === undefined ? {} : { to: job.to }),
      ...(job.number === undefined ? {} : { number: job.number }),
      startedAt: new Date(job.startedAt),
    });
    await store.finishCall(job.callSid, { endReason: job.endReason, endedAt: new Date(job.endedAt) });
    const turnRows: TurnInput[] = redacted.map((turn, i) => ({
      idx: turn.idx,
      speaker: turn.speaker,
      text: storeUnredacted ? (ordered[i]?.text ?? null) : null,
      redactedText: turn.text,
      interrupted: turn.interrupted,
      latency: turn.latency === undefined ? null : (turn.latency as TurnLatency),
      ...(turn.startMs === undefined ? {} : { startMs: turn.startMs }),
      ...(turn.endMs === undefined ? {} : { endMs: turn.endMs }),
    }));
    const turnsStored = await store.upsertTurns(job.callSid, turnRows);

    // 3. The analysis, on the redacted text only.
    const facts: CallFacts = {
      callSid: job.callSid,
      direction: job.direction,
      endReason: job.endReason,
      durationSeconds: Math.max(0, (Date.parse(job.endedAt) - Date.parse(job.startedAt)) / 1000),
    };
    const lines = redacted.map((t) => ({ speaker: t.speaker, text: t.text }));
    const { llm } = this.options;
    const analysis =
      llm === undefined
        ? extractiveAnalysis(facts, lines, dispositions)
        : await analyzeWithLlm(facts, lines, {
            llm,
            dispositions,
            ...(this.options.chunkTokens === undefined ? {} : { chunkTokens: this.options.chunkTokens }),
            ...(this.options.llmTimeoutMs === undefined ? {} : { timeoutMs: this.options.llmTimeoutMs }),
            ...(this.options.modelName === undefined ? {} : { modelName: this.options.modelName }),
            ...(context.signal === undefined ? {} : { signal: context.signal }),
          });

    // 4. The result, one row per call SID.
    await store.upsertPostCallResult({
      callSid: job.callSid,
      summary: analysis.summary,
      disposition: analysis.disposition,
      sentiment: analysis.sentiment,
      actionItems: analysis.actionItems,
      model: analysis.model,
      extractive: analysis.extractive,
      redactionCounts: counts,
      attempts: context.attempt ?? 1,
    });
    return { callSid: job.callSid, analysis, redactionCounts: counts, storedUnredacted: storeUnredacted, turnsStored };
  }

  /** Records on the call row why its processing failed for good (false when the call is not stored). */
  markFailed(callSid: string, reason: string): Promise<boolean> {
    return this.options.store.markPostCallFailed(callSid, reason);
  }
}
