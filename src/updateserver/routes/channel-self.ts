/**
 * `{channel}` — channel self-assignment (CAPGO-PROTOCOL.md §8): POST setChannel, PUT getChannel, GET listChannels,
 * DELETE unsetChannel (older plugins).
 */
import type { Express, Response } from 'express';
import { parseDeviceInfo, parseIdentity, RequestError, type DeviceInfo } from '../device-request.js';
import { resolveChannel } from '../policy.js';
import { sendJson } from '../respond.js';
import { timed, type RouteContext } from '../route-context.js';

type JsonObject = Record<string, unknown>;

const channelNotFound = (res: Response, name: string): void =>
  sendJson(res, 200, {
    error: 'channel_not_found',
    message: `Channel ${name} does not exist`,
    kind: 'failed',
  });

const cannotOverride = (res: Response): void =>
  sendJson(res, 200, {
    error: 'cannot_override',
    message: 'This device is pinned to a channel by the app owner',
    kind: 'failed',
  });

export function mountChannelSelf(app: Express, ctx: RouteContext): void {
  const { admission, indexes, answers } = ctx;
  const path = ctx.paths.channel;

  app.post(
    path,
    admission.limitAddress,
    ctx.smallJson,
    timed(ctx, 'channel_set', (req, res) => {
      const info = parseDeviceInfo(req.body);
      if (!admission.admitDevice(res, info.deviceId)) return;
      const wanted = (req.body as JsonObject)['channel'];
      if (wanted === undefined || wanted === null || wanted === '') {
        throw new RequestError(400, 'missing_channel', 'channel is required');
      }
      if (typeof wanted !== 'string' || wanted.length > 256)
        throw new RequestError(400, 'invalid_json_body', 'channel must be a string');
      const app = indexes.app(info.appId);
      if (!app) return answers.unknownApp(res, info.appId);
      const resolved = resolveChannel(app, { ...info, defaultChannel: '' });
      if (resolved.via === 'pinned' && resolved.channel.channel.name !== wanted) return cannotOverride(res);
      const ch = app.channels.get(wanted);
      if (!ch) return channelNotFound(res, wanted);
      const isDefault = ch === app.defaultChannel;
      if (!isDefault && !ch.channel.policy.allowDeviceSelfSet) {
        return sendJson(res, 200, {
          error: 'channel_self_set_not_allowed',
          message: `Channel ${wanted} does not allow devices to select it`,
          kind: 'failed',
        });
      }
      if (!ch.channel.policy.platforms.includes(info.platform)) {
        return sendJson(res, 200, {
          error: 'channel_self_set_not_allowed',
          message: `Channel ${wanted} is not available on ${info.platform}`,
          kind: 'failed',
        });
      }
      sendJson(res, 200, { status: 'ok', allowSet: true });
    }),
  );

  app.put(
    path,
    admission.limitAddress,
    ctx.smallJson,
    timed(ctx, 'channel_get', (req, res) => {
      const info = parseDeviceInfo(req.body);
      if (!admission.admitDevice(res, info.deviceId)) return;
      const app = indexes.app(info.appId);
      if (!app) return answers.unknownApp(res, info.appId);
      const r = resolveChannel(app, info);
      const anySelfSet = [...app.channels.values()].some((c) => c.channel.policy.allowDeviceSelfSet);
      sendJson(res, 200, {
        channel: r.channel.channel.name,
        status: r.via === 'default' ? 'default' : 'override',
        allowSet: r.via !== 'pinned' && anySelfSet,
      });
    }),
  );

  app.get(
    path,
    admission.limitAddress,
    timed(ctx, 'channel_list', (req, res) => {
      const query = req.query as JsonObject;
      const id = parseIdentity(query);
      if (!admission.admitDevice(res, id.deviceId)) return;
      const app = indexes.app(id.appId);
      if (!app) return answers.unknownApp(res, id.appId);
      const platform = query['platform'];
      const list = [...app.channels.values()]
        .filter((c) => c.channel.policy.allowDeviceSelfSet)
        .filter(
          (c) =>
            typeof platform !== 'string' ||
            c.channel.policy.platforms.includes(platform as DeviceInfo['platform']),
        )
        .map((c) => ({
          id: c.channel.id,
          name: c.channel.name,
          public: c === app.defaultChannel,
          allow_self_set: true,
        }));
      sendJson(res, 200, list);
    }),
  );

  app.delete(
    path,
    admission.limitAddress,
    timed(ctx, 'channel_unset', (req, res) => {
      const id = parseIdentity(req.query);
      if (!admission.admitDevice(res, id.deviceId)) return;
      const app = indexes.app(id.appId);
      if (!app) return answers.unknownApp(res, id.appId);
      const customId = (req.query as JsonObject)['custom_id'];
      const r = resolveChannel(app, {
        deviceId: id.deviceId,
        customId: typeof customId === 'string' ? customId : '',
        defaultChannel: '',
        platform: 'android',
      });
      if (r.via === 'pinned') return cannotOverride(res);
      // Self-selected channels live on the device (sent back as defaultChannel): nothing to delete here.
      sendJson(res, 200, { status: 'ok' });
    }),
  );
}
