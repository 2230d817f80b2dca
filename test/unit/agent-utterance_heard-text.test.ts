// Guards against a transcript that claims the caller heard words that were cut off (or drops words they did hear).
import { describe, expect, it } from 'vitest';
import { AgentUtterance } from '../../src/agent/agent-utterance.js';

function reply(): AgentUtterance {
  const u = new AgentUtterance(7, 'reply');
  u.status = 'speaking';
  u.addSegment(0, 'We are open from eight.', 1000);
  u.addSegment(1, 'On Fridays we close at two in the afternoon.', 2000);
  return u;
}

describe('agent utterance heard text', () => {
  it('names its marks and parses them back', () => {
    const u = reply();
    expect([u.markName('start'), u.markName(1), u.markName('end')]).toEqual(['u7:start', 'u7:s1', 'u7:end']);
    expect(AgentUtterance.parseMark('u7:s1')).toEqual({ utteranceId: 7, which: 1 });
    expect(AgentUtterance.parseMark('hello')).toBeUndefined();
  });

  it('keeps whole segments whose marks came back, plus the played share of the segment playing at the cut', () => {
    const u = reply();
    u.onMarkEcho('start', 0);
    u.onMarkEcho(0, 1000);
    u.interrupt(2000); // half of the 2 s second segment played
    expect(u.status).toBe('interrupted');
    expect(u.heardText()).toBe('We are open from eight. On Fridays we close'); // 4 of 9 words: rounded down
  });

  it('counts nothing after the moment output was paused, even if the barge-in is confirmed later', () => {
    const u = reply();
    u.onMarkEcho('start', 0);
    u.notePaused(500);
    u.onMarkEcho(0, 1000); // the far end's echo of a mark flushed by clear arrives late
    u.interrupt(1200);
    expect(u.heardText()).toBe('We are');
  });

  it('forgets the pause when output resumes', () => {
    const u = reply();
    u.onMarkEcho('start', 0);
    u.notePaused(200);
    u.noteResumed();
    u.onMarkEcho(0, 1100);
    u.interrupt(1100);
    expect(u.heardText()).toBe('We are open from eight.');
  });

  it('is done with all its text once every audio chunk was queued and the end mark came back', () => {
    const u = reply();
    expect(u.onMarkEcho('end', 10)).toBe(false);
    u.markAllQueued();
    expect(u.onMarkEcho('end', 20)).toBe(true);
    expect(u.heardText()).toBe('We are open from eight. On Fridays we close at two in the afternoon.');
  });

  it('reports nothing heard and aborts its streams when cancelled before playing', () => {
    const u = reply();
    u.interrupt(0);
    expect(u.status).toBe('cancelled');
    expect(u.signal.aborted).toBe(true);
    expect(u.heardText()).toBe('');
  });
});
