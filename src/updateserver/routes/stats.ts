/** `POST {stats}` (CAPGO-PROTOCOL.md §3): device events, a JSON array or a single object, rolled up per channel. */
import type { Express } from 'express';
import { isPlainObject, parseIdentity, RequestError, type DeviceInfo } from '../device-request.js';
import { resolveChannel } from '../policy.js';
import { sendJson } from '../respond.js';
import { timed, type RouteContext } from '../route-context.js';

export function mountStats(app: Express, ctx: RouteContext): void {
  const { metrics, options: o } = ctx;
  app.post(
    ctx.paths.stats,
    ctx.admission.limitAddress,
    ctx.statsJson,
    timed(ctx, 'stats', (req, res) => {
      const body: unknown = req.body;
      if (body === undefined)
        throw new RequestError(400, 'invalid_json_body', 'the body must be a JSON object or array');
      const events: unknown[] = Array.isArray(body) ? body : [body];
      if (events.length > o.maxStatsEvents) {
        throw new RequestError(400, 'too_many_events', `at most ${o.maxStatsEvents} events per request`);
      }
      let admitted = false;
      for (const ev of events) {
        if (!isPlainObject(ev)) {
          metrics.statsDropped.inc({ reason: 'invalid' });
          continue;
        }
        let id: { deviceId: string; appId: string };
        try {
          id = parseIdentity(ev);
        } catch {
          metrics.statsDropped.inc({ reason: 'invalid' });
          continue;
        }
        if (!admitted) {
          if (!ctx.admission.admitDevice(res, id.deviceId)) return;
          admitted = true;
        }
        const app = ctx.indexes.app(id.appId);
        if (!app) {
          metrics.statsDropped.inc({ reason: 'unknown_app' });
          continue;
        }
        const action = ev['action'];
        const versionName = ev['version_name'];
        if (typeof action !== 'string' || typeof versionName !== 'string') {
          metrics.statsDropped.inc({ reason: 'invalid' });
          continue;
        }
        const platform = ev['platform'];
        const { channel } = resolveChannel(app, {
          deviceId: id.deviceId,
          customId: typeof ev['custom_id'] === 'string' ? ev['custom_id'] : '',
          defaultChannel: typeof ev['defaultChannel'] === 'string' ? ev['defaultChannel'] : '',
          platform:
            platform === 'ios' || platform === 'android' || platform === 'electron'
              ? platform
              : ('none' as DeviceInfo['platform']),
        });
        ctx.stats.record(app, channel.channel.name, versionName, action);
      }
      sendJson(res, 200, '{"status":"ok"}');
    }),
  );
}
