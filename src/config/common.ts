/**
 * Typed process configuration: every option is an environment variable and a `--kebab-case` flag (the flag wins),
 * parsed and validated once at start. All problems are reported together, naming both spellings of each option.
 * Shared by the controller and the update server.
 */
import { readFileSync } from 'node:fs';

export interface OptionSpec<T> {
  /** Environment variables, first set one wins (e.g. LIVEUPDATE_POD_NAME, POD_NAME). */
  env: string[];
  /** Without the leading dashes. */
  flag: string;
  description: string;
  /** Shown in --help and used when unset; a function for values that depend on the environment. */
  default?: T | ((env: NodeJS.ProcessEnv) => T);
  /** Shown in --help instead of the default's value. */
  defaultText?: string;
  required?: boolean;
  /** Throws an Error whose message says what is wrong with the raw value. */
  parse(raw: string): T;
  isBoolean?: boolean;
}

export type Specs = Record<string, OptionSpec<unknown>>;
/** Options with a (non-computed) default or `required` always have a value; the others may be undefined. */
export type Values<S extends Specs> = {
  [K in keyof S]: S[K] extends OptionSpec<infer T>
    ? S[K] extends { default: unknown } | { required: unknown }
      ? T
      : T | undefined
    : never;
};

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

export interface ParseResult<S extends Specs> {
  help: boolean;
  values: Values<S>;
}

/** Parses argv (flags) over env; throws ConfigError listing every problem. */
export function parseOptions<S extends Specs>(
  specs: S,
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): ParseResult<S> {
  const problems: string[] = [];
  const byFlag = new Map<string, string>();
  for (const [key, spec] of Object.entries(specs)) byFlag.set(spec.flag, key);
  const fromFlags = new Map<string, string>();
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--help' || arg === '-h') {
      help = true;
      continue;
    }
    const m = /^--([a-z0-9-]+)(?:=(.*))?$/s.exec(arg);
    if (!m) {
      problems.push(`unexpected argument "${arg}"`);
      continue;
    }
    const name = m[1] as string;
    const key = byFlag.get(name);
    if (!key) {
      problems.push(`unknown flag --${name}`);
      continue;
    }
    const spec = specs[key] as OptionSpec<unknown>;
    let value = m[2];
    if (value === undefined) {
      const next = argv[i + 1];
      if (spec.isBoolean && (next === undefined || !/^(true|false)$/i.test(next))) value = 'true';
      else if (next === undefined) {
        problems.push(`flag --${name} needs a value`);
        continue;
      } else {
        value = next;
        i++;
      }
    }
    fromFlags.set(key, value);
  }
  const values: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(specs)) {
    let raw = fromFlags.get(key);
    let source = `--${spec.flag}`;
    if (raw === undefined) {
      for (const name of spec.env) {
        const v = env[name];
        if (v !== undefined && v !== '') {
          raw = v;
          source = name;
          break;
        }
      }
    }
    if (raw === undefined) {
      const d =
        typeof spec.default === 'function'
          ? (spec.default as (e: NodeJS.ProcessEnv) => unknown)(env)
          : spec.default;
      if (d === undefined && spec.required && !help)
        problems.push(`${spec.env[0]} (--${spec.flag}) is required: ${spec.description}`);
      values[key] = d;
      continue;
    }
    try {
      values[key] = spec.parse(raw);
    } catch (err) {
      problems.push(`${source}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  if (problems.length > 0 && !help) throw new ConfigError(problems);
  return { help, values: values as Values<S> };
}

/**
 * A `liveupdate-operator <command>`'s configuration, parsed the way those commands share: a ConfigError goes to stderr
 * prefixed with the command (exit 2), `--help` prints the usage and flags (exit 0).
 */
export function configOrExit<T>(
  command: string,
  specs: Specs,
  parse: (argv: string[]) => T | undefined,
  argv: string[],
): { config: T } | { exit: number } {
  let config: T | undefined;
  try {
    config = parse(argv);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${command}: ${err.message}\n`);
      return { exit: 2 };
    }
    throw err;
  }
  if (config === undefined) {
    process.stdout.write(helpText(`usage: liveupdate-operator ${command} [flags]`, specs));
    return { exit: 0 };
  }
  return { config };
}

