// Guards the VAD's noise gate: steady line noise stops costing inference, speech always reaches the
// model, a long utterance cannot gate itself out, and a quieter line is re-learned.
import { describe, expect, it } from 'vitest';
import { speechGateFor } from '../../src/engines/load-engines.js';
import { levelDbfs } from '../../src/audio/level.js';
import { SpeechGate } from '../../src/engines/local/speech-gate.js';

/** Feeds chunk levels through the gate with a model that says `speech(level)`; returns which chunks went to the model. */
function run(gate: SpeechGate, levels: number[], speech: (level: number, index: number) => number = () => 0.01): boolean[] {
  return levels.map((level, index) => {
    if (!gate.needsModel(level)) return false;
    gate.modelAnswered(level, speech(level, index));
    return true;
  });
}

const repeat = (level: number, chunks: number): number[] => Array.from({ length: chunks }, (_, i) => level + ((i * 7) % 5) * 0.2 - 0.4);

describe('speech gate', () => {
  it('measures chunk levels in dBFS', () => {
    expect(levelDbfs(new Int16Array(256))).toBe(-96);
    expect(levelDbfs(new Int16Array(256).fill(32767))).toBeCloseTo(0, 3);
    expect(levelDbfs(Int16Array.from({ length: 256 }, (_, i) => (i % 2 === 0 ? 1036 : -1036)))).toBeCloseTo(-30, 1);
  });

  it('never sends silence or idle-channel noise to the model', () => {
    const gate = new SpeechGate();
    expect(run(gate, [...repeat(-96, 10), ...repeat(-65, 50), ...repeat(-56, 20)]).filter(Boolean)).toHaveLength(0);
  });

  it('learns a steady noisy line within a fraction of a second, then skips it', () => {
    const gate = new SpeechGate();
    const sent = run(gate, repeat(-50, 200)); // 6.4 s of a −50 dBFS line
    const learnedBy = sent.lastIndexOf(true);
    expect(learnedBy).toBeGreaterThanOrEqual(0); // it had to look first
    expect(learnedBy).toBeLessThan(16); // ~0.5 s
    expect(gate.noiseFloorDbfs).toBeGreaterThan(-58);
  });

  it('sends the first chunk of speech over the noise to the model', () => {
    const gate = new SpeechGate();
    run(gate, repeat(-50, 60));
    expect(gate.needsModel(-40)).toBe(true); // a soft onset 10 dB over the line
    expect(gate.needsModel(-25)).toBe(true);
  });

  it('keeps a long utterance with the model: the floor does not learn from chunks it called speech', () => {
    const gate = new SpeechGate();
    run(gate, repeat(-50, 60));
    const floorBefore = gate.noiseFloorDbfs;
    // 10 s of speech at −25 dBFS with quieter syllable dips (−38) the model still calls speech.
    const speechLevels = Array.from({ length: 312 }, (_, i) => (i % 6 === 5 ? -38 : -25));
    expect(run(gate, speechLevels, () => 0.95).every(Boolean)).toBe(true);
    expect(gate.noiseFloorDbfs).toBe(floorBefore);
  });

  it('holds the model on through word gaps after speech, then gates the line again', () => {
    const gate = new SpeechGate({ holdChunks: 10 });
    run(gate, repeat(-50, 60));
    run(gate, repeat(-25, 20), () => 0.9);
    // The pause after the words: line noise again. The model sees the hold's 10 chunks, then not.
    const after = run(gate, repeat(-50, 40), () => 0.05);
    expect(after.slice(0, 10).every(Boolean)).toBe(true);
    expect(after.slice(12).some(Boolean)).toBe(false);
  });

  it('a quieter line lowers the floor at once, so soft speech on it is not missed', () => {
    const gate = new SpeechGate();
    run(gate, repeat(-40, 100));
    expect(gate.needsModel(-45)).toBe(false); // under that line's level: not speech
    run(gate, repeat(-70, 3));
    expect(gate.needsModel(-45)).toBe(true);
  });

  it('chunks the gate answers never raise the floor', () => {
    const gate = new SpeechGate();
    run(gate, repeat(-65, 30));
    const floor = gate.noiseFloorDbfs;
    run(gate, repeat(-57, 200)); // under the absolute gate: answered without the model
    expect(gate.noiseFloorDbfs).toBe(floor);
  });

  it('a soft onset the model scores low at first is not shut out', () => {
    for (const lowFirst of [3, 5, 8]) {
      const gate = new SpeechGate();
      run(gate, repeat(-50, 60));
      // Speech only 10 dB over the line; Silero scores its first chunks low, then recognises it.
      const sent = run(gate, repeat(-40, 60), (_, i) => (i < lowFirst ? 0.1 + i * 0.02 : 0.8));
      expect(sent.every(Boolean)).toBe(true);
    }
  });

  it('speech that resumes after the hold ran out reaches the model again', () => {
    const gate = new SpeechGate();
    run(gate, repeat(-50, 60));
    run(gate, repeat(-30, 30), () => 0.9);
    expect(run(gate, repeat(-50, 60)).slice(20).some(Boolean)).toBe(false);
    expect(gate.needsModel(-41)).toBe(true);
  });

  it('a failed inference leaves no hold behind: silence is answered again', () => {
    const gate = new SpeechGate();
    run(gate, repeat(-30, 5), () => 0.9);
    expect(gate.needsModel(-96)).toBe(true); // held for the model
    gate.modelFailed();
    expect(gate.needsModel(-96)).toBe(false);
  });

  it('a louder line (noise that came on mid-call) is learned after the model has judged it', () => {
    const gate = new SpeechGate();
    run(gate, repeat(-65, 30));
    const sent = run(gate, repeat(-40, 100)); // a fan or a car: 25 dB louder, not speech
    expect(sent.slice(0, 3).every(Boolean)).toBe(true);
    expect(sent.slice(40).some(Boolean)).toBe(false);
  });

  it('asking again about a chunk that waits for the model changes nothing', () => {
    const gate = new SpeechGate();
    run(gate, repeat(-50, 60));
    const floor = gate.noiseFloorDbfs;
    for (let i = 0; i < 5; i++) expect(gate.needsModel(-30)).toBe(true);
    expect(gate.noiseFloorDbfs).toBe(floor);
  });

  it('holds at or below the endpointer\'s continue-speech threshold, and is off when that leaves no room', () => {
    expect(speechGateFor({ vadThreshold: 0.5, vadNoiseGate: true })).toEqual({ holdProbability: 0.3 });
    expect(speechGateFor({ vadThreshold: 0.3, vadNoiseGate: true })).toEqual({ holdProbability: expect.closeTo(0.15, 6) });
    expect(speechGateFor({ vadThreshold: 0.18, vadNoiseGate: true })).toBe(false);
    expect(speechGateFor({ vadThreshold: 0.5, vadNoiseGate: false })).toBe(false);
  });
});
