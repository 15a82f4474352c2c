import { Registry } from 'prom-client';
import { createControllerDomainMetrics } from '../metrics.js';
import { createHash, generateKeyPairSync } from 'node:crypto';
import {
  APP_RESOURCE,
  BUNDLE_RESOURCE,
  CHANNEL_RESOURCE,
  type LiveUpdateApp,
  type LiveUpdateBundle,
  type LiveUpdateChannel,
} from '../../api/v1alpha1/index.js';
import { generateSigningKey } from '../../bundle/index.js';
import { MemoryObjectStore } from '../../storage/memory-store.js';
import { hashPinnedId, type ReleaseIndex, type ReleaseRoot } from '../../storage/release-index.js';
import { validateReleaseIndex } from '../../storage/release-index-schema.js';
import { findCondition } from '../common/conditions.js';
import { FakeEventRecorder, FakeObjectClient } from '../common/testing/fake-client.js';
import { NS, ctx, seedApp, seedBundle, seedChannel, seedSecret } from '../common/testing/fixtures.js';
import type { KubeObject, ObjectClient, ResourceType } from '../../kube/types.js';
import { AppReconciler } from './reconciler.js';

const signingKey = generateSigningKey();
const appKey = { namespace: NS, name: 'demo' };

function setup() {
  const client = new FakeObjectClient();
  const recorder = new FakeEventRecorder();
  const store = new MemoryObjectStore();
  const registry = new Registry();
  const metrics = createControllerDomainMetrics(registry);
  const reconciler = new AppReconciler({ client, recorder, store, storagePrefix: 'lu', metrics });
  return { client, recorder, store, reconciler, registry };
}

const appOf = (client: FakeObjectClient, name = 'demo') =>
  client.peek<LiveUpdateApp>(APP_RESOURCE, { namespace: NS, name })!;
const condition = (app: LiveUpdateApp, type: string) => findCondition(app.status?.conditions, type);

async function readJson<T>(store: MemoryObjectStore, key: string): Promise<T> {
  return JSON.parse((await store.getBuffer(key)).data.toString('utf8')) as T;
}

/** A bundle as the bundle reconciler leaves it: Ready, with its object in the store. */
async function readyBundle(
  client: FakeObjectClient,
  store: MemoryObjectStore,
  name: string,
  version: string,
) {
  seedBundle(client, name, { version });
  const body = Buffer.from(`bundle ${name}`);
  const sha = createHash('sha256').update(body).digest('hex');
  const objectKey = `lu/${NS}/demo/bundles/${sha}.zip`;
  await store.put(objectKey, body);
  await setBundleStatus(client, name, {
    observedGeneration: 1,
    conditions: [
      {
        type: 'Ready',
        status: 'True',
        reason: 'Succeeded',
        message: 'ok',
        observedGeneration: 1,
        lastTransitionTime: '2026-11-29T10:00:00Z',
      },
    ],
    artifact: {
      revision: 'r',
      objectKey,
      size: body.length,
      sha256: sha,
      storedSha256: sha,
      encrypted: true,
      checksum: 'ab'.repeat(128),
      checksumV2: 'c2ln',
      sessionKey: 'aXY=:a2V5',
      keyId: signingKey.keyId,
      lastUpdateTime: '2026-11-29T10:00:00Z',
    },
  });
  return objectKey;
}

function setBundleStatus(client: FakeObjectClient, name: string, status: LiveUpdateBundle['status']) {
  return client.applyStatus(BUNDLE_RESOURCE, {
    apiVersion: 'liveupdate.dev/v1alpha1',
    kind: 'LiveUpdateBundle',
    metadata: { name, namespace: NS },
    status,
  });
}

