/** Small helpers shared by the benchmarks: quantiles, formatting, CPU sampling, the summary table. */
import { cpus } from 'node:os';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

/** One line of the final summary: a figure, its value with units, its target (or '—'), and a verdict. */
export interface SummaryRow {
  figure: string;
  value: string;
  target: string;
  /** 'ok' | 'MISS' when there is a target; '' when the figure is informational. */
  verdict: '' | 'ok' | 'MISS' | 'n/a';
}

export function row(figure: string, value: string, target = '—', pass?: boolean): SummaryRow {
  return { figure, value, target, verdict: pass === undefined ? (target === '—' ? '' : 'n/a') : pass ? 'ok' : 'MISS' };
}

/** Nearest-rank quantile of a list of numbers (q in [0, 1]); NaN when empty. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1]!;
}

export function fmt(value: number, digits = 1): string {
  return Number.isFinite(value) ? value.toFixed(digits) : 'n/a';
}

export function fmtMs(value: number, digits = 1): string {
  return Number.isFinite(value) ? `${value.toFixed(digits)} ms` : 'n/a';
}

export function sleep(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms));
}

/** CPU time of this process (all its threads: event loop, onnxruntime, libuv pool), in ms. */
export function processCpuMs(since?: NodeJS.CpuUsage): { usage: NodeJS.CpuUsage; ms: number } {
  const usage = process.cpuUsage(since);
  return { usage, ms: (usage.user + usage.system) / 1000 };
}

/** Machine-wide CPU counters, to tell how busy all cores were over a window. */
export function machineCpu(): { busy: number; total: number } {
  let busy = 0;
  let total = 0;
  for (const cpu of cpus()) {
    const t = cpu.times;
    const all = t.user + t.nice + t.sys + t.idle + t.irq;
    total += all;
    busy += all - t.idle;
  }
  return { busy, total };
}

/** Fraction (0..1) of all cores busy between two `machineCpu()` samples. */
export function machineBusyFraction(before: { busy: number; total: number }, after: { busy: number; total: number }): number {
  const total = after.total - before.total;
  return total <= 0 ? NaN : (after.busy - before.busy) / total;
}

/** True when this module is the script node was started with (for running a benchmark on its own). */
export function isMain(moduleUrl: string): boolean {
  const entry = process.argv[1];
  return entry !== undefined && pathToFileURL(resolve(entry)).href === moduleUrl;
}

/** Prints a plain-text table with left-aligned columns. */
export function printTable(headers: string[], rows: string[][]): void {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  console.log(line(headers));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(r));
}

export function printSummary(title: string, rows: SummaryRow[]): void {
  console.log(`\n${title}`);
  printTable(
    ['figure', 'value', 'target', ''],
    rows.map((r) => [r.figure, r.value, r.target, r.verdict]),
  );
}

/** Kills the process if a benchmark hangs: every run must stop by itself. */
export function watchdog(seconds: number, what: string): NodeJS.Timeout {
  const timer = setTimeout(() => {
    console.error(`\n${what}: still running after ${seconds} s; giving up.`);
    process.exit(2);
  }, seconds * 1000);
  timer.unref();
  return timer;
}
