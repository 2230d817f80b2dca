/**
 * Turn-taking as an explicit, pure state machine: idle · listening · thinking · speaking ·
 * interrupted. The session feeds it speech events (from endpointing) and agent-output events, and
 * performs the effects it returns. No I/O, no clocks: every transition is a unit test away.
 *
 * Barge-in is two-stage so that a cough does not cut the agent off, yet a real interruption is
 * heard at once: at speech onset the output is paused (`clear` sent, unplayed audio kept); only
 * speech lasting `bargeInMinSpeechMs` interrupts the reply; shorter speech resumes it where it was.
 */
import type { EndpointEvent } from './endpointing.js';

export type TurnPhase = 'idle' | 'listening' | 'thinking' | 'speaking' | 'interrupted';

export interface TurnState {
  phase: TurnPhase;
  /** Output held after a speech onset while the agent speaks, pending the barge-in decision. */
  outputPaused: boolean;
}

export type TurnInput =
  | EndpointEvent
  /** The first audio of an agent utterance (reply or greeting) went out. */
  | { type: 'agent_audio_started' }
  /** The agent utterance is over: fully played, or it produced no audio. */
  | { type: 'agent_done' }
  /** The session finished the interruption effects. */
  | { type: 'interrupt_handled' };

export type TurnEffect =
  /** Start recognizing the caller's turn (with pre-roll audio). */
  | 'open_user_turn'
  /** The caller's turn is over: finalize recognition and reply. */
  | 'end_user_turn'
  /** A reply was being prepared but the caller went on: drop it, keep the caller's words. */
  | 'cancel_pending_reply'
  /** Hold outbound audio and clear the far end's buffer, keeping what was not yet heard. */
  | 'pause_output'
  /** The speech was too short to be an interruption: play the held audio. */
  | 'resume_output'
  /** Barge-in: cancel the reply, drop unplayed audio, keep only what the caller heard. */
  | 'interrupt_reply';

export interface TurnConfig {
  minSpeechMs: number;
  bargeInMinSpeechMs: number;
}

export interface Transition {
  state: TurnState;
  effects: TurnEffect[];
}

export const initialTurnState: TurnState = { phase: 'idle', outputPaused: false };

const stay = (state: TurnState): Transition => ({ state, effects: [] });
const go = (state: TurnState, phase: TurnPhase, effects: TurnEffect[] = [], outputPaused = state.outputPaused): Transition => ({
  state: { phase, outputPaused },
  effects,
});

export function nextTurn(state: TurnState, input: TurnInput, config: TurnConfig): Transition {
  switch (input.type) {
    case 'speech_onset':
      // Only output needs an instant reaction; a turn opens once speech is confirmed.
      if (state.phase === 'speaking' && !state.outputPaused) return go(state, 'speaking', ['pause_output'], true);
      return stay(state);
    case 'speech_progress':
      return onSpeechProgress(state, input.speechMs, config);
    case 'silence_gap':
    case 'speech_lost':
      // Speech stopped before it became an interruption (a cough, an "mhm" too short to count).
      if (state.phase === 'speaking' && state.outputPaused) return go(state, 'speaking', ['resume_output'], false);
      return stay(state);
    case 'turn_end':
      if (state.phase === 'listening' || state.phase === 'interrupted') return go(state, 'thinking', ['end_user_turn']);
      if (state.phase === 'speaking' && state.outputPaused) return go(state, 'speaking', ['resume_output'], false);
      return stay(state);
    case 'agent_audio_started':
      if (state.phase === 'thinking' || state.phase === 'idle') return go(state, 'speaking', [], false);
      return stay(state);
    case 'agent_done':
      if (state.phase === 'speaking' || state.phase === 'thinking') return go(state, 'idle', [], false);
      return stay(state);
    case 'interrupt_handled':
      if (state.phase === 'interrupted') return go(state, 'listening', [], false);
      return stay(state);
    default:
      return assertNever(input);
  }
}

function onSpeechProgress(state: TurnState, speechMs: number, config: TurnConfig): Transition {
  switch (state.phase) {
    case 'idle':
      if (speechMs < config.minSpeechMs) return stay(state);
      return go(state, 'listening', ['open_user_turn']);
    case 'thinking':
      // The caller kept talking after we decided the turn was over: their words so far are kept
      // and joined with what follows; the reply for the shorter version is dropped unheard.
      if (speechMs < config.minSpeechMs) return stay(state);
      return go(state, 'listening', ['cancel_pending_reply', 'open_user_turn']);
    case 'speaking':
      if (speechMs < config.bargeInMinSpeechMs) {
        return state.outputPaused ? stay(state) : go(state, 'speaking', ['pause_output'], true);
      }
      return go(state, 'interrupted', ['interrupt_reply', 'open_user_turn'], false);
    case 'listening':
    case 'interrupted':
      return stay(state);
    default:
      return assertNever(state.phase);
  }
}

function assertNever(value: never): never {
  throw new Error(`unhandled turn input: ${JSON.stringify(value)}`);
}
