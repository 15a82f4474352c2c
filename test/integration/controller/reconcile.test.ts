// The reconcilers against the real apiserver and S3 server: Secret + App + Bundle (from a local HTTP server) +
// Channel converge to Ready, the index in S3 serves the bundle, the stored object decrypts to the original zip;
// failure paths stall with precise reasons while the previous index keeps serving; deletion is held or cleans up.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  APP_RESOURCE,
  BUNDLE_RESOURCE,
  CHANNEL_RESOURCE,
  SECRET_RESOURCE,
  type LiveUpdateApp,
  type LiveUpdateBundle,
  type LiveUpdateChannel,
} from '../../../src/api/v1alpha1/index.js';
import { generateSigningKey, loadPublicKey, verifyBundle } from '../../../src/bundle/index.js';
import { findCondition } from '../../../src/controller/common/conditions.js';
import { webZip, writeWebZip } from '../../../src/controller/common/testing/fixtures.js';
import type { KubeObject } from '../../../src/kube/types.js';
import { ObjectNotFoundError } from '../../../src/storage/object-store.js';
import { validateReleaseIndex } from '../../../src/storage/release-index-schema.js';
import type { ReleaseIndex, ReleaseRoot } from '../../../src/storage/release-index.js';
import { cleanupTestResources, newBucket, newNamespace } from '../../env/fixtures.js';
import { installCrds } from '../api/crds.js';
import {
  ArtifactServer,
  converge,
  isCurrent,
  manifests,
  newHarness,
  packWebapp,
  type Harness,
} from './harness.js';

const signingKey = generateSigningKey();
const server = new ArtifactServer();
let work: string;
let zip: Buffer;
let zipSha: string;
let otherZip: Buffer;

beforeAll(async () => {
  await installCrds();
  await server.start();
  work = await mkdtemp(join(tmpdir(), 'liveupdate-it-'));
  ({ zip, sha256: zipSha } = await packWebapp(work));
  // A second valid bundle: the same build with one file more.
  otherZip = await writeWebZip(join(work, 'other.zip'), {
    'index.html': '<!doctype html><title>v1.1</title>',
    'extra.js': '1',
  });
  server.routes.set('/app-1.0.0.zip', zip);
  server.routes.set('/app-1.1.0.zip', otherZip);
  server.routes.set('/no-index.zip', await webZip({ 'main.js': 'x' }));
});

afterAll(async () => {
  await server.stop();
  await rm(work, { recursive: true, force: true });
  await cleanupTestResources();
});

async function get<T>(h: Harness, type: typeof APP_RESOURCE, namespace: string, name: string): Promise<T> {
  return h.user.get<T & KubeObject>(type, { namespace, name });
}

async function readIndex(h: Harness, namespace: string): Promise<ReleaseIndex> {
  const { data } = await h.store.getBuffer(`${h.storagePrefix}/${namespace}/demo/index.json`);
  return validateReleaseIndex(JSON.parse(data.toString('utf8')));
}

/** Secret + App + bundle 1.0.0 + production channel, converged. */
async function publishedApp(label: string) {
  const namespace = await newNamespace(label);
  const h = newHarness(await newBucket(label));
  await h.user.create(SECRET_RESOURCE, manifests.signingKeySecret(namespace, signingKey.privateKeyPem));
  await h.user.create(APP_RESOURCE, manifests.app(namespace, { signingKey: { secretName: 'demo-key' } }));
  await h.user.create(
    BUNDLE_RESOURCE,
    manifests.bundle(namespace, 'demo-1-0-0', {
      version: '1.0.0',
      digest: `sha256:${zipSha}`,
      source: { http: { url: server.url('/app-1.0.0.zip') } },
    }),
  );
  await h.user.create(CHANNEL_RESOURCE, manifests.channel(namespace, 'production', { bundle: 'demo-1-0-0' }));
  await converge(h, namespace);
  return { namespace, h };
}

