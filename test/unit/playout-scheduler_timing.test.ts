// Guards the one outbound timer of the process: every call's frames go out on their due time, in
// order, none twice or lost, whatever the other calls do (paused, cleared, removed, woken early).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { PlayoutQueue, type PlayoutMessage } from '../../src/audio/playout-queue.js';
import { PlayoutScheduler, pacingEarlyMs, type PlayoutSink } from '../../src/audio/playout-scheduler.js';

const frames = (n: number): Uint8Array => new Uint8Array(160 * n);

/** A call's outbound side: what it delivered, and when (fake clock ms). */
function call(leadMs = 40) {
  const delivered: Array<{ atMs: number; message: PlayoutMessage }> = [];
  const sink: PlayoutSink = {
    queue: new PlayoutQueue({ frameMs: 20, leadMs }),
    deliver: (message) => delivered.push({ atMs: Date.now(), message }),
  };
  const audioTimes = () => delivered.filter((d) => d.message.kind === 'audio').map((d) => d.atMs);
  return { sink, delivered, audioTimes };
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  vi.setSystemTime(1_000_000);
});
afterEach(() => vi.useRealTimers());

describe('playout scheduler', () => {
  it('sends each call its frames on their due times, the lead at once and then one per 20 ms', () => {
    const scheduler = new PlayoutScheduler(() => Date.now(), { earlyMs: 0 });
    const a = call();
    const b = call();
    a.sink.queue.enqueueAudio(frames(5));
    scheduler.wake(a.sink);
    vi.advanceTimersByTime(7);
    b.sink.queue.enqueueAudio(frames(4));
    scheduler.wake(b.sink);
    vi.advanceTimersByTime(200);
    const t0 = 1_000_000;
    expect(a.audioTimes()).toEqual([t0, t0, t0 + 20, t0 + 40, t0 + 60]);
    expect(b.audioTimes()).toEqual([t0 + 7, t0 + 7, t0 + 27, t0 + 47]);
    expect(scheduler.lateness.count).toBe(9);
    expect(scheduler.lateness.max).toBe(0);
    expect(scheduler.activeCount).toBe(0);
  });

  it('serves a call woken with new audio on time while another call’s later frame holds the timer', () => {
    const scheduler = new PlayoutScheduler(() => Date.now(), { earlyMs: 0 });
    const slow = call(20);
    const fast = call(20);
    slow.sink.queue.enqueueAudio(frames(2));
    scheduler.wake(slow.sink); // first frame now, the next due in 20 ms
    vi.advanceTimersByTime(3);
    fast.sink.queue.enqueueAudio(frames(3));
    scheduler.wake(fast.sink);
    vi.advanceTimersByTime(100);
    const t0 = 1_000_000;
    expect(slow.audioTimes()).toEqual([t0, t0 + 20]);
    expect(fast.audioTimes()).toEqual([t0 + 3, t0 + 23, t0 + 43]);
  });

  it('sends nothing of a paused call until it is woken again, and then goes on from where it was', () => {
    const scheduler = new PlayoutScheduler(() => Date.now(), { earlyMs: 0 });
    const other = call();
    const paused = call(20);
    other.sink.queue.enqueueAudio(frames(20));
    paused.sink.queue.enqueueAudio(frames(10));
    scheduler.wake(other.sink);
    scheduler.wake(paused.sink);
    vi.advanceTimersByTime(30);
    const before = paused.audioTimes().length;
    paused.sink.queue.pause(Date.now());
    vi.advanceTimersByTime(200);
    expect(paused.audioTimes().length).toBe(before);
    // The other call went on meanwhile, on time.
    expect(other.audioTimes()).toEqual([1_000_000, ...Array.from({ length: 12 }, (_, k) => 1_000_000 + 20 * k)]);
    paused.sink.queue.resume();
    scheduler.wake(paused.sink);
    vi.advanceTimersByTime(500);
    const bytes = paused.delivered.reduce((n, d) => n + (d.message.kind === 'audio' ? d.message.data.length : 0), 0);
    // Everything queued went out exactly once: what the pause took back was sent again.
    expect(bytes).toBeGreaterThanOrEqual(160 * 10);
    expect(paused.audioTimes().at(-1)).toBeGreaterThan(1_000_230);
  });

  it('sends at once for a call paused and resumed between two of its frames (its due time moved earlier)', () => {
    const scheduler = new PlayoutScheduler(() => Date.now(), { earlyMs: 0 });
    const c = call(40);
    c.sink.queue.enqueueAudio(frames(20));
    scheduler.wake(c.sink);
    vi.advanceTimersByTime(25); // frames at 0, 0, 20; the next is due at 40
    c.sink.queue.pause(Date.now());
    vi.advanceTimersByTime(2);
    c.sink.queue.resume();
    scheduler.wake(c.sink);
    // The unplayed audio taken back goes out again right away, not at the old due time.
    expect(c.audioTimes().filter((t) => t === 1_000_027).length).toBeGreaterThan(0);
    vi.advanceTimersByTime(10);
    expect(c.audioTimes().filter((t) => t > 1_000_027 && t < 1_000_037)).toEqual([]);
  });

  it('stops delivering to a removed call, and a cleared call drops out of the schedule', () => {
    const scheduler = new PlayoutScheduler(() => Date.now(), { earlyMs: 0 });
    const removed = call(20);
    const cleared = call(20);
    removed.sink.queue.enqueueAudio(frames(10));
    cleared.sink.queue.enqueueAudio(frames(10));
    scheduler.wake(removed.sink);
    scheduler.wake(cleared.sink);
    vi.advanceTimersByTime(30);
    scheduler.remove(removed.sink);
    cleared.sink.queue.clear();
    const sentRemoved = removed.delivered.length;
    const sentCleared = cleared.delivered.length;
    vi.advanceTimersByTime(500);
    expect(removed.delivered.length).toBe(sentRemoved);
    expect(cleared.delivered.length).toBe(sentCleared);
    expect(scheduler.activeCount).toBe(0);
  });

  it('keeps 200 calls with spread phases on time with one timer, and sends a mark right after its audio', () => {
    const scheduler = new PlayoutScheduler(() => Date.now(), { earlyMs: 0 });
    const calls = Array.from({ length: 200 }, () => call());
    const armed = vi.spyOn(globalThis, 'setTimeout');
    for (let phase = 0; phase < 20; phase++) {
      calls.forEach((c, i) => {
        if (i % 20 !== phase) return;
        c.sink.queue.enqueueAudio(frames(25));
        c.sink.queue.enqueueMark(`end-${i}`);
        scheduler.wake(c.sink);
      });
      vi.advanceTimersByTime(1);
    }
    vi.advanceTimersByTime(1000);
    for (const [i, c] of calls.entries()) {
      const start = 1_000_000 + (i % 20);
      expect(c.audioTimes()).toEqual([start, start, ...Array.from({ length: 23 }, (_, k) => start + 20 * (k + 1))]);
      expect(c.delivered.at(-1)).toMatchObject({ message: { kind: 'mark', name: `end-${i}` }, atMs: start + 460 });
    }
    expect(scheduler.lateness.max).toBe(0);
    // One wake per distinct due ms, not one per call: 20 phases × 24 send times at most.
    expect(armed.mock.calls.length).toBeLessThanOrEqual(20 * 24 + 1);
    expect(scheduler.activeCount).toBe(0);
    armed.mockRestore();
  });

  it('with an early window, wakes once per window for calls on spread phases, never late and never more than the window early', () => {
    const scheduler = new PlayoutScheduler(() => Date.now(), { earlyMs: 5 });
    const calls = Array.from({ length: 200 }, () => call(100));
    for (let phase = 0; phase < 20; phase++) {
      calls.forEach((c, i) => {
        if (i % 20 !== phase) return;
        c.sink.queue.enqueueAudio(frames(30));
        scheduler.wake(c.sink);
      });
      vi.advanceTimersByTime(1);
    }
    const armed = vi.spyOn(globalThis, 'setTimeout');
    vi.advanceTimersByTime(1000);
    for (const [i, c] of calls.entries()) {
      const start = 1_000_000 + (i % 20);
      const times = c.audioTimes();
      expect(times).toHaveLength(30);
      // After the lead (5 messages at the start), message k is due at start + 20 (k - 4).
      times.slice(5).forEach((atMs, k) => {
        const dueMs = start + 20 * (k + 1);
        expect(atMs).toBeLessThanOrEqual(dueMs);
        expect(atMs).toBeGreaterThanOrEqual(dueMs - 5);
      });
    }
    expect(scheduler.lateness.max).toBe(0);
    // Calls due at 20 distinct ms per 20 ms: without the window that is 20 wakes per 20 ms; with it, at most 4.
    expect(armed.mock.calls.length).toBeLessThanOrEqual((1000 / 20) * 4 + 1);
    expect(scheduler.wakes).toBeGreaterThan(0);
    expect(scheduler.wakes).toBeLessThanOrEqual((1020 / 20) * 4 + 1);
    armed.mockRestore();
  });

  it('does not wake for a message that new audio already sent early', () => {
    const scheduler = new PlayoutScheduler(() => Date.now(), { earlyMs: 5 });
    const c = call(20);
    c.sink.queue.enqueueAudio(frames(2));
    scheduler.wake(c.sink); // frame 1 now; frame 2 due at +20
    vi.advanceTimersByTime(16);
    c.sink.queue.enqueueAudio(frames(3));
    scheduler.wake(c.sink); // sends frame 2 early (due within 5 ms); the next is due at +40
    const t0 = 1_000_000;
    expect(c.audioTimes()).toEqual([t0, t0 + 16]);
    vi.advanceTimersByTime(200);
    expect(c.audioTimes()).toEqual([t0, t0 + 16, t0 + 40, t0 + 60, t0 + 80]);
    // One timer wake per frame sent by the timer: none at +20 for the frame already gone.
    expect(scheduler.wakes).toBe(3);
  });

  it('keeps the lead plus the early window within 200 ms ahead of real time', () => {
    expect(pacingEarlyMs(100)).toBe(5);
    expect(pacingEarlyMs(197)).toBe(3);
    expect(pacingEarlyMs(200)).toBe(0);
  });
});
