// Guards against endpointing that cuts callers off mid-pause, opens turns on clicks, or never ends a turn.
import { describe, expect, it } from 'vitest';
import { Endpointer, type EndpointEvent } from '../../src/agent/endpointing.js';

const config = { threshold: 0.5, minSpeechMs: 100, endOfTurnSilenceMs: 500, gapMs: 96 };
const CHUNK = 32;

function feed(probabilities: number[]): EndpointEvent[] {
  const endpointer = new Endpointer(config);
  return probabilities.flatMap((p) => endpointer.push(p, CHUNK));
}

const repeat = (p: number, n: number): number[] => Array.from({ length: n }, () => p);

describe('endpointing', () => {
  it('reports onset at the first chunk over threshold', () => {
    const events = feed([0.1, 0.1, 0.9]);
    expect(events[0]).toEqual({ type: 'speech_onset', atMs: 64 });
  });

  it('ends the turn after the configured silence, not before', () => {
    const speech = repeat(0.9, 10);
    const almost = feed([...speech, ...repeat(0.05, 15)]);
    expect(almost.some((e) => e.type === 'turn_end')).toBe(false);
    const events = feed([...speech, ...repeat(0.05, 16)]);
    const end = events.find((e) => e.type === 'turn_end');
    expect(end).toMatchObject({ type: 'turn_end', speechMs: 320, speechEndMs: 320 });
  });

  it('treats a short dip inside speech as part of it (hysteresis) and keeps counting', () => {
    const events = feed([...repeat(0.9, 5), 0.4, ...repeat(0.9, 5)]);
    const last = events.filter((e) => e.type === 'speech_progress').pop();
    expect(last).toMatchObject({ speechMs: 11 * CHUNK });
  });

  it('reports a blip shorter than the minimum speech as lost, never as a turn', () => {
    const events = feed([0.9, 0.9, ...repeat(0.05, 20)]);
    expect(events.map((e) => e.type)).toEqual(['speech_onset', 'speech_progress', 'speech_progress', 'speech_lost']);
  });

  it('reports one silence gap per pause inside confirmed speech', () => {
    const events = feed([...repeat(0.9, 5), ...repeat(0.05, 6), ...repeat(0.9, 3), ...repeat(0.05, 4)]);
    expect(events.filter((e) => e.type === 'silence_gap')).toHaveLength(2);
  });

  it('starts a new turn after a finished one', () => {
    const events = feed([...repeat(0.9, 5), ...repeat(0.05, 16), ...repeat(0.9, 5)]);
    expect(events.filter((e) => e.type === 'speech_onset')).toHaveLength(2);
  });

  it('reports a tentative onset at the hysteresis threshold but counts no speech until the full threshold', () => {
    const events = feed([0.4, 0.4, 0.4, 0.4, 0.4, ...repeat(0.05, 4)]);
    expect(events.map((e) => e.type)).toEqual(['speech_onset', 'speech_lost']);
    const voiced = feed([0.4, 0.9, 0.9, 0.9]);
    expect(voiced[0]).toEqual({ type: 'speech_onset', atMs: 0 });
    expect(voiced.filter((e) => e.type === 'speech_progress').at(-1)).toMatchObject({ speechMs: 128 });
  });
});
