/**
 * Configuration of `liveupdate-operator s3-credentials` (the chart's hook Job that creates the in-cluster S3 store's
 * credential Secrets when they are missing): environment variables and `--kebab-case` flags, validated once.
 */
import type { CredentialSecret } from '../provision/s3-credentials.js';
import { COMMON_OPTIONS, ConfigError, parseOptions, type OptionSpec } from './common.js';
import { CONTROLLER_OPTIONS } from './controller.js';

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const USER = /^[a-z0-9]([-a-z0-9]{0,18}[a-z0-9])?$/;
const SECRET_KEY = /^[-._a-zA-Z0-9]{1,253}$/;

function secretList(raw: string): CredentialSecret[] {
  const secrets = raw
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean)
    .map((item) => {
      const [name = '', user = '', ...rest] = item.split('=');
      if (rest.length > 0 || !DNS_SUBDOMAIN.test(name) || !USER.test(user)) {
        throw new Error(`"${item}" is not <secret name>=<user> (e.g. my-s3-controller=controller)`);
      }
      return { name, user };
    });
  if (secrets.length === 0) throw new Error('names no Secret');
  if (new Set(secrets.map((s) => s.name)).size !== secrets.length) throw new Error('names a Secret twice');
  return secrets;
}

function secretKey(raw: string): string {
  if (!SECRET_KEY.test(raw)) throw new Error(`"${raw}" is not a valid Secret key`);
  return raw;
}

function stringMap(raw: string): Record<string, string> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new Error('is not JSON');
  }
  if (
    parsed === null ||
    typeof parsed !== 'object' ||
    Array.isArray(parsed) ||
    !Object.values(parsed).every((v) => typeof v === 'string')
  ) {
    throw new Error('must be a JSON object of strings');
  }
  return parsed as Record<string, string>;
}

export const S3_CREDENTIALS_OPTIONS = {
  logLevel: COMMON_OPTIONS.logLevel,
  namespace: {
    env: ['LIVEUPDATE_NAMESPACE', 'POD_NAMESPACE'],
    flag: 'namespace',
    description: 'namespace of the Secrets (the release namespace)',
    required: true,
    parse: (raw: string) => {
      if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(raw))
        throw new Error(`"${raw}" is not a namespace name`);
      return raw;
    },
  } satisfies OptionSpec<string>,
  secrets: {
    env: ['LIVEUPDATE_S3_CREDENTIAL_SECRETS'],
    flag: 'secrets',
    description: 'Secrets to ensure, as <name>=<user>,... (user: root, controller, update-server)',
    required: true,
    parse: secretList,
  } satisfies OptionSpec<CredentialSecret[]>,
  accessKeyIdKey: {
    env: ['LIVEUPDATE_S3_ACCESS_KEY_ID_KEY'],
    flag: 'access-key-id-key',
    description: 'key of the access key id in each Secret',
    default: 'accessKeyId',
    parse: secretKey,
  } satisfies OptionSpec<string>,
  secretAccessKeyKey: {
    env: ['LIVEUPDATE_S3_SECRET_ACCESS_KEY_KEY'],
    flag: 'secret-access-key-key',
    description: 'key of the secret access key in each Secret',
    default: 'secretAccessKey',
    parse: secretKey,
  } satisfies OptionSpec<string>,
  labels: {
    env: ['LIVEUPDATE_SECRET_LABELS'],
    flag: 'labels',
    description: 'labels of the Secrets it creates, as a JSON object',
    default: {},
    defaultText: '{}',
    parse: stringMap,
  } satisfies OptionSpec<Record<string, string>>,
  annotations: {
    env: ['LIVEUPDATE_SECRET_ANNOTATIONS'],
    flag: 'annotations',
    description: 'annotations of the Secrets it creates, as a JSON object',
    default: {},
    defaultText: '{}',
    parse: stringMap,
  } satisfies OptionSpec<Record<string, string>>,
  kubeconfig: CONTROLLER_OPTIONS.kubeconfig,
};

export interface S3CredentialsConfig {
  logLevel: string;
  namespace: string;
  secrets: CredentialSecret[];
  accessKeyIdKey: string;
  secretAccessKeyKey: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  kubeconfig: string | undefined;
}

/** undefined when --help was asked for; throws ConfigError listing every problem. */
export function parseS3CredentialsConfig(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): S3CredentialsConfig | undefined {
  const { help, values } = parseOptions(S3_CREDENTIALS_OPTIONS, argv, env);
  if (help) return undefined;
  if (values.accessKeyIdKey === values.secretAccessKeyKey) {
    throw new ConfigError([
      'LIVEUPDATE_S3_ACCESS_KEY_ID_KEY (--access-key-id-key) and LIVEUPDATE_S3_SECRET_ACCESS_KEY_KEY (--secret-access-key-key) must differ',
    ]);
  }
  return { ...values, kubeconfig: values.kubeconfig };
}
