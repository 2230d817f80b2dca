/**
 * The post-call job contract: what the server hands the `post-call` queue when a call ends, and
 * what a worker accepts from it. One job per call, its BullMQ job id derived from the call SID
 * (see postCallJobId). Validation is hand-written (no schema library in the tree) and reports
 * every problem at once, each with its path, e.g. `turns[3].speaker must be "caller" or "agent"`.
 */

/** The BullMQ queue every post-call job goes to. */
export const POST_CALL_QUEUE = 'post-call';
/** The BullMQ job name of a post-call job (the queue holds only these). */
export const POST_CALL_JOB_NAME = 'post-call';

export type PostCallProvider = 'twilio' | 'telnyx';
export type PostCallDirection = 'inbound' | 'outbound';
export type PostCallSpeaker = 'caller' | 'agent';

export interface PostCallTurn {
  /** Turn number; a turn has at most one caller part and one agent part. */
  idx: number;
  speaker: PostCallSpeaker;
  /** What was said, unredacted (the worker redacts before storing). */
  text: string;
  /** The agent was barged in on (or the caller cut off). */
  interrupted: boolean;
  /** The per-turn latency waterfall, ms (stage → ms; see LATENCY_STAGES in src/store/types.ts). */
  latency?: Record<string, number>;
  /** Offsets from the call's start, ms. */
  startMs?: number;
  endMs?: number;
}

export interface PostCallJob {
  callSid: string;
  provider: PostCallProvider;
  direction: PostCallDirection;
  from?: string;
  to?: string;
  /** Our number on the call (the called one inbound): selects the profile (dispositions, store_unredacted). */
  number?: string;
  /** ISO 8601. */
  startedAt: string;
  /** ISO 8601. */
  endedAt: string;
  /** stop, socket_closed, completed, end_call, max_duration, server_lost, … */
  endReason: string;
  turns: PostCallTurn[];
}

