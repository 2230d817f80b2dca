/** The live calls of this process, by call SID, and how each ended call should go on. */
import type { CallEnding } from '../telephony/transport.js';
import type { CallSession } from './call-session.js';

const ENDING_TTL_MS = 120_000;

export class SessionRegistry {
  private readonly sessions = new Map<string, CallSession>();
  private readonly endings = new Map<string, { ending: CallEnding; at: number }>();
  private readonly endedListeners = new Set<(session: CallSession) => void>();
  private readonly startedListeners = new Set<(session: CallSession) => void>();

  /** Called with each session when it starts (tests, metrics). Returns an unsubscribe function. */
  onStarted(listener: (session: CallSession) => void): () => void {
    this.startedListeners.add(listener);
    return () => this.startedListeners.delete(listener);
  }

  /** Called with each session once it has ended: where post-call work hooks in. */
  onEnded(listener: (session: CallSession) => void): () => void {
    this.endedListeners.add(listener);
    return () => this.endedListeners.delete(listener);
  }

  add(session: CallSession): void {
    const previous = this.sessions.get(session.callId);
    // A second stream for the same call replaces the first (Twilio allows one bidirectional stream).
    previous?.end('replaced_by_new_stream');
    this.sessions.set(session.callId, session);
    for (const listener of this.startedListeners) listener(session);
    void session.endedPromise.then(() => {
      if (this.sessions.get(session.callId) === session) this.sessions.delete(session.callId);
      for (const listener of this.endedListeners) listener(session);
    });
  }

  get(callSid: string): CallSession | undefined {
    return this.sessions.get(callSid);
  }

  get size(): number {
    return this.sessions.size;
  }

  all(): CallSession[] {
    return [...this.sessions.values()];
  }

  recordEnding(callSid: string, ending: CallEnding): void {
    const now = Date.now();
    for (const [sid, entry] of this.endings) if (now - entry.at > ENDING_TTL_MS) this.endings.delete(sid);
    this.endings.set(callSid, { ending, at: now });
  }

  /** The server closed this call's stream and Twilio has not yet asked what comes next. */
  hasPendingEnding(callSid: string): boolean {
    return this.endings.has(callSid);
  }

  /** How the call goes on once its stream closed; read once. */
  takeEnding(callSid: string): CallEnding | undefined {
    const entry = this.endings.get(callSid);
    this.endings.delete(callSid);
    return entry?.ending;
  }
}
