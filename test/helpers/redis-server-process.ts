/**
 * A private `redis-server` for fault tests: its own port, nothing on disk (`--save ""`,
 * `--appendonly no`), so stopping it and starting it again on the SAME port is exactly the restart
 * of a Redis that keeps nothing: clients see the connection drop, then a server with no keys.
 * The shared Redis the other tests use is never touched.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from './wait-for.js';

export const REDIS_SERVER_BIN = process.env.REDIS_SERVER_BIN ?? '/usr/bin/redis-server';

export interface RedisServerProcess {
  readonly port: number;
  /** redis://127.0.0.1:<port> */
  readonly url: string;
  /** Whether a redis-server started by this helper is running now. */
  readonly running: boolean;
  /** The running server's pid (undefined while stopped). */
  readonly pid: number | undefined;
  /** Everything the server processes (all generations) wrote. */
  output(): string;
  /** Kills the server (SIGKILL by default: no goodbye to clients) and waits for its exit. No-op when stopped. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Starts a fresh, empty server on the same port and waits until it accepts connections. */
  start(): Promise<void>;
  /** stop() then start(), with `downMs` of nothing listening in between. */
  restart(downMs?: number, signal?: NodeJS.Signals): Promise<void>;
  /** Stops the server and removes its working folder. */
  close(): Promise<void>;
}

/** A port nothing listens on now (the kernel's pick). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
    probe.on('error', reject);
  });
}

/** Starts a private redis-server on a free port; resolves once it accepts connections. */
export async function startRedisServer(options: { readyTimeoutMs?: number } = {}): Promise<RedisServerProcess> {
  if (!existsSync(REDIS_SERVER_BIN)) throw new Error(`redis-server not found at ${REDIS_SERVER_BIN} (set REDIS_SERVER_BIN)`);
  const readyTimeoutMs = options.readyTimeoutMs ?? 10_000;
  const port = await freePort();
  // Its working folder: nothing is meant to be written, but redis-server wants a dir it may write.
  const dir = mkdtempSync(join(tmpdir(), 'vas-redis-'));
  let out = '';
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let closed = false;

  const start = async (): Promise<void> => {
    if (closed) throw new Error('this redis-server helper is closed');
    if (child !== undefined) throw new Error(`redis-server on port ${port} is already running`);
    const generationStart = out.length;
    const proc = spawn(
      REDIS_SERVER_BIN,
      [
        '--port', String(port),
        '--bind', '127.0.0.1',
        '--save', '',
        '--appendonly', 'no',
        '--dir', dir,
        '--daemonize', 'no',
        '--protected-mode', 'no',
        '--loglevel', 'notice',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child = proc;
    let gone = false;
    exited = new Promise<void>((resolve) =>
      proc.on('exit', () => {
        gone = true;
        if (child === proc) child = undefined;
        resolve();
      }),
    );
    proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await waitFor(
        `redis-server on port ${port} to accept connections`,
        () => {
          if (out.slice(generationStart).includes('Ready to accept connections')) return true;
          if (gone) throw new Error(`redis-server on port ${port} exited before it was ready:\n${out.slice(generationStart)}`);
          return false;
        },
        readyTimeoutMs,
        20,
      );
    } catch (err) {
      if (!gone) proc.kill('SIGKILL');
      await exited;
      throw err;
    }
  };

  const stop = async (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> => {
    const proc = child;
    if (proc === undefined) return;
    proc.kill(signal);
    await exited;
  };

  await start();

  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    get running() {
      return child !== undefined;
    },
    get pid() {
      return child?.pid;
    },
    output: () => out,
    stop,
    start,
    async restart(downMs = 0, signal: NodeJS.Signals = 'SIGKILL') {
      await stop(signal);
      if (downMs > 0) await new Promise((resolve) => setTimeout(resolve, downMs));
      await start();
    },
    async close() {
      closed = true;
      await stop('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
