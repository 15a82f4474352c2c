/** Configuration of the `controller` command (flags over environment), validated once at start. */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import {
  COMMON_OPTIONS,
  ConfigError,
  S3_OPTIONS,
  bool,
  bytes,
  dnsLabel,
  helpText,
  int,
  parseOptions,
  readableFile,
  s3Config,
  str,
  type HostPort,
  type OptionSpec,
  type S3Config,
} from './common.js';

const SA_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

/** '' when unknown (outside a cluster without POD_NAMESPACE). */
function inClusterNamespace(env: NodeJS.ProcessEnv): string {
  if (env['POD_NAMESPACE']) return env['POD_NAMESPACE'];
  try {
    return readFileSync(SA_NAMESPACE_FILE, 'utf8').trim();
  } catch {
    return '';
  }
}

export interface LabelRequirement {
  readonly key: string;
  /** Undefined: the label must exist, with any value. */
  readonly value?: string;
}

function namespaceList(raw: string): string[] {
  const names = raw
    .split(',')
    .map((name) => name.trim())
    .filter((name) => name !== '');
  for (const name of names) dnsLabel(name);
  return [...new Set(names)];
}

const LABEL_KEY =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

function labelRequirement(raw: string): LabelRequirement | undefined {
  if (raw === '') return undefined;
  const [key = '', value] = raw.split(/=(.*)/s, 2);
  if (!LABEL_KEY.test(key) || (value !== undefined && !LABEL_VALUE.test(value))) {
    throw new Error(`"${raw}" is not a label key or key=value`);
  }
  return value === undefined ? { key } : { key, value };
}