export function helpText(usage: string, specs: Specs): string {
  const lines = [
    usage,
    '',
    'flags (each also settable through the environment variable shown; the flag wins):',
  ];
  for (const spec of Object.values(specs)) {
    const d =
      spec.defaultText ??
      (spec.default === undefined || typeof spec.default === 'function'
        ? undefined
        : JSON.stringify(spec.default));
    lines.push(`  --${spec.flag}${spec.isBoolean ? '' : ' <value>'}`);
    lines.push(`      ${spec.description}`);
    lines.push(
      `      env: ${spec.env.join(', ')}${d !== undefined ? `; default: ${d}` : ''}${spec.required ? '; required' : ''}`,
    );
  }
  return lines.join('\n') + '\n';
}

// ---- parsers ----

export const str = (raw: string): string => raw;

export function bool(raw: string): boolean {
  if (/^(true|1|yes)$/i.test(raw)) return true;
  if (/^(false|0|no)$/i.test(raw)) return false;
  throw new Error(`"${raw}" is not a boolean (true or false)`);
}

export function int(min: number, max: number): (raw: string) => number {
  return (raw) => {
    if (!/^-?\d+$/.test(raw.trim())) throw new Error(`"${raw}" is not an integer`);
    const n = Number(raw);
    if (n < min || n > max) throw new Error(`${n} is out of range [${min}, ${max}]`);
    return n;
  };
}

const BYTE_UNITS: Record<string, number> = {
  '': 1,
  k: 1e3,
  m: 1e6,
  g: 1e9,
  ki: 1024,
  mi: 1024 ** 2,
  gi: 1024 ** 3,
  ti: 1024 ** 4,
};

/** A byte size: 1073741824, 1Gi, 512Mi, 100M. */
export function bytes(min = 1): (raw: string) => number {
  return (raw) => {
    const m = /^\s*(\d+)\s*([kmgt]i?)?b?\s*$/i.exec(raw);
    const unit = BYTE_UNITS[(m?.[2] ?? '').toLowerCase()];
    if (!m || unit === undefined)
      throw new Error(`"${raw}" is not a byte size (e.g. 1073741824, 512Mi, 1Gi)`);
    const n = Number(m[1]) * unit;
    if (!Number.isSafeInteger(n) || n < min) throw new Error(`${raw} must be at least ${min} bytes`);
    return n;
  };
}

export function url(protocols: string[] = ['http:', 'https:']): (raw: string) => URL {
  return (raw) => {
    let u: URL;
    try {
      u = new URL(raw);
    } catch {
      throw new Error(`"${raw}" is not a URL`);
    }
    if (!protocols.includes(u.protocol)) throw new Error(`"${raw}" must use ${protocols.join(' or ')}`);
    return u;
  };
}

export interface HostPort {
  host: string;
  port: number;
}

