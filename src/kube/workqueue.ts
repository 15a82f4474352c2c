/**
 * A rate-limited, de-duplicating work queue with client-go/controller-runtime semantics:
 * - a key is queued at most once; a key being processed is never handed out again until `done(key)`;
 * - adding a key while it is processed marks it dirty, and `done` re-queues it;
 * - `addRateLimited` waits max(per-item exponential backoff 5 ms → 1000 s, overall token bucket 10 qps / burst 100);
 * - `forget` resets the per-item backoff; `addAfter` delays an add (the earliest pending time wins);
 * - `shutdown` stops accepting adds; `get` then drains what is queued and finally returns undefined.
 */
import { realClock, type Clock, type TimerHandle } from './clock.js';
import type { WorkqueueMetrics } from './metrics.js';

export interface RateLimiter {
  /** Delay before the item may be retried; records one more failure. */
  when(item: string): number;
  forget(item: string): void;
  numRequeues(item: string): number;
}

/** Per-item exponential backoff: base * 2^failures, capped. */
export class ItemExponentialFailureRateLimiter implements RateLimiter {
  private readonly failures = new Map<string, number>();
  constructor(
    private readonly baseMs = 5,
    private readonly maxMs = 1_000_000,
  ) {}

  when(item: string): number {
    const exp = this.failures.get(item) ?? 0;
    this.failures.set(item, exp + 1);
    const backoff = this.baseMs * Math.pow(2, exp);
    return Number.isFinite(backoff) ? Math.min(backoff, this.maxMs) : this.maxMs;
  }

  forget(item: string): void {
    this.failures.delete(item);
  }

  numRequeues(item: string): number {
    return this.failures.get(item) ?? 0;
  }
}

/** Overall token bucket (golang.org/x/time/rate semantics: reservations may drive the bucket negative). */
export class BucketRateLimiter implements RateLimiter {
  private tokens: number;
  private last: number;
  constructor(
    private readonly qps = 10,
    private readonly burst = 100,
    private readonly clock: Clock = realClock,
  ) {
    this.tokens = burst;
    this.last = clock.now();
  }

  when(_item: string): number {
    const now = this.clock.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.qps);
    this.last = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : (-this.tokens / this.qps) * 1000;
  }

  forget(_item: string): void {}

  numRequeues(_item: string): number {
    return 0;
  }
}

/** The worst (longest) delay of several limiters. */
export class MaxOfRateLimiter implements RateLimiter {
  private readonly limiters: RateLimiter[];
  constructor(...limiters: RateLimiter[]) {
    this.limiters = limiters;
  }
  when(item: string): number {
    return Math.max(0, ...this.limiters.map((l) => l.when(item)));
  }
  forget(item: string): void {
    for (const l of this.limiters) l.forget(item);
  }
  numRequeues(item: string): number {
    return Math.max(0, ...this.limiters.map((l) => l.numRequeues(item)));
  }
}

/** client-go's DefaultControllerRateLimiter. */
export function defaultControllerRateLimiter(clock: Clock = realClock): RateLimiter {
  return new MaxOfRateLimiter(
    new ItemExponentialFailureRateLimiter(5, 1_000_000),
    new BucketRateLimiter(10, 100, clock),
  );
}

export interface WorkQueueOptions {
  name: string;
  clock?: Clock;
  rateLimiter?: RateLimiter;
  metrics?: WorkqueueMetrics;
}

export class WorkQueue {
  readonly name: string;
  private readonly clock: Clock;
  private readonly rateLimiter: RateLimiter;
  private readonly metrics: WorkqueueMetrics | undefined;
  private readonly queue: string[] = [];
  private head = 0;
  private readonly dirty = new Set<string>();
  private readonly processing = new Map<string, number>();
  private readonly addedAt = new Map<string, number>();
  private readonly waiting = new Map<string, { readyAt: number; timer: TimerHandle }>();
  private readonly getters: ((item: string | undefined) => void)[] = [];
  private readonly drainers: (() => void)[] = [];
  private shuttingDown = false;

