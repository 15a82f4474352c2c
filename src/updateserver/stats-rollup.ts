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
 *   "counters": [ { "channel": "production", "version": "1.4.1", "action": "set", "count": 1234 } ] }
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
}

const ACTION = /^[a-z0-9_]{1,64}$/;

interface AppCounters {
  app: CompiledApp;
  counts: Map<string, number>;
  dirty: boolean;
}

export class StatsAggregator {
  private readonly perApp = new Map<string, AppCounters>();
  private series = 0;
  private readonly startedAt: string;

  constructor(
    private readonly opts: {
      replica: string;
      metrics: UpdateServerMetrics;
      /** Cap on distinct (app, channel, version, action) series per replica (default 20,000). */
      maxSeries?: number;
      now?: () => Date;
    },
  ) {
    this.startedAt = (opts.now?.() ?? new Date()).toISOString();
  }

  get seriesCount(): number {
    return this.series;
  }

  record(app: CompiledApp, channel: string, versionName: string, action: string): void {
    let version = versionName;
    const colon = version.indexOf(':');
    if (colon > 0) version = version.slice(0, colon);
    if (version !== 'builtin' && !app.versions.has(version)) version = 'other';
    const act = ACTION.test(action) ? action : 'invalid';
    let entry = this.perApp.get(app.appId);
    if (!entry) {
      entry = { app, counts: new Map(), dirty: false };
      this.perApp.set(app.appId, entry);
    }
    entry.app = app;
    let key = `${channel}\u0000${version}\u0000${act}`;
    let labels = { app: app.appId, channel, version, action: act };
    if (!entry.counts.has(key) && this.series >= (this.opts.maxSeries ?? 20_000)) {
      key = `${OVERFLOW}\u0000${OVERFLOW}\u0000${OVERFLOW}`;
      labels = { app: app.appId, channel: OVERFLOW, version: OVERFLOW, action: OVERFLOW };
    }
    const before = entry.counts.get(key);
    if (before === undefined) this.series++;
    entry.counts.set(key, (before ?? 0) + 1);
    entry.dirty = true;
    this.opts.metrics.deviceEvents.inc(labels);
  }

  /** Rollups of the apps whose counters changed since the last call (marks them clean). */
  takeDirty(): Array<{ app: CompiledApp; rollup: StatsRollup }> {
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
    return {
      apiVersion: STATS_ROLLUP_API_VERSION,
      kind: 'StatsRollup',
      replica: this.opts.replica,
      appId: entry.app.appId,
      startedAt: this.startedAt,
      updatedAt: now,
      counters,
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
