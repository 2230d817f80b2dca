/** Faults a test injects per model name; read on every request, so they can change mid-test. */
import { setTimeout as sleep } from 'node:timers/promises';

export interface ModelFaults {
  /** Added before the model starts on each request, so its first response comes this much later. */
  delayMs?: number;
  /** Every request is answered with this `error_message` (a model-level error, marked final). */
  error?: string;
  /**
   * After this many responses of this model on one stream (or one unary call), the stream ends at
   * once with UNAVAILABLE, as when Triton dies under it; 0 cuts before the first response.
   */
  cutAfterResponses?: number;
  /** ModelReady answers false (and ServerReady / health follow, as with Triton's strict readiness). */
  unready?: boolean;
}

/** model name → faults. Mutate freely: `standIn.faults.qwen3 = { error: 'boom' }`. */
export type Faults = Record<string, ModelFaults | undefined>;

/** Waits for the delay fault; rejects (AbortError) when the request is cancelled first. */
export async function applyDelay(faults: ModelFaults | undefined, signal: AbortSignal): Promise<void> {
  const delay = faults?.delayMs ?? 0;
  if (delay > 0) await sleep(delay, undefined, { signal });
}

export const CUT_DETAILS = 'stand-in fault: stream cut';
