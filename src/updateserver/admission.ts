/**
 * Rate-limit glue of the device API: a token bucket per client address (through trusted proxies only) and one per
 * device id; over budget → 429 `too_many_requests` with `Retry-After` (devices then back off globally, §2.4).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RequestHandler } from 'express';
import proxyaddr from 'proxy-addr';
import type { UpdateServerMetrics } from './metrics.js';
import type { UpdateServerOptions } from './options.js';
import { TokenBucketLimiter } from './rate-limit.js';
import { sendJson } from './respond.js';

export class Admission {
  private readonly deviceLimiter: TokenBucketLimiter;
  private readonly addressLimiter: TokenBucketLimiter;
  /** express middleware form of {@link admitAddress}. */
  readonly limitAddress: RequestHandler = (req, res, next) => {
    if (this.admitAddress(req, res)) next();
  };

  constructor(
    private readonly options: UpdateServerOptions,
    private readonly metrics: UpdateServerMetrics,
    /** express's compiled "trust proxy" function, so the address is the one `req.ip` computes. */
    private readonly trustFn: (addr: string, i: number) => boolean,
  ) {
    this.deviceLimiter = new TokenBucketLimiter({ perMinute: options.rateLimitPerDevice });
    this.addressLimiter = new TokenBucketLimiter({ perMinute: options.rateLimitPerAddress });
  }

  /** Returns false (and answers 429) when the client address is over its budget. */
  admitAddress(req: IncomingMessage, res: ServerResponse): boolean {
    const a = this.addressLimiter.take(this.clientAddress(req));
    if (a.allowed) return true;
    this.tooMany(res, 'address', a.retryAfterSeconds);
    return false;
  }

  /** Returns false (and answers 429) when the device is over its budget. */
  admitDevice(res: ServerResponse, deviceId: string): boolean {
    const a = this.deviceLimiter.take(deviceId);
    if (a.allowed) return true;
    this.tooMany(res, 'device', a.retryAfterSeconds);
    return false;
  }

  private clientAddress(req: IncomingMessage): string {
    return (
      (this.options.trustProxy === false ? req.socket.remoteAddress : proxyaddr(req, this.trustFn)) ??
      'unknown'
    );
  }

  private tooMany(res: ServerResponse, scope: 'device' | 'address', retryAfter: number): void {
    this.metrics.rateLimited.inc({ scope });
    sendJson(
      res,
      429,
      { error: 'too_many_requests', message: 'Too many requests, retry later', kind: 'failed' },
      { 'Retry-After': String(retryAfter) },
    );
  }
}
