/**
 * The store's records as the read API shows them: dates as ISO 8601 strings, internal fields left
 * out (the owning instance), and of each turn only its redacted text, never the unredacted one.
 */
import {
  LATENCY_STAGES,
  type CallListItem,
  type CallRecord,
  type NumberProfile,
  type PostCallResult,
  type Recording,
  type StoredTurn,
  type TurnLatency,
} from '../store/types.js';

export function callView(call: CallRecord) {
  return {
    callSid: call.callSid,
    provider: call.provider,
    direction: call.direction,
    from: call.from,
    to: call.to,
    number: call.number,
    startedAt: call.startedAt.toISOString(),
    endedAt: call.endedAt?.toISOString() ?? null,
    endReason: call.endReason,
    status: call.status,
    postCallError: call.postCallError,
    createdAt: call.createdAt.toISOString(),
    updatedAt: call.updatedAt.toISOString(),
  };
}

export function callListItemView(call: CallListItem) {
  return { ...callView(call), disposition: call.disposition, sentiment: call.sentiment };
}

export function turnView(turn: StoredTurn) {
  return {
    idx: turn.idx,
    speaker: turn.speaker,
    redactedText: turn.redactedText,
    startMs: turn.startMs,
    endMs: turn.endMs,
    interrupted: turn.interrupted,
    latency: latencyView(turn.latency),
  };
}

/** The known stages with a finite number, in waterfall order; null when none is. */
function latencyView(latency: TurnLatency | null): TurnLatency | null {
  if (latency === null || typeof latency !== 'object') return null;
  const stages = LATENCY_STAGES.flatMap((stage) => {
    const ms = latency[stage];
    return typeof ms === 'number' && Number.isFinite(ms) ? [[stage, ms] as const] : [];
  });
  return stages.length === 0 ? null : Object.fromEntries(stages);
}

export function resultView(result: PostCallResult | null) {
  if (result === null) return null;
  return {
    summary: result.summary,
    disposition: result.disposition,
    sentiment: result.sentiment,
    actionItems: result.actionItems,
    model: result.model,
    extractive: result.extractive,
    redactionCounts: result.redactionCounts,
    attempts: result.attempts,
    processedAt: result.processedAt.toISOString(),
  };
}

export function recordingView(recording: Recording) {
  return {
    recordingSid: recording.recordingSid,
    url: recording.url,
    durationSeconds: recording.durationSeconds,
    channels: recording.channels,
    status: recording.status,
    createdAt: recording.createdAt.toISOString(),
    updatedAt: recording.updatedAt.toISOString(),
  };
}

export function numberView(profile: NumberProfile) {
  return {
    number: profile.number,
    name: profile.name,
    scriptPath: profile.scriptPath,
    prompt: profile.prompt,
    voice: profile.voice,
    language: profile.language,
    recordingEnabled: profile.recordingEnabled,
    storeUnredacted: profile.storeUnredacted,
    dispositions: profile.dispositions,
    createdAt: profile.createdAt.toISOString(),
    updatedAt: profile.updatedAt.toISOString(),
  };
}
