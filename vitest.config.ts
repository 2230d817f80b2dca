import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Real-time calls and child processes: generous per-test limits, no timing assertions in tests.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // End-to-end calls run in real time against real recognizer processes: a second test file
    // competing for the 2 cores would make their timing, not their behaviour, decide the result.
    fileParallelism: false,
  },
});
