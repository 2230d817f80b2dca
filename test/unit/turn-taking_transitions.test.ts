// Guards against turn-taking regressions: the agent talking over callers, coughs cutting it off, or replies to half a sentence.
import { describe, expect, it } from 'vitest';
import { initialTurnState, nextTurn, type TurnInput, type TurnState } from '../../src/agent/turn-taking.js';

const config = { minSpeechMs: 100, bargeInMinSpeechMs: 150 };

function run(inputs: TurnInput[], start: TurnState = initialTurnState) {
  let state = start;
  const effects: string[] = [];
  for (const input of inputs) {
    const result = nextTurn(state, input, config);
    state = result.state;
    effects.push(...result.effects);
  }
  return { state, effects };
}

const progress = (speechMs: number): TurnInput => ({ type: 'speech_progress', speechMs, atMs: 0 });
const onset: TurnInput = { type: 'speech_onset', atMs: 0 };
const turnEnd: TurnInput = { type: 'turn_end', speechMs: 800, speechEndMs: 0, atMs: 0 };
const speaking: TurnState = { phase: 'speaking', outputPaused: false };

describe('turn-taking state machine', () => {
  it('opens a caller turn only once speech reaches the minimum duration', () => {
    expect(run([onset, progress(32)]).state.phase).toBe('idle');
    const opened = run([onset, progress(32), progress(128)]);
    expect(opened.state.phase).toBe('listening');
    expect(opened.effects).toEqual(['open_user_turn']);
  });

  it('ends the caller turn on turn_end and starts thinking', () => {
    const result = run([onset, progress(128), turnEnd]);
    expect(result.state.phase).toBe('thinking');
    expect(result.effects).toEqual(['open_user_turn', 'end_user_turn']);
  });

  it('moves from thinking to speaking when the first reply audio goes out, and back to idle when done', () => {
    const thinking: TurnState = { phase: 'thinking', outputPaused: false };
    expect(run([{ type: 'agent_audio_started' }], thinking).state.phase).toBe('speaking');
    expect(run([{ type: 'agent_audio_started' }, { type: 'agent_done' }], thinking).state.phase).toBe('idle');
  });

  it('drops a pending reply when the caller keeps talking while the agent is thinking', () => {
    const thinking: TurnState = { phase: 'thinking', outputPaused: false };
    const result = run([onset, progress(64), progress(128)], thinking);
    expect(result.state.phase).toBe('listening');
    expect(result.effects).toEqual(['cancel_pending_reply', 'open_user_turn']);
  });

  it('pauses output at the first sign of caller speech while the agent speaks', () => {
    const result = run([onset], speaking);
    expect(result.state).toEqual({ phase: 'speaking', outputPaused: true });
    expect(result.effects).toEqual(['pause_output']);
  });

  it('resumes the reply when the speech stops before the barge-in minimum (a cough)', () => {
    const result = run([onset, progress(64), { type: 'speech_lost', atMs: 0 }], speaking);
    expect(result.state).toEqual({ phase: 'speaking', outputPaused: false });
    expect(result.effects).toEqual(['pause_output', 'resume_output']);
  });

  it('interrupts the reply once caller speech lasts the barge-in minimum, then listens', () => {
    const result = run([onset, progress(96), progress(160)], speaking);
    expect(result.state.phase).toBe('interrupted');
    expect(result.effects).toEqual(['pause_output', 'interrupt_reply', 'open_user_turn']);
    const after = run([{ type: 'interrupt_handled' }], result.state);
    expect(after.state).toEqual({ phase: 'listening', outputPaused: false });
  });

  it('does not interrupt on speech shorter than the barge-in minimum even when it reaches the turn minimum', () => {
    const result = run([onset, progress(128)], speaking);
    expect(result.state.phase).toBe('speaking');
    expect(result.effects).not.toContain('interrupt_reply');
  });

  it('replies to the interrupting utterance when it ends', () => {
    const interrupted = run([onset, progress(200)], speaking).state;
    const result = run([{ type: 'interrupt_handled' }, progress(500), turnEnd], interrupted);
    expect(result.state.phase).toBe('thinking');
    expect(result.effects).toEqual(['end_user_turn']);
  });

  it('ignores agent_done and interrupt_handled in phases where they mean nothing', () => {
    expect(run([{ type: 'agent_done' }]).state).toEqual(initialTurnState);
    expect(run([{ type: 'interrupt_handled' }]).state).toEqual(initialTurnState);
    expect(run([turnEnd]).state).toEqual(initialTurnState);
  });

  it('lets the greeting start speaking from idle', () => {
    expect(run([{ type: 'agent_audio_started' }]).state.phase).toBe('speaking');
  });
});