export const CONTROLLER_OPTIONS = {
  ...COMMON_OPTIONS,
  ...S3_OPTIONS,
  leaderElect: {
    env: ['LIVEUPDATE_LEADER_ELECT'],
    flag: 'leader-elect',
    description: 'elect a leader through a coordination.k8s.io Lease so only one replica reconciles',
    default: true,
    isBoolean: true,
    parse: bool,
  } satisfies OptionSpec<boolean>,
  leaseNamespace: {
    env: ['LIVEUPDATE_LEASE_NAMESPACE'],
    flag: 'lease-namespace',
    description: 'namespace of the leader-election Lease',
    default: inClusterNamespace,
    defaultText: '$POD_NAMESPACE, else the service account namespace',
    parse: dnsLabel,
  } satisfies OptionSpec<string>,
  leaseName: {
    env: ['LIVEUPDATE_LEASE_NAME'],
    flag: 'lease-name',
    description: 'name of the leader-election Lease',
    default: 'liveupdate-controller',
    parse: dnsLabel,
  } satisfies OptionSpec<string>,
  podName: {
    env: ['LIVEUPDATE_POD_NAME', 'POD_NAME'],
    flag: 'pod-name',
    description: 'identity of this replica in the Lease and in Events',
    default: () => `${hostname()}_${randomUUID()}`,
    defaultText: '<hostname>_<uuid>',
    parse: str,
  } satisfies OptionSpec<string>,
  watchNamespaces: {
    env: ['LIVEUPDATE_WATCH_NAMESPACE'],
    flag: 'watch-namespace',
    description:
      "only reconcile objects in these namespaces, comma-separated ('' = all namespaces); nothing is then listed or watched cluster-wide",
    default: [],
    defaultText: "''",
    parse: namespaceList,
  } satisfies OptionSpec<string[]>,
  sourceSecretLabel: {
    env: ['LIVEUPDATE_SOURCE_SECRET_LABEL'],
    flag: 'source-secret-label',
    description:
      "label (key or key=value) a Secret must carry before a bundle source may use it ('' = any Secret of the bundle's namespace)",
    parse: labelRequirement,
  } satisfies OptionSpec<LabelRequirement | undefined>,
  maxConcurrentReconciles: {
    env: ['LIVEUPDATE_MAX_CONCURRENT_RECONCILES'],
    flag: 'max-concurrent-reconciles',
    description: 'workers per controller',
    default: 4,
    parse: int(1, 256),
  } satisfies OptionSpec<number>,
  artifactMaxBytes: {
    env: ['LIVEUPDATE_ARTIFACT_MAX_BYTES'],
    flag: 'artifact-max-bytes',
    description: 'largest artifact the controller fetches (bytes, or 512Mi, 1Gi)',
    default: 256 * 1024 ** 2,
    defaultText: '256Mi',
    parse: bytes(1),
  } satisfies OptionSpec<number>,
  workDirBytes: {
    env: ['LIVEUPDATE_WORK_DIR_BYTES'],
    flag: 'work-dir-bytes',
    description:
      "size of the temp dir bundle builds use (the Pod's /tmp sizeLimit); with --max-concurrent-reconciles it bounds how far an artifact may expand",
    default: 4 * 1024 ** 3,
    defaultText: '4Gi',
    parse: bytes(1),
  } satisfies OptionSpec<number>,
  fetchTimeoutSeconds: {
    env: ['LIVEUPDATE_FETCH_TIMEOUT_SECONDS'],
    flag: 'fetch-timeout-seconds',
    description:
      "upper bound on the timeout of one artifact fetch (a bundle's spec.source.timeout may only lower it)",
    default: 300,
    parse: int(1, 86_400),
  } satisfies OptionSpec<number>,
  shutdownGraceSeconds: {
    env: ['LIVEUPDATE_SHUTDOWN_GRACE_SECONDS'],
    flag: 'shutdown-grace-seconds',
    description: 'on SIGTERM, how long in-flight reconciles may finish before they are aborted',
    default: 20,
    parse: int(0, 3_600),
  } satisfies OptionSpec<number>,
  telemetryIntervalSeconds: {
    env: ['LIVEUPDATE_TELEMETRY_INTERVAL_SECONDS'],
    flag: 'telemetry-interval-seconds',
    description:
      'how often channel status reads the stats rollups and judges rollout failure thresholds (also the bound on channel status writes)',
    default: 30,
    parse: int(1, 3_600),
  } satisfies OptionSpec<number>,
  gcIntervalSeconds: {
    env: ['LIVEUPDATE_GC_INTERVAL_SECONDS'],
    flag: 'gc-interval-seconds',
    description: "how often each app's garbage collection of unreferenced objects runs (0 disables it)",
    default: 3_600,
    parse: int(0, 7 * 24 * 3_600),
  } satisfies OptionSpec<number>,
  secretPollSeconds: {
    env: ['LIVEUPDATE_SECRET_POLL_SECONDS'],
    flag: 'secret-poll-seconds',
    description:
      'how often the leader re-reads (get) the Secrets apps and bundles name, to reconcile them when one changed (0 disables it)',
    default: 30,
    parse: int(0, 3_600),
  } satisfies OptionSpec<number>,
  kubeconfig: {
    env: ['KUBECONFIG'],
    flag: 'kubeconfig',
    description: 'kubeconfig file (default: in-cluster service account)',
    parse: readableFile,
  } satisfies OptionSpec<string>,
};

export interface ControllerConfig {
  logLevel: string;
  adminAddr: HostPort;
  s3: S3Config;
  leaderElection: { enabled: boolean; namespace: string; name: string };
  identity: string;
  /** Empty: every namespace. */
  watchNamespaces: string[];
  /** Label every Secret a bundle source names must carry (docs/adr/0013-secret-access.md). */
  sourceSecretLabel: LabelRequirement | undefined;
  maxConcurrentReconciles: number;
  artifactMaxBytes: number;
  /** Most bytes one zip may expand to: what fits the work dir with every bundle worker building (buildDiskLimits). */
  expandedMaxBytes: number;
  fetchTimeoutMs: number;
  shutdownGraceMs: number;
  telemetryIntervalMs: number;
  gcIntervalMs: number;
  secretPollMs: number;
  kubeconfig: string | undefined;
}

