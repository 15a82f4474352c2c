/**
 * Configuration of `liveupdate-operator update-server`: environment variables (the Helm chart's contract) and
 * `--kebab-case` flags, validated once at start.
 */
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import {
  COMMON_OPTIONS,
  ConfigError,
  S3_OPTIONS,
  bool,
  hostPort,
  int,
  parseOptions,
  s3Config,
  url,
  type HostPort,
  type OptionSpec,
  type S3Config,
} from './common.js';

const path = (raw: string): string => {
  if (!/^\/[A-Za-z0-9._~\-/]*$/.test(raw) || raw.includes('//') || raw.includes('..')) {
    throw new Error(`"${raw}" is not an absolute URL path`);
  }
  return raw.length > 1 ? raw.replace(/\/+$/, '') : raw;
};

const PROXY_KEYWORDS = new Set(['loopback', 'linklocal', 'uniquelocal']);

/** express "trust proxy": true/false, a hop count, or a comma list of addresses, CIDRs and proxy-addr keywords. */
const trustProxy = (raw: string): boolean | number | string => {
  if (/^(true|false)$/i.test(raw)) return raw.toLowerCase() === 'true';
  if (/^\d+$/.test(raw)) return Number(raw);
  const items = raw.split(',').map((item) => item.trim());
  const bad = items.filter((item) => !PROXY_KEYWORDS.has(item) && !isAddressOrCidr(item));
  if (items.length === 0 || bad.length > 0) {
    throw new Error(`"${raw}" must be true, false, a hop count, or a list of addresses/CIDRs`);
  }
  return items.join(',');
};

function isAddressOrCidr(item: string): boolean {
  const [address = '', bits, ...rest] = item.split('/');
  if (rest.length > 0 || isIP(address) === 0) return false;
  if (bits === undefined) return true;
  const max = isIP(address) === 4 ? 32 : 128;
  return /^\d{1,3}$/.test(bits) && Number(bits) <= max;
}

export const UPDATE_SERVER_OPTIONS = {
  ...COMMON_OPTIONS,
  ...S3_OPTIONS,
  listenAddr: {
    env: ['LIVEUPDATE_LISTEN_ADDR'],
    flag: 'listen-addr',
    description: 'listen address of the device API',
    default: { host: '0.0.0.0', port: 8080 },
    defaultText: '0.0.0.0:8080',
    parse: hostPort,
  } satisfies OptionSpec<HostPort>,
  publicUrl: {
    env: ['LIVEUPDATE_PUBLIC_URL'],
    flag: 'public-url',
    description: 'base URL devices reach this service at; download URLs are <public-url>/bundles/<key>',
    required: true,
    parse: url(),
  } satisfies OptionSpec<URL>,
  indexPollSeconds: {
    env: ['LIVEUPDATE_INDEX_POLL_SECONDS'],
    flag: 'index-poll-seconds',
    description: 'seconds between two polls of the release root',
    default: 5,
    parse: int(1, 3600),
  } satisfies OptionSpec<number>,
  presignDownloads: {
    env: ['LIVEUPDATE_PRESIGN_DOWNLOADS'],
    flag: 'presign-downloads',
    description:
      'hand out presigned S3 URLs (the S3 endpoint must be reachable by devices) instead of /bundles URLs',
    default: false,
    isBoolean: true,
    parse: bool,
  } satisfies OptionSpec<boolean>,
  presignEndpoint: {
    env: ['LIVEUPDATE_PRESIGN_ENDPOINT'],
    flag: 'presign-endpoint',
    description: 'S3 endpoint devices reach, used to sign presigned URLs (default: the S3 endpoint)',
    parse: url(),
  } satisfies OptionSpec<URL>,
  presignExpirySeconds: {
    env: ['LIVEUPDATE_PRESIGN_EXPIRY_SECONDS'],
    flag: 'presign-expiry-seconds',
    description: 'validity of presigned URLs',
    default: 3600,
    parse: int(60, 7 * 24 * 3600),
  } satisfies OptionSpec<number>,
  replicaName: {
    env: ['LIVEUPDATE_REPLICA_NAME', 'POD_NAME'],
    flag: 'replica-name',
    description: 'name of this replica in stats rollups',
    default: () => hostname(),
    defaultText: '$POD_NAME or the hostname',
    parse: (raw: string) => {
      if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/.test(raw))
        throw new Error(`"${raw}" is not a valid replica name`);
      return raw;
    },
  } satisfies OptionSpec<string>,
  statsFlushSeconds: {
    env: ['LIVEUPDATE_STATS_FLUSH_SECONDS'],
    flag: 'stats-flush-seconds',
    description: 'seconds between two stats rollups written to S3',
    default: 30,
    parse: int(1, 3600),
  } satisfies OptionSpec<number>,
  statsWindowSeconds: {
    env: ['LIVEUPDATE_STATS_WINDOW_SECONDS'],
    flag: 'stats-window-seconds',
    description: 'length of the window over which distinct devices per version are counted',
    default: 3600,
    parse: int(1, 7 * 24 * 3600),
  } satisfies OptionSpec<number>,
  rateLimitPerDevice: {
    env: ['LIVEUPDATE_RATE_LIMIT_PER_DEVICE'],
    flag: 'rate-limit-per-device',
    description: 'requests per minute per device id (burst: half of it); 0 disables',
    default: 120,
    parse: int(0, 1_000_000),
  } satisfies OptionSpec<number>,
  rateLimitPerAddress: {
    env: ['LIVEUPDATE_RATE_LIMIT_PER_ADDRESS'],
    flag: 'rate-limit-per-address',
    description: 'requests per minute per client address (many devices may share one behind NAT); 0 disables',
    default: 12_000,
    parse: int(0, 100_000_000),
  } satisfies OptionSpec<number>,
  trustProxy: {
    env: ['LIVEUPDATE_TRUST_PROXY'],
    flag: 'trust-proxy',
    description: 'trust X-Forwarded-For from these proxies (true, false, hop count, or addresses/CIDRs)',
    default: false,
    parse: trustProxy,
  } satisfies OptionSpec<boolean | number | string>,
  updatePath: {
    env: ['LIVEUPDATE_UPDATE_PATH'],
    flag: 'update-path',
    description: 'path of the update check (updateUrl)',
    default: '/updates',
    parse: path,
  } satisfies OptionSpec<string>,
  statsPath: {
    env: ['LIVEUPDATE_STATS_PATH'],
    flag: 'stats-path',
    description: 'path of stats (statsUrl)',
    default: '/stats',
    parse: path,
  } satisfies OptionSpec<string>,
  channelPath: {
    env: ['LIVEUPDATE_CHANNEL_PATH'],
    flag: 'channel-path',
    description: 'path of channel self-assignment (channelUrl)',
    default: '/channel_self',
    parse: path,
  } satisfies OptionSpec<string>,
  maxStatsBodyBytes: {
    env: ['LIVEUPDATE_MAX_STATS_BODY_BYTES'],
    flag: 'max-stats-body-bytes',
    description: 'largest stats batch accepted',
    default: 1024 * 1024,
    parse: int(1024, 64 * 1024 * 1024),
  } satisfies OptionSpec<number>,
  shutdownDelaySeconds: {
    env: ['LIVEUPDATE_SHUTDOWN_DELAY_SECONDS'],
    flag: 'shutdown-delay-seconds',
    description:
      'on SIGTERM, seconds to keep serving while readiness fails (endpoints are removed), before draining',
    default: 5,
    parse: int(0, 300),
  } satisfies OptionSpec<number>,
  shutdownTimeoutSeconds: {
    env: ['LIVEUPDATE_SHUTDOWN_TIMEOUT_SECONDS'],
    flag: 'shutdown-timeout-seconds',
    description: 'longest time to wait for in-flight requests (downloads) to finish before closing them',
    default: 25,
    parse: int(1, 3600),
  } satisfies OptionSpec<number>,
  s3TimeoutSeconds: {
    env: ['LIVEUPDATE_S3_TIMEOUT_SECONDS'],
    flag: 's3-timeout-seconds',
    description: 'S3 socket idle timeout',
    default: 10,
    parse: int(1, 600),
  } satisfies OptionSpec<number>,
};

