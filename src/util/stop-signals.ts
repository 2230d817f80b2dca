/**
 * SIGTERM / SIGINT for a long-running process (the server, the post-call worker). The first signal
 * asks for a clean stop. npm, tsx and a terminal's Ctrl-C signal the whole process group, so the
 * one request arrives two or three times at once: copies within `repeatWindowMs` are ignored, and
 * only a signal after that forces the exit.
 */
export type StopDecision = 'stop' | 'ignore' | 'force';

/** Decides what each signal means, given the time it arrives (pure: tests drive the clock). */
export function stopSignalFilter(repeatWindowMs = 2000): (nowMs: number) => StopDecision {
  let firstAt: number | undefined;
  return (nowMs) => {
    if (firstAt === undefined) {
      firstAt = nowMs;
      return 'stop';
    }
    return nowMs - firstAt < repeatWindowMs ? 'ignore' : 'force';
  };
}

export function onStopSignals(handlers: { stop(signal: NodeJS.Signals): void; force(signal: NodeJS.Signals): void }, repeatWindowMs = 2000): void {
  const decide = stopSignalFilter(repeatWindowMs);
  const onSignal = (signal: NodeJS.Signals): void => {
    const decision = decide(Date.now());
    if (decision === 'stop') handlers.stop(signal);
    else if (decision === 'force') handlers.force(signal);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}
