/**
 * `POST {update}` — the update check (CAPGO-PROTOCOL.md §2), the one hot path: every device calls it at every start
 * and foreground. It is served by a plain node:http listener in front of the express app, without express's
 * per-request overhead; everything else falls through to express.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { hashIdentifier } from '../../observability/hash.js';
import { readJsonBody } from '../body.js';
import type { CompiledApp } from '../compiled-index.js';
import { parseDeviceInfo, type DeviceInfo } from '../device-request.js';
import { decideUpdate, keepsChannelOnServer } from '../policy.js';
import type { RouteContext } from '../route-context.js';

type Listener = (req: IncomingMessage, res: ServerResponse) => void;
type ErrorHandler = (err: unknown, req: IncomingMessage, res: ServerResponse) => void;

export function updateCheck(ctx: RouteContext, body: unknown, res: ServerResponse): void | Promise<void> {
  const info = parseDeviceInfo(body);
  if (!ctx.admission.admitDevice(res, info.deviceId)) return;
  const app = ctx.indexes.app(info.appId);
  if (!app) return ctx.answers.unknownApp(res, info.appId);
  // Only legacy plugins have server-side overrides: current ones never leave the synchronous path.
  if (ctx.overrides && keepsChannelOnServer(info.pluginVersion)) {
    return ctx.overrides.get(app.ref, info.deviceId).then(
      (stored) => decideAndAnswer(ctx, app, info, res, stored),
      (error: unknown) => {
        ctx.logger.warn({ app: app.appId, err: (error as Error).message }, 'channel override lookup failed');
        return decideAndAnswer(ctx, app, info, res, undefined);
      },
    );
  }
  return decideAndAnswer(ctx, app, info, res, undefined);
}

function decideAndAnswer(
  ctx: RouteContext,
  app: CompiledApp,
  info: DeviceInfo,
  res: ServerResponse,
  stored: string | undefined,
): void | Promise<void> {
  const decision = decideUpdate(app, info, stored);
  if (ctx.logger.isLevelEnabled('debug')) {
    ctx.logger.debug(
      {
        device: hashIdentifier(info.deviceId),
        app: app.appId,
        answer: decision.type === 'error' ? decision.error : decision.type,
      },
      'update check',
    );
  }
  return ctx.answers.answer(res, app, decision);
}

/** The request listener: POST {update} here, anything else to `fallthrough` (the express app). */
export function createUpdateListener(
  ctx: RouteContext,
  fallthrough: Listener,
  handleError: ErrorHandler,
): Listener {
  const o = ctx.options;
  const updatePaths = new Set([ctx.paths.update, `${ctx.paths.update}/`]);
  return (req, res) => {
    const url = req.url ?? '';
    const q = url.indexOf('?');
    if (req.method !== 'POST' || !updatePaths.has(q < 0 ? url : url.slice(0, q))) {
      fallthrough(req, res);
      return;
    }
    // Metrics are recorded when the answer is handed to the socket (no 'finish' listener on the hot path).
    const start = performance.now();
    const done = (): void =>
      ctx.requests.record('updates', res.statusCode, (performance.now() - start) / 1000);
    const fail = (e: unknown): void => {
      handleError(e, req, res);
      done();
    };
    if (!ctx.admission.admitAddress(req, res)) return done();
    readJsonBody(req, o.maxBodyBytes, o.maxJsonDepth, (err, body) => {
      if (err) return fail(err);
      let pending: void | Promise<void>;
      try {
        pending = updateCheck(ctx, body, res);
      } catch (e) {
        return fail(e);
      }
      if (pending) pending.then(done, fail);
      else done();
    });
  };
}
