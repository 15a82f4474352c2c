/** `GET /healthz`, `/readyz` and `/openapi.json` of the device API. */
import type { Express } from 'express';
import { openApiDocument } from '../openapi.js';
import { sendJson } from '../respond.js';
import type { RouteContext } from '../route-context.js';

export function mountOps(app: Express, ctx: RouteContext, accepting: () => boolean): void {
  const { indexes } = ctx;
  app.get('/healthz', (_req, res) => sendJson(res, 200, { status: 'ok' }));
  // Devices and whatever sits in front of them see the state only: the detail (app ids, S3 errors that name the
  // endpoint) is on the admin port's /readyz.
  app.get('/readyz', (_req, res) => {
    const ok = accepting();
    if (indexes.ready && ok)
      sendJson(res, 200, { status: 'ok', ...(indexes.reason ? { degraded: true } : {}) });
    else
      sendJson(res, 503, {
        status: 'not_ready',
        reason: ok ? 'release index not loaded yet' : 'shutting down',
      });
  });
  const openapi = JSON.stringify(openApiDocument(ctx.paths));
  app.get('/openapi.json', (_req, res) => {
    res.setHeader('Cache-Control', 'public, max-age=300');
    res.status(200).type('application/json').end(openapi);
  });
}
