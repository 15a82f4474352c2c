/**
 * Fleet telemetry: the update-service replicas' stats rollups (src/updateserver/stats-rollup.ts documents the format)
 * read back and summed per channel and version, with the Capgo actions classified into installs and failures
 * (CAPGO-PROTOCOL.md §3). Reads are cached per app for one telemetry interval, so the channels of one app cost one
 * listing of its stats prefix per interval however many there are (ADR 0018).
 */
import type { StorageLayout, AppRef } from '../../storage/layout.js';
import { ObjectNotFoundError, type ObjectInfo, type ObjectStore } from '../../storage/object-store.js';
import { STATS_ROLLUP_API_VERSION, type StatsRollup } from '../../updateserver/stats-rollup.js';

/** The action a device sends when a downloaded bundle was set as the one to run (the install succeeded). */
export const INSTALL_ACTION = 'set';
/**
 * Actions that end a device's attempt to install a version before it was set: the download, the decryption, the
 * checksum or the unzip failed. A device does not retry a version it failed (§2.2 rule 5), so each counts once.
 */
export const INSTALL_FAILURE_ACTIONS: ReadonlySet<string> = new Set([
  'download_fail',
  'decrypt_fail',
  'checksum_fail',
  'checksum_required',
  'session_key_required',
  'unzip_fail',
  'finish_download_fail',
  'set_fail',
  'low_mem_fail',
  'insufficient_disk_space',
  'windows_path_fail',
  'canonical_path_fail',
  'directory_path_fail',
  'manifest_path_fail',
]);
/** Sent after `set` when the new bundle did not call notifyAppReady() in time: the device rolled back. */
export const ROLLED_BACK_ACTION = 'update_fail';

export function isFailureAction(action: string): boolean {
  return INSTALL_FAILURE_ACTIONS.has(action) || action === ROLLED_BACK_ACTION;
}

/** Largest rollup read back (a replica caps its series, so rollups stay far below this). */
const MAX_ROLLUP_BYTES = 16 * 1024 * 1024;
/** Rollups read per app and interval; more are ignored (and logged by the caller through `skipped`). */
const MAX_ROLLUPS = 1_000;

export interface VersionFigures {
  /** Distinct devices seen on this version in the newest window (summed over replicas). */
  devices: number;
  installs: number;
  /** Install failures (before set) plus rollbacks after set (update_fail). */
  failures: number;
  failuresByAction: Record<string, number>;
  /** Devices that reached an outcome: installs + failures before set. */
  samples: number;
}

export interface ChannelFigures {
  versions: Map<string, VersionFigures>;
  /** Devices seen on any version of the channel in the newest window. */
  devices: number;
}

export interface AppTelemetry {
  channels: Map<string, ChannelFigures>;
  /** `updatedAt` of the newest rollup read, undefined when there is none. */
  lastUpdateTime: string | undefined;
  windowStart: string | undefined;
  /** Rollups not updated within the retention: ignored here, deleted by garbage collection. */
  stale: ObjectInfo[];
  /** Rollups that could not be parsed. */
  invalid: string[];
}

export function emptyFigures(): VersionFigures {
  return { devices: 0, installs: 0, failures: 0, failuresByAction: {}, samples: 0 };
}

function isRollup(doc: unknown): doc is StatsRollup {
  if (typeof doc !== 'object' || doc === null) return false;
  const r = doc as Partial<StatsRollup>;
  return (
    r.apiVersion === STATS_ROLLUP_API_VERSION &&
    r.kind === 'StatsRollup' &&
    typeof r.updatedAt === 'string' &&
    Array.isArray(r.counters)
  );
}