export interface UpdateServerConfig {
  logLevel: string;
  adminAddr: HostPort;
  listenAddr: HostPort;
  s3: S3Config;
  publicUrl: URL;
  indexPollSeconds: number;
  presignDownloads: boolean;
  presignEndpoint: URL | undefined;
  presignExpirySeconds: number;
  replicaName: string;
  statsFlushSeconds: number;
  statsWindowSeconds: number;
  rateLimitPerDevice: number;
  rateLimitPerAddress: number;
  trustProxy: boolean | number | string;
  updatePath: string;
  statsPath: string;
  channelPath: string;
  maxStatsBodyBytes: number;
  shutdownDelaySeconds: number;
  shutdownTimeoutSeconds: number;
  s3TimeoutSeconds: number;
}

/** Returns undefined when --help was asked (the caller prints helpText). Throws ConfigError listing every problem. */
export function parseUpdateServerConfig(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): UpdateServerConfig | undefined {
  const { help, values: v } = parseOptions(UPDATE_SERVER_OPTIONS, argv, env);
  if (help) return undefined;
  const paths = [
    v.updatePath,
    v.statsPath,
    v.channelPath,
    '/bundles',
    '/healthz',
    '/readyz',
    '/openapi.json',
  ];
  if (new Set(paths).size !== paths.length)
    throw new ConfigError([
      'update, stats and channel paths must differ from each other and from /bundles, /healthz, /readyz',
    ]);
  return {
    logLevel: v.logLevel,
    adminAddr: v.adminAddr,
    listenAddr: v.listenAddr,
    s3: s3Config(v),
    publicUrl: v.publicUrl,
    indexPollSeconds: v.indexPollSeconds,
    presignDownloads: v.presignDownloads,
    presignEndpoint: v.presignEndpoint,
    presignExpirySeconds: v.presignExpirySeconds,
    replicaName: v.replicaName ?? hostname(),
    statsFlushSeconds: v.statsFlushSeconds,
    statsWindowSeconds: v.statsWindowSeconds,
    rateLimitPerDevice: v.rateLimitPerDevice,
    rateLimitPerAddress: v.rateLimitPerAddress,
    trustProxy: v.trustProxy,
    updatePath: v.updatePath,
    statsPath: v.statsPath,
    channelPath: v.channelPath,
    maxStatsBodyBytes: v.maxStatsBodyBytes,
    shutdownDelaySeconds: v.shutdownDelaySeconds,
    shutdownTimeoutSeconds: v.shutdownTimeoutSeconds,
    s3TimeoutSeconds: v.s3TimeoutSeconds,
  };
}
