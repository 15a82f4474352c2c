import { SECRET_RESOURCE } from '../api/v1alpha1/index.js';
import { KubeApiError, type KubeObject, type ObjectKey, type ResourceType } from '../kube/types.js';
import {
  CredentialSecretError,
  ensureCredentialSecrets,
  generateCredentials,
  type SecretClient,
} from './s3-credentials.js';

type Secret = KubeObject & { data?: Record<string, string> };

/** Secrets in memory; `raceOn` makes a create of that name find the Secret another run just created. */
class FakeSecrets implements SecretClient {
  readonly objects = new Map<string, Secret>();
  creates = 0;
  raceOn: { name: string; winner: Secret } | undefined;

  get<T extends KubeObject>(type: ResourceType, key: ObjectKey): Promise<T> {
    expect(type).toBe(SECRET_RESOURCE);
    const found = this.objects.get(`${key.namespace}/${key.name}`);
    if (!found) return Promise.reject(new KubeApiError('NotFound', 404, `secret ${key.name} not found`));
    return Promise.resolve(structuredClone(found) as unknown as T);
  }

  create<T extends KubeObject>(type: ResourceType, obj: KubeObject): Promise<T> {
    expect(type).toBe(SECRET_RESOURCE);
    this.creates++;
    const id = `${obj.metadata.namespace}/${obj.metadata.name}`;
    if (this.raceOn?.name === obj.metadata.name) this.objects.set(id, this.raceOn.winner);
    if (this.objects.has(id)) return Promise.reject(new KubeApiError('AlreadyExists', 409, 'exists'));
    this.objects.set(id, structuredClone(obj));
    return Promise.resolve(obj as T);
  }
}

const b64 = (s: string): string => Buffer.from(s).toString('base64');
const decoded = (secret: Secret | undefined, key: string): string =>
  Buffer.from(secret?.data?.[key] ?? '', 'base64').toString();

const options = {
  namespace: 'liveupdate-system',
  secrets: [
    { name: 'lu-s3-credentials', user: 'root' },
    { name: 'lu-s3-controller', user: 'controller' },
  ],
  accessKeyIdKey: 'accessKeyId',
  secretAccessKeyKey: 'secretAccessKey',
  labels: { 'app.kubernetes.io/component': 's3' },
  annotations: { team: 'platform' },
};

describe('in-cluster S3 credential Secrets', () => {
  it('creates the missing Secrets with fresh credentials, labels and annotations', async () => {
    const client = new FakeSecrets();
    await expect(ensureCredentialSecrets(client, options)).resolves.toEqual([
      { name: 'lu-s3-credentials', outcome: 'created' },
      { name: 'lu-s3-controller', outcome: 'created' },
    ]);
    const root = client.objects.get('liveupdate-system/lu-s3-credentials');
    const controller = client.objects.get('liveupdate-system/lu-s3-controller');
    expect(decoded(root, 'accessKeyId')).toMatch(/^liveupdate-root-[a-z0-9]{12}$/);
    expect(decoded(controller, 'accessKeyId')).toMatch(/^liveupdate-controller-[a-z0-9]{12}$/);
    expect(decoded(root, 'secretAccessKey')).toMatch(/^[A-Za-z0-9]{40}$/);
    expect(decoded(root, 'secretAccessKey')).not.toBe(decoded(controller, 'secretAccessKey'));
    expect(root?.metadata.labels).toEqual({ 'app.kubernetes.io/component': 's3' });
    expect(root?.metadata.annotations).toEqual({ team: 'platform' });
  });

  it('keeps a Secret that exists: a second run changes nothing', async () => {
    const client = new FakeSecrets();
    await ensureCredentialSecrets(client, options);
    const before = structuredClone([...client.objects.entries()]);
    await expect(ensureCredentialSecrets(client, options)).resolves.toEqual([
      { name: 'lu-s3-credentials', outcome: 'kept' },
      { name: 'lu-s3-controller', outcome: 'kept' },
    ]);
    expect([...client.objects.entries()]).toEqual(before);
    expect(client.creates).toBe(2);
  });

  it('refuses an existing Secret without the keys, naming the Secret and the key, and never rewrites it', async () => {
    const client = new FakeSecrets();
    client.objects.set('liveupdate-system/lu-s3-credentials', {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'lu-s3-credentials', namespace: 'liveupdate-system' },
      data: { accessKeyId: b64('someone') },
    });
    const failure = ensureCredentialSecrets(client, options);
    await expect(failure).rejects.toBeInstanceOf(CredentialSecretError);
    await expect(failure).rejects.toThrow(
      'Secret liveupdate-system/lu-s3-credentials exists but has no secretAccessKey',
    );
    expect(client.creates).toBe(0);
  });

  it('a run that loses the create race keeps the winner’s credentials', async () => {
    const client = new FakeSecrets();
    const winner: Secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'lu-s3-controller', namespace: 'liveupdate-system' },
      data: { accessKeyId: b64('winner'), secretAccessKey: b64('winner-secret') },
    };
    client.raceOn = { name: 'lu-s3-controller', winner };
    const outcomes = await ensureCredentialSecrets(client, options);
    expect(outcomes[1]).toEqual({ name: 'lu-s3-controller', outcome: 'kept' });
    expect(decoded(client.objects.get('liveupdate-system/lu-s3-controller'), 'accessKeyId')).toBe('winner');
  });

  it('passes on API failures other than NotFound (e.g. Forbidden) instead of guessing', async () => {
    const client = new FakeSecrets();
    client.get = () => Promise.reject(new KubeApiError('Forbidden', 403, 'secrets is forbidden'));
    await expect(ensureCredentialSecrets(client, options)).rejects.toThrow('secrets is forbidden');
    expect(client.creates).toBe(0);
  });

  it('generates from the whole alphabet (the random source decides every character)', () => {
    expect(generateCredentials('root', () => 0)).toEqual({
      accessKeyId: 'liveupdate-root-aaaaaaaaaaaa',
      secretAccessKey: 'a'.repeat(40),
    });
    expect(generateCredentials('root', (size) => size - 1).secretAccessKey).toBe('Z'.repeat(40));
  });
});
