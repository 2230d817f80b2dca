// Guards against outbound audio that bursts ahead of real time, splits frames, loses marks, or leaks after a clear.
import { describe, expect, it } from 'vitest';
import { PlayoutQueue, type PlayoutMessage } from '../../src/audio/playout-queue.js';

const frames = (n: number, fill = 1): Uint8Array => new Uint8Array(160 * n).fill(fill);
const audio = (messages: PlayoutMessage[]) => messages.filter((m) => m.kind === 'audio');
const sentMs = (messages: PlayoutMessage[]) => audio(messages).reduce((ms, m) => ms + (m.kind === 'audio' ? m.data.length / 8 : 0), 0);

describe('playout queue', () => {
  it('sends at most the lead ahead of real time, then one message per frame period', () => {
    const queue = new PlayoutQueue({ frameMs: 20, leadMs: 100 });
    queue.enqueueAudio(frames(50));
    expect(sentMs(queue.pull(0))).toBe(100);
    expect(sentMs(queue.pull(10))).toBe(0);
    expect(sentMs(queue.pull(20))).toBe(20);
    expect(sentMs(queue.pull(100))).toBe(80);
    expect(queue.bufferedMs(100)).toBe(100);
  });

  it('sends a message up to `earlyMs` before it is due and no earlier, counting it on time', () => {
    const queue = new PlayoutQueue({ frameMs: 20, leadMs: 100 });
    queue.enqueueAudio(frames(50));
    expect(sentMs(queue.pull(0, 5))).toBe(100); // the lead; the next message is due at 20
    expect(sentMs(queue.pull(14, 5))).toBe(0);
    const early = audio(queue.pull(15, 5));
    expect(early).toHaveLength(1);
    expect(early[0]).toMatchObject({ latenessMs: 0 });
    // The far end holds at most lead + early.
    expect(queue.bufferedMs(15)).toBe(105);
    expect(queue.nextDueMs(15)).toBe(40);
  });

  it('never sends early beyond 200 ms of audio at the far end, whatever window is asked for', () => {
    const queue = new PlayoutQueue({ frameMs: 20, leadMs: 190 });
    queue.enqueueAudio(frames(100));
    for (let now = 0; now <= 400; now += 1) {
      queue.pull(now, 50);
      expect(queue.bufferedMs(now)).toBeLessThanOrEqual(200);
    }
  });

  it('groups frames into messages of the configured size, always whole 160-byte frames', () => {
    const queue = new PlayoutQueue({ frameMs: 60, leadMs: 200 });
    queue.enqueueAudio(frames(7));
    const sizes = audio(queue.pull(0)).map((m) => (m.kind === 'audio' ? m.data.length : 0));
    expect(sizes).toEqual([480, 480, 160]);
    for (const size of sizes) expect(size % 160).toBe(0);
  });

  it('refuses a lead shorter than one message, which would never let a message out', () => {
    expect(() => new PlayoutQueue({ frameMs: 60, leadMs: 40 })).toThrow(/leadMs \(40\) must be at least frameMs \(60\)/);
  });

  it('counts the lead sent at the start of a timeline as on time, not as late', () => {
    const queue = new PlayoutQueue({ frameMs: 20, leadMs: 100 });
    queue.enqueueAudio(frames(8));
    const start = audio(queue.pull(0));
    expect(start).toHaveLength(5);
    for (const message of start) expect(message).toMatchObject({ latenessMs: 0 });
  });

  it('refuses audio that is not whole frames', () => {
    const queue = new PlayoutQueue({ frameMs: 20, leadMs: 100 });
    expect(() => queue.enqueueAudio(new Uint8Array(100))).toThrow(/whole 160-byte frames/);
  });

  it('sends a mark right after the audio it follows, and not before', () => {
    const queue = new PlayoutQueue({ frameMs: 20, leadMs: 40 });
    queue.enqueueAudio(frames(4));
    queue.enqueueMark('after-4');
    expect(queue.pull(0).map((m) => m.kind)).toEqual(['audio', 'audio']);
    expect(queue.pull(40).map((m) => m.kind)).toEqual(['audio', 'audio', 'mark']);
  });

  it('reports how late each message went out against its ideal time', () => {
    const queue = new PlayoutQueue({ frameMs: 20, leadMs: 40 });
    queue.enqueueAudio(frames(3));
    queue.pull(0);
    const late = audio(queue.pull(23));
    expect(late[0]).toMatchObject({ latenessMs: 3 });
  });

  it('starts a fresh timeline after the far end has played everything', () => {
    const queue = new PlayoutQueue({ frameMs: 20, leadMs: 100 });
    queue.enqueueAudio(frames(2));
    queue.pull(0);
    queue.enqueueAudio(frames(10));
    expect(sentMs(queue.pull(1000))).toBe(100);
  });

  it('clear drops everything unsent', () => {
    const queue = new PlayoutQueue({ frameMs: 20, leadMs: 40 });
    queue.enqueueAudio(frames(20));
    queue.enqueueMark('end');
    queue.pull(0);
    queue.clear();
    expect(queue.hasPending).toBe(false);
    expect(queue.pull(1000)).toEqual([]);
  });

  it('pause takes back unplayed audio and reports the marks the far end will flush', () => {
    const queue = new PlayoutQueue({ frameMs: 20, leadMs: 100 });
    queue.enqueueAudio(frames(2, 1));
    queue.enqueueMark('seg0');
    queue.enqueueAudio(frames(10, 2));
    queue.pull(0); // sends 100 ms: 40 ms of seg0, the mark, 60 ms of seg1
    const { flushedMarks, rewoundMs } = queue.pause(30);
    // 30 ms played: frame 2 of seg0 (from 20 ms) onward comes back, and seg0's mark was not yet played.
    expect(flushedMarks).toEqual(['seg0']);
    expect(rewoundMs).toBe(80);
    expect(queue.pull(40)).toEqual([]);
    queue.resume();
    const resent = queue.pull(1000);
    expect(resent[0]).toMatchObject({ kind: 'audio' });
    expect(resent.find((m) => m.kind === 'mark')).toEqual({ kind: 'mark', name: 'seg0' });
    const first = resent[0]!;
    expect(first.kind === 'audio' && first.data[0]).toBe(1);
  });
});
