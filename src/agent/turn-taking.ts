/**
 * Turn-taking as an explicit, pure state machine: idle · listening · thinking · speaking ·
 * interrupted. The session feeds it speech events (from endpointing) and agent-output events, and
 * performs the effects it returns. No I/O, no clocks: every transition is a unit test away.
 *
 * Barge-in is staged so that a cough or an "mhm" does not cut the agent off, yet a real
 * interruption is heard at once: at speech onset the output is paused (`clear` sent, unplayed audio
 * kept), so the caller hears the agent stop within a chunk or two either way.
 *   - Speech shorter than `bargeInMinSpeechMs` (a cough, a click) resumes the reply where it was.
 *   - Longer speech opens the caller's turn (recognition starts) as a *tentative* barge-in. It
 *     becomes an interruption — the reply is cancelled and cut where it was heard — once the
 *     speech lasts `backchannelMaxMs`. If it pauses first (`silence_gap`, ~0.1 s), the session
 *     judges the final transcript of what was said so far: a backchannel ("yeah", "mhm", "i see")
 *     is dropped and the reply resumes where it paused, a moment after the word; anything else
 *     interrupts, and the caller's turn goes on (what they say next joins those words) until its
 *     end is detected as usual. If the caller speaks again before the verdict, what follows is
 *     recognized from then on and judged together with the earlier words at the next pause;
 *     speech that reaches `backchannelMaxMs` in all interrupts. (Partial transcripts do not decide: a streaming
 *     recognizer's first guesses at a short word are often a different word.)
 *   - `backchannelMaxMs` of 0 turns the tentative stage off: speech of `bargeInMinSpeechMs`
 *     interrupts at once.
 */
import type { EndpointEvent } from './endpointing.js';

export type TurnPhase = 'idle' | 'listening' | 'thinking' | 'speaking' | 'interrupted';

export interface TurnState {
  phase: TurnPhase;
  /** Output held after a speech onset while the agent speaks, pending the barge-in decision. */
  outputPaused: boolean;
  /**
   * While the agent speaks: `tentative` — caller speech long enough to be a barge-in is being
   * recognized, not yet known to be more than a backchannel; `judging` — it paused and the session
   * is classifying its final transcript; `judging_turn_over` — the same, and meanwhile the caller's
   * turn ended (so an interruption is answered at once).
   */
  bargeIn: 'none' | 'tentative' | 'judging' | 'judging_turn_over';
}

export type TurnInput =
  | EndpointEvent
  /** The first audio of an agent utterance (reply or greeting) went out. */
  | { type: 'agent_audio_started' }
  /** The agent utterance is over: fully played, or it produced no audio. */
  | { type: 'agent_done' }
  /** The session finished the interruption effects. */
  | { type: 'interrupt_handled' }
  /** The session's judgement of a tentative barge-in's final transcript. */
  | { type: 'backchannel_verdict'; backchannel: boolean };

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
  | 'interrupt_reply'
  /** A tentative barge-in's speech paused: finish its recognition and judge the transcript (→ backchannel_verdict). */
  | 'judge_backchannel'
  /** The judged words were an interruption and the caller's turn goes on: recognize what follows and join it to them. */
  | 'continue_user_turn'
  /** The caller's tentative turn was only a backchannel (or a blip): discard it, reply to nothing. */
  | 'drop_user_turn';

export interface TurnConfig {
  minSpeechMs: number;
  bargeInMinSpeechMs: number;
  /** Caller speech this long while the agent speaks interrupts whatever it says; 0: no backchannel stage. */
  backchannelMaxMs: number;
}

export interface Transition {
  state: TurnState;
  effects: TurnEffect[];
}

export const initialTurnState: TurnState = { phase: 'idle', outputPaused: false, bargeIn: 'none' };

const stay = (state: TurnState): Transition => ({ state, effects: [] });
/** A transition; the barge-in stage ends with any change of phase unless given. */
const go = (
  state: TurnState,
  phase: TurnPhase,
  effects: TurnEffect[] = [],
  outputPaused = state.outputPaused,
  bargeIn: TurnState['bargeIn'] = phase === state.phase ? state.bargeIn : 'none',
): Transition => ({
  state: { phase, outputPaused, bargeIn },
  effects,
});

