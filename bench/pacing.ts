/**
 * Pacing without sockets: the CPU the playout scheduler and queues cost for N calls, each talking on
 * its own 20 ms cadence with a random phase, with and without the early window (one timer wake
 * serves every call due within it). Also the cost of one wake of the event loop from sleep on this
 * machine (a bare 1 ms timer chain), which is what the window saves.
 *
 *   npx tsx bench/pacing.ts [--calls 200] [--seconds 4]
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { PlayoutQueue } from '../src/audio/playout-queue.js';
import { DEFAULT_PACING_EARLY_MS, PlayoutScheduler, type PlayoutSink } from '../src/audio/playout-scheduler.js';
import { fmt, isMain, printTable, processCpuMs, row, sleep, type SummaryRow } from './common.js';

export interface PacingBenchOptions {
  calls?: number;
  seconds?: number;
}

interface PacingCase {
  earlyMs: number;
  cpuMsPerCallSecond: number;
  wakesPerSecond: number;
  messagesPerCallSecond: number;
  latenessP99: number;
}

async function measureScheduler(calls: number, seconds: number, earlyMs: number): Promise<PacingCase> {
  const scheduler = new PlayoutScheduler(undefined, { earlyMs });
  let delivered = 0;
  const sinks: PlayoutSink[] = [];
  const starts: NodeJS.Timeout[] = [];
  for (let c = 0; c < calls; c++) {
    const queue = new PlayoutQueue({ frameMs: 20, leadMs: 100 });
    const sink: PlayoutSink = { queue, deliver: () => void delivered++ };
    sinks.push(sink);
    starts.push(
      setTimeout(() => {
        queue.enqueueAudio(new Uint8Array(8 * 1000 * (seconds + 3)));
        scheduler.wake(sink);
      }, Math.random() * 20),
    );
  }
  await sleep(1000);
  const cpu0 = processCpuMs();
  const wakes0 = scheduler.wakes;
  const delivered0 = delivered;
  const lateness0 = scheduler.lateness.count;
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const { ms } = processCpuMs(cpu0.usage);
  const wallS = (performance.now() - t0) / 1000;
  const result: PacingCase = {
    earlyMs,
    cpuMsPerCallSecond: ms / (calls * wallS),
    wakesPerSecond: (scheduler.wakes - wakes0) / wallS,
    messagesPerCallSecond: (delivered - delivered0) / (calls * wallS),
    latenessP99: scheduler.lateness.count > lateness0 ? scheduler.lateness.quantile(0.99) : NaN,
  };
  for (const timer of starts) clearTimeout(timer);
  for (const sink of sinks) sink.queue.clear();
  scheduler.stop();
  return result;
}

/** CPU per wake of a timer chain that sleeps ~1 ms between wakes. */
async function measureWakeCost(seconds: number): Promise<number> {
  let wakes = 0;
  let running = true;
  const tick = (): void => {
    wakes++;
    if (running) setTimeout(tick, 1);
  };
  tick();
  await sleep(200);
  const cpu0 = processCpuMs();
  const wakes0 = wakes;
  await sleep(seconds * 1000);
  const { ms } = processCpuMs(cpu0.usage);
  running = false;
  return (ms * 1000) / (wakes - wakes0);
}

export async function runPacingBench(options: PacingBenchOptions = {}): Promise<{ summary: SummaryRow[] }> {
  const calls = options.calls ?? 200;
  const seconds = options.seconds ?? 4;
  console.log(`\n== Pacing: playout scheduler and queues alone (no sockets), ${calls} calls on spread phases, ${seconds} s per case ==`);
  const wakeUs = await measureWakeCost(Math.min(2, seconds));
  const cases: PacingCase[] = [];
  // Each case twice, interleaved: this host's CPU per wake drifts from one window to the next.
  for (let round = 0; round < 2; round++) {
    for (const earlyMs of [0, DEFAULT_PACING_EARLY_MS]) cases.push(await measureScheduler(calls, seconds, earlyMs));
  }
  printTable(
    ['early window', 'CPU ms/call-s', 'wakes/s', 'msgs/call-s', 'lateness p99 ms'],
    cases.map((c) => [`${c.earlyMs} ms`, fmt(c.cpuMsPerCallSecond, 3), fmt(c.wakesPerSecond, 0), fmt(c.messagesPerCallSecond, 1), fmt(c.latenessP99, 1)]),
  );
  console.log(`  one wake of the event loop from sleep (1 ms timer chain): ${fmt(wakeUs, 1)} µs of CPU`);
  const mean = (early: number): number => {
    const of = cases.filter((c) => c.earlyMs === early);
    return of.reduce((sum, c) => sum + c.cpuMsPerCallSecond, 0) / of.length;
  };
  return {
    summary: [
      row('CPU per wake of the event loop from sleep', `${fmt(wakeUs, 1)} µs`),
      row(
        `playout scheduler CPU per call-second, ${calls} calls, no window / ${DEFAULT_PACING_EARLY_MS} ms early window`,
        `${fmt(mean(0), 3)} / ${fmt(mean(DEFAULT_PACING_EARLY_MS), 3)} ms`,
      ),
    ],
  };
}

if (isMain(import.meta.url)) {
  const { values } = parseArgs({ options: { calls: { type: 'string', default: '200' }, seconds: { type: 'string', default: '4' } } });
  await runPacingBench({ calls: Number(values.calls), seconds: Number(values.seconds) });
}