/** Sums rollups (each a replica's cumulative counters) per channel and version. Pure. */
export function aggregateRollups(rollups: readonly StatsRollup[]): Omit<AppTelemetry, 'stale' | 'invalid'> {
  const channels = new Map<string, ChannelFigures>();
  const channelOf = (name: string): ChannelFigures => {
    let c = channels.get(name);
    if (!c) channels.set(name, (c = { versions: new Map(), devices: 0 }));
    return c;
  };
  const figuresOf = (channel: string, version: string): VersionFigures => {
    const c = channelOf(channel);
    let f = c.versions.get(version);
    if (!f) c.versions.set(version, (f = emptyFigures()));
    return f;
  };
  let lastUpdateTime: string | undefined;
  let windowStart: string | undefined;
  for (const r of rollups) {
    if (lastUpdateTime === undefined || r.updatedAt > lastUpdateTime) lastUpdateTime = r.updatedAt;
    const start = r.devices?.windowStart;
    if (start !== undefined && (windowStart === undefined || start > windowStart)) windowStart = start;
    for (const { channel, version, action, count } of r.counters) {
      if (!Number.isSafeInteger(count) || count <= 0) continue;
      const f = figuresOf(channel, version);
      if (action === INSTALL_ACTION) {
        f.installs += count;
        f.samples += count;
      } else if (isFailureAction(action)) {
        f.failures += count;
        f.failuresByAction[action] = (f.failuresByAction[action] ?? 0) + count;
        if (action !== ROLLED_BACK_ACTION) f.samples += count;
      }
    }
  }
  for (const r of rollups) {
    if (!r.devices || r.devices.windowStart !== windowStart) continue;
    for (const { channel, version, count } of r.devices.counts) {
      if (!Number.isSafeInteger(count) || count <= 0) continue;
      figuresOf(channel, version).devices += count;
      channelOf(channel).devices += count;
    }
  }
  return { channels, lastUpdateTime, windowStart };
}

export interface FleetTelemetryOptions {
  store: ObjectStore;
  /** How long one read of an app's rollups is reused. */
  cacheMs: number;
  now?: () => Date;
}

/** Reads and caches each app's telemetry; shared by every channel reconcile of the process. */
export class FleetTelemetry {
  private readonly cache = new Map<string, { at: number; value: Promise<AppTelemetry> }>();

  constructor(private readonly opts: FleetTelemetryOptions) {}

  /** The app's telemetry, from rollups updated within `retentionMs`. */
  read(layout: StorageLayout, app: AppRef, retentionMs: number, signal?: AbortSignal): Promise<AppTelemetry> {
    const prefix = layout.statsPrefix(app);
    const now = (this.opts.now?.() ?? new Date()).getTime();
    const hit = this.cache.get(prefix);
    if (hit && now - hit.at < this.opts.cacheMs) return hit.value;
    const value = this.load(prefix, now - retentionMs, signal);
    this.cache.set(prefix, { at: now, value });
    value.catch(() => this.cache.delete(prefix));
    return value;
  }

  private async load(prefix: string, notBeforeMs: number, signal?: AbortSignal): Promise<AppTelemetry> {
    const rollups: StatsRollup[] = [];
    const stale: ObjectInfo[] = [];
    const invalid: string[] = [];
    let seen = 0;
    for await (const info of this.opts.store.list(prefix, signal)) {
      if (!info.key.endsWith('.json')) continue;
      if (++seen > MAX_ROLLUPS) break;
      if (info.lastModified.getTime() < notBeforeMs) {
        stale.push(info);
        continue;
      }
      let doc: unknown;
      try {
        const { data } = await this.opts.store.getBuffer(info.key, {
          maxBytes: MAX_ROLLUP_BYTES,
          ...(signal ? { signal } : {}),
        });
        doc = JSON.parse(data.toString('utf8'));
      } catch (error) {
        if (error instanceof ObjectNotFoundError) continue;
        if (error instanceof SyntaxError) {
          invalid.push(info.key);
          continue;
        }
        throw error;
      }
      if (!isRollup(doc)) {
        invalid.push(info.key);
        continue;
      }
      if (Date.parse(doc.updatedAt) < notBeforeMs) {
        stale.push(info);
        continue;
      }
      rollups.push(doc);
    }
    return { ...aggregateRollups(rollups), stale, invalid };
  }
}
