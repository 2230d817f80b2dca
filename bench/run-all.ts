/**
 * `npm run bench`: the VAD, pacing, load, turn-latency, Triton-path and post-call benchmarks in order, then
 * one summary table with each figure and its target. Bounded: ~15 minutes on a 2-core machine; a
 * watchdog ends it if a piece hangs. `--quick` shortens every window (for a smoke run; the figures
 * are noisier). The post-call piece needs Redis and PostgreSQL (BENCH_REDIS_URL, BENCH_DATABASE_URL;
 * the tests' defaults otherwise).
 *
 *   npx tsx bench/run-all.ts [--quick]
 */
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { machineBusyFraction, machineCpu, printSummary, row, watchdog, type SummaryRow } from './common.js';
import { runLoadBench } from './load.js';
import { runPacingBench } from './pacing.js';
import { QUICK_POST_CALL_OPTIONS, runPostCallBench } from './post-call.js';
import { QUICK_TRITON_OPTIONS, runTritonBench } from './triton.js';
import { runTurnLatencyBench } from './turn-latency.js';
import { runVadBench } from './vad.js';

const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false } } });
const quick = values.quick;

watchdog(quick ? 480 : 1080, 'npm run bench');
const started = performance.now();
const machine0 = machineCpu();
const cpu0 = process.cpuUsage();
const summary: SummaryRow[] = [];
const failures: string[] = [];

async function piece(name: string, run: () => Promise<SummaryRow[]>): Promise<void> {
  try {
    summary.push(...(await run()));
  } catch (error) {
    failures.push(`${name}: ${(error as Error).stack ?? String(error)}`);
    summary.push(row(`${name}`, 'FAILED (see above)', '—'));
    console.error(`\n${name} failed: ${(error as Error).stack ?? String(error)}`);
  }
}

console.log(`voice-agent benchmarks on ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown CPU'}), Node ${process.version}${quick ? ', quick mode' : ''}`);

await piece('VAD', async () => (await runVadBench({ secondsPerCase: quick ? 1 : 2 })).summary);
await piece('pacing', async () => (await runPacingBench({ seconds: quick ? 2 : 4 })).summary);
// A noisy line (steady -50 dBFS noise): the VAD's noise gate learns the line and skips it. The
// headline 20 ms case in five paired rounds (the ratio is their median), 40 / 60 ms in one each.
await piece('load', async () =>
  (await runLoadBench(quick ? { frames: [20], seconds: 4, warmupSeconds: 2, rounds: 1 } : { frames: [20], seconds: 6, warmupSeconds: 3, rounds: 5 })).summary,
);
await piece('load, 40 / 60 ms per message', async () =>
  (await runLoadBench(quick ? { frames: [40, 60], seconds: 3, otherSeconds: 3, warmupSeconds: 2, rounds: 1 } : { frames: [40, 60], seconds: 6, otherSeconds: 6, warmupSeconds: 3, rounds: 1 })).summary,
);
// The same line with the gate off: Silero on every chunk, the VAD's worst case (a caller in constant
// non-stationary noise the model has to judge chunk by chunk costs this much).
await piece('load, model on every chunk', async () =>
  (
    await runLoadBench({
      frames: [20],
      serverEnv: { VAD_NOISE_GATE: 'off' },
      rounds: 1,
      ...(quick ? { seconds: 4, warmupSeconds: 2 } : { seconds: 8, warmupSeconds: 3 }),
    })
  ).summary.map((r) => ({ ...r, figure: `model on every chunk (VAD_NOISE_GATE=off): ${r.figure}` })),
);
// A caller listening on a quiet line (idle-channel noise, -65 dBFS): under the absolute gate.
await piece('load, quiet line', async () =>
  (
    await runLoadBench({
      frames: [20],
      noiseDbfs: -65,
      ...(quick ? { seconds: 4, warmupSeconds: 2, rounds: 1 } : { seconds: 6, warmupSeconds: 3, rounds: 3 }),
    })
  ).summary.map((r) => ({ ...r, figure: `quiet line (-65 dBFS): ${r.figure}` })),
);
await piece('turn latency', async () => (await runTurnLatencyBench(quick ? { rounds: 1 } : { rounds: 3 })).summary);
// The Triton path against the stand-in: gRPC client CPU per request / streamed response (stand-in in
// a child process), and what the server adds to a turn between the models (~60 s; quick ~30 s).
await piece('Triton', async () => (await runTritonBench(quick ? QUICK_TRITON_OPTIONS : {})).summary);
// The post-call pipeline on the real Redis and PostgreSQL, the OpenAI stand-in as its LLM (instant,
// and at 100 tokens/s): jobs/s per worker and hang-up → stored summary (~95 s; quick ~40 s).
await piece('post-call', async () => (await runPostCallBench(quick ? QUICK_POST_CALL_OPTIONS : {})).summary);

const wallS = (performance.now() - started) / 1000;
const busy = machineBusyFraction(machine0, machineCpu());
const ownCpu = process.cpuUsage(cpu0);
const ownCores = (ownCpu.user + ownCpu.system) / 1e6 / wallS;
summary.push(
  row(
    'machine CPU busy over the whole run',
    `${(busy * 100).toFixed(0)}% of ${cpus().length} cores (this process: ${(ownCores * 100).toFixed(0)}% of one core)`,
  ),
);

printSummary(`SUMMARY (${wallS.toFixed(0)} s)`, summary);
if (failures.length > 0) console.log(`\n${failures.length} benchmark piece(s) failed.`);
process.exit(failures.length > 0 ? 1 : 0);