describe('AppReconciler', () => {
  it('derives the public key and key_id, and publishes an index and the root', async () => {
    const { client, store, reconciler, recorder } = setup();
    seedSecret(client, 'demo-key', { 'private.pem': signingKey.privateKeyPem });
    seedApp(client, 'demo', { signingKey: { secretName: 'demo-key', key: 'private.pem' } });
    seedChannel(client, 'production', { bundle: 'builtin' });

    await reconciler.reconcile(appKey, ctx());

    const app = appOf(client);
    expect(app.status?.keyId).toBe(signingKey.keyId);
    expect(app.status?.publicKey).toBe(signingKey.publicKeyPem);
    expect(JSON.stringify(app.status)).not.toContain('PRIVATE');
    expect(condition(app, 'KeyValid')?.status).toBe('True');
    expect(condition(app, 'Ready')).toMatchObject({ status: 'True', reason: 'IndexPublished' });
    expect(app.status?.index).toMatchObject({
      objectKey: `lu/${NS}/demo/index.json`,
      revision: 1,
      channels: 1,
      bundles: 0,
    });

    const index = validateReleaseIndex(await readJson(store, `lu/${NS}/demo/index.json`));
    expect(index.app).toEqual({
      namespace: NS,
      name: 'demo',
      appId: 'com.example.demo',
      keyId: signingKey.keyId,
      defaultChannel: 'production',
    });
    const root = await readJson<ReleaseRoot>(store, 'lu/root.json');
    expect(root.apps).toEqual([
      {
        namespace: NS,
        name: 'demo',
        appId: 'com.example.demo',
        indexKey: `lu/${NS}/demo/index.json`,
        revision: 1,
      },
    ]);
    expect(recorder.reasons()).toContain('IndexPublished');
  });

  it.each([
    ['a missing Secret', undefined, 'SigningKeySecretNotFound'],
    ['a Secret without the key entry', { other: 'x' }, 'SigningKeyMissing'],
    [
      'a PKCS#8 key',
      {
        'private.pem': generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
          type: 'pkcs8',
          format: 'pem',
        }) as string,
      },
      'KeyPkcs8PrivateKey',
    ],
    ['garbage', { 'private.pem': 'not a key' }, 'KeyNotPem'],
  ])('refuses %s: Stalled with the reason, no index written', async (_name, data, reason) => {
    const { client, store, reconciler } = setup();
    if (data) seedSecret(client, 'demo-key', data);
    seedApp(client, 'demo', { signingKey: { secretName: 'demo-key', key: 'private.pem' } });
    await reconciler.reconcile(appKey, ctx());
    const app = appOf(client);
    expect(condition(app, 'Stalled')).toMatchObject({ status: 'True', reason });
    expect(condition(app, 'KeyValid')).toMatchObject({ status: 'False', reason });
    expect(app.status?.keyId).toBeUndefined();
    expect(store.keys()).toEqual([]);
    expect(JSON.stringify(app.status)).not.toContain('not a key');
  });

  it('stalls the younger of two apps with the same appId', async () => {
    const { client, reconciler } = setup();
    client.create<LiveUpdateApp>(APP_RESOURCE, {
      apiVersion: 'liveupdate.dev/v1alpha1',
      kind: 'LiveUpdateApp',
      metadata: { name: 'first', namespace: 'other', creationTimestamp: '2026-11-01T00:00:00Z' },
      spec: { appId: 'com.example.demo' },
    });
    seedApp(client, 'demo');
    await reconciler.reconcile(appKey, ctx());
    expect(condition(appOf(client), 'Stalled')).toMatchObject({ reason: 'DuplicateAppId' });
    expect(condition(appOf(client), 'Stalled')?.message).toContain('other/first');
  });

  it('renders channels with policies, rollout and hashed pinned devices', async () => {
    const { client, store, reconciler } = setup();
    seedApp(client, 'demo');
    const v1 = await readyBundle(client, store, 'demo-1-0-0', '1.0.0');
    await readyBundle(client, store, 'demo-1-1-0', '1.1.0');
    seedChannel(client, 'production', {
      bundle: 'demo-1-0-0',
      rollout: { bundle: 'demo-1-1-0', percentage: 12.5, sticky: true, paused: false },
      policy: { disableAutoUpdate: 'major', platforms: ['ios'] },
      pinnedDevices: ['5C0E3A2E-8D43-4A63-9C52-1B1F0F2C9E11'],
    });
    seedChannel(client, 'reset', { bundle: 'builtin' });
    seedChannel(client, 'other-app', { app: 'another', bundle: 'demo-1-0-0' });

    await reconciler.reconcile(appKey, ctx());

    const index = await readJson<ReleaseIndex>(store, `lu/${NS}/demo/index.json`);
    expect(Object.keys(index.bundles)).toEqual(['demo-1-0-0', 'demo-1-1-0']);
    expect(index.bundles['demo-1-0-0']).toMatchObject({
      version: '1.0.0',
      objectKey: v1,
      encrypted: true,
      sessionKey: 'aXY=:a2V5',
    });
    expect(index.channels.map((c) => c.name)).toEqual(['production', 'reset']);
    const production = index.channels[0]!;
    expect(production.rollout).toMatchObject({ bundle: 'demo-1-1-0', percentage: 12.5 });
    expect(production.policy).toMatchObject({
      disableAutoUpdate: 'major',
      allowEmulator: true,
      platforms: ['ios'],
    });
    expect(production.pinnedIdHashes).toEqual([hashPinnedId('5c0e3a2e-8d43-4a63-9c52-1b1f0f2c9e11')]);
    expect(JSON.stringify(index)).not.toContain('5C0E3A2E');
    expect(index.channels[1]!.bundle).toBe('builtin');
    expect(appOf(client).status?.channels).toEqual([
      {
        name: 'production',
        bundle: 'demo-1-0-0',
        version: '1.0.0',
        rolloutBundle: 'demo-1-1-0',
        rolloutVersion: '1.1.0',
        rolloutPercentage: 12.5,
        rolloutState: 'Active',
      },
      { name: 'reset', bundle: 'builtin' },
    ]);
  });

  it('publishes a paused, non-sticky rollout as held and drawn per check (nothing dropped)', async () => {
    const { client, store, reconciler } = setup();
    seedApp(client, 'demo');
    await readyBundle(client, store, 'demo-1-0-0', '1.0.0');
    await readyBundle(client, store, 'demo-1-1-0', '1.1.0');
    seedChannel(client, 'production', {
      bundle: 'demo-1-0-0',
      rollout: { bundle: 'demo-1-1-0', percentage: 20, sticky: false, paused: true },
    });
    await reconciler.reconcile(appKey, ctx());
    const index = await readJson<ReleaseIndex>(store, `lu/${NS}/demo/index.json`);
    expect(index.channels[0]!.rollout).toMatchObject({
      bundle: 'demo-1-1-0',
      percentage: 20,
      paused: true,
      sticky: false,
    });
    expect(index.channels[0]!.rollout).not.toHaveProperty('rolledBack');
  });

  it('puts the delta manifest of a bundle into the index', async () => {
    const { client, store, reconciler } = setup();
    seedApp(client, 'demo');
    await readyBundle(client, store, 'demo-1-0-0', '1.0.0');
    const fileKey = `lu/${NS}/demo/files/${'c'.repeat(64)}`;
    await store.put(fileKey, 'body');
    const manifestKey = `lu/${NS}/demo/files/${'d'.repeat(64)}.json`;
    await store.put(
      manifestKey,
      JSON.stringify([{ fileName: 'index.html', fileHash: 'ab'.repeat(32), objectKey: fileKey, size: 4 }]),
    );
    const bundle = client.peek<LiveUpdateBundle>(BUNDLE_RESOURCE, { namespace: NS, name: 'demo-1-0-0' })!;
    await setBundleStatus(client, 'demo-1-0-0', {
      ...bundle.status,
      artifact: { ...bundle.status!.artifact!, manifestKey, manifestFiles: 1 },
    });
    seedChannel(client, 'production', { bundle: 'demo-1-0-0' });
    await reconciler.reconcile(appKey, ctx());
    const index = await readJson<ReleaseIndex>(store, `lu/${NS}/demo/index.json`);
    expect(index.bundles['demo-1-0-0']!.manifest).toEqual([
      { fileName: 'index.html', fileHash: 'ab'.repeat(32), objectKey: fileKey, size: 4 },
    ]);

    await store.remove(fileKey);
    client.updateSpec(
      CHANNEL_RESOURCE,
      { namespace: NS, name: 'production' },
      { app: 'demo', bundle: 'demo-1-0-0', pinnedDevices: ['qa'] },
    );
    await expect(reconciler.reconcile(appKey, ctx())).rejects.toThrow(fileKey);
  });

  it('reads only the bundles its channels name: no copy of the others, no read of their delta manifests', async () => {
    const { client, store, reconciler } = setup();
    seedApp(client, 'demo');
    await readyBundle(client, store, 'demo-1-0-0', '1.0.0');
    // many bundles of the app that no channel names, one of them with a delta manifest
    for (let i = 2; i <= 5; i++) await readyBundle(client, store, `demo-${i}-0-0`, `${i}.0.0`);
    const manifestKey = `lu/${NS}/demo/files/${'e'.repeat(64)}.json`;
    await store.put(manifestKey, '[]');
    const other = client.peek<LiveUpdateBundle>(BUNDLE_RESOURCE, { namespace: NS, name: 'demo-2-0-0' })!;
    await setBundleStatus(client, 'demo-2-0-0', {
      ...other.status,
      artifact: { ...other.status!.artifact!, manifestKey, manifestFiles: 0 },
    });
    seedChannel(client, 'production', { bundle: 'demo-1-0-0' });
    const copied: string[] = [];
    const cached: ObjectClient = client;
    cached.listMatching = async <T extends KubeObject>(
      type: ResourceType,
      namespace: string,
      match: (obj: T) => boolean,
    ) => {
      const items = (await client.list<T>(type, namespace)).filter(match);
      if (type === BUNDLE_RESOURCE) copied.push(...items.map((o) => o.metadata.name));
      return items;
    };
    const getBuffer = store.getBuffer.bind(store);
    const read: string[] = [];
    store.getBuffer = (key, opts) => {
      read.push(key);
      return getBuffer(key, opts);
    };
    await reconciler.reconcile(appKey, ctx());
    expect(condition(appOf(client), 'Ready')?.status).toBe('True');
    expect(copied).toEqual(['demo-1-0-0']);
    expect(read).not.toContain(manifestKey);
  });

  it('copies only its own channels and the apps claiming its appId: not the namespace’s other apps and channels', async () => {
    const { client, store, reconciler } = setup();
    seedApp(client, 'demo');
    await readyBundle(client, store, 'demo-1-0-0', '1.0.0');
    seedChannel(client, 'production', { bundle: 'demo-1-0-0' });
    for (let i = 0; i < 10; i++) {
      seedApp(client, `other-${i}`, { appId: `com.example.other${i}` });
      seedChannel(client, `other-${i}-production`, { app: `other-${i}`, bundle: 'builtin' });
    }
    const copied: string[] = [];
    const cached: ObjectClient = client;
    const list = client.list.bind(client);
    const counted = <T extends KubeObject>(items: T[]) => {
      copied.push(...items.map((o) => `${o.kind}/${o.metadata.name}`));
      return items;
    };
    cached.list = async <T extends KubeObject>(type: ResourceType, namespace?: string) =>
      counted(await list<T>(type, namespace));
    cached.listMatching = async <T extends KubeObject>(
      type: ResourceType,
      namespace: string | undefined,
      match: (obj: T) => boolean,
    ) => counted((await list<T>(type, namespace)).filter(match));
    await reconciler.reconcile(appKey, ctx());
    expect(condition(appOf(client), 'Ready')?.status).toBe('True');
    expect(copied.sort()).toEqual([
      'LiveUpdateApp/demo',
      'LiveUpdateBundle/demo-1-0-0',
      'LiveUpdateChannel/production',
    ]);
  });

  it('keeps serving the previous bundle when the channel moves to a bundle that is not Ready', async () => {
    const { client, store, reconciler } = setup();
    seedApp(client, 'demo');
    await readyBundle(client, store, 'demo-1-0-0', '1.0.0');
    seedChannel(client, 'production', { bundle: 'demo-1-0-0' });
    await reconciler.reconcile(appKey, ctx());

    seedBundle(client, 'demo-2-0-0', { version: '2.0.0' });
    await setBundleStatus(client, 'demo-2-0-0', {
      observedGeneration: 1,
      conditions: [
        {
          type: 'Ready',
          status: 'False',
          reason: 'DigestMismatch',
          message: 'x',
          lastTransitionTime: '2026-11-29T10:00:00Z',
        },
        {
          type: 'Stalled',
          status: 'True',
          reason: 'DigestMismatch',
          message: 'x',
          lastTransitionTime: '2026-11-29T10:00:00Z',
        },
      ],
    });
    client.updateSpec(
      CHANNEL_RESOURCE,
      { namespace: NS, name: 'production' },
      { app: 'demo', bundle: 'demo-2-0-0' },
    );
    await reconciler.reconcile(appKey, ctx());

    const index = await readJson<ReleaseIndex>(store, `lu/${NS}/demo/index.json`);
    expect(index.revision).toBe(1);
    expect(index.channels[0]!.bundle).toBe('demo-1-0-0');
    expect(Object.keys(index.bundles)).toEqual(['demo-1-0-0']);
  });

  it('writes a new revision only when the content changes', async () => {
    const { client, store, reconciler, registry } = setup();
    seedApp(client, 'demo');
    await readyBundle(client, store, 'demo-1-0-0', '1.0.0');
    await readyBundle(client, store, 'demo-1-1-0', '1.1.0');
    seedChannel(client, 'production', { bundle: 'demo-1-0-0' });
    await reconciler.reconcile(appKey, ctx());
    const puts = store.calls.put;
    await reconciler.reconcile(appKey, ctx());
    expect(store.calls.put).toBe(puts);

    client.updateSpec(
      CHANNEL_RESOURCE,
      { namespace: NS, name: 'production' },
      { app: 'demo', bundle: 'demo-1-1-0' },
    );
    await reconciler.reconcile(appKey, ctx());
    const index = await readJson<ReleaseIndex>(store, `lu/${NS}/demo/index.json`);
    expect(index.revision).toBe(2);
    expect(index.channels[0]!.bundle).toBe('demo-1-1-0');
    expect(appOf(client).status?.index?.revision).toBe(2);
    expect((await readJson<ReleaseRoot>(store, 'lu/root.json')).apps[0]!.revision).toBe(2);
    const text = await registry.metrics();
    expect(text).toContain(`liveupdate_release_index_publishes_total{namespace="${NS}",app="demo"} 2`);
    expect(text).toContain(`liveupdate_release_index_revision{namespace="${NS}",app="demo"} 2`);
  });

  it('never lets the revision go back when the index object was lost', async () => {
    const { client, store, reconciler } = setup();
    seedApp(client, 'demo');
    seedChannel(client, 'production', { bundle: 'builtin' });
    await reconciler.reconcile(appKey, ctx());
    await store.remove(`lu/${NS}/demo/index.json`);
    await reconciler.reconcile(appKey, ctx());
    expect((await readJson<ReleaseIndex>(store, `lu/${NS}/demo/index.json`)).revision).toBe(2);
  });

  it('refuses to publish an index whose objects are missing from the store, and retries', async () => {
    const { client, store, reconciler } = setup();
    seedApp(client, 'demo');
    const key = await readyBundle(client, store, 'demo-1-0-0', '1.0.0');
    seedChannel(client, 'production', { bundle: 'demo-1-0-0' });
    await store.remove(key);
    await expect(reconciler.reconcile(appKey, ctx())).rejects.toThrow(/not in the store/);
    expect(condition(appOf(client), 'Ready')).toMatchObject({
      status: 'False',
      reason: 'StorageVerificationFailed',
    });
    expect(store.keys()).not.toContain(`lu/${NS}/demo/index.json`);
  });

  it('removes the index and the root entry on deletion', async () => {
    const { client, store, reconciler } = setup();
    seedApp(client, 'demo');
    seedChannel(client, 'production', { bundle: 'builtin' });
    await reconciler.reconcile(appKey, ctx());
    await client.delete(APP_RESOURCE, appKey);
    await reconciler.reconcile(appKey, ctx());
    expect(client.peek(APP_RESOURCE, appKey)).toBeUndefined();
    expect(store.keys()).toEqual(['lu/root.json']);
    expect((await readJson<ReleaseRoot>(store, 'lu/root.json')).apps).toEqual([]);
  });
});

