import { APP_RESOURCE, BUNDLE_RESOURCE, SECRET_RESOURCE } from '../api/v1alpha1/index.js';
import { KubeApiError, type KubeObject, type ResourceType } from '../kube/types.js';
import { silentLogger } from '../observability/logger.js';
import { FakeObjectClient } from './common/testing/fake-client.js';
import { NS, seedApp, seedBundle, seedSecret } from './common/testing/fixtures.js';
import { ReferencedSecrets, bundleSecretNames } from './referenced-secrets.js';
import { SecretCache, secretReaderId } from './secret-cache.js';

function setup() {
  const client = new FakeObjectClient();
  seedSecret(client, 'demo-key', { 'private.pem': 'pem' });
  seedSecret(client, 'token', { token: 'old' });
  seedApp(client, 'demo', { signingKey: { secretName: 'demo-key' } });
  seedBundle(client, 'demo-1-0-0', {
    source: { http: { url: 'https://artifacts.example/a.zip', secretRef: { name: 'token' } } },
  });
  seedBundle(client, 'demo-2-0-0', {
    source: { http: { url: 'https://artifacts.example/b.zip', secretRef: { name: 'missing' } } },
  });
  const objects = (type: ResourceType): KubeObject[] => {
    const found: KubeObject[] = [];
    for (const name of ['demo', 'demo-1-0-0', 'demo-2-0-0', 'demo-3-0-0']) {
      const obj = client.peek(type, { namespace: NS, name });
      if (obj) found.push(obj);
    }
    return found;
  };
  const cache = new SecretCache({ client, maxAgeMs: 1000 });
  const poller = new ReferencedSecrets({
    cache,
    objects,
    enqueue: () => undefined,
    log: silentLogger(),
    periodMs: 1000,
  });
  /** What a reconcile of the object does: reads the Secret through the cache as that object. */
  const read = (type: ResourceType, object: string, secret: string) =>
    cache.get(
      { namespace: NS, name: secret },
      { reader: secretReaderId(type, { namespace: NS, name: object }) },
    );
  /** Every object reads every Secret it names, as their first reconciles do. */
  const reconcileAll = async () => {
    await read(APP_RESOURCE, 'demo', 'demo-key');
    for (const [bundle, secret] of [
      ['demo-1-0-0', 'token'],
      ['demo-2-0-0', 'missing'],
    ] as const) {
      if (!client.peek(BUNDLE_RESOURCE, { namespace: NS, name: bundle })) continue;
      await read(BUNDLE_RESOURCE, bundle, secret);
      await read(BUNDLE_RESOURCE, bundle, 'demo-key');
    }
  };
  return { client, poller, cache, read, reconcileAll };
}

const setData = (client: FakeObjectClient, name: string, data: Record<string, string>) =>
  client.mergePatch(SECRET_RESOURCE, { namespace: NS, name }, { data });