export class InvalidPostCallJobError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid post-call job: ${problems.join('; ')}`);
    this.name = 'InvalidPostCallJobError';
  }
}

const MAX_SID_LENGTH = 256;
const MAX_TURNS = 20_000;
const MAX_TEXT_CHARS = 100_000;
const ISO_DATE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})$/;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Checks an untrusted value (a queue payload, a test's object) against the contract and returns
 * a clean copy (only the contract's fields). Throws InvalidPostCallJobError listing every problem.
 */
export function parsePostCallJob(value: unknown): PostCallJob {
  const problems: string[] = [];
  if (!isRecord(value)) throw new InvalidPostCallJobError(['the job must be an object']);

  const str = (key: string, opts: { optional?: boolean; max?: number } = {}): string | undefined => {
    const v = value[key];
    if (v === undefined && opts.optional === true) return undefined;
    if (typeof v !== 'string' || v.trim() === '') {
      problems.push(`${key} must be a non-empty string${opts.optional === true ? ' when given' : ''}`);
      return undefined;
    }
    if (opts.max !== undefined && v.length > opts.max) problems.push(`${key} must be at most ${opts.max} characters`);
    return v;
  };
  const oneOf = <T extends string>(key: string, allowed: readonly T[]): T | undefined => {
    const v = value[key];
    if (typeof v === 'string' && (allowed as readonly string[]).includes(v)) return v as T;
    problems.push(`${key} must be ${allowed.map((a) => JSON.stringify(a)).join(' or ')}`);
    return undefined;
  };
  const isoDate = (key: string): string | undefined => {
    const v = str(key);
    if (v === undefined) return undefined;
    if (!ISO_DATE.test(v) || Number.isNaN(Date.parse(v))) {
      problems.push(`${key} must be an ISO 8601 date-time (e.g. 2024-05-01T12:00:00.000Z), got ${JSON.stringify(v)}`);
      return undefined;
    }
    return v;
  };

  const callSid = str('callSid', { max: MAX_SID_LENGTH });
  const provider = oneOf('provider', ['twilio', 'telnyx'] as const);
  const direction = oneOf('direction', ['inbound', 'outbound'] as const);
  const from = str('from', { optional: true, max: 64 });
  const to = str('to', { optional: true, max: 64 });
  const number = str('number', { optional: true, max: 64 });
  const startedAt = isoDate('startedAt');
  const endedAt = isoDate('endedAt');
  const endReason = str('endReason', { max: 64 });
  if (startedAt !== undefined && endedAt !== undefined && Date.parse(endedAt) < Date.parse(startedAt)) {
    problems.push('endedAt must not be before startedAt');
  }

  const turns: PostCallTurn[] = [];
  const rawTurns = value.turns;
  if (!Array.isArray(rawTurns)) {
    problems.push('turns must be an array (empty when nothing was said)');
  } else if (rawTurns.length > MAX_TURNS) {
    problems.push(`turns must hold at most ${MAX_TURNS} entries`);
  } else {
    const seen = new Set<string>();
    rawTurns.forEach((raw: unknown, i) => {
      const at = `turns[${i}]`;
      if (!isRecord(raw)) {
        problems.push(`${at} must be an object`);
        return;
      }
      const before = problems.length;
      const { idx, speaker, text, interrupted, latency, startMs, endMs } = raw;
      if (typeof idx !== 'number' || !Number.isInteger(idx) || idx < 0) problems.push(`${at}.idx must be a non-negative integer`);
      if (speaker !== 'caller' && speaker !== 'agent') problems.push(`${at}.speaker must be "caller" or "agent"`);
      if (typeof text !== 'string') problems.push(`${at}.text must be a string`);
      else if (text.length > MAX_TEXT_CHARS) problems.push(`${at}.text must be at most ${MAX_TEXT_CHARS} characters`);
      if (typeof interrupted !== 'boolean') problems.push(`${at}.interrupted must be a boolean`);
      let cleanLatency: Record<string, number> | undefined;
      if (latency !== undefined) {
        if (!isRecord(latency)) problems.push(`${at}.latency must be an object of stage → ms`);
        else {
          cleanLatency = {};
          for (const [stage, ms] of Object.entries(latency)) {
            if (typeof ms !== 'number' || !Number.isFinite(ms)) problems.push(`${at}.latency.${stage} must be a finite number`);
            else cleanLatency[stage] = ms;
          }
        }
      }
      for (const [key, ms] of [['startMs', startMs], ['endMs', endMs]] as const) {
        if (ms !== undefined && (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0)) problems.push(`${at}.${key} must be a non-negative number when given`);
      }
      if (problems.length > before) return;
      const key = `${String(idx)}:${String(speaker)}`;
      if (seen.has(key)) {
        problems.push(`${at} repeats idx ${String(idx)} for the ${String(speaker)}`);
        return;
      }
      seen.add(key);
      turns.push({
        idx: idx as number,
        speaker: speaker as PostCallSpeaker,
        text: text as string,
        interrupted: interrupted as boolean,
        ...(cleanLatency === undefined ? {} : { latency: cleanLatency }),
        ...(startMs === undefined ? {} : { startMs: startMs as number }),
        ...(endMs === undefined ? {} : { endMs: endMs as number }),
      });
    });
  }

  if (problems.length > 0) throw new InvalidPostCallJobError(problems);
  return {
    callSid: callSid!,
    provider: provider!,
    direction: direction!,
    ...(from === undefined ? {} : { from }),
    ...(to === undefined ? {} : { to }),
    ...(number === undefined ? {} : { number }),
    startedAt: startedAt!,
    endedAt: endedAt!,
    endReason: endReason!,
    turns,
  };
}

/** The call SID a payload names, if any (for marking a call whose job is malformed). */
export function callSidOf(value: unknown): string | undefined {
  return isRecord(value) && typeof value.callSid === 'string' && value.callSid.trim() !== '' ? value.callSid : undefined;
}

const PLAIN_JOB_ID = /^[A-Za-z0-9_.-]+$/;
const ENCODED_PREFIX = 'sid~';

/**
 * The BullMQ job id of a call's job: the call SID itself (Twilio's `CA…` always), or, for SIDs
 * BullMQ refuses as custom ids (all digits, containing `:` as Telnyx's `v3:…` call control ids
 * do, or other characters), `sid~` + the SID in base64url. One-to-one, so one call ↔ one job id.
 */
export function postCallJobId(callSid: string): string {
  if (PLAIN_JOB_ID.test(callSid) && !/^\d+$/.test(callSid)) return callSid;
  return ENCODED_PREFIX + Buffer.from(callSid, 'utf8').toString('base64url');
}