describe('channel objects of other kinds are ignored', () => {
  it('lists only channels of the app', async () => {
    const { client, store, reconciler } = setup();
    seedApp(client, 'demo');
    client.create<LiveUpdateChannel>(CHANNEL_RESOURCE, {
      apiVersion: 'liveupdate.dev/v1alpha1',
      kind: 'LiveUpdateChannel',
      metadata: { name: 'elsewhere', namespace: 'other' },
      spec: { app: 'demo', bundle: 'builtin' },
    });
    await reconciler.reconcile(appKey, ctx());
    expect(condition(appOf(client), 'Stalled')).toMatchObject({
      status: 'True',
      reason: 'NoChannelPublished',
    });
    expect(store.keys()).toEqual([]);
  });
});

describe('an index the update service could not serve is not published', () => {
  it('stalls with DefaultChannelNotFound when spec.defaultChannel names no channel of the app', async () => {
    const { client, store, reconciler } = setup();
    seedApp(client, 'demo', { defaultChannel: 'stable' });
    seedChannel(client, 'production', { bundle: 'builtin' });
    await reconciler.reconcile(appKey, ctx());
    const app = appOf(client);
    expect(condition(app, 'Stalled')).toMatchObject({ status: 'True', reason: 'DefaultChannelNotFound' });
    expect(condition(app, 'Ready')?.message).toContain('spec.defaultChannel "stable"');
    expect(store.keys()).toEqual([]);
  });

  it('waits with NoChannelPublished while the only channel waits for a Ready bundle', async () => {
    const { client, store, reconciler } = setup();
    seedApp(client, 'demo');
    seedBundle(client, 'demo-1-0-0', { version: '1.0.0' });
    seedChannel(client, 'production', { bundle: 'demo-1-0-0' });
    const result = await reconciler.reconcile(appKey, ctx());
    expect(result.requeueAfterMs).toBeGreaterThan(0);
    const app = appOf(client);
    expect(condition(app, 'Ready')).toMatchObject({ status: 'False', reason: 'NoChannelPublished' });
    expect(condition(app, 'Reconciling')?.status).toBe('True');
    expect(store.keys()).toEqual([]);
  });
});

