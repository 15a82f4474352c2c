/**
 * `POST {stats}` (CAPGO-PROTOCOL.md §3), answered as Capgo's `plugins/stats.ts`: a single event object gets
 * `{status:"ok"}` or its 4xx; a batch (JSON array) gets `{status:"ok", results:[{status, index, error?, message?}]}`,
 * one result per event, an invalid event an error at its index; an empty batch `results: []`; a batch whose events
 * name different app ids is refused as a whole (`mixed_app_ids`, HTTP 200) before anything is counted.
 * Events are counted per (app, channel as resolved for the device, version, action).
 */
import type { Express } from 'express';
import type { CompiledApp } from '../compiled-index.js';
import { isPlainObject, parseDeviceInfo, RequestError } from '../device-request.js';
import { resolveChannel } from '../policy.js';
import { sendJson } from '../respond.js';
import { timed, type RouteContext } from '../route-context.js';

const APP_ID = /^[a-z0-9]+(\.[\w-]+)+$/i;
const MAX_METADATA_FIELDS = 30;

/** Capgo's stats metadata rule: an object of ≤ 30 string values, keys ≤ 64, values ≤ 2048 characters. */
function checkMetadata(ev: Record<string, unknown>): void {
  const m = ev['metadata'];
  if (m === undefined) return;
  const bad = (why: string): never => {
    throw new RequestError(400, 'invalid_json_body', `metadata ${why}`);
  };
  if (!isPlainObject(m)) bad('must be an object with string values');
  const entries = Object.entries(m as Record<string, unknown>);
  if (entries.length > MAX_METADATA_FIELDS) bad(`must contain at most ${MAX_METADATA_FIELDS} fields`);
  for (const [k, v] of entries) {
    if (k.length > 64) bad('keys must contain at most 64 characters');
    if (typeof v !== 'string') bad('values must be strings');
    if ((v as string).length > 2048) bad('values must contain at most 2048 characters');
  }
}

export function mountStats(app: Express, ctx: RouteContext): void {
  const { metrics, options: o } = ctx;

  /** Validates and counts one event; throws a RequestError for an invalid one. */
  function record(app: CompiledApp, ev: unknown): void {
    const info = parseDeviceInfo(ev, 'stats');
    const e = ev as Record<string, unknown>;
    checkMetadata(e);
    const action = e['action'];
    if (action !== undefined && typeof action !== 'string')
      throw new RequestError(400, 'invalid_json_body', 'action must be a string');
    if (action === undefined || action === '') return;
    const resolved = resolveChannel(app, info);
    ctx.stats.record(app, resolved?.channel.channel.name ?? '_none', info.versionName, action, info.deviceId);
  }

  app.post(
    ctx.paths.stats,
    ctx.admission.limitAddress,
    ctx.statsJson,
    timed(ctx, 'stats', (req, res) => {
      const body: unknown = req.body;
      const batch = Array.isArray(body);
      const events: unknown[] = batch ? body : [body];
      if (batch && events.length === 0) return sendJson(res, 200, '{"status":"ok","results":[]}');
      if (events.length > o.maxStatsEvents) {
        throw new RequestError(400, 'too_many_events', `at most ${o.maxStatsEvents} events per request`);
      }
      const first = events[0];
      const appId = isPlainObject(first) ? first['app_id'] : undefined;
      if (typeof appId !== 'string' || appId === '')
        throw new RequestError(400, 'invalid_app_id', 'App ID is required');
      if (!APP_ID.test(appId))
        throw new RequestError(400, 'invalid_app_id', 'App ID must be a reverse domain string');
      for (let i = 1; i < events.length; i++) {
        const ev = events[i];
        const id = isPlainObject(ev) ? ev['app_id'] : undefined;
        if (typeof id !== 'string' || id === '')
          return sendJson(res, 200, {
            error: 'invalid_app_id',
            message: 'App ID is required',
            kind: 'failed',
          });
        if (!APP_ID.test(id)) {
          return sendJson(res, 200, {
            error: 'invalid_app_id',
            message: 'App ID must be a reverse domain string',
            kind: 'failed',
          });
        }
        if (id !== appId) {
          return sendJson(res, 200, {
            error: 'mixed_app_ids',
            message: 'All events in a batch must have the same app_id',
            kind: 'failed',
          });
        }
      }
      const device = isPlainObject(first) ? first['device_id'] : undefined;
      if (typeof device === 'string' && !ctx.admission.admitDevice(res, device.toLowerCase())) return;
      const app = ctx.indexes.app(appId);
      if (!batch) {
        if (!app) {
          metrics.statsDropped.inc({ reason: 'unknown_app' });
          return ctx.answers.unknownApp(res, appId);
        }
        record(app, first);
        return sendJson(res, 200, '{"status":"ok"}');
      }
      const results: Array<Record<string, unknown>> = [];
      for (let i = 0; i < events.length; i++) {
        if (!app) {
          metrics.statsDropped.inc({ reason: 'unknown_app' });
          results.push({
            status: 'error',
            error: 'app_not_found',
            message: `App ${appId} is not served here`,
            index: i,
          });
          continue;
        }
        try {
          record(app, events[i]);
          results.push({ status: 'ok', index: i });
        } catch (err) {
          metrics.statsDropped.inc({ reason: 'invalid' });
          const e =
            err instanceof RequestError
              ? err
              : new RequestError(400, 'processing_error', 'Error processing event');
          results.push({ status: 'error', error: e.code, message: e.message, index: i });
        }
      }
      sendJson(res, 200, { status: 'ok', results });
    }),
  );
}
