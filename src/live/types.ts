/**
 * What the live-call mirror stores. Plain data only: the mirror never sees a CallSession, the
 * caller builds a snapshot (cheaply) and hands it over; the latest one per call wins.
 */

export type LiveSpeaker = 'caller' | 'agent';
export type LiveDirection = 'inbound' | 'outbound';

export interface LiveTurn {
  idx: number;
  speaker: LiveSpeaker;
  text: string;
  interrupted: boolean;
  /** Per-turn latency stages, ms (e.g. relative to the turn decision). */
  latency?: Record<string, number>;
}

export interface LiveCallSnapshot {
  callSid: string;
  /** e.g. 'twilio'. */
  provider: string;
  direction: LiveDirection;
  from?: string;
  to?: string;
  /** Our number on the call. */
  number?: string;
  /** ISO 8601. */
  startedAt: string;
  /** The session's phase (listening, thinking, speaking, …) or any state string. */
  state: string;
  turns: LiveTurn[];
}

/** A snapshot as stored in Redis: plus the owning instance and when it was last written. */
export interface MirroredCall extends LiveCallSnapshot {
  /** instanceId of the CallMirror that owns the call. */
  owner: string;
  /** ISO 8601, when the owner flushed this version. */
  updatedAt: string;
}

/** The logging the live modules do; a pino Logger fits. */
export interface LiveLogger {
  warn(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
}

export const silentLogger: LiveLogger = {
  warn() {},
  info() {},
};

/** Parse a stored record; undefined when it is not a MirroredCall. */
export function parseMirroredCall(raw: string): MirroredCall | undefined {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const rec = value as Record<string, unknown>;
  if (
    typeof rec.callSid !== 'string' ||
    typeof rec.owner !== 'string' ||
    typeof rec.startedAt !== 'string' ||
    typeof rec.state !== 'string' ||
    !Array.isArray(rec.turns)
  ) {
    return undefined;
  }
  return value as MirroredCall;
}