describe('ReferencedSecrets', () => {
  it('names every Secret a bundle source refers to, and its app signing key', () => {
    const bundle = {
      metadata: { name: 'b', namespace: NS },
      spec: {
        app: 'demo',
        source: {
          oci: {
            url: 'oci://r/x',
            ref: { tag: '1' },
            secretRef: { name: 'pull' },
            caSecretRef: { name: 'ca' },
            certSecretRef: { name: 'cert' },
            verify: { provider: 'cosign', secretRef: { name: 'cosign' } },
          },
        },
      },
    } as unknown as KubeObject;
    const apps = new Map([['demo', { spec: { signingKey: { secretName: 'demo-key' } } }]]);
    expect(bundleSecretNames(bundle, apps as never).sort()).toEqual([
      'ca',
      'cert',
      'cosign',
      'demo-key',
      'pull',
    ]);
  });

  it('enqueues the objects that read another version of a Secret that changed, appeared or vanished', async () => {
    const { client, poller, reconcileAll } = setup();
    await reconcileAll();
    expect(await poller.poll()).toEqual([]);
    expect(await poller.poll()).toEqual([]);

    await setData(client, 'token', { token: Buffer.from('new').toString('base64') });
    expect(await poller.poll()).toEqual([`liveupdatebundle ${NS}/demo-1-0-0`]);
    expect(await poller.poll()).toEqual([]);

    seedSecret(client, 'missing', { token: 'x' });
    expect(await poller.poll()).toEqual([`liveupdatebundle ${NS}/demo-2-0-0`]);

    await setData(client, 'demo-key', { 'private.pem': Buffer.from('rotated').toString('base64') });
    expect((await poller.poll()).sort()).toEqual([
      `liveupdateapp ${NS}/demo`,
      `liveupdatebundle ${NS}/demo-1-0-0`,
      `liveupdatebundle ${NS}/demo-2-0-0`,
    ]);

    await client.delete(SECRET_RESOURCE, { namespace: NS, name: 'token' });
    expect(await poller.poll()).toEqual([`liveupdatebundle ${NS}/demo-1-0-0`]);
    expect(await poller.poll()).toEqual([]);
  });

  it('does not enqueue objects that read the version the poll sees, however late they first named the Secret', async () => {
    const { client, poller, read, reconcileAll } = setup();
    await reconcileAll();
    await poller.poll();
    seedSecret(client, 'fresh', { token: 'x' });
    seedBundle(client, 'demo-3-0-0', {
      source: { http: { url: 'https://artifacts.example/c.zip', secretRef: { name: 'fresh' } } },
    });
    await read(BUNDLE_RESOURCE, 'demo-3-0-0', 'fresh');
    expect(await poller.poll()).toEqual([]);
    // one that read it before a change is enqueued once
    await setData(client, 'fresh', { token: Buffer.from('y').toString('base64') });
    expect(await poller.poll()).toEqual([`liveupdatebundle ${NS}/demo-3-0-0`]);
    expect(await poller.poll()).toEqual([]);
  });

  it('serves reconciles the version it read: an object reading after the poll is not enqueued again', async () => {
    const { client, poller, read, reconcileAll } = setup();
    await reconcileAll();
    await poller.poll();
    await setData(client, 'token', { token: Buffer.from('new').toString('base64') });
    const enqueued = await poller.poll();
    expect(enqueued).toEqual([`liveupdatebundle ${NS}/demo-1-0-0`]);
    // the enqueued reconcile reads the poll's copy, without a GET, and the next round leaves it alone
    const gets = client.calls.length;
    const token = await read(BUNDLE_RESOURCE, 'demo-1-0-0', 'token');
    expect(client.calls.length).toBe(gets);
    expect(Buffer.from(token!.data!['token']!, 'base64').toString()).toBe('new');
    expect(await poller.poll()).toEqual([]);
  });

  it('keeps what it saw when a Secret cannot be read (forbidden), and notices the change once it can', async () => {
    const { client, poller, reconcileAll } = setup();
    await reconcileAll();
    await poller.poll();
    const get = client.get.bind(client);
    client.get = (type, key) =>
      type === SECRET_RESOURCE
        ? Promise.reject(new KubeApiError('Forbidden', 403, 'secrets is forbidden'))
        : get(type, key);
    await setData(client, 'token', { token: Buffer.from('new').toString('base64') });
    expect(await poller.poll()).toEqual([]);
    client.get = get;
    expect(await poller.poll()).toEqual([`liveupdatebundle ${NS}/demo-1-0-0`]);
  });

  it('reads nothing for objects being deleted or of other kinds', async () => {
    const { client, poller, reconcileAll } = setup();
    await reconcileAll();
    await client.delete(BUNDLE_RESOURCE, { namespace: NS, name: 'demo-1-0-0' });
    await poller.poll();
    await setData(client, 'token', { token: Buffer.from('new').toString('base64') });
    const peeked = client.peek(APP_RESOURCE, { namespace: NS, name: 'demo' });
    expect(peeked).toBeDefined();
    expect(await poller.poll()).toEqual([]);
  });
});
