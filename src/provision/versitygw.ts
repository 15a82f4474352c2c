/**
 * Provisioning of the chart's in-cluster versitygw store (docs/adr/0033-storage-neutrality.md): with the store's root
 * credentials it creates the bucket (owned by root) and one user per component with versitygw's least role (`user`:
 * no bucket creation, no admin API), and grants each component exactly the statements of its policy from the
 * chart's `<s3>-policies` ConfigMap as one bucket policy naming the user as principal. Every step is idempotent, so
 * the chart's provisioning container can repeat it: an existing user gets its secret and role re-applied (a rotated
 * Secret takes effect), an existing bucket is kept, the policy is replaced.
 *
 * versitygw's admin API (PATCH /create-user, /update-user on the S3 port) and the S3 calls are signed with SigV4 by
 * minio-js's signer; no other client is needed.
 */
import { createHash } from 'node:crypto';
import { signV4 } from 'minio/dist/esm/signing.mjs';

export interface Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
}

export interface PolicyDocument {
  readonly Version?: string;
  readonly Statement: readonly Record<string, unknown>[];
}

export interface ComponentUser {
  /** controller or update-server, for messages. */
  readonly component: string;
  readonly credentials: Credentials;
  /** The component's IAM policy (statements without a principal). */
  readonly policy: PolicyDocument;
}

export interface ProvisionOptions {
  readonly endpoint: URL;
  readonly region: string;
  readonly bucket: string;
  readonly root: Credentials;
  readonly users: readonly ComponentUser[];
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
}

export interface ProvisionOutcome {
  readonly bucket: 'created' | 'kept';
  readonly users: readonly { component: string; outcome: 'created' | 'updated' }[];
}

export class ProvisionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProvisionError';
  }
}

interface Answer {
  readonly status: number;
  readonly body: string;
}

const sha256Hex = (data: string): string => createHash('sha256').update(data).digest('hex');

const xmlEscape = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** The S3 error code of an XML error body (versitygw answers admin errors the same way). */
const errorCode = (body: string): string => /<Code>([^<]*)<\/Code>/.exec(body)?.[1] ?? '';

async function signedRequest(
  options: ProvisionOptions,
  method: string,
  path: string,
  body = '',
  contentType?: string,
): Promise<Answer> {
  const now = new Date();
  const amzDate = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '');
  const payloadHash = sha256Hex(body);
  const headers: Record<string, string> = {
    host: options.endpoint.host,
    'x-amz-date': amzDate,
    'x-amz-content-sha256': payloadHash,
    ...(contentType ? { 'content-type': contentType } : {}),
  };
  headers['authorization'] = signV4(
    { protocol: options.endpoint.protocol, method, path, headers },
    options.root.accessKeyId,
    options.root.secretAccessKey,
    options.region,
    now,
    payloadHash,
  );
  const timeout = AbortSignal.timeout(options.timeoutMs ?? 15_000);
  const response = await fetch(new URL(path, options.endpoint), {
    method,
    headers,
    ...(body ? { body } : {}),
    signal: options.signal ? AbortSignal.any([options.signal, timeout]) : timeout,
  });
  return { status: response.status, body: await response.text() };
}

function fail(what: string, answer: Answer): never {
  const code = errorCode(answer.body);
  throw new ProvisionError(`${what}: HTTP ${answer.status}${code ? ` ${code}` : ''}`);
}

/** Creates the user with role `user`, or re-applies its secret and role when it exists. */
async function ensureUser(options: ProvisionOptions, user: ComponentUser): Promise<'created' | 'updated'> {
  const { accessKeyId, secretAccessKey } = user.credentials;
  const account =
    `<Account><Access>${xmlEscape(accessKeyId)}</Access><Secret>${xmlEscape(secretAccessKey)}</Secret>` +
    '<Role>user</Role><UserID>0</UserID><GroupID>0</GroupID><ProjectID>0</ProjectID></Account>';
  const created = await signedRequest(options, 'PATCH', '/create-user', account, 'application/xml');
  if (created.status < 300) return 'created';
  if (created.status !== 409 || errorCode(created.body) !== 'XAdminUserExists') {
    fail(`creating the ${user.component} user`, created);
  }
  const props = `<MutableProps><Secret>${xmlEscape(secretAccessKey)}</Secret><Role>user</Role></MutableProps>`;
  const updated = await signedRequest(
    options,
    'PATCH',
    `/update-user?access=${encodeURIComponent(accessKeyId)}`,
    props,
    'application/xml',
  );
  if (updated.status >= 300) fail(`updating the ${user.component} user`, updated);
  return 'updated';
}

async function ensureBucket(options: ProvisionOptions): Promise<'created' | 'kept'> {
  const answer = await signedRequest(options, 'PUT', `/${options.bucket}`);
  if (answer.status < 300) return 'created';
  if (answer.status === 409 && errorCode(answer.body) === 'BucketAlreadyOwnedByYou') return 'kept';
  return fail(`creating bucket ${options.bucket}`, answer);
}

/** One bucket policy: each component's statements with that component's user as the only principal. */
export function bucketPolicy(users: readonly ComponentUser[]): string {
  return JSON.stringify({
    Version: '2012-10-17',
    Statement: users.flatMap((user) =>
      user.policy.Statement.map((statement) => ({
        ...statement,
        Principal: { AWS: [user.credentials.accessKeyId] },
      })),
    ),
  });
}

export async function provisionVersitygw(options: ProvisionOptions): Promise<ProvisionOutcome> {
  const keys = [options.root, ...options.users.map((u) => u.credentials)].map((c) => c.accessKeyId);
  if (new Set(keys).size !== keys.length) {
    throw new ProvisionError('the root and component users must have distinct access key ids');
  }
  const users: { component: string; outcome: 'created' | 'updated' }[] = [];
  for (const user of options.users)
    users.push({ component: user.component, outcome: await ensureUser(options, user) });
  const bucket = await ensureBucket(options);
  const policy = await signedRequest(
    options,
    'PUT',
    `/${options.bucket}?policy`,
    bucketPolicy(options.users),
    'application/json',
  );
  if (policy.status >= 300) fail(`setting the policy of bucket ${options.bucket}`, policy);
  return { bucket, users };
}
