/** Options and dependencies of the device API (the update service's express app). */
import type { Logger } from '../observability/logger.js';
import type { ObjectStore } from '../storage/object-store.js';
import type { ChannelOverrides } from './channel-overrides.js';
import type { CompiledApp } from './compiled-index.js';
import type { IndexSnapshot } from './index-cache.js';
import type { UpdateServerMetrics } from './metrics.js';
import type { StatsAggregator } from './stats-rollup.js';

/** What the app needs from the index cache (IndexCache implements it; tests may use a static one). */
export interface IndexSource {
  readonly snapshot: IndexSnapshot;
  app(appId: string): CompiledApp | undefined;
  readonly ready: boolean;
  readonly reason: string | undefined;
  /** Why an app the root lists has no usable index (its devices get `app_unavailable`); undefined otherwise. */
  failure?(appId: string): string | undefined;
}

export interface UpdateServerOptions {
  updatePath: string;
  statsPath: string;
  channelPath: string;
  bundlesPath: string;
  /** Base URL devices reach this service at (download URLs are `<publicUrl><bundlesPath>/<key>`). */
  publicUrl: string;
  /** Hand out presigned store URLs instead of URLs of this service. */
  presignDownloads: boolean;
  presignExpirySeconds: number;
  /** Body limit of update and channel calls (bytes). */
  maxBodyBytes: number;
  /** Body limit of stats batches (bytes). */
  maxStatsBodyBytes: number;
  maxStatsEvents: number;
  maxJsonDepth: number;
  /** Requests per minute per device id, and per client address; 0 disables. */
  rateLimitPerDevice: number;
  rateLimitPerAddress: number;
  /** express "trust proxy" (hops, CIDRs or boolean), so the per-address limit sees the client behind an ingress. */
  trustProxy: boolean | number | string;
  retryAfterSeconds: number;
}

export const DEFAULT_UPDATE_SERVER_OPTIONS: UpdateServerOptions = {
  updatePath: '/updates',
  statsPath: '/stats',
  channelPath: '/channel_self',
  bundlesPath: '/bundles',
  publicUrl: 'http://127.0.0.1:8080',
  presignDownloads: false,
  presignExpirySeconds: 3600,
  maxBodyBytes: 64 * 1024,
  maxStatsBodyBytes: 1024 * 1024,
  maxStatsEvents: 500,
  maxJsonDepth: 16,
  rateLimitPerDevice: 120,
  rateLimitPerAddress: 12_000,
  trustProxy: false,
  retryAfterSeconds: 5,
};

export interface UpdateServerDeps {
  indexes: IndexSource;
  store: ObjectStore;
  stats: StatsAggregator;
  metrics: UpdateServerMetrics;
  logger: Logger;
  options?: Partial<UpdateServerOptions>;
  /** Server-side channel overrides of legacy plugins; without it they get none (ADR 0016). */
  overrides?: ChannelOverrides;
  /** Extra readiness condition (false while shutting down). */
  accepting?: () => boolean;
}

/** The device endpoints' paths, normalized (leading slash, no trailing slash). */
export interface ServicePaths {
  update: string;
  stats: string;
  channel: string;
  bundles: string;
}

function normalizePath(p: string): string {
  const withSlash = p.startsWith('/') ? p : `/${p}`;
  return withSlash.length > 1 ? withSlash.replace(/\/+$/, '') : withSlash;
}

export function servicePaths(o: UpdateServerOptions): ServicePaths {
  return {
    update: normalizePath(o.updatePath),
    stats: normalizePath(o.statsPath),
    channel: normalizePath(o.channelPath),
    bundles: normalizePath(o.bundlesPath),
  };
}
