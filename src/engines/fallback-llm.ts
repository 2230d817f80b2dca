/**
 * Wraps the real LLM so a caller never hears silence because of it. If the primary fails before it
 * has produced anything, the fallback (normally the scripted agent) answers the same request; if it
 * fails after the caller has started hearing its reply, the reply is cut there and the stream ends
 * normally. Either way the failure is logged with the call id, and the iterator never throws.
 * Aborts requested by the caller are not failures: the stream just ends.
 */
import type { Llm, LlmEvent, LlmRequest } from './types.js';
import { describeError, type LlmLogger } from './llm-errors.js';

export class FallbackLlm implements Llm {
  readonly name: string;

  constructor(
    private readonly primary: Llm,
    private readonly fallback: Llm,
    private readonly logger: LlmLogger,
  ) {
    this.name = `${primary.name}|${fallback.name}`;
  }

  async *generate(request: LlmRequest): AsyncGenerator<LlmEvent> {
    const { signal, callId } = request;
    let yieldedAny = false;
    let primaryError: unknown;
    let failed = false;

    const iterator = this.startPrimary(request);
    try {
      if (iterator instanceof Error) {
        failed = true;
        primaryError = iterator;
      } else {
        for (;;) {
          let next: IteratorResult<LlmEvent>;
          try {
            next = await iterator.next();
          } catch (err) {
            failed = true;
            primaryError = err;
            break;
          }
          if (signal.aborted) return;
          if (next.done) break;
          yield next.value;
          yieldedAny = true;
          if (next.value.type === 'done' || signal.aborted) return;
        }
      }
    } finally {
      if (!(iterator instanceof Error)) await closeQuietly(iterator);
    }

    if (signal.aborted) return;
    if (!failed) {
      // The primary ended without `done`; complete the stream for it.
      yield { type: 'done' };
      return;
    }

    const base = { callId, llm: this.primary.name, reason: describeError(primaryError) };
    if (yieldedAny) {
      this.logger.warn({ ...base, phase: 'mid_reply' }, 'LLM failed mid-reply; ending the reply early');
      request.onFallback?.({ phase: 'mid_reply', reason: base.reason });
      yield { type: 'done' };
      return;
    }
    this.logger.warn({ ...base, fallback: this.fallback.name, phase: 'before_first_event' }, 'LLM failed before answering; using the fallback');
    request.onFallback?.({ phase: 'before_first_event', reason: base.reason });
    yield* this.streamFallback(request);
  }

  private startPrimary(request: LlmRequest): AsyncIterator<LlmEvent> | Error {
    try {
      return this.primary.generate(request)[Symbol.asyncIterator]();
    } catch (err) {
      return err instanceof Error ? err : new Error(String(err));
    }
  }

  /** The fallback's answer; should the fallback fail too, whatever it said stands and the stream ends. */
  private async *streamFallback(request: LlmRequest): AsyncGenerator<LlmEvent> {
    let iterator: AsyncIterator<LlmEvent> | undefined;
    try {
      iterator = this.fallback.generate(request)[Symbol.asyncIterator]();
      for (;;) {
        const next = await iterator.next();
        if (request.signal.aborted) return;
        if (next.done) break;
        yield next.value;
        if (next.value.type === 'done' || request.signal.aborted) return;
      }
    } catch (err) {
      if (request.signal.aborted) return;
      this.logger.warn(
        { callId: request.callId, llm: this.fallback.name, reason: describeError(err) },
        'fallback LLM failed too; ending the reply',
      );
    } finally {
      if (iterator !== undefined) await closeQuietly(iterator);
    }
    if (!request.signal.aborted) yield { type: 'done' };
  }
}

/** Lets an iterator release its resources (e.g. an HTTP request) without its errors escaping. */
async function closeQuietly(iterator: AsyncIterator<LlmEvent>): Promise<void> {
  try {
    await iterator.return?.();
  } catch {
    // Already failed; the failure was handled by the caller.
  }
}
