// One stop request relayed by the process group's parents (npm, tsx, Ctrl-C) must not force an exit.
import { describe, expect, it } from 'vitest';
import { stopSignalFilter } from '../../src/util/stop-signals.js';

describe('stopSignalFilter', () => {
  it('stops on the first signal, ignores copies within the window, forces on a later one', () => {
    const decide = stopSignalFilter(2000);
    expect(decide(10_000)).toBe('stop');
    expect(decide(10_001)).toBe('ignore');
    expect(decide(11_999)).toBe('ignore');
    expect(decide(12_000)).toBe('force');
    expect(decide(20_000)).toBe('force');
  });
});
