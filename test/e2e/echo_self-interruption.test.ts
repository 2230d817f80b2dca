// Guards against the agent interrupting itself on a line that echoes its voice back (a speakerphone,
// a handset or a line without echo cancelling), while a caller talking over the echo still barges in.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SessionEvent } from '../../src/agent/call-session.js';
import { phoneSpeech, RECORDINGS, timeline } from '../helpers/speech.js';
import { placeTestCall } from '../helpers/place-test-call.js';
import { startVoiceServer, type RunningServer } from '../helpers/voice-test-server.js';

const FALLBACK =
  'Sorry, I did not catch that. I can tell you about our opening hours, our address and parking, or help you with an appointment, or put you through to a person at the front desk.';
/** The line returns what the caller hears 220 ms later, 8 dB quieter. */
const ECHO = { delayMs: 220, gainDb: -8 };

let guarded: RunningServer;
let unguarded: RunningServer;
beforeAll(async () => {
  guarded = await startVoiceServer({ AGENT_SCRIPT: 'test/fixtures/agents' });
  unguarded = await startVoiceServer({ AGENT_SCRIPT: 'test/fixtures/agents', ECHO_GUARD: 'off' });
});
afterAll(async () => Promise.all([guarded?.close(), unguarded?.close()]));

describe('a line that echoes the agent back', () => {
  it('does not make the agent interrupt itself: greeting and a 10 s reply play out whole', async () => {
    const question = await phoneSpeech(RECORDINGS.illDisposed);
    const { result, session, events } = await placeTestCall(guarded, { audio: timeline(4000, [[2500, question]]), echo: ECHO, idleHangUpMs: 2500 });

    expect(result.violations).toEqual([]);
    expect(result.clears).toEqual([]);
    expect(events.filter((e) => e.type === 'interrupted')).toEqual([]);
    expect(session.turns).toHaveLength(1);
    expect(session.turns[0]).toMatchObject({ interrupted: false, assistantText: FALLBACK });
    // The guard did hold the echo back (the VAD heard it as speech).
    expect(events.some((e) => e.type === 'echo_held')).toBe(true);
  });

  it('without the guard, the same call interrupts itself (so the test above can fail)', async () => {
    const question = await phoneSpeech(RECORDINGS.illDisposed);
    const { result, session } = await placeTestCall(unguarded, { audio: timeline(4000, [[2500, question]]), echo: ECHO, idleHangUpMs: 2500 });

    expect(result.clears.length).toBeGreaterThan(0);
    expect(session.turns.some((t) => t.interrupted) || session.turns.length > 1 || session.turns[0]?.assistantText !== FALLBACK).toBe(true);
  });

  it('still lets the caller barge in over the echo', async () => {
    const [question, interruption] = await Promise.all([RECORDINGS.illDisposed, RECORDINGS.coldHearted].map(phoneSpeech));
    const bargeInAtMs = 9000;
    const { result, session, events } = await placeTestCall(guarded, {
      audio: timeline(16000, [[2500, question!], [bargeInAtMs, interruption!]]),
      echo: ECHO,
      idleHangUpMs: 3000,
    });

    expect(result.violations).toEqual([]);
    // No clear before the caller's own words; the first comes soon after they start.
    expect(result.clears.length).toBeGreaterThan(0);
    expect(result.clears[0]!).toBeGreaterThan(bargeInAtMs);
    expect(result.clears[0]! - bargeInAtMs).toBeLessThan(600);
    expect(events.filter((e): e is Extract<SessionEvent, { type: 'interrupted' }> => e.type === 'interrupted')).toHaveLength(1);
    expect(session.turns).toHaveLength(2);
    expect(session.turns[0]!.interrupted).toBe(true);
    expect(FALLBACK.startsWith(session.turns[0]!.assistantText)).toBe(true);
    expect(session.turns[1]!.userText.length).toBeGreaterThan(0);
  });
});
