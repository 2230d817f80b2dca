/**
 * Typed failures of LLM engines, so callers (the fallback wrapper, logs, metrics) can tell an
 * upstream HTTP error from a stall or a malformed stream without parsing messages.
 */

/** The logging surface LLM engines use; a pino logger satisfies it. */
export interface LlmLogger {
  warn(obj: Record<string, unknown>, msg: string): void;
  debug(obj: Record<string, unknown>, msg: string): void;
}

export abstract class LlmError extends Error {
  abstract readonly kind: 'http' | 'timeout' | 'protocol' | 'connection';
}

/** The endpoint answered with a non-2xx status. */
export class LlmHttpError extends LlmError {
  readonly kind = 'http';
  constructor(
    readonly status: number,
    /** The start of the response body (at most a few hundred characters). */
    readonly bodyExcerpt: string,
  ) {
    super(`LLM endpoint answered HTTP ${status}${bodyExcerpt === '' ? '' : `: ${bodyExcerpt}`}`);
    this.name = 'LlmHttpError';
  }
}

export type LlmTimeoutPhase = 'first_token' | 'idle';

/** No first token within the first-token timeout, or the stream stalled for longer than the idle timeout. */
export class LlmTimeoutError extends LlmError {
  readonly kind = 'timeout';
  constructor(
    readonly phase: LlmTimeoutPhase,
    readonly timeoutMs: number,
  ) {
    super(
      phase === 'first_token'
        ? `LLM produced no first token within ${timeoutMs} ms`
        : `LLM stream stalled for more than ${timeoutMs} ms`,
    );
    this.name = 'LlmTimeoutError';
  }
}

/** The endpoint answered 2xx but the stream was not a valid chat-completion stream. */
export class LlmProtocolError extends LlmError {
  readonly kind = 'protocol';
  constructor(message: string) {
    super(message);
    this.name = 'LlmProtocolError';
  }
}

/** The endpoint could not be reached (refused, reset, DNS, TLS) or dropped the connection. */
export class LlmConnectionError extends LlmError {
  readonly kind = 'connection';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LlmConnectionError';
  }
}

/** A short, single-line description of any thrown value, for logs. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return String(err);
}
