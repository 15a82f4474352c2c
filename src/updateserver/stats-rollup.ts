/**
 * Device stats, aggregated per replica and rolled up to the object store for the controller.
 *
 * ## Rollup object format (read by the controller)
 *
 * Key: `StorageLayout.statsPrefix(app) + "<replica>.json"`, i.e. `<prefix>/<namespace>/<app>/stats/<replica>.json`,
 * one object per update-service replica and app, overwritten at every flush (default every 30 s, and at shutdown)
 * when its counters changed. Body (JSON, `application/json`):
 *
 * ```json
 * { "apiVersion": "liveupdate.dev/stats-rollup/v1",
 *   "kind": "StatsRollup",
 *   "replica": "update-server-6c9f7-abcde",          // LIVEUPDATE_REPLICA_NAME (pod name by default)
 *   "appId": "com.example.app",
 *   "startedAt": "2026-11-29T09:00:00.000Z",          // when this replica process started counting
 *   "updatedAt": "2026-11-29T09:30:00.000Z",          // this flush
 *   "counters": [ { "channel": "production", "version": "1.4.1", "action": "set", "count": 1234 } ],
 *   "devices": { "windowStart": "2026-11-29T09:00:00.000Z", "windowSeconds": 3600,
 *                "counts": [ { "channel": "production", "version": "1.4.1", "count": 812 } ] } }
 * ```
 *
 * Semantics: `count` is cumulative since `startedAt` for this replica process (a Prometheus-style counter). When a
 * replica restarts under the same name, `startedAt` changes and counts start again from zero: readers compute
 * increases between two reads of the same `(replica, startedAt)` and treat a changed `startedAt` as a reset, then sum
 * increases over replicas. `channel` is the channel the update service resolves for the device (pinned → self-set →
 * app default) from the index loaded at the time; `version` is the event's `version_name` when it is a version the
 * index serves or `builtin`, else `other` (per-file failures `"<version>:<file>"` count for `<version>`); `action`
 * is the plugin's action string (any `[a-z0-9_]{1,64}`, else `invalid`). Distinct series are capped per replica;
 * events beyond the cap are counted under channel, version and action `_overflow`.
 * `devices` (optional) counts distinct devices that sent any event for a version in the current window (windows are
 * aligned to multiples of `windowSeconds` since the epoch, so replicas share them); readers sum it over the replicas
 * whose `windowStart` is the newest (a device reaching two replicas in one window counts twice). Device ids stay in
 * the replica's memory, never in the rollup. `truncated` means the replica's cap on tracked devices was reached.
 * Stale rollups of replicas that are gone are the controller's to delete (by `updatedAt` age).
 */
import type { Logger } from '../observability/logger.js';
import type { StorageLayout } from '../storage/layout.js';
import type { ObjectStore } from '../storage/object-store.js';
import type { CompiledApp } from './compiled-index.js';
import type { UpdateServerMetrics } from './metrics.js';

export const STATS_ROLLUP_API_VERSION = 'liveupdate.dev/stats-rollup/v1' as const;
export const OVERFLOW = '_overflow';

export interface StatsRollup {
  apiVersion: typeof STATS_ROLLUP_API_VERSION;
  kind: 'StatsRollup';
  replica: string;
  appId: string;
  startedAt: string;
  updatedAt: string;
  counters: Array<{ channel: string; version: string; action: string; count: number }>;
  devices?: DeviceWindow;
}

export interface DeviceWindow {
  windowStart: string;
  windowSeconds: number;
  counts: Array<{ channel: string; version: string; count: number }>;
  truncated?: boolean;
}

const ACTION = /^[a-z0-9_]{1,64}$/;

interface AppCounters {
  app: CompiledApp;
  counts: Map<string, number>;
  /** Device ids seen per `channel\0version` in the current window. */
  devices: Map<string, Set<string>>;
  dirty: boolean;
}

export class StatsAggregator {
  private readonly perApp = new Map<string, AppCounters>();
  private series = 0;
  private readonly startedAt: string;
  private windowStartMs = 0;
  private trackedDevices = 0;
  private truncated = false;

  constructor(
    private readonly opts: {
      replica: string;
      metrics: UpdateServerMetrics;
      /** Cap on distinct (app, channel, version, action) series per replica (default 20,000). */
      maxSeries?: number;
      /** Length of the device-count window (default 3600 s). */
      windowSeconds?: number;
      /** Cap on (device, version) pairs tracked per window and replica (default 200,000). */
      maxTrackedDevices?: number;
      now?: () => Date;
    },
  ) {
    this.startedAt = (opts.now?.() ?? new Date()).toISOString();
  }

  get seriesCount(): number {
    return this.series;
  }

  private get windowMs(): number {
    return Math.max(1, this.opts.windowSeconds ?? 3600) * 1000;
  }

  /** Starts a new device window when the clock left the current one (every app's counts then start again). */
  private rollWindow(): number {
    const now = (this.opts.now?.() ?? new Date()).getTime();
    const start = Math.floor(now / this.windowMs) * this.windowMs;
    if (start !== this.windowStartMs) {
      this.windowStartMs = start;
      this.trackedDevices = 0;
      this.truncated = false;
      for (const entry of this.perApp.values()) {
        if (entry.devices.size > 0) entry.dirty = true;
        entry.devices.clear();
      }
    }
    return start;
  }

