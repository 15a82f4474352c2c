/** What every device route gets: options, paths, the index, limits, metrics, answers and body readers. */
import type { Request, RequestHandler, Response } from 'express';
import type { Logger } from '../observability/logger.js';
import type { Admission } from './admission.js';
import type { Answers } from './answers.js';
import type { ChannelOverrides } from './channel-overrides.js';
import type { UpdateServerMetrics } from './metrics.js';
import type { IndexSource, ServicePaths, UpdateServerOptions } from './options.js';
import type { RequestMetrics } from './request-metrics.js';
import type { StatsAggregator } from './stats-rollup.js';

export interface RouteContext {
  readonly options: UpdateServerOptions;
  readonly paths: ServicePaths;
  readonly indexes: IndexSource;
  readonly stats: StatsAggregator;
  readonly metrics: UpdateServerMetrics;
  readonly logger: Logger;
  readonly admission: Admission;
  readonly requests: RequestMetrics;
  readonly answers: Answers;
  /** Legacy plugins' server-side channel overrides, when enabled. */
  readonly overrides: ChannelOverrides | undefined;
  /** Body reader of update and channel calls. */
  readonly smallJson: RequestHandler;
  /** Body reader of stats batches. */
  readonly statsJson: RequestHandler;
}

/** Wraps a route handler: records its metrics under `route` and passes what it throws to the error handler. */
export function timed(
  ctx: RouteContext,
  route: string,
  handler: (req: Request, res: Response) => void | Promise<void>,
): RequestHandler {
  return async (req, res, next) => {
    ctx.requests.observe(route, res);
    try {
      await handler(req, res);
    } catch (err) {
      next(err);
    }
  };
}
