// A controller that dies in the middle of an upload (the request body breaks off) leaves no partial object behind
// and no index entry pointing at one; a restarted controller completes the bundle and publishes it.
import { createHash, randomBytes } from 'node:crypto';
import { Transform, type Readable } from 'node:stream';
import {
  APP_RESOURCE,
  BUNDLE_RESOURCE,
  CHANNEL_RESOURCE,
  type LiveUpdateBundle,
} from '../../../src/api/v1alpha1/index.js';
import { BundleReconciler } from '../../../src/controller/bundle/reconciler.js';
import { webZip } from '../../../src/controller/common/testing/fixtures.js';
import { KubeEventRecorder } from '../../../src/kube/events.js';
import { silentLogger } from '../../../src/observability/logger.js';
import type { ObjectStore, PutOptions } from '../../../src/storage/object-store.js';
import { validateReleaseIndex } from '../../../src/storage/release-index-schema.js';
import { cleanupTestResources, newBucket, newNamespace } from '../../env/fixtures.js';
import { installCrds } from '../api/crds.js';
import { ArtifactServer, converge, isCurrent, manifests, newHarness } from './harness.js';

const server = new ArtifactServer();
beforeAll(async () => {
  await installCrds();
  await server.start();
});
afterAll(async () => {
  await server.stop();
  await cleanupTestResources();
});

/** The real store, except that bundle uploads break off after the first 64 KiB, as if the process died. */
function dyingStore(store: ObjectStore): ObjectStore {
  const breakOff = (body: Readable) => {
    let sent = 0;
    return body.pipe(
      new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          sent += chunk.length;
          callback(sent > 64 * 1024 ? new Error('controller killed') : null, chunk);
        },
      }),
    );
  };
  return Object.assign(Object.create(store) as ObjectStore, {
    put: (key: string, body: Readable | Buffer | string, opts?: PutOptions) =>
      key.includes('/bundles/') && typeof body === 'object' && 'pipe' in body
        ? store.put(key, breakOff(body), opts)
        : store.put(key, body, opts),
  });
}

describe('an upload interrupted by a controller crash', () => {
  it('leaves no partial object and no index entry, and the restarted controller completes', async () => {
    const namespace = await newNamespace('crash');
    const h = newHarness(await newBucket('crash'));
    const small = await webZip();
    const large = await webZip({
      'index.html': '<!doctype html>',
      'big.bin': randomBytes(1024 * 1024).toString('base64'),
    });
    server.routes.set(`/${namespace}/1.0.0.zip`, small);
    server.routes.set(`/${namespace}/2.0.0.zip`, large);
    await h.user.create(APP_RESOURCE, manifests.app(namespace));
    await h.user.create(
      BUNDLE_RESOURCE,
      manifests.bundle(namespace, 'v1', {
        version: '1.0.0',
        source: { http: { url: server.url(`/${namespace}/1.0.0.zip`) } },
      }),
    );
    await h.user.create(CHANNEL_RESOURCE, manifests.channel(namespace, 'production', { bundle: 'v1' }));
    await converge(h, namespace);
    const indexKey = `${h.storagePrefix}/${namespace}/demo/index.json`;
    const before = validateReleaseIndex(
      JSON.parse((await h.store.getBuffer(indexKey)).data.toString('utf8')),
    );

    await h.user.create(
      BUNDLE_RESOURCE,
      manifests.bundle(namespace, 'v2', {
        version: '2.0.0',
        source: { http: { url: server.url(`/${namespace}/2.0.0.zip`) } },
      }),
    );
    await h.user.mergePatch(CHANNEL_RESOURCE, { namespace, name: 'production' }, { spec: { bundle: 'v2' } });
    const dying = new BundleReconciler({
      client: h.controllerClient,
      recorder: new KubeEventRecorder(h.controllerClient, {
        controller: 'liveupdate.dev/controller',
        instance: 'dying',
        log: silentLogger(),
      }),
      store: dyingStore(h.store),
      storagePrefix: h.storagePrefix,
    });
    const ctx = { reconcileID: 'crash', log: silentLogger(), signal: new AbortController().signal };
    await expect(dying.reconcile({ namespace, name: 'v2' }, ctx)).rejects.toThrow();
    await h.app.reconcile({ namespace, name: 'demo' }, ctx);

    const stored: string[] = [];
    for await (const info of h.store.list(`${h.storagePrefix}/${namespace}/demo/bundles/`))
      stored.push(info.key);
    expect(stored).toEqual([before.bundles['v1']!.objectKey]);
    const during = validateReleaseIndex(
      JSON.parse((await h.store.getBuffer(indexKey)).data.toString('utf8')),
    );
    expect(during.revision).toBe(before.revision);
    expect(during.channels[0]!.bundle).toBe('v1');

    // The restarted controller (fresh reconcilers, same store) finishes the job.
    await converge(newHarness(h.store.bucket, h.storagePrefix), namespace);
    const v2 = await h.user.get<LiveUpdateBundle>(BUNDLE_RESOURCE, { namespace, name: 'v2' });
    expect(isCurrent(v2)).toBe(true);
    const after = validateReleaseIndex(JSON.parse((await h.store.getBuffer(indexKey)).data.toString('utf8')));
    expect(after.channels[0]!.bundle).toBe('v2');
    const object = await h.store.getBuffer(after.bundles['v2']!.objectKey, { maxBytes: 16 * 1024 * 1024 });
    expect(object.data.length).toBe(v2.status!.artifact!.size);
    expect(createHash('sha256').update(object.data).digest('hex')).toBe(v2.status!.artifact!.storedSha256);
    expect(object.data.equals(large)).toBe(true);
  });
});
