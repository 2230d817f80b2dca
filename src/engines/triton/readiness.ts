/**
 * Per-model readiness of the Triton models this server uses, kept current in the background: checked
 * at start (ModelReady for each), then re-checked on an interval — quickly with backoff while
 * something is down, slowly while all is well. `/ready` reads the latest answer without waiting on
 * the network, and new calls only go to Triton while its models are ready.
 */
import type { TritonClient } from './client.js';

export interface ModelReadiness {
  ready: boolean;
  /** Why it is not ready (unreachable, not loaded…). */
  reason?: string;
  checkedAt: number;
}

export interface ReadinessLogger {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
  error(obj: Record<string, unknown>, msg: string): void;
}

export interface ReadinessOptions {
  /** Re-check interval while every model is ready. */
  healthyIntervalMs?: number;
  /** First retry delay while something is down; doubles up to `maxBackoffMs`. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  deadlineMs?: number;
}

export class TritonReadiness {
  private readonly status = new Map<string, ModelReadiness>();
  private timer: NodeJS.Timeout | undefined;
  private backoffMs: number;
  private stopped = false;
  /** One check at a time: a failure seen by tens of calls at once must not start tens of loops. */
  private checking = false;
  private recheck = false;
  private readonly readyListeners = new Set<() => void>();
  private readonly healthyIntervalMs: number;
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly deadlineMs: number;

  constructor(
    private readonly client: TritonClient,
    readonly models: readonly string[],
    private readonly logger: ReadinessLogger,
    options: ReadinessOptions = {},
  ) {
    this.healthyIntervalMs = options.healthyIntervalMs ?? 5000;
    this.initialBackoffMs = options.initialBackoffMs ?? 500;
    this.maxBackoffMs = options.maxBackoffMs ?? 10_000;
    this.deadlineMs = options.deadlineMs ?? 1500;
    this.backoffMs = this.initialBackoffMs;
    for (const model of models) this.status.set(model, { ready: false, reason: 'not checked yet', checkedAt: 0 });
  }

  /** True when every model answered ready at the latest check. */
  get allReady(): boolean {
    for (const entry of this.status.values()) if (!entry.ready) return false;
    return true;
  }

  isReady(model: string): boolean {
    return this.status.get(model)?.ready === true;
  }

  snapshot(): Record<string, ModelReadiness> {
    return Object.fromEntries(this.status);
  }

  /** Checks every model now and starts the background re-checks. */
  async start(): Promise<void> {
    await this.check();
    this.schedule();
  }

  /** Checks every model once (also called by the engines when a stream fails). */
  async check(): Promise<void> {
    await Promise.all(
      this.models.map(async (model) => {
        let next: ModelReadiness;
        try {
          const ready = await this.client.modelReady(model, { deadlineMs: this.deadlineMs });
          next = ready ? { ready, checkedAt: Date.now() } : { ready, reason: 'model not ready on the server', checkedAt: Date.now() };
        } catch (error) {
          next = { ready: false, reason: (error as Error).message, checkedAt: Date.now() };
        }
        const previous = this.status.get(model);
        this.status.set(model, next);
        if (previous !== undefined && previous.ready !== next.ready) {
          if (next.ready) this.logger.info({ event: 'triton_model_ready', model, url: this.client.url }, 'Triton model ready');
          else this.logger.error({ event: 'triton_model_unready', model, url: this.client.url, reason: next.reason }, 'Triton model not ready');
        } else if (previous?.checkedAt === 0 && !next.ready) {
          this.logger.error({ event: 'triton_model_unready', model, url: this.client.url, reason: next.reason }, 'Triton model not ready');
        }
      }),
    );
  }

  /** Called each time every model has become ready again (e.g. to re-render prompts in Triton's voice). */
  onAllReady(listener: () => void): () => void {
    this.readyListeners.add(listener);
    return () => this.readyListeners.delete(listener);
  }

  /** A stream failed: look again soon rather than at the next healthy interval. */
  suspect(): void {
    if (this.stopped) return;
    this.backoffMs = this.initialBackoffMs;
    if (this.checking) {
      this.recheck = true;
      return;
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.tick(), 0);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private schedule(): void {
    if (this.stopped) return;
    const delay = this.allReady ? this.healthyIntervalMs : this.backoffMs;
    this.backoffMs = this.allReady ? this.initialBackoffMs : Math.min(this.backoffMs * 2, this.maxBackoffMs);
    this.timer = setTimeout(() => void this.tick(), delay);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    const wasReady = this.allReady;
    try {
      do {
        this.recheck = false;
        await this.check();
      } while (this.recheck && !this.stopped);
    } finally {
      this.checking = false;
    }
    if (!wasReady && this.allReady) for (const listener of this.readyListeners) listener();
    clearTimeout(this.timer);
    this.schedule();
  }
}
