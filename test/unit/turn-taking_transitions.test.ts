// Guards against turn-taking regressions: the agent talking over callers, coughs cutting it off, or replies to half a sentence.
import { describe, expect, it } from 'vitest';
import { initialTurnState, nextTurn, type TurnConfig, type TurnInput, type TurnState } from '../../src/agent/turn-taking.js';

/** Without the backchannel stage: any speech of the barge-in minimum interrupts at once. */
const config: TurnConfig = { minSpeechMs: 100, bargeInMinSpeechMs: 150, backchannelMaxMs: 0 };

function run(inputs: TurnInput[], start: TurnState = initialTurnState, turnConfig: TurnConfig = config) {
  let state = start;
  const effects: string[] = [];
  for (const input of inputs) {
    const result = nextTurn(state, input, turnConfig);
    state = result.state;
    effects.push(...result.effects);
  }
  return { state, effects };
}

const progress = (speechMs: number): TurnInput => ({ type: 'speech_progress', speechMs, atMs: 0 });
const onset: TurnInput = { type: 'speech_onset', atMs: 0 };
const turnEnd: TurnInput = { type: 'turn_end', speechMs: 800, speechEndMs: 0, atMs: 0 };
const speaking: TurnState = { phase: 'speaking', outputPaused: false, bargeIn: 'none' };

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
    const thinking: TurnState = { phase: 'thinking', outputPaused: false, bargeIn: 'none' };
    expect(run([{ type: 'agent_audio_started' }], thinking).state.phase).toBe('speaking');
    expect(run([{ type: 'agent_audio_started' }, { type: 'agent_done' }], thinking).state.phase).toBe('idle');
  });

  it('drops a pending reply when the caller keeps talking while the agent is thinking', () => {
    const thinking: TurnState = { phase: 'thinking', outputPaused: false, bargeIn: 'none' };
    const result = run([onset, progress(64), progress(128)], thinking);
    expect(result.state.phase).toBe('listening');
    expect(result.effects).toEqual(['cancel_pending_reply', 'open_user_turn']);
  });

  it('pauses output at the first sign of caller speech while the agent speaks', () => {
    const result = run([onset], speaking);
    expect(result.state).toEqual({ phase: 'speaking', outputPaused: true, bargeIn: 'none' });
    expect(result.effects).toEqual(['pause_output']);
  });

  it('resumes the reply when the speech stops before the barge-in minimum (a cough)', () => {
    const result = run([onset, progress(64), { type: 'speech_lost', atMs: 0 }], speaking);
    expect(result.state).toEqual({ phase: 'speaking', outputPaused: false, bargeIn: 'none' });
    expect(result.effects).toEqual(['pause_output', 'resume_output']);
  });

  it('interrupts the reply once caller speech lasts the barge-in minimum, then listens', () => {
    const result = run([onset, progress(96), progress(160)], speaking);
    expect(result.state.phase).toBe('interrupted');
    expect(result.effects).toEqual(['pause_output', 'interrupt_reply', 'open_user_turn']);
    const after = run([{ type: 'interrupt_handled' }], result.state);
    expect(after.state).toEqual({ phase: 'listening', outputPaused: false, bargeIn: 'none' });
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

describe('turn-taking: backchannels while the agent speaks', () => {
  const withBackchannels: TurnConfig = { ...config, backchannelMaxMs: 800 };
  const runB = (inputs: TurnInput[], start: TurnState = speaking) => run(inputs, start, withBackchannels);
  const tentative = runB([onset, progress(96), progress(192)]);

  it('opens the caller turn tentatively at the barge-in minimum, output still paused, reply not cancelled', () => {
    expect(tentative.state).toEqual({ phase: 'speaking', outputPaused: true, bargeIn: 'tentative' });
    expect(tentative.effects).toEqual(['pause_output', 'open_user_turn']);
  });

  it('interrupts when the speech lasts the backchannel maximum, whatever the words', () => {
    const still = runB([progress(500), progress(768)], tentative.state);
    expect(still.effects).toEqual([]);
    const result = runB([progress(800)], still.state);
    expect(result.state).toEqual({ phase: 'interrupted', outputPaused: false, bargeIn: 'none' });
    expect(result.effects).toEqual(['interrupt_reply']);
    // The turn was already open: it goes on and is answered when it ends.
    const answered = runB([{ type: 'interrupt_handled' }, progress(1200), turnEnd], result.state);
    expect(answered.state.phase).toBe('thinking');
    expect(answered.effects).toEqual(['end_user_turn']);
  });

  const gap: TurnInput = { type: 'silence_gap', speechMs: 300, atMs: 0 };

  it('judges the transcript at the first pause in the speech, output still paused', () => {
    const result = runB([gap], tentative.state);
    expect(result.state).toEqual({ phase: 'speaking', outputPaused: true, bargeIn: 'judging' });
    expect(result.effects).toEqual(['judge_backchannel']);
    // The turn may end while the final transcript is awaited: no second judgement, but it is noted.
    const ended = runB([turnEnd], result.state);
    expect(ended.state).toEqual({ phase: 'speaking', outputPaused: true, bargeIn: 'judging_turn_over' });
    expect(ended.effects).toEqual([]);
    // A turn that ends with no pause reported first is judged too.
    expect(runB([turnEnd], tentative.state).effects).toEqual(['judge_backchannel']);
  });

  it('on an interruption judged at a pause, cuts the reply and keeps listening: the turn goes on', () => {
    const judging = runB([gap], tentative.state).state;
    const result = runB([{ type: 'backchannel_verdict', backchannel: false }], judging);
    expect(result.state).toEqual({ phase: 'listening', outputPaused: false, bargeIn: 'none' });
    expect(result.effects).toEqual(['interrupt_reply', 'continue_user_turn']);
    const answered = runB([{ type: 'interrupt_handled' }, progress(700), turnEnd], result.state);
    expect(answered.state.phase).toBe('thinking');
    expect(answered.effects).toEqual(['end_user_turn']);
  });

  it('drops a judged backchannel and resumes the reply where it paused, whether or not the turn ended meanwhile', () => {
    for (const judging of [runB([gap], tentative.state).state, runB([turnEnd], tentative.state).state]) {
      const result = runB([{ type: 'backchannel_verdict', backchannel: true }], judging);
      expect(result.state).toEqual({ phase: 'speaking', outputPaused: false, bargeIn: 'none' });
      expect(result.effects).toEqual(['drop_user_turn', 'resume_output']);
    }
  });

  it('interrupts and answers at once when the judged transcript is more than a backchannel and the turn is over', () => {
    const judging = runB([turnEnd], tentative.state).state;
    const result = runB([{ type: 'backchannel_verdict', backchannel: false }], judging);
    expect(result.state).toEqual({ phase: 'thinking', outputPaused: false, bargeIn: 'none' });
    expect(result.effects).toEqual(['interrupt_reply', 'end_user_turn']);
    // interrupt_reply's own follow-up changes nothing: the turn is being answered.
    expect(runB([{ type: 'interrupt_handled' }], result.state).state.phase).toBe('thinking');
  });

  it('ignores verdicts outside the judging stages', () => {
    expect(runB([{ type: 'backchannel_verdict', backchannel: true }], tentative.state).state).toEqual(tentative.state);
    expect(runB([{ type: 'backchannel_verdict', backchannel: true }], speaking).state).toEqual(speaking);
  });

  describe('the caller speaks again before the verdict', () => {
    for (const [name, judging] of [
      ['after a pause', runB([gap], tentative.state).state],
      ['after the turn ended', runB([turnEnd], tentative.state).state],
    ] as const) {
      it(`${name}: recognizes what follows from now on, back to tentative, to be judged with it`, () => {
        const result = runB([onset, progress(400)], judging);
        expect(result.state).toEqual({ phase: 'speaking', outputPaused: true, bargeIn: 'tentative' });
        expect(result.effects).toEqual(['continue_user_turn']);
        // The stale verdict changes nothing; the next pause (or end of turn) judges it all.
        expect(runB([{ type: 'backchannel_verdict', backchannel: true }], result.state).effects).toEqual([]);
        expect(runB([gap], result.state).effects).toEqual(['judge_backchannel']);
        expect(runB([turnEnd], result.state).effects).toEqual(['judge_backchannel']);
      });
    }

    it('after the turn ended, waits until new speech is as long as a barge-in (a blip changes nothing)', () => {
      const over = runB([turnEnd], tentative.state).state;
      expect(runB([onset, progress(64), { type: 'speech_lost', atMs: 0 }], over).state).toEqual(over);
      expect(runB([onset, progress(64), progress(160)], over).effects).toEqual(['continue_user_turn']);
    });

    it('interrupts at once when that speech reaches the backchannel maximum', () => {
      const judging = runB([gap], tentative.state).state;
      const result = runB([progress(800)], judging);
      expect(result.state).toEqual({ phase: 'interrupted', outputPaused: false, bargeIn: 'none' });
      expect(result.effects).toEqual(['continue_user_turn', 'interrupt_reply']);
    });
  });

  it('drops the tentative turn and resumes when the speech was lost before it counted', () => {
    const result = runB([{ type: 'speech_lost', atMs: 0 }], tentative.state);
    expect(result.state).toEqual({ phase: 'speaking', outputPaused: false, bargeIn: 'none' });
    expect(result.effects).toEqual(['drop_user_turn', 'resume_output']);
  });

  it('keeps the caller turn when the agent finishes meanwhile: an ordinary turn from there', () => {
    expect(runB([{ type: 'agent_done' }], tentative.state).state).toEqual({ phase: 'listening', outputPaused: false, bargeIn: 'none' });
    const judging = runB([turnEnd], tentative.state).state;
    const finished = runB([{ type: 'agent_done' }], judging);
    expect(finished.state.phase).toBe('thinking');
    expect(finished.effects).toEqual(['end_user_turn']);
  });

  it('pauses again and opens a new tentative turn for speech after a resumed backchannel', () => {
    const judging = runB([turnEnd], tentative.state).state;
    const resumed = runB([{ type: 'backchannel_verdict', backchannel: true }], judging).state;
    const again = runB([progress(160)], resumed);
    expect(again.state).toEqual({ phase: 'speaking', outputPaused: true, bargeIn: 'tentative' });
    expect(again.effects).toEqual(['pause_output', 'open_user_turn']);
  });

  it('interrupts at once on speech that arrives already longer than the maximum', () => {
    const result = runB([progress(900)]);
    expect(result.effects).toEqual(['interrupt_reply', 'open_user_turn']);
  });
});
