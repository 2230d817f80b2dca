/** The real voice server (`src/main.ts`, what `npm start` runs) as a process on a free port, for fault tests. */
import { createServer } from 'node:net';
import { spawnLoggedProcess, type LoggedProcess } from './logged-process.js';
import { TEST_AUTH_TOKEN } from './voice-test-server.js';

export interface ServerProcess extends LoggedProcess {
  /** http://127.0.0.1:<port>, also its PUBLIC_URL (what webhooks are signed against). */
  url: string;
  authToken: string;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
    probe.on('error', reject);
  });
}

/** Starts the server with `env` (on top of a port, its URL, the test auth token and info logs) and waits until it is ready. */
export async function spawnVoiceServer(env: Record<string, string>, readyTimeoutMs = 60_000): Promise<ServerProcess> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const proc = spawnLoggedProcess('voice server', 'src/main.ts', {
    PORT: String(port),
    HOST: '127.0.0.1',
    PUBLIC_URL: url,
    TWILIO_AUTH_TOKEN: TEST_AUTH_TOKEN,
    LOG_LEVEL: 'info',
    ...env,
  });
  try {
    await proc.waitForEvent('server_ready', readyTimeoutMs);
  } catch (err) {
    await proc.kill();
    throw err;
  }
  return Object.assign(proc, { url, authToken: TEST_AUTH_TOKEN });
}