  record(app: CompiledApp, channel: string, versionName: string, action: string, deviceId?: string): void {
    let version = versionName;
    const colon = version.indexOf(':');
    if (colon > 0) version = version.slice(0, colon);
    if (version !== 'builtin' && !app.versions.has(version)) version = 'other';
    const act = ACTION.test(action) ? action : 'invalid';
    let entry = this.perApp.get(app.appId);
    if (!entry) {
      entry = { app, counts: new Map(), devices: new Map(), dirty: false };
      this.perApp.set(app.appId, entry);
    }
    entry.app = app;
    if (deviceId !== undefined) this.recordDevice(entry, `${channel}\u0000${version}`, deviceId);
    let key = `${channel}\u0000${version}\u0000${act}`;
    let labels = { app_id: app.appId, channel, version, action: act };
    if (!entry.counts.has(key) && this.series >= (this.opts.maxSeries ?? 20_000)) {
      key = `${OVERFLOW}\u0000${OVERFLOW}\u0000${OVERFLOW}`;
      labels = { app_id: app.appId, channel: OVERFLOW, version: OVERFLOW, action: OVERFLOW };
    }
    const before = entry.counts.get(key);
    if (before === undefined) this.series++;
    entry.counts.set(key, (before ?? 0) + 1);
    entry.dirty = true;
    this.opts.metrics.deviceEvents.inc(labels);
  }

  private recordDevice(entry: AppCounters, key: string, deviceId: string): void {
    this.rollWindow();
    let seen = entry.devices.get(key);
    if (seen?.has(deviceId)) return;
    if (this.trackedDevices >= (this.opts.maxTrackedDevices ?? 200_000)) {
      this.truncated = true;
      return;
    }
    if (!seen) entry.devices.set(key, (seen = new Set()));
    seen.add(deviceId);
    this.trackedDevices++;
  }

  /** Rollups of the apps whose counters changed since the last call (marks them clean). */
  takeDirty(): Array<{ app: CompiledApp; rollup: StatsRollup }> {
    this.rollWindow();
    const now = (this.opts.now?.() ?? new Date()).toISOString();
    const out: Array<{ app: CompiledApp; rollup: StatsRollup }> = [];
    for (const entry of this.perApp.values()) {
      if (!entry.dirty) continue;
      entry.dirty = false;
      out.push({ app: entry.app, rollup: this.rollupOf(entry, now) });
    }
    return out;
  }

  /** Marks an app dirty again after a failed write, so the next flush retries it. */
  markDirty(appId: string): void {
    const e = this.perApp.get(appId);
    if (e) e.dirty = true;
  }

  private rollupOf(entry: AppCounters, now: string): StatsRollup {
    const counters: StatsRollup['counters'] = [];
    for (const [key, count] of entry.counts) {
      const [channel = '', version = '', action = ''] = key.split('\u0000');
      counters.push({ channel, version, action, count });
    }
    const devices: DeviceWindow['counts'] = [];
    for (const [key, seen] of entry.devices) {
      const [channel = '', version = ''] = key.split('\u0000');
      devices.push({ channel, version, count: seen.size });
    }
    return {
      apiVersion: STATS_ROLLUP_API_VERSION,
      kind: 'StatsRollup',
      replica: this.opts.replica,
      appId: entry.app.appId,
      startedAt: this.startedAt,
      updatedAt: now,
      counters,
      devices: {
        windowStart: new Date(this.windowStartMs).toISOString(),
        windowSeconds: this.windowMs / 1000,
        counts: devices,
        ...(this.truncated ? { truncated: true } : {}),
      },
    };
  }
}

/** Writes dirty rollups every `flushSeconds`, and once more when stopped. */
export class StatsRollupWriter {
  constructor(
    private readonly opts: {
      aggregator: StatsAggregator;
      store: ObjectStore;
      layout: StorageLayout;
      replica: string;
      logger: Logger;
      metrics: UpdateServerMetrics;
      flushSeconds: number;
    },
  ) {}

  keyFor(app: CompiledApp): string {
    return `${this.opts.layout.statsPrefix(app.ref)}${this.opts.replica}.json`;
  }

  async flush(signal?: AbortSignal): Promise<void> {
    for (const { app, rollup } of this.opts.aggregator.takeDirty()) {
      try {
        const body = Buffer.from(JSON.stringify(rollup));
        await this.opts.store.put(this.keyFor(app), body, {
          contentType: 'application/json',
          size: body.length,
          signal: signal
            ? AbortSignal.any([signal, AbortSignal.timeout(10_000)])
            : AbortSignal.timeout(10_000),
        });
      } catch (err) {
        this.opts.aggregator.markDirty(app.appId);
        this.opts.metrics.statsFlushErrors.inc();
        this.opts.logger.warn(
          { app: app.appId, err: err instanceof Error ? err.message : String(err) },
          'stats rollup not written',
        );
      }
    }
  }

  /** Flushes periodically until the signal aborts, then a final time. */
  async run(signal: AbortSignal): Promise<void> {
    const ms = Math.max(1, this.opts.flushSeconds) * 1000;
    while (!signal.aborted) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, ms);
        signal.addEventListener(
          'abort',
          () => {
            clearTimeout(t);
            resolve();
          },
          { once: true },
        );
      });
      if (!signal.aborted) await this.flush(signal);
    }
    await this.flush();
  }
}
