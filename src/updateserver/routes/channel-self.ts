/**
 * `{channel}` — channel self-assignment (CAPGO-PROTOCOL.md §8), as Capgo's `plugins/channel_self.ts` answers it:
 * POST setChannel, PUT getChannel, GET listChannels, DELETE unsetChannel (plugins < 5.34/6.34/7.34 only).
 *
 * Plugins ≥ 5.34 / 6.34 / 7.34 / 8.x keep a self-assigned channel on the device: setChannel only validates, getChannel
 * reports what the body carries. Older plugins expect the server to store it: setChannel stores an override (removed
 * again when the device selects the public channel), getChannel reports it, DELETE removes it (channel-overrides.ts,
 * ADR 0016).
 * Channel errors are HTTP 200 with `{error, message}` (plus `kind: failed`, as every error of this service).
 */
import type { Express, Response } from 'express';
import type { CompiledApp, CompiledChannel } from '../compiled-index.js';
import { parseDeviceInfo, queryToBody, type DeviceInfo } from '../device-request.js';
import { keepsChannelOnServer, resolveChannel } from '../policy.js';
import { sendJson } from '../respond.js';
import { timed, type RouteContext } from '../route-context.js';

const error200 = (res: Response, error: string, message: string, extra?: Record<string, unknown>): void =>
  sendJson(res, 200, { error, message, ...extra, kind: 'failed' });

const CANNOT_OVERRIDE = "Cannot change device override current channel don't allow it";

const isLegacy = (info: DeviceInfo): boolean => keepsChannelOnServer(info.pluginVersion);

/** The owner's pin of this device, if any (Capgo's channel_devices override). */
function pinOf(app: CompiledApp, info: DeviceInfo): CompiledChannel | undefined {
  const r = resolveChannel(app, { ...info, defaultChannel: '' });
  return r?.via === 'pinned' ? r.channel : undefined;
}

export function mountChannelSelf(app: Express, ctx: RouteContext): void {
  const { admission, indexes, answers, overrides } = ctx;
  const path = ctx.paths.channel;

  /** A legacy device's stored override, while its channel still exists. */
  const storedOf = async (app: CompiledApp, info: DeviceInfo): Promise<CompiledChannel | undefined> => {
    if (!overrides) return undefined;
    const name = await overrides.get(app.ref, info.deviceId);
    return name === undefined ? undefined : app.byObjectName.get(name);
  };

  app.post(
    path,
    admission.limitAddress,
    ctx.smallJson,
    timed(ctx, 'channel_set', async (req, res) => {
      const info = parseDeviceInfo(req.body, 'channel');
      if (!admission.admitDevice(res, info.deviceId)) return;
      if (info.channel === '') return error200(res, 'missing_channel', 'Cannot find channel in body');
      const app = indexes.app(info.appId);
      if (!app) return answers.unknownApp(res, info.appId);
      const legacy = isLegacy(info);
      const current = legacy ? (pinOf(app, info) ?? (await storedOf(app, info))) : undefined;
      if (current && !current.channel.policy.allowDeviceSelfSet)
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
      if (!legacy) return sendJson(res, 200, { status: 'ok', allowSet: true });
      if (overrides) {
        // Capgo: selecting the platform's public channel removes the override; selecting another channel stores it.
        const isMain = app.publicChannel[info.platform] === ch;
        try {
          await overrides.set(app.ref, info.deviceId, isMain ? undefined : ch.channel.name);
        } catch (error) {
          ctx.logger.warn({ app: app.appId, err: (error as Error).message }, 'channel override write failed');
          return error200(res, 'override_not_allowed', 'Cannot do channel override');
        }
      }
      sendJson(res, 200, '{"status":"ok"}');
    }),
  );

  app.put(
    path,
    admission.limitAddress,
    ctx.smallJson,
    timed(ctx, 'channel_get', async (req, res) => {
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
      const stored = isLegacy(info) ? await storedOf(app, info) : undefined;
      if (stored) {
        return sendJson(res, 200, {
          channel: stored.deviceName,
          status: 'override',
          allowSet: stored.channel.policy.allowDeviceSelfSet,
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
    timed(ctx, 'channel_unset', async (req, res) => {
      const info = parseDeviceInfo(queryToBody(req.query), 'channel', 'query');
      if (!admission.admitDevice(res, info.deviceId)) return;
      const app = indexes.app(info.appId);
      if (!app) return answers.unknownApp(res, info.appId);
      // Current plugins never call DELETE (the channel lives on the device). A pin cannot be removed by a device.
      if (!isLegacy(info)) return sendJson(res, 200, '{"status":"ok"}');
      const stored = pinOf(app, info) ? undefined : await storedOf(app, info);
      if (!overrides || !stored?.channel.policy.allowDeviceSelfSet)
        return error200(res, 'cannot_override', CANNOT_OVERRIDE);
      try {
        await overrides.set(app.ref, info.deviceId, undefined);
      } catch (error) {
        ctx.logger.warn({ app: app.appId, err: (error as Error).message }, 'channel override write failed');
        return error200(res, 'override_not_allowed', 'Cannot delete channel override');
      }
      sendJson(res, 200, '{"status":"ok"}');
    }),
  );
}
