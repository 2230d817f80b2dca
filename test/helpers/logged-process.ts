/**
 * A project entry point (`src/main.ts`, `workers/post-call-worker.ts`) run as a real process for
 * fault tests: `node --import tsx` directly, so the pid is the program itself and SIGKILL/SIGTERM
 * reach it alone (through `npx tsx` a signal would hit tsx's parent and orphan the program). Its
 * environment is exactly what the test passes (plus PATH and HOME); its pino lines are collected.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { waitFor } from './wait-for.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** One pino line (the fields tests read; the rest are there too). */
export interface LogLine {
  event?: string;
  callSid?: string;
  msg?: string;
  [field: string]: unknown;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface LoggedProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  output(): string;
  lines(): LogLine[];
  events(event: string): LogLine[];
  readonly exited: Promise<ExitStatus>;
  readonly running: boolean;
  /** Waits for a log line with `event`; fails early (with the output) if the process exits first. */
  waitForEvent(event: string, timeoutMs?: number): Promise<LogLine>;
  /** Sends `signal` (default SIGKILL) and waits for the exit. */
  kill(signal?: NodeJS.Signals): Promise<ExitStatus>;
}

export function spawnLoggedProcess(name: string, script: string, env: Record<string, string>): LoggedProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', script], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid === undefined) throw new Error(`${name} did not start`);
  const pid = child.pid;
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  let status: ExitStatus | undefined;
  const exited = new Promise<ExitStatus>((resolve) =>
    child.on('exit', (code, signal) => {
      status = { code, signal };
      resolve(status);
    }),
  );
  const lines = (): LogLine[] =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .flatMap((l) => {
        try {
          return [JSON.parse(l) as LogLine];
        } catch {
          return []; // a line still being written
        }
      });
  const events = (event: string): LogLine[] => lines().filter((l) => l.event === event);
  return {
    child,
    pid,
    output: () => out,
    lines,
    events,
    exited,
    get running() {
      return status === undefined;
    },
    async waitForEvent(event, timeoutMs = 30_000) {
      return waitFor(
        `${name} (pid ${pid}) to log ${event}`,
        () => {
          const found = events(event)[0];
          if (found !== undefined) return found;
          if (status !== undefined) throw new Error(`${name} (pid ${pid}) exited (${JSON.stringify(status)}) before logging ${event}:\n${out.slice(-4000)}`);
          return undefined;
        },
        timeoutMs,
        50,
      );
    },
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (status === undefined) child.kill(signal);
      return exited;
    },
  };
}
