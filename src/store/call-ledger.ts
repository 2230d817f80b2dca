/**
 * What the voice server itself writes to the durable store while calls run: the call's row when
 * it arrives, the recording metadata Twilio reports, and (read) each number's recording policy.
 * The post-call worker writes everything else. None of it may stall a call: the call's row is
 * written in the background (retried, and written again by the worker in any case), and a store
 * that cannot answer the recording policy in time means "don't record" — the safe default.
 */
import type { CallStore } from './call-store.js';
import type { CallInput, RecordingInput } from './types.js';

export interface LedgerLogger {
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface CallLedgerOptions {
  store: CallStore;
  logger: LedgerLogger;
  /** How long a number's recording policy is reused before it is read again; default 10 s. */
  policyTtlMs?: number;
  /** Longest wait for the policy on the webhook path; default 300 ms. */
  policyTimeoutMs?: number;
  /** Attempts at writing a call's row; default 5 (1 s, 2 s, 4 s, 8 s apart). */
  callRowAttempts?: number;
  /** Attempts at storing a recording callback the store refused; default 11 (1 s doubling to 2 min apart). */
  recordingAttempts?: number;
}

export class CallLedger {
  private readonly policies = new Map<string, { recording: boolean; at: number }>();
  private readonly inFlight = new Set<Promise<void>>();
  private closed = false;

  constructor(private readonly options: CallLedgerOptions) {}

  get store(): CallStore {
    return this.options.store;
  }

  /** Writes the arriving call's row in the background (retried with backoff; never throws). */
  callStarted(input: CallInput): void {
    this.inBackground(`call row of ${input.callSid}`, this.options.callRowAttempts ?? 5, () => this.options.store.upsertCall(input), (err) => {
      // Not lost: the post-call worker writes the same row from the call's job.
      this.options.logger.warn({ event: 'call_row_not_written', callSid: input.callSid, err: message(err) }, 'call row not written at call start; the post-call job will write it');
    });
  }

  /** Whether the number's profile asks for recording; false when unknown or unreadable in time. */
  async recordingEnabled(number: string | undefined): Promise<boolean> {
    if (number === undefined || number === '') return false;
    const ttl = this.options.policyTtlMs ?? 10_000;
    const cached = this.policies.get(number);
    if (cached !== undefined && Date.now() - cached.at < ttl) return cached.recording;
    try {
      const profile = await withTimeout(this.options.store.getNumber(number), this.options.policyTimeoutMs ?? 300);
      const recording = profile?.recordingEnabled ?? false;
      this.policies.set(number, { recording, at: Date.now() });
      return recording;
    } catch (err) {
      this.options.logger.warn({ event: 'recording_policy_unavailable', number, err: message(err) }, 'number profile unreadable: not recording this call');
      return cached?.recording ?? false;
    }
  }

  /**
   * Stores a recording callback's metadata (it joins the call whichever arrives first). 'stored'
   * when the store took it; 'deferred' when the store failed and the write goes on in the
   * background (about 17 minutes of retries: a database restart or failover), so the callback is
   * not lost to a brief outage.
   */
  async saveRecording(input: RecordingInput): Promise<'stored' | 'deferred'> {
    try {
      await this.options.store.upsertRecording(input);
      return 'stored';
    } catch (err) {
      this.options.logger.warn({ event: 'recording_deferred', callSid: input.callSid, recordingSid: input.recordingSid, err: message(err) }, 'recording metadata not stored yet; retrying in the background');
      this.inBackground(`recording ${input.recordingSid}`, this.options.recordingAttempts ?? 11, () => this.options.store.upsertRecording(input), (last) => {
        this.options.logger.error({ event: 'recording_not_stored', callSid: input.callSid, recordingSid: input.recordingSid, err: message(last) }, 'recording metadata NOT stored: the store kept failing');
      });
      return 'deferred';
    }
  }

  /** Retries `write` with backoff from 1 s (doubling) up to `attempts` times, in the background. */
  private inBackground(what: string, attempts: number, write: () => Promise<unknown>, onGiveUp: (err: unknown) => void): void {
    const run = async (): Promise<void> => {
      for (let attempt = 1; ; attempt++) {
        try {
          await write();
          return;
        } catch (err) {
          if (attempt >= attempts || this.closed) return onGiveUp(err);
          await sleep(Math.min(1000 * 2 ** (attempt - 1), 120_000));
        }
      }
    };
    const pending = run().catch((err: unknown) => this.options.logger.error({ event: 'ledger_write_failed', what, err: message(err) }, 'store write failed'));
    this.inFlight.add(pending);
    void pending.finally(() => this.inFlight.delete(pending));
  }

  /** Waits (bounded) for call rows still being written. */
  async close(timeoutMs = 5000): Promise<void> {
    this.closed = true;
    await withTimeout(Promise.allSettled([...this.inFlight]), timeoutMs).catch(() => undefined);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