describe('LiveUpdate reconcilers on the real apiserver and S3', () => {
  it('converges Secret + App + Bundle + Channel to Ready, and devices can decrypt what the index serves', async () => {
    const { namespace, h } = await publishedApp('happy');

    const app = await get<LiveUpdateApp>(h, APP_RESOURCE, namespace, 'demo');
    const bundle = await get<LiveUpdateBundle>(h, BUNDLE_RESOURCE, namespace, 'demo-1-0-0');
    const channel = await get<LiveUpdateChannel>(h, CHANNEL_RESOURCE, namespace, 'production');
    for (const obj of [app, bundle, channel])
      expect({ name: obj.metadata.name, current: isCurrent(obj) }).toEqual({
        name: obj.metadata.name,
        current: true,
      });
    expect(app.status?.keyId).toBe(signingKey.keyId);
    expect(channel.status).toMatchObject({ servingBundle: 'demo-1-0-0', servingVersion: '1.0.0' });

    const index = await readIndex(h, namespace);
    const served = index.bundles['demo-1-0-0']!;
    expect(index.channels).toEqual([expect.objectContaining({ name: 'production', bundle: 'demo-1-0-0' })]);
    expect(served).toMatchObject({
      version: '1.0.0',
      sha256: zipSha,
      encrypted: true,
      keyId: signingKey.keyId,
      objectKey: bundle.status!.artifact!.objectKey,
    });
    expect(app.status?.index?.revision).toBe(index.revision);

    const root = JSON.parse(
      (await h.store.getBuffer(`${h.storagePrefix}/root.json`)).data.toString('utf8'),
    ) as ReleaseRoot;
    expect(root.apps).toContainEqual(
      expect.objectContaining({ namespace, name: 'demo', revision: index.revision }),
    );

    // What a device does: download, verify with the public key from status, decrypt.
    const decrypted = join(work, `${namespace}.zip`);
    const download = await h.store.get(served.objectKey);
    await verifyBundle({
      input: download!.body,
      checksum: served.checksum,
      publicKey: loadPublicKey(app.status!.publicKey!),
      sessionKey: served.sessionKey!,
      output: decrypted,
    });
    expect((await readFile(decrypted)).equals(zip)).toBe(true);
  });

  // A 404 is retried on the bundle's schedule rather than stalled (docs/adr/0032-recovery-without-kubectl.md).
  it.each<[string, { url: string; digest?: string }, string, string]>([
    ['retries a 404 source', { url: '/gone.zip' }, 'SourceNotFound', 'FetchFailed'],
    [
      'stalls on a digest mismatch',
      { url: '/app-1.1.0.zip', digest: `sha256:${'0'.repeat(64)}` },
      'DigestMismatch',
      'VerificationFailed',
    ],
    ['stalls on an invalid zip', { url: '/no-index.zip' }, 'MissingIndexHtml', 'VerificationFailed'],
  ])('%s and keeps the previous index serving', async (_name, source, reason, negative) => {
    const { namespace, h } = await publishedApp('fail');
    const before = await readIndex(h, namespace);

    await h.user.create(
      BUNDLE_RESOURCE,
      manifests.bundle(namespace, 'demo-2-0-0', {
        version: '2.0.0',
        source: { http: { url: server.url(source.url) } },
        ...(source.digest ? { digest: source.digest } : {}),
      }),
    );
    await h.user.mergePatch(
      CHANNEL_RESOURCE,
      { namespace, name: 'production' },
      { spec: { bundle: 'demo-2-0-0' } },
    );
    await converge(h, namespace);

    const failed = await get<LiveUpdateBundle>(h, BUNDLE_RESOURCE, namespace, 'demo-2-0-0');
    const retried = reason === 'SourceNotFound';
    if (retried) {
      expect(findCondition(failed.status?.conditions, 'Stalled')).toBeUndefined();
      expect(findCondition(failed.status?.conditions, 'Reconciling')).toMatchObject({
        status: 'True',
        reason: 'ProgressingWithRetry',
      });
    } else {
      expect(findCondition(failed.status?.conditions, 'Stalled')).toMatchObject({ status: 'True', reason });
      expect(failed.status?.observedGeneration).toBe(failed.metadata.generation);
    }
    expect(findCondition(failed.status?.conditions, 'Ready')).toMatchObject({ status: 'False', reason });
    expect(findCondition(failed.status?.conditions, negative)).toMatchObject({ status: 'True', reason });

    const channel = await get<LiveUpdateChannel>(h, CHANNEL_RESOURCE, namespace, 'production');
    if (!retried)
      expect(findCondition(channel.status?.conditions, 'Stalled')).toMatchObject({
        reason: 'BundleNotReady',
      });
    expect(channel.status).toMatchObject({ servingBundle: 'demo-1-0-0', servingVersion: '1.0.0' });

    const after = await readIndex(h, namespace);
    expect(after.revision).toBe(before.revision);
    expect(after.channels[0]!.bundle).toBe('demo-1-0-0');
    expect(Object.keys(after.bundles)).toEqual(['demo-1-0-0']);
  });

  it('holds the deletion of a served bundle and removes the objects of an unserved one', async () => {
    const { namespace, h } = await publishedApp('delete');
    await h.user.create(
      BUNDLE_RESOURCE,
      manifests.bundle(namespace, 'demo-1-1-0', {
        version: '1.1.0',
        source: { http: { url: server.url('/app-1.1.0.zip') } },
      }),
    );
    await converge(h, namespace);
    const served = await get<LiveUpdateBundle>(h, BUNDLE_RESOURCE, namespace, 'demo-1-0-0');
    const unserved = await get<LiveUpdateBundle>(h, BUNDLE_RESOURCE, namespace, 'demo-1-1-0');
    expect(isCurrent(unserved)).toBe(true);
    await h.store.stat(unserved.status!.artifact!.objectKey);

    await h.user.delete(BUNDLE_RESOURCE, { namespace, name: 'demo-1-0-0' });
    await h.user.delete(BUNDLE_RESOURCE, { namespace, name: 'demo-1-1-0' });
    await converge(h, namespace);

    const held = await get<LiveUpdateBundle>(h, BUNDLE_RESOURCE, namespace, 'demo-1-0-0');
    expect(held.metadata.deletionTimestamp).toBeDefined();
    expect(findCondition(held.status?.conditions, 'DeletionBlocked')).toMatchObject({
      status: 'True',
      reason: 'ServedByChannel',
    });
    expect(findCondition(held.status?.conditions, 'DeletionBlocked')?.message).toContain('production');
    await h.store.stat(served.status!.artifact!.objectKey);
    expect((await readIndex(h, namespace)).channels[0]!.bundle).toBe('demo-1-0-0');

    await expect(get(h, BUNDLE_RESOURCE, namespace, 'demo-1-1-0')).rejects.toMatchObject({
      reason: 'NotFound',
    });
    await expect(h.store.stat(unserved.status!.artifact!.objectKey)).rejects.toBeInstanceOf(
      ObjectNotFoundError,
    );

    // Once the channel lets go, the held bundle goes too.
    await h.user.mergePatch(
      CHANNEL_RESOURCE,
      { namespace, name: 'production' },
      { spec: { bundle: 'builtin' } },
    );
    await converge(h, namespace);
    expect((await readIndex(h, namespace)).channels[0]!.bundle).toBe('builtin');
    await expect(get(h, BUNDLE_RESOURCE, namespace, 'demo-1-0-0')).rejects.toMatchObject({
      reason: 'NotFound',
    });
    await expect(h.store.stat(served.status!.artifact!.objectKey)).rejects.toBeInstanceOf(
      ObjectNotFoundError,
    );
  });
});
