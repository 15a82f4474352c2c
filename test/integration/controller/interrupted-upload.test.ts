// A controller that dies in the middle of an upload (the request body breaks off) leaves no partial object behind
// and no index entry pointing at one; a restarted controller completes the bundle and publishes it. An upload
// changed or cut short on the way to S3 is refused by the server (the controller does not read small artifacts
// back, ADR 0042): nothing is stored, the bundle is not Ready, and a clean retry stores the very bytes.
import { createHash, randomBytes } from 'node:crypto';
import { Readable, Transform } from 'node:stream';
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
import {
  cleanupTestResources,
  newBucket,
  newNamespace,
  s3Store,
  testEnvironment,
} from '../../env/fixtures.js';
import { alteringProxy } from './altering-s3-proxy.js';
import { installCrds } from '../api/crds.js';
import { ArtifactServer, converge, isCurrent, manifests, newHarness, type Harness } from './harness.js';

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
    put: (key: string, body: Readable | Buffer | string, opts?: PutOptions) => {
      if (!key.includes('/bundles/') || typeof body === 'string') return store.put(key, body, opts);
      // A small artifact goes up as one Buffer: the same break-off, on a stream of it.
      const stream = Buffer.isBuffer(body) ? Readable.from([body]) : body;
      const size = Buffer.isBuffer(body) ? body.length : opts?.size;
      return store.put(key, breakOff(stream), { ...opts, ...(size !== undefined ? { size } : {}) });
    },
  });
}

/** A bundle reconciler of the harness's cluster and prefix that stores through `store`. */
function bundleReconcilerOver(h: Harness, store: ObjectStore, instance: string): BundleReconciler {
  return new BundleReconciler({
    client: h.controllerClient,
    recorder: new KubeEventRecorder(h.controllerClient, {
      controller: 'liveupdate.dev/controller',
      instance,
      log: silentLogger(),
    }),
    store,
    storagePrefix: h.storagePrefix,
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
    const dying = bundleReconcilerOver(h, dyingStore(h.store), 'dying');
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

describe('an upload changed or cut short on the way to S3', () => {
  it.each(['flip', 'cut'] as const)(
    '(%s) is refused by the server: nothing stored, not Ready; a clean retry stores the very bytes',
    async (alter) => {
      const namespace = await newNamespace(`altered-${alter}`);
      const h = newHarness(await newBucket('altered'));
      const zip = await webZip({ 'index.html': `<!doctype html>${alter}` });
      server.routes.set(`/${namespace}/1.0.0.zip`, zip);
      await h.user.create(APP_RESOURCE, manifests.app(namespace));
      await converge(h, namespace);
      await h.user.create(
        BUNDLE_RESOURCE,
        manifests.bundle(namespace, 'v1', {
          version: '1.0.0',
          source: { http: { url: server.url(`/${namespace}/1.0.0.zip`) } },
        }),
      );
      const proxy = await alteringProxy(testEnvironment().s3.endpoint, alter);
      try {
        const altered = bundleReconcilerOver(
          h,
          s3Store(h.store.bucket, { endpoint: proxy.endpoint, timeoutMs: 5_000 }),
          'altered',
        );
        const ctx = { reconcileID: alter, log: silentLogger(), signal: new AbortController().signal };
        const result = altered.reconcile({ namespace, name: 'v1' }, ctx);
        if (alter === 'flip') await expect(result).rejects.toThrow(/XAmzContentSHA256Mismatch|BadDigest/);
        else await expect(result).rejects.toThrow();
        expect(proxy.altered()).toBe(1);
      } finally {
        proxy.close();
      }
      const stored: string[] = [];
      for await (const info of h.store.list(`${h.storagePrefix}/${namespace}/demo/bundles/`))
        stored.push(info.key);
      expect(stored).toEqual([]);
      expect(isCurrent(await h.user.get<LiveUpdateBundle>(BUNDLE_RESOURCE, { namespace, name: 'v1' }))).toBe(
        false,
      );

      await converge(h, namespace);
      const v1 = await h.user.get<LiveUpdateBundle>(BUNDLE_RESOURCE, { namespace, name: 'v1' });
      expect(isCurrent(v1)).toBe(true);
      const object = await h.store.getBuffer(v1.status!.artifact!.objectKey);
      expect(object.data.length).toBe(v1.status!.artifact!.size);
      expect(createHash('sha256').update(object.data).digest('hex')).toBe(v1.status!.artifact!.storedSha256);
    },
  );
});