export function nextTurn(state: TurnState, input: TurnInput, config: TurnConfig): Transition {
  const speaking = state.phase === 'speaking';
  if (speaking && state.bargeIn !== 'none') return duringBargeIn(state, input, config);
  switch (input.type) {
    case 'speech_onset':
      // Only output needs an instant reaction; a turn opens once speech is confirmed.
      if (speaking && !state.outputPaused) return go(state, 'speaking', ['pause_output'], true);
      return stay(state);
    case 'speech_progress':
      return onSpeechProgress(state, input.speechMs, config);
    case 'silence_gap':
    case 'speech_lost':
      // Speech stopped before it became a barge-in (a cough).
      if (speaking && state.outputPaused) return go(state, 'speaking', ['resume_output'], false);
      return stay(state);
    case 'turn_end':
      if (state.phase === 'listening' || state.phase === 'interrupted') return go(state, 'thinking', ['end_user_turn']);
      if (speaking && state.outputPaused) return go(state, 'speaking', ['resume_output'], false);
      return stay(state);
    case 'backchannel_verdict':
      return stay(state);
    case 'agent_audio_started':
      if (state.phase === 'thinking' || state.phase === 'idle') return go(state, 'speaking', [], false);
      return stay(state);
    case 'agent_done':
      if (speaking || state.phase === 'thinking') return go(state, 'idle', [], false);
      return stay(state);
    case 'interrupt_handled':
      if (state.phase === 'interrupted') return go(state, 'listening', [], false);
      return stay(state);
    default:
      return assertNever(input);
  }
}

/** The agent speaks, output paused, and the caller's turn is open: is it a backchannel or an interruption? */
function duringBargeIn(state: TurnState, input: TurnInput, config: TurnConfig): Transition {
  const resume = (): Transition => go(state, 'speaking', ['drop_user_turn', 'resume_output'], false, 'none');
  // The judged words head the caller's turn, which goes on (recognized afresh from the pause).
  const interruptAndContinue = (): Transition => go(state, 'listening', ['interrupt_reply', 'continue_user_turn'], false);
  switch (state.bargeIn) {
    case 'tentative':
      switch (input.type) {
        case 'speech_progress':
          return input.speechMs >= config.backchannelMaxMs ? go(state, 'interrupted', ['interrupt_reply'], false) : stay(state);
        // A backchannel is one short burst: at its first pause, judge what was said.
        case 'silence_gap':
          return go(state, 'speaking', ['judge_backchannel'], true, 'judging');
        case 'turn_end':
          return go(state, 'speaking', ['judge_backchannel'], true, 'judging_turn_over');
        case 'speech_lost':
          return resume();
        // The agent finished meanwhile: an ordinary caller turn from here.
        case 'agent_done':
          return go(state, 'listening', [], false);
        default:
          return stay(state);
      }
    case 'judging':
    case 'judging_turn_over':
      switch (input.type) {
        // The caller went on before the verdict ("okay … so what now", "uh … huh"): what they say is
        // recognized from here on, joined to the words being judged, and all of it is judged
        // together at the next pause (the pending verdict is dropped); at the maximum it interrupts.
        // After the turn ended, new speech counts once it is as long as a barge-in (a blip must not
        // take the judged words with it when it is dropped).
        case 'speech_progress':
          if (input.speechMs < config.bargeInMinSpeechMs) return stay(state);
          if (input.speechMs >= config.backchannelMaxMs) return go(state, 'interrupted', ['continue_user_turn', 'interrupt_reply'], false);
          return go(state, 'speaking', ['continue_user_turn'], true, 'tentative');
        case 'turn_end':
          return go(state, 'speaking', [], true, 'judging_turn_over');
        case 'backchannel_verdict':
          if (input.backchannel) return resume();
          // An interruption: answer at once if the caller's turn is over, else hear them out.
          return state.bargeIn === 'judging_turn_over' ? go(state, 'thinking', ['interrupt_reply', 'end_user_turn'], false) : interruptAndContinue();
        case 'agent_done':
          return go(state, 'thinking', ['end_user_turn'], false);
        default:
          return stay(state);
      }
    case 'none':
      throw new Error('duringBargeIn called with no barge-in');
    default:
      return assertNever(state.bargeIn);
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
      return onSpeechWhileSpeaking(state, speechMs, config);
    case 'listening':
    case 'interrupted':
      return stay(state);
    default:
      return assertNever(state.phase);
  }
}

function onSpeechWhileSpeaking(state: TurnState, speechMs: number, config: TurnConfig): Transition {
  const pause: TurnEffect[] = state.outputPaused ? [] : ['pause_output'];
  if (speechMs < config.bargeInMinSpeechMs) return state.outputPaused ? stay(state) : go(state, 'speaking', pause, true);
  if (config.backchannelMaxMs <= config.bargeInMinSpeechMs || speechMs >= config.backchannelMaxMs) {
    return go(state, 'interrupted', ['interrupt_reply', 'open_user_turn'], false);
  }
  return go(state, 'speaking', [...pause, 'open_user_turn'], true, 'tentative');
}

function assertNever(value: never): never {
  throw new Error(`unhandled turn input: ${JSON.stringify(value)}`);
}
