/** The durable store's records, as the repository (call-store.ts) takes and returns them. */

export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

export type CallDirection = 'inbound' | 'outbound';
/** live → ended (finishCall) → processed (upsertPostCallResult) or failed (markPostCallFailed). */
export type CallStatus = 'live' | 'ended' | 'processed' | 'failed';
export type Speaker = 'caller' | 'agent';

/** The per-turn latency waterfall's stages, ms relative to the turn decision. */
export const LATENCY_STAGES = [
  'speechEnd',
  'turnDecided',
  'asrFinal',
  'llmRequest',
  'llmFirstToken',
  'firstSegmentToTts',
  'ttsFirstAudio',
  'firstFrameSent',
] as const;
export type LatencyStage = (typeof LATENCY_STAGES)[number];
export type TurnLatency = Partial<Record<LatencyStage, number>>;

// --- numbers ----------------------------------------------------------------------------------

/** A number's agent profile as saved: upsertNumber replaces the whole profile. */
export interface NumberInput {
  /** E.164, e.g. +15551234567. */
  number: string;
  name: string;
  scriptPath?: string | null;
  prompt?: string | null;
  voice?: string | null;
  language?: string | null;
  /** Default false. */
  recordingEnabled?: boolean;
  /** Keep the unredacted transcript as well; default false. */
  storeUnredacted?: boolean;
  /** The dispositions the post-call LLM chooses from; default none. */
  dispositions?: string[];
}

export interface NumberProfile {
  number: string;
  name: string;
  scriptPath: string | null;
  prompt: string | null;
  voice: string | null;
  language: string | null;
  recordingEnabled: boolean;
  storeUnredacted: boolean;
  dispositions: string[];
  createdAt: Date;
  updatedAt: Date;
}

// --- calls ------------------------------------------------------------------------------------

/**
 * A call's facts. Inserted as `live`; on a call already stored, each given field replaces the
 * stored one and each omitted (undefined) field keeps it. Direction is fixed by the first write;
 * status and end are never touched here (finishCall and the post-call methods own them).
 */
export interface CallInput {
  callSid: string;
  direction: CallDirection;
  /** Default 'twilio'. */
  provider?: string;
  from?: string | null;
  to?: string | null;
  /** Our number on the call (the called one inbound). */
  number?: string | null;
  /** Default: when first written. */
  startedAt?: Date;
  ownerInstance?: string | null;
}

export interface CallRecord {
  callSid: string;
  provider: string;
  direction: CallDirection;
  from: string | null;
  to: string | null;
  number: string | null;
  startedAt: Date;
  endedAt: Date | null;
  endReason: string | null;
  status: CallStatus;
  postCallError: string | null;
  ownerInstance: string | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface CallEnd {
  /** stop, socket_closed, completed, end_call, max_duration, server_lost, … */
  endReason: string;
  /** Default: now. */
  endedAt?: Date;
}

export interface FinishCallResult {
  call: CallRecord;
  /** This was the call's first end (its end time and reason are the ones given). */
  firstEnd: boolean;
}

// --- turns ------------------------------------------------------------------------------------

/** One speaker's part of turn `idx`. Re-writing (callSid, idx, speaker) replaces the stored row. */
export interface TurnInput {
  idx: number;
  speaker: Speaker;
  /** Unredacted text; leave null unless the number's profile keeps it. */
  text?: string | null;
  redactedText?: string | null;
  /** Offsets from the call's start, ms (rounded). */
  startMs?: number | null;
  endMs?: number | null;
  interrupted?: boolean;
  latency?: TurnLatency | null;
}

export interface StoredTurn {
  idx: number;
  speaker: Speaker;
  text: string | null;
  redactedText: string | null;
  startMs: number | null;
  endMs: number | null;
  interrupted: boolean;
  latency: TurnLatency | null;
}

// --- post-call results ------------------------------------------------------------------------

/** The post-call worker's output for a call; a rerun replaces it (one row per call SID). */
export interface PostCallResultInput {
  callSid: string;
  summary: string;
  disposition?: string | null;
  sentiment?: string | null;
  actionItems?: Json[];
  model?: string | null;
  /** Made by the extractive fallback, not an LLM. Default false. */
  extractive?: boolean;
  /** Redactions applied, by kind. */
  redactionCounts?: Record<string, number>;
  /** Attempts it took (BullMQ attemptsMade + 1). Default 1. */
  attempts?: number;
  /** Default now. */
  processedAt?: Date;
}

export interface PostCallResult {
  callSid: string;
  summary: string;
  disposition: string | null;
  sentiment: string | null;
  actionItems: Json[];
  model: string | null;
  extractive: boolean;
  redactionCounts: Record<string, number>;
  attempts: number;
  processedAt: Date;
  createdAt: Date;
  updatedAt: Date;
}

// --- recordings -------------------------------------------------------------------------------

/** A recording callback's metadata; omitted fields keep what an earlier callback stored. */
export interface RecordingInput {
  recordingSid: string;
  callSid: string;
  url?: string | null;
  durationSeconds?: number | null;
  channels?: number | null;
  /** in-progress, completed, absent, failed (Twilio's RecordingStatus). */
  status?: string | null;
}

export interface Recording {
  recordingSid: string;
  callSid: string;
  url: string | null;
  durationSeconds: number | null;
  channels: number | null;
  status: string | null;
  createdAt: Date;
  updatedAt: Date;
}

// --- reads ------------------------------------------------------------------------------------

export interface CallDetail {
  call: CallRecord;
  /** By idx, the caller's part before the agent's. */
  turns: StoredTurn[];
  result: PostCallResult | null;
  /** Oldest first. */
  recordings: Recording[];
}

export interface ListCallsQuery {
  /** Our number on the call. */
  number?: string;
  /** started_at >= from. */
  from?: Date;
  /** started_at < to. */
  to?: Date;
  disposition?: string;
  direction?: CallDirection;
  status?: CallStatus;
  /** 1…500; default 50. */
  limit?: number;
  /** nextCursor of the previous page. */
  cursor?: string;
}

export interface CallListItem extends CallRecord {
  disposition: string | null;
  sentiment: string | null;
}

export interface CallPage {
  /** Newest first (started_at, then call SID, descending). */
  calls: CallListItem[];
  /** Pass as `cursor` for the next page; null on the last one. */
  nextCursor: string | null;
}