  constructor(opts: WorkQueueOptions) {
    this.name = opts.name;
    this.clock = opts.clock ?? realClock;
    this.rateLimiter = opts.rateLimiter ?? defaultControllerRateLimiter(this.clock);
    this.metrics = opts.metrics;
    this.metrics?.registerQueue(this.name, {
      unfinishedWorkSeconds: () => {
        const now = this.clock.now();
        let total = 0;
        for (const start of this.processing.values()) total += now - start;
        return total / 1000;
      },
      longestRunningProcessorSeconds: () => {
        const now = this.clock.now();
        let oldest = now;
        for (const start of this.processing.values()) oldest = Math.min(oldest, start);
        return (now - oldest) / 1000;
      },
    });
  }

  /** Keys waiting to be handed out (not counting delayed or in-flight keys). */
  len(): number {
    return this.queue.length - this.head;
  }

  /** Keys currently handed out and not yet done. */
  inFlight(): number {
    return this.processing.size;
  }

  isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  add(item: string): void {
    if (this.shuttingDown || this.dirty.has(item)) return;
    this.metrics?.adds.inc({ name: this.name });
    this.dirty.add(item);
    if (!this.addedAt.has(item)) this.addedAt.set(item, this.clock.now());
    if (this.processing.has(item)) return;
    this.push(item);
  }

  /** Adds the key once ms have passed; if it is already waiting, the earlier time wins. */
  addAfter(item: string, ms: number): void {
    if (this.shuttingDown) return;
    if (ms <= 0) {
      this.add(item);
      return;
    }
    const readyAt = this.clock.now() + ms;
    const existing = this.waiting.get(item);
    if (existing && existing.readyAt <= readyAt) return;
    existing?.timer.cancel();
    const timer = this.clock.setTimer(() => {
      this.waiting.delete(item);
      this.add(item);
    }, ms);
    this.waiting.set(item, { readyAt, timer });
  }

  /**
   * Adds the key unless it is backing off after failures (a rate-limited retry is already scheduled): for resyncs,
   * which must not turn a growing backoff into a fixed period.
   */
  addUnlessBackingOff(item: string): void {
    if (this.rateLimiter.numRequeues(item) > 0) return;
    this.add(item);
  }

  addRateLimited(item: string): void {
    this.metrics?.retries.inc({ name: this.name });
    this.addAfter(item, this.rateLimiter.when(item));
  }

  forget(item: string): void {
    this.rateLimiter.forget(item);
  }

  numRequeues(item: string): number {
    return this.rateLimiter.numRequeues(item);
  }

  /** The next key to process, or undefined once the queue is shut down and drained of queued keys. */
  get(): Promise<string | undefined> {
    if (this.len() > 0) return Promise.resolve(this.take());
    if (this.shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.getters.push(resolve));
  }

  done(item: string): void {
    const started = this.processing.get(item);
    if (started === undefined) return;
    this.processing.delete(item);
    this.metrics?.workDuration.observe({ name: this.name }, (this.clock.now() - started) / 1000);
    if (this.dirty.has(item)) this.push(item);
    else if (this.processing.size === 0) this.notifyDrained();
  }

  /** Stops accepting adds, cancels delayed adds and wakes idle getters; queued keys are still handed out. */
  shutdown(): void {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    for (const w of this.waiting.values()) w.timer.cancel();
    this.waiting.clear();
    if (this.len() === 0) {
      for (const g of this.getters.splice(0)) g(undefined);
    }
    this.metrics?.unregisterQueue(this.name);
  }

  /** Shuts down, then resolves once every handed-out key is done. */
  async shutdownWithDrain(): Promise<void> {
    this.shutdown();
    if (this.processing.size === 0) return;
    await new Promise<void>((resolve) => this.drainers.push(resolve));
  }

  private push(item: string): void {
    const getter = this.getters.shift();
    if (getter) {
      this.queue.push(item);
      getter(this.take());
      return;
    }
    this.queue.push(item);
    this.metrics?.depth.set({ name: this.name }, this.len());
  }

  private take(): string {
    const item = this.queue[this.head++] as string;
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    const now = this.clock.now();
    const added = this.addedAt.get(item);
    if (added !== undefined) {
      this.metrics?.queueDuration.observe({ name: this.name }, (now - added) / 1000);
      this.addedAt.delete(item);
    }
    this.metrics?.depth.set({ name: this.name }, this.len());
    this.processing.set(item, now);
    this.dirty.delete(item);
    if (this.shuttingDown && this.len() === 0) {
      for (const g of this.getters.splice(0)) g(undefined);
    }
    return item;
  }

  private notifyDrained(): void {
    if (!this.shuttingDown) return;
    for (const d of this.drainers.splice(0)) d();
  }
}
