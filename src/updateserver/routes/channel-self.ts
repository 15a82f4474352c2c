/**
 * `{channel}` — channel self-assignment (CAPGO-PROTOCOL.md §8), as Capgo's `plugins/channel_self.ts` answers it:
 * POST setChannel, PUT getChannel, GET listChannels, DELETE unsetChannel (plugins < 5.34/6.34/7.34 only).
 *
 * Plugins ≥ 5.34 / 6.34 / 7.34 / 8.x keep a self-assigned channel on the device: setChannel only validates, getChannel
 * reports what the body carries. Older plugins expected the server to store it; this service keeps no per-device
 * state (ADR 0016): for them setChannel validates and answers ok, and getChannel/DELETE see only owner pins.
 * Channel errors are HTTP 200 with `{error, message}` (plus `kind: failed`, as every error of this service).
 */
import type { Express, Response } from 'express';
import type { CompiledApp, CompiledChannel } from '../compiled-index.js';
import { parseDeviceInfo, queryToBody, type DeviceInfo } from '../device-request.js';
import { pluginGates, resolveChannel } from '../policy.js';
import { sendJson } from '../respond.js';
import { timed, type RouteContext } from '../route-context.js';
import { parseSemver } from '../semver.js';

const error200 = (res: Response, error: string, message: string, extra?: Record<string, unknown>): void =>
  sendJson(res, 200, { error, message, ...extra, kind: 'failed' });

const CANNOT_OVERRIDE = "Cannot change device override current channel don't allow it";

const isLegacy = (info: DeviceInfo): boolean =>
  !pluginGates.localChannelStorage(info.pluginVersion === '' ? null : parseSemver(info.pluginVersion));

/** The owner's pin of this device, if any (Capgo's channel_devices override). */
function pinOf(app: CompiledApp, info: DeviceInfo): CompiledChannel | undefined {
  const r = resolveChannel(app, { ...info, defaultChannel: '' });
  return r?.via === 'pinned' ? r.channel : undefined;
}

export function mountChannelSelf(app: Express, ctx: RouteContext): void {
  const { admission, indexes, answers } = ctx;
  const path = ctx.paths.channel;

  app.post(
    path,
    admission.limitAddress,
    ctx.smallJson,
    timed(ctx, 'channel_set', (req, res) => {
      const info = parseDeviceInfo(req.body, 'channel');
      if (!admission.admitDevice(res, info.deviceId)) return;
      if (info.channel === '') return error200(res, 'missing_channel', 'Cannot find channel in body');
      const app = indexes.app(info.appId);
      if (!app) return answers.unknownApp(res, info.appId);
      const legacy = isLegacy(info);
      const pinned = legacy ? pinOf(app, info) : undefined;
      if (pinned && !pinned.channel.policy.allowDeviceSelfSet)
        return error200(res, 'cannot_override', CANNOT_OVERRIDE);
      const ch = app.channels.get(info.channel);
      if (!ch) {
        return error200(res, 'channel_not_found', 'Cannot find channel', {
          channel: info.channel,
          app_id: info.appId,
        });
      }
      if (!ch.channel.policy.allowDeviceSelfSet) {
        if (ch.isPublic) {
          return error200(
            res,
            'public_channel_self_set_not_allowed',
            'This channel is public and does not allow device self-assignment. Unset the channel and the device will automatically use the public channel.',
            { channel: info.channel, app_id: info.appId },
          );
        }
        return error200(
          res,
          'channel_self_set_not_allowed',
          'This channel does not allow devices to self associate',
          {
            channel: info.channel,
            app_id: info.appId,
          },
        );
      }
      if (legacy) return sendJson(res, 200, '{"status":"ok"}');
      sendJson(res, 200, { status: 'ok', allowSet: true });
    }),
  );

  app.put(
    path,
    admission.limitAddress,
    ctx.smallJson,
    timed(ctx, 'channel_get', (req, res) => {
      const info = parseDeviceInfo(req.body, 'channel');
      if (!admission.admitDevice(res, info.deviceId)) return;
      const app = indexes.app(info.appId);
      if (!app) return answers.unknownApp(res, info.appId);
      const pinned = pinOf(app, info);
      if (pinned) {
        return sendJson(res, 200, {
          channel: pinned.deviceName,
          status: 'override',
          allowSet: pinned.channel.policy.allowDeviceSelfSet,
        });
      }
      if (!isLegacy(info)) {
        // The plugin sends its locally stored channel as `channel`.
        if (info.channel !== '') {
          return sendJson(res, 200, { channel: info.channel, status: 'override', allowSet: true });
        }
        const name =
          info.defaultChannel !== ''
            ? info.defaultChannel
            : (app.publicChannel[info.platform]?.deviceName ?? 'production');
        return sendJson(res, 200, { channel: name, status: 'default' });
      }
      const ch =
        info.defaultChannel !== '' ? app.channels.get(info.defaultChannel) : app.publicChannel[info.platform];
      if (!ch) return error200(res, 'channel_not_found', 'Cannot find channel');
      sendJson(res, 200, { channel: ch.deviceName, status: 'default' });
    }),
  );

  app.get(
    path,
    admission.limitAddress,
    timed(ctx, 'channel_list', (req, res) => {
      const info = parseDeviceInfo(queryToBody(req.query), 'channel_list', 'query');
      if (info.deviceId !== '' && !admission.admitDevice(res, info.deviceId)) return;
      const app = indexes.app(info.appId);
      if (!app) return answers.unknownApp(res, info.appId);
      const list = [];
      for (const c of app.channels.values()) {
        const p = c.channel.policy;
        if (!(p.allowDeviceSelfSet || c.isPublic) || !p.platforms.includes(info.platform)) continue;
        if (info.isEmulator ? !p.allowEmulator : p.allowDevice === false) continue;
        if (info.isProd ? !p.allowProd : !p.allowDev) continue;
        list.push({
          id: c.channel.id,
          name: c.deviceName,
          public: c.isPublic,
          allow_self_set: p.allowDeviceSelfSet,
        });
      }
      sendJson(res, 200, list);
    }),
  );

  app.delete(
    path,
    admission.limitAddress,
    timed(ctx, 'channel_unset', (req, res) => {
      const info = parseDeviceInfo(queryToBody(req.query), 'channel', 'query');
      if (!admission.admitDevice(res, info.deviceId)) return;
      const app = indexes.app(info.appId);
      if (!app) return answers.unknownApp(res, info.appId);
      // Current plugins never call DELETE (the channel lives on the device); older ones had a server-side override,
      // which this service does not keep: only an owner pin could be one, and a pin cannot be removed by a device.
      if (!isLegacy(info)) return sendJson(res, 200, '{"status":"ok"}');
      error200(res, 'cannot_override', CANNOT_OVERRIDE);
    }),
  );
}
