// Guards the live mirror's timings from the environment: defaults, overrides, and every bad value named at start.
import { describe, expect, it } from 'vitest';
import { PostCallConfigError } from '../../src/post-call/config.js';
import { checkPostCallSideConfig } from '../../src/post-call/server-side.js';

function problemsOf(env: NodeJS.ProcessEnv): readonly string[] {
  try {
    checkPostCallSideConfig(env);
  } catch (error) {
    if (error instanceof PostCallConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe('post-call side configuration: live mirror and orphan sweeper', () => {
  it('defaults to a 2 s heartbeat, dead after 6 s, swept every 5 s', () => {
    expect(checkPostCallSideConfig({}).live).toEqual({ heartbeatIntervalMs: 2000, heartbeatTtlMs: 6000, sweepIntervalMs: 5000 });
  });

  it('takes the three timings from the environment', () => {
    const { live } = checkPostCallSideConfig({ LIVE_HEARTBEAT_MS: '500', LIVE_HEARTBEAT_TTL_MS: '1500', ORPHAN_SWEEP_MS: '1000' });
    expect(live).toEqual({ heartbeatIntervalMs: 500, heartbeatTtlMs: 1500, sweepIntervalMs: 1000 });
  });

  it('refuses a time-to-live that does not outlast the heartbeat, naming both', () => {
    const problems = problemsOf({ LIVE_HEARTBEAT_MS: '3000', LIVE_HEARTBEAT_TTL_MS: '3000' });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain('LIVE_HEARTBEAT_TTL_MS=3000');
    expect(problems[0]).toContain('LIVE_HEARTBEAT_MS=3000');
  });

  it('lists every bad value at once, the queue\'s and the mirror\'s', () => {
    const problems = problemsOf({ REDIS_URL: 'http://redis', ORPHAN_SWEEP_MS: 'often', LIVE_HEARTBEAT_MS: '10' });
    expect(problems.some((p) => p.includes('REDIS_URL'))).toBe(true);
    expect(problems.some((p) => p.includes('ORPHAN_SWEEP_MS'))).toBe(true);
    expect(problems.some((p) => p.includes('LIVE_HEARTBEAT_MS'))).toBe(true);
  });
});
