/**
 * A call session as the post-call job and the live mirror see it: plain data (turns with their
 * latency waterfall, times, parties), built at the moment of writing so later changes don't leak in.
 */
import { waterfall, type CallSession } from '../agent/call-session.js';
import type { LiveCallSnapshot, LiveTurn } from '../live/types.js';
import type { PostCallJob } from './job.js';

export interface CallMeta {
  provider: 'twilio' | 'telnyx';
  direction: 'inbound' | 'outbound';
  from?: string | undefined;
  to?: string | undefined;
  /** Our number on the call: the called one inbound, the calling one outbound. */
  number?: string | undefined;
}

function turnsOf(session: CallSession): LiveTurn[] {
  const turns: LiveTurn[] = [];
  for (const turn of session.turns) {
    turns.push({ idx: turn.index, speaker: 'caller', text: turn.userText, interrupted: false });
    turns.push({ idx: turn.index, speaker: 'agent', text: turn.assistantText, interrupted: turn.interrupted, latency: waterfall(turn) });
  }
  return turns;
}

/** What the job and the live snapshot both say about the call. */
function callOf(session: CallSession, meta: CallMeta) {
  return {
    callSid: session.callId,
    provider: meta.provider,
    direction: meta.direction,
    ...(meta.from === undefined ? {} : { from: meta.from }),
    ...(meta.to === undefined ? {} : { to: meta.to }),
    ...(meta.number === undefined ? {} : { number: meta.number }),
    startedAt: session.startedAt.toISOString(),
    turns: turnsOf(session),
  };
}

export function postCallJobFor(session: CallSession, meta: CallMeta, endedAt = new Date()): PostCallJob {
  return { ...callOf(session, meta), endedAt: endedAt.toISOString(), endReason: session.endReason ?? 'unknown' };
}

export function liveSnapshotFor(session: CallSession, meta: CallMeta): LiveCallSnapshot {
  return { ...callOf(session, meta), state: session.isEnded ? 'ended' : session.state.phase };
}

/** The job the orphan sweeper files for a call whose server died: what the mirror last held. */
export function postCallJobFromSnapshot(snapshot: LiveCallSnapshot, endedAt = new Date()): PostCallJob {
  return {
    callSid: snapshot.callSid,
    provider: snapshot.provider === 'telnyx' ? 'telnyx' : 'twilio',
    direction: snapshot.direction,
    ...(snapshot.from === undefined ? {} : { from: snapshot.from }),
    ...(snapshot.to === undefined ? {} : { to: snapshot.to }),
    ...(snapshot.number === undefined ? {} : { number: snapshot.number }),
    startedAt: snapshot.startedAt,
    endedAt: endedAt.toISOString(),
    endReason: 'server_lost',
    turns: snapshot.turns.map((t) => ({ ...t })),
  };
}
