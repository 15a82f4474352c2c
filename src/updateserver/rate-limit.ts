/**
 * In-memory token buckets keyed by device id or client address, in a bounded map: memory stays constant
 * whatever the number of devices (an evicted key simply starts again with a full bucket, which only errs on the
 * side of letting a request through). Per replica: N replicas allow N times the rate, which is fine for abuse
 * protection and keeps the service stateless.
 */
export interface TokenBucketOptions {
  /** Sustained requests per minute; 0 disables the limiter. */
  perMinute: number;
  /** Bucket size (requests allowed in a burst). Default: perMinute / 2, at least 1. */
  burst?: number;
  /** Most keys tracked at once (default 100,000). */
  maxKeys?: number;
  now?: () => number;
}

interface Bucket {
  tokens: number;
  updated: number;
}

export type Admission = { allowed: true } | { allowed: false; retryAfterSeconds: number };

const ALLOWED: Admission = { allowed: true };

export class TokenBucketLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly ratePerMs: number;
  private readonly burst: number;
  private readonly maxKeys: number;
  private readonly now: () => number;
  readonly enabled: boolean;

  constructor(opts: TokenBucketOptions) {
    this.enabled = opts.perMinute > 0;
    this.ratePerMs = opts.perMinute / 60_000;
    this.burst = Math.max(1, opts.burst ?? Math.ceil(opts.perMinute / 2));
    this.maxKeys = Math.max(1, opts.maxKeys ?? 100_000);
    this.now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.buckets.size;
  }

  take(key: string): Admission {
    if (!this.enabled) return ALLOWED;
    const now = this.now();
    let b = this.buckets.get(key);
    if (b) {
      b.tokens = Math.min(this.burst, b.tokens + (now - b.updated) * this.ratePerMs);
      b.updated = now;
    } else {
      b = { tokens: this.burst, updated: now };
      // Evict in insertion order (cheaper than LRU on the hot path; an evicted key restarts with a full bucket).
      if (this.buckets.size >= this.maxKeys) {
        const oldest = this.buckets.keys().next();
        if (!oldest.done) this.buckets.delete(oldest.value);
      }
      this.buckets.set(key, b);
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return ALLOWED;
    }
    const waitMs = (1 - b.tokens) / this.ratePerMs;
    return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)) };
  }
}
