/**
 * Credentials of the chart's in-cluster S3 store, created at run time instead of rendered: the chart only names the
 * Secrets, and this step (a Helm/Argo CD pre-sync hook Job running `liveupdate-operator s3-credentials`) creates the
 * ones that are missing. A Secret that exists is never rewritten: its keys may already protect stored data, and
 * regenerating them on each render is what made the chart OutOfSync under GitOps (docs/adr/0030-*).
 */
import { randomInt } from 'node:crypto';
import { SECRET_RESOURCE } from '../api/v1alpha1/index.js';
import { KubeApiError, type KubeObject, type ObjectKey, type ResourceType } from '../kube/types.js';

/** The two calls this step makes (the Kubernetes client in production, an in-memory fake in unit tests). */
export interface SecretClient {
  get<T extends KubeObject>(type: ResourceType, key: ObjectKey): Promise<T>;
  create<T extends KubeObject>(type: ResourceType, obj: KubeObject): Promise<T>;
}

export interface CredentialSecret {
  /** Name of the Secret in the release namespace. */
  readonly name: string;
  /** Whose credentials they are (root, controller, update-server); part of the generated access key id. */
  readonly user: string;
}

export interface EnsureOptions {
  readonly namespace: string;
  readonly secrets: readonly CredentialSecret[];
  readonly accessKeyIdKey: string;
  readonly secretAccessKeyKey: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly annotations?: Readonly<Record<string, string>>;
  /** Random source; the default is crypto.randomInt. */
  readonly randomIndex?: (size: number) => number;
}

export interface EnsureOutcome {
  readonly name: string;
  readonly outcome: 'created' | 'kept';
}

interface SecretObject extends KubeObject {
  type?: string;
  data?: Record<string, string>;
}

/** An existing Secret this step will not repair: a person must complete or delete it. */
export class CredentialSecretError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CredentialSecretError';
  }
}

const LOWER_ALNUM = 'abcdefghijklmnopqrstuvwxyz0123456789';
const ALNUM = `${LOWER_ALNUM}ABCDEFGHIJKLMNOPQRSTUVWXYZ`;

function randomString(alphabet: string, length: number, randomIndex: (size: number) => number): string {
  let out = '';
  for (let i = 0; i < length; i++) out += alphabet[randomIndex(alphabet.length)];
  return out;
}

/** An access key id `liveupdate-<user>-<12 lower-case alnum>` and a 40-character secret (238 bits). */
export function generateCredentials(
  user: string,
  randomIndex: (size: number) => number = (size) => randomInt(size),
): { accessKeyId: string; secretAccessKey: string } {
  return {
    accessKeyId: `liveupdate-${user}-${randomString(LOWER_ALNUM, 12, randomIndex)}`,
    secretAccessKey: randomString(ALNUM, 40, randomIndex),
  };
}

function checkComplete(secret: SecretObject, options: EnsureOptions): void {
  const missing = [options.accessKeyIdKey, options.secretAccessKeyKey].filter((key) => !secret.data?.[key]);
  if (missing.length > 0) {
    throw new CredentialSecretError(
      `Secret ${options.namespace}/${secret.metadata.name} exists but has no ${missing.join(' and ')}: ` +
        'add the key(s) or delete the Secret so that new credentials are generated',
    );
  }
}

const isAlreadyExists = (e: unknown): boolean => e instanceof KubeApiError && e.reason === 'AlreadyExists';
const isNotFound = (e: unknown): boolean => e instanceof KubeApiError && e.reason === 'NotFound';

async function ensureOne(
  client: SecretClient,
  secret: CredentialSecret,
  options: EnsureOptions,
): Promise<EnsureOutcome> {
  const key = { namespace: options.namespace, name: secret.name };
  try {
    checkComplete(await client.get<SecretObject>(SECRET_RESOURCE, key), options);
    return { name: secret.name, outcome: 'kept' };
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  const { accessKeyId, secretAccessKey } = generateCredentials(secret.user, options.randomIndex);
  const object: SecretObject = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: secret.name,
      namespace: options.namespace,
      ...(options.labels && Object.keys(options.labels).length > 0 ? { labels: { ...options.labels } } : {}),
      ...(options.annotations && Object.keys(options.annotations).length > 0
        ? { annotations: { ...options.annotations } }
        : {}),
    },
    type: 'Opaque',
    data: {
      [options.accessKeyIdKey]: Buffer.from(accessKeyId).toString('base64'),
      [options.secretAccessKeyKey]: Buffer.from(secretAccessKey).toString('base64'),
    },
  };
  try {
    await client.create(SECRET_RESOURCE, object);
    return { name: secret.name, outcome: 'created' };
  } catch (err) {
    // Another run created it in between: theirs wins, as long as it is complete.
    if (!isAlreadyExists(err)) throw err;
    checkComplete(await client.get<SecretObject>(SECRET_RESOURCE, key), options);
    return { name: secret.name, outcome: 'kept' };
  }
}

/** Creates each missing Secret with fresh credentials; keeps (and checks) each one that exists. */
export async function ensureCredentialSecrets(
  client: SecretClient,
  options: EnsureOptions,
): Promise<EnsureOutcome[]> {
  const outcomes: EnsureOutcome[] = [];
  for (const secret of options.secrets) outcomes.push(await ensureOne(client, secret, options));
  return outcomes;
}
