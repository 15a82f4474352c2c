/**
 * Configuration of `liveupdate-operator s3-provision` (the chart's provisioning container beside an in-cluster
 * versitygw store). It takes the provisioning container's contract of the chart (values `s3.inCluster.provision`):
 * STORE_URL, BUCKET, ROOT_/CONTROLLER_/UPDATE_SERVER_ACCESS_KEY and _SECRET_KEY, the policies in a directory.
 */
import { COMMON_OPTIONS, ConfigError, int, parseOptions, str, url, type OptionSpec } from './common.js';

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

const credential = (env: string, what: string): OptionSpec<string> & { required: true } => ({
  env: [env],
  flag: env.toLowerCase().replaceAll('_', '-'),
  description: what,
  required: true,
  parse: (raw) => {
    if (raw.trim() === '') throw new Error('is empty');
    return raw;
  },
});

export const S3_PROVISION_OPTIONS = {
  logLevel: COMMON_OPTIONS.logLevel,
  endpoint: {
    env: ['STORE_URL'],
    flag: 'store-url',
    description: 'URL of the store (the S3 port; versitygw serves its admin API there too)',
    required: true,
    parse: url(),
  } satisfies OptionSpec<URL>,
  region: {
    env: ['LIVEUPDATE_S3_REGION'],
    flag: 'region',
    description: 'region the requests are signed for',
    default: 'us-east-1',
    parse: str,
  } satisfies OptionSpec<string>,
  bucket: {
    env: ['BUCKET'],
    flag: 'bucket',
    description: 'bucket to create when missing',
    required: true,
    parse: (raw: string) => {
      if (!BUCKET.test(raw)) throw new Error(`"${raw}" is not an S3 bucket name`);
      return raw;
    },
  } satisfies OptionSpec<string>,
  rootAccessKey: credential('ROOT_ACCESS_KEY', "access key id of the store's root user"),
  rootSecretKey: credential('ROOT_SECRET_KEY', "secret access key of the store's root user"),
  controllerAccessKey: credential('CONTROLLER_ACCESS_KEY', "access key id of the controller's user"),
  controllerSecretKey: credential('CONTROLLER_SECRET_KEY', "secret access key of the controller's user"),
  updateServerAccessKey: credential('UPDATE_SERVER_ACCESS_KEY', "access key id of the update server's user"),
  updateServerSecretKey: credential(
    'UPDATE_SERVER_SECRET_KEY',
    "secret access key of the update server's user",
  ),
  policiesDir: {
    env: ['LIVEUPDATE_S3_POLICIES_DIR'],
    flag: 'policies-dir',
    description: 'directory of controller.json and update-server.json (the <s3>-policies ConfigMap)',
    default: '/policies',
    parse: str,
  } satisfies OptionSpec<string>,
  intervalSeconds: {
    env: ['LIVEUPDATE_S3_PROVISION_INTERVAL_SECONDS'],
    flag: 'interval-seconds',
    description: 'repeat every so many seconds until stopped, retrying failures (0: run once and exit)',
    default: 300,
    parse: int(0, 86_400),
  } satisfies OptionSpec<number>,
};

export interface S3ProvisionConfig {
  logLevel: string;
  endpoint: URL;
  region: string;
  bucket: string;
  root: { accessKeyId: string; secretAccessKey: string };
  controller: { accessKeyId: string; secretAccessKey: string };
  updateServer: { accessKeyId: string; secretAccessKey: string };
  policiesDir: string;
  intervalSeconds: number;
}

/** undefined when --help was asked for; throws ConfigError listing every problem. */
export function parseS3ProvisionConfig(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): S3ProvisionConfig | undefined {
  const { help, values: v } = parseOptions(S3_PROVISION_OPTIONS, argv, env);
  if (help) return undefined;
  const keys = [v.rootAccessKey, v.controllerAccessKey, v.updateServerAccessKey];
  if (new Set(keys).size !== keys.length) {
    throw new ConfigError([
      'ROOT_ACCESS_KEY, CONTROLLER_ACCESS_KEY and UPDATE_SERVER_ACCESS_KEY must be three different users',
    ]);
  }
  return {
    logLevel: v.logLevel,
    endpoint: v.endpoint,
    region: v.region,
    bucket: v.bucket,
    root: { accessKeyId: v.rootAccessKey, secretAccessKey: v.rootSecretKey },
    controller: { accessKeyId: v.controllerAccessKey, secretAccessKey: v.controllerSecretKey },
    updateServer: { accessKeyId: v.updateServerAccessKey, secretAccessKey: v.updateServerSecretKey },
    policiesDir: v.policiesDir,
    intervalSeconds: v.intervalSeconds,
  };
}