describe('shared documents are written conditionally', () => {
  it('renders again on a fresh read when another writer changed the index in between', async () => {
    const { client, store, reconciler } = setup();
    seedApp(client, 'demo');
    seedChannel(client, 'production', { bundle: 'builtin' });
    await reconciler.reconcile(appKey, ctx());
    const indexKey = `lu/${NS}/demo/index.json`;
    // A racing writer publishes revision 5 right before this controller's write.
    const original = store.put.bind(store);
    let raced = false;
    store.put = async (key, body, opts) => {
      if (key === indexKey && !raced) {
        raced = true;
        const other = await readJson<ReleaseIndex>(store, indexKey);
        await original(key, JSON.stringify({ ...other, revision: 5 }));
      }
      return original(key, body, opts);
    };
    seedChannel(client, 'beta', { bundle: 'builtin' });
    await reconciler.reconcile(appKey, ctx());
    const index = await readJson<ReleaseIndex>(store, indexKey);
    expect(index.revision).toBe(6);
    expect(index.channels.map((c) => c.name)).toEqual(['beta', 'production']);
    expect(condition(appOf(client), 'Ready')?.status).toBe('True');
  });

  it('never rewrites an unreadable root: Ready=False RootDocumentUnreadable, a Warning event, root untouched', async () => {
    const { client, store, reconciler, recorder } = setup();
    seedApp(client, 'demo');
    seedChannel(client, 'production', { bundle: 'builtin' });
    await store.put('lu/root.json', '{"apps": [');
    await expect(reconciler.reconcile(appKey, ctx())).rejects.toThrow(
      /root document lu\/root.json is unreadable/,
    );
    expect(condition(appOf(client), 'Ready')).toMatchObject({
      status: 'False',
      reason: 'RootDocumentUnreadable',
    });
    expect(recorder.reasons()).toContain('RootDocumentUnreadable');
    expect((await store.getBuffer('lu/root.json')).data.toString()).toBe('{"apps": [');
  });

  it('never replaces an index written by a newer schema version', async () => {
    const { client, store, reconciler } = setup();
    seedApp(client, 'demo');
    seedChannel(client, 'production', { bundle: 'builtin' });
    await reconciler.reconcile(appKey, ctx());
    const indexKey = `lu/${NS}/demo/index.json`;
    const newer = JSON.stringify({ ...(await readJson<ReleaseIndex>(store, indexKey)), schemaVersion: 2 });
    await store.put(indexKey, newer);
    seedChannel(client, 'beta', { bundle: 'builtin' });
    await expect(reconciler.reconcile(appKey, ctx())).rejects.toThrow(/schemaVersion 2/);
    expect(condition(appOf(client), 'Ready')).toMatchObject({
      status: 'False',
      reason: 'IndexDocumentUnreadable',
    });
    expect((await store.getBuffer(indexKey)).data.toString()).toBe(newer);
  });
});
