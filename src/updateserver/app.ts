/**
 * The device-facing app (no listen): Capgo's protocol served from the in-memory release index. This file only
 * composes; each endpoint lives in its own module under `routes/`:
 *
 * - POST {update}: `routes/updates.ts` (the hot path, a plain listener in front of express)
 * - POST {update}/manifest_size: `routes/manifest-size.ts`
 * - POST {stats}: `routes/stats.ts`
 * - POST/PUT/GET/DELETE {channel}: `routes/channel-self.ts`
 * - GET/HEAD {bundles}/<object key>: `downloads.ts`
 * - GET /healthz, /readyz, /openapi.json: `routes/ops.ts`
 *
 * `/metrics` is served on the admin port only (it is not for devices). Every answer is JSON; non-update answers are
 * `{error, message, kind}` (`answers.ts`, `respond.ts`); a request never sees a stack trace.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import { Admission } from './admission.js';
import { Answers } from './answers.js';
import { jsonBody } from './body.js';
import { createDownloadHandler } from './downloads.js';
import {
  DEFAULT_UPDATE_SERVER_OPTIONS,
  servicePaths,
  type UpdateServerDeps,
  type UpdateServerOptions,
} from './options.js';
import { RequestMetrics } from './request-metrics.js';
import { createErrorHandler, sendError } from './respond.js';
import { timed, type RouteContext } from './route-context.js';
import { mountChannelSelf } from './routes/channel-self.js';
import { mountManifestSize } from './routes/manifest-size.js';
import { mountOps } from './routes/ops.js';
import { mountStats } from './routes/stats.js';
import { createUpdateListener } from './routes/updates.js';

/**
 * The express app of the device API. `requestListener` is the same app with the update check — the one hot path —
 * in front of it; give it to `http.createServer`. The express app alone does not answer update checks.
 */
export type UpdateServerApp = express.Express & {
  requestListener: (req: IncomingMessage, res: ServerResponse) => void;
};

export function createUpdateServer(deps: UpdateServerDeps): UpdateServerApp {
  const o: UpdateServerOptions = { ...DEFAULT_UPDATE_SERVER_OPTIONS, ...deps.options };
  const paths = servicePaths(o);
  const { indexes, metrics, logger } = deps;

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('trust proxy', o.trustProxy);
  app.set('query parser', 'simple');

  const requests = new RequestMetrics(metrics);
  const ctx: RouteContext = {
    options: o,
    paths,
    indexes,
    stats: deps.stats,
    metrics,
    logger,
    admission: new Admission(o, metrics, app.get('trust proxy fn') as (addr: string, i: number) => boolean),
    requests,
    overrides: deps.overrides,
    answers: new Answers(o, paths, deps.store, requests, logger, indexes),
    smallJson: jsonBody(o.maxBodyBytes, o.maxJsonDepth),
    statsJson: jsonBody(o.maxStatsBodyBytes, o.maxJsonDepth),
  };

  mountOps(app, ctx, () => deps.accepting?.() ?? true);
  // Downloads have no request-count limit: a delta install fetches thousands of files in parallel.
  const download = createDownloadHandler({
    store: deps.store,
    objects: () => indexes.snapshot.objects,
    logger,
    metrics,
    retryAfterSeconds: o.retryAfterSeconds,
    sendError,
  });
  app.use(paths.bundles, timed(ctx, 'bundles', download));
  mountManifestSize(app, ctx);
  mountStats(app, ctx);
  mountChannelSelf(app, ctx);

  app.use((_req, res) => sendError(res, 404, 'not_found', 'No such endpoint'));
  const handleError = createErrorHandler(logger, o.maxJsonDepth);
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => handleError(err, req, res));

  return Object.assign(app, { requestListener: createUpdateListener(ctx, app, handleError) });
}