/** host:port, [v6]:port or :port (all interfaces). */
export function hostPort(raw: string): HostPort {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(raw.trim());
  const port = Number(m?.[3]);
  if (!m || port > 65535) throw new Error(`"${raw}" is not host:port (e.g. 0.0.0.0:8081)`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

export function oneOf<T extends string>(...allowed: T[]): (raw: string) => T {
  return (raw) => {
    if (!(allowed as string[]).includes(raw))
      throw new Error(`"${raw}" must be one of ${allowed.join(', ')}`);
    return raw as T;
  };
}

export function dnsLabel(raw: string): string {
  if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(raw))
    throw new Error(`"${raw}" is not a valid Kubernetes name`);
  return raw;
}

export function readableFile(raw: string): string {
  try {
    readFileSync(raw);
  } catch (err) {
    throw new Error(`cannot read ${raw}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, {
      cause: err,
    });
  }
  return raw;
}

// ---- options every command shares ----

export const COMMON_OPTIONS = {
  logLevel: {
    env: ['LIVEUPDATE_LOG_LEVEL'],
    flag: 'log-level',
    description: 'log level',
    default: 'info',
    parse: oneOf('trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'),
  } satisfies OptionSpec<string>,
  adminAddr: {
    env: ['LIVEUPDATE_ADMIN_ADDR'],
    flag: 'admin-addr',
    description: 'listen address of the admin server (/healthz, /readyz, /metrics)',
    default: { host: '0.0.0.0', port: 8081 },
    defaultText: '0.0.0.0:8081',
    parse: hostPort,
  } satisfies OptionSpec<HostPort>,
};

export interface S3Config {
  endpoint: URL;
  region: string;
  bucket: string;
  prefix: string;
  accessKeyId: string | undefined;
  secretAccessKey: string | undefined;
  caFile: string | undefined;
  pathStyle: boolean;
}

export const S3_OPTIONS = {
  s3Endpoint: {
    env: ['LIVEUPDATE_S3_ENDPOINT'],
    flag: 's3-endpoint',
    description: 'S3 API endpoint URL, e.g. http://minio:9000',
    required: true,
    parse: url(),
  } satisfies OptionSpec<URL>,
  s3Region: {
    env: ['LIVEUPDATE_S3_REGION'],
    flag: 's3-region',
    description: 'S3 region',
    default: 'us-east-1',
    parse: str,
  } satisfies OptionSpec<string>,
  s3Bucket: {
    env: ['LIVEUPDATE_S3_BUCKET'],
    flag: 's3-bucket',
    description: 'bucket holding bundles and release indexes',
    required: true,
    parse: (raw: string) => {
      if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(raw))
        throw new Error(`"${raw}" is not a valid S3 bucket name`);
      return raw;
    },
  } satisfies OptionSpec<string>,
  s3Prefix: {
    env: ['LIVEUPDATE_S3_PREFIX'],
    flag: 's3-prefix',
    description: 'key prefix inside the bucket',
    default: '',
    parse: (raw: string) => {
      if (raw.startsWith('/') || raw.includes('..'))
        throw new Error(`"${raw}" must be a relative key prefix without ".."`);
      return raw.replace(/\/+$/, '');
    },
  } satisfies OptionSpec<string>,
  s3AccessKeyId: {
    env: ['LIVEUPDATE_S3_ACCESS_KEY_ID'],
    flag: 's3-access-key-id',
    description: 'S3 access key id',
    parse: str,
  } satisfies OptionSpec<string>,
  s3SecretAccessKey: {
    env: ['LIVEUPDATE_S3_SECRET_ACCESS_KEY'],
    flag: 's3-secret-access-key',
    description:
      'S3 secret access key (prefer the environment variable: flags are visible in the process list)',
    parse: str,
  } satisfies OptionSpec<string>,
  s3CaFile: {
    env: ['LIVEUPDATE_S3_CA_FILE'],
    flag: 's3-ca-file',
    description: 'PEM CA bundle to verify the S3 endpoint',
    parse: readableFile,
  } satisfies OptionSpec<string>,
  s3PathStyle: {
    env: ['LIVEUPDATE_S3_PATH_STYLE'],
    flag: 's3-path-style',
    description: 'path-style bucket addressing (MinIO, versitygw)',
    default: true,
    isBoolean: true,
    parse: bool,
  } satisfies OptionSpec<boolean>,
};

export function s3Config(v: Values<typeof S3_OPTIONS>): S3Config {
  if ((v.s3AccessKeyId === undefined) !== (v.s3SecretAccessKey === undefined)) {
    throw new ConfigError([
      'LIVEUPDATE_S3_ACCESS_KEY_ID and LIVEUPDATE_S3_SECRET_ACCESS_KEY must be set together',
    ]);
  }
  return {
    endpoint: v.s3Endpoint,
    region: v.s3Region,
    bucket: v.s3Bucket,
    prefix: v.s3Prefix,
    accessKeyId: v.s3AccessKeyId,
    secretAccessKey: v.s3SecretAccessKey,
    caFile: v.s3CaFile,
    pathStyle: v.s3PathStyle,
  };
}