export const CONTROLLER_USAGE = 'usage: liveupdate-operator controller [flags]';

export function controllerHelp(): string {
  return helpText(CONTROLLER_USAGE, CONTROLLER_OPTIONS);
}

/** Parses and validates; returns null when --help was asked for. Throws ConfigError listing every problem. */
export function loadControllerConfig(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): ControllerConfig | null {
  const { help, values: v } = parseOptions(CONTROLLER_OPTIONS, argv, env);
  if (help) return null;
  const problems: string[] = [];
  let s3: S3Config | undefined;
  try {
    s3 = s3Config(v);
  } catch (err) {
    if (err instanceof ConfigError) problems.push(...err.problems);
    else throw err;
  }
  if (v.leaderElect && !v.leaseNamespace) {
    problems.push(
      'LIVEUPDATE_LEASE_NAMESPACE (--lease-namespace) is required with leader election outside a cluster (or set POD_NAMESPACE)',
    );
  }
  const disk = buildDiskLimits(v.workDirBytes, v.maxConcurrentReconciles, v.artifactMaxBytes);
  if (typeof disk === 'string') problems.push(disk);
  if (problems.length > 0 || !s3 || typeof disk === 'string') throw new ConfigError(problems);
  return {
    logLevel: v.logLevel,
    adminAddr: v.adminAddr,
    s3,
    leaderElection: { enabled: v.leaderElect, namespace: v.leaseNamespace, name: v.leaseName },
    identity: v.podName,
    watchNamespaces: v.watchNamespaces,
    sourceSecretLabel: v.sourceSecretLabel,
    maxConcurrentReconciles: v.maxConcurrentReconciles,
    artifactMaxBytes: v.artifactMaxBytes,
    expandedMaxBytes: disk.expandedMaxBytes,
    fetchTimeoutMs: v.fetchTimeoutSeconds * 1000,
    shutdownGraceMs: v.shutdownGraceSeconds * 1000,
    telemetryIntervalMs: v.telemetryIntervalSeconds * 1000,
    gcIntervalMs: v.gcIntervalSeconds * 1000,
    secretPollMs: v.secretPollSeconds * 1000,
    kubeconfig: v.kubeconfig,
  };
}

/** The zip validator's own ceiling on expanded bytes, whatever the work dir allows. */
export const MAX_EXPANDED_BYTES = 1024 ** 3;

/**
 * Disk a bundle build holds at its peak, for an artifact of at most A bytes that expands to at most U: the fetched
 * file (A), and for a tarball the unpacked tree and the packed zip (2U), or the encrypted copy and the delta files
 * (2U) — A + 3U. Every bundle worker may build at once, so the work dir is shared by `workers` builds. Returns the
 * expansion limit U that fits (capped at {@link MAX_EXPANDED_BYTES}), or the problem when not even an artifact's
 * own size fits (U < A).
 */
export function buildDiskLimits(
  workDirBytes: number,
  workers: number,
  artifactMaxBytes: number,
): { expandedMaxBytes: number } | string {
  const perBuild = Math.floor(workDirBytes / workers);
  const expandedMaxBytes = Math.min(MAX_EXPANDED_BYTES, Math.floor((perBuild - artifactMaxBytes) / 3));
  if (expandedMaxBytes < artifactMaxBytes) {
    return (
      `LIVEUPDATE_WORK_DIR_BYTES (--work-dir-bytes) ${workDirBytes} is too small for ${workers} concurrent builds ` +
      `of artifacts up to ${artifactMaxBytes} bytes (LIVEUPDATE_ARTIFACT_MAX_BYTES): each build may need ` +
      `${4 * artifactMaxBytes} bytes; raise it (the chart's tmpSizeLimit) to at least ${4 * artifactMaxBytes * workers}, ` +
      'or lower the artifact limit or LIVEUPDATE_MAX_CONCURRENT_RECONCILES'
    );
  }
  return { expandedMaxBytes };
}
