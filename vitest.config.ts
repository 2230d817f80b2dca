import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Real-time calls and child processes: generous per-test limits, no timing assertions in tests.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two cores: end-to-end calls run in real time, so files run one or two at a time.
    maxWorkers: 2,
  },
});
