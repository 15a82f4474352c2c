import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGzip } from 'node:zlib';
import tar from 'tar-stream';
import {
  APP_RESOURCE,
  BUNDLE_RESOURCE,
  ConditionType,
  FINALIZER,
  RECONCILE_REQUESTED_AT_ANNOTATION,
  type LiveUpdateApp,
  type LiveUpdateBundle,
} from '../../api/v1alpha1/index.js';
import { generateSigningKey, verifyBundle } from '../../bundle/index.js';
import { MemoryObjectStore } from '../../storage/memory-store.js';
import { findCondition } from '../common/conditions.js';
import { FakeEventRecorder, FakeObjectClient } from '../common/testing/fake-client.js';
import { NS, ctx, seedApp, seedBundle, seedChannel, seedSecret, webZip } from '../common/testing/fixtures.js';
import { StallingError, TransientError } from '../common/errors.js';
import { Registry } from 'prom-client';
import { createControllerDomainMetrics, type ControllerDomainMetrics } from '../metrics.js';
import { parseDuration } from '../common/duration.js';
import { directSecrets, secretReaderId, type SecretReader } from '../secret-cache.js';
import { BundleReconciler } from './reconciler.js';
import type { ArtifactFetcher, FetchRequest, FetchedArtifact } from './fetch.js';
import { KubeApiError, type KubeObject, type ObjectKey, type ResourceType } from '../../kube/types.js';

class FakeFetcher implements ArtifactFetcher {
  readonly bodies = new Map<string, Buffer | Error>();
  readonly fetched: string[] = [];
  readonly timeouts: number[] = [];

  async fetch(request: FetchRequest): Promise<FetchedArtifact> {
    const url = request.source.http?.url ?? '';
    this.fetched.push(url);
    this.timeouts.push(request.timeoutMs);
    const body = this.bodies.get(url);
    if (!body) throw new StallingError('SourceNotFound', `${url} answered HTTP 404`);
    if (body instanceof Error) throw body;
    await writeFile(request.destination, body);
    return {
      path: request.destination,
      size: body.length,
      sha256: createHash('sha256').update(body).digest('hex'),
    };
  }
}

const signingKey = generateSigningKey();

function setup(
  opts: {
    encrypted?: boolean;
    maxFetchTimeoutMs?: number;
    metrics?: ControllerDomainMetrics;
    sourceSecretLabel?: { key: string; value?: string };
    now?: () => Date;
    maxExpandedBytes?: number;
    secrets?: SecretReader;
    tmpDir?: string;
  } = {},
) {
  const client = new FakeObjectClient();
  const recorder = new FakeEventRecorder();
  const store = new MemoryObjectStore();
  const fetcher = new FakeFetcher();
  const reconciler = new BundleReconciler({
    client,
    recorder,
    store,
    fetcher,
    storagePrefix: 'lu',
    ...(opts.maxFetchTimeoutMs !== undefined ? { maxFetchTimeoutMs: opts.maxFetchTimeoutMs } : {}),
    ...(opts.metrics ? { metrics: opts.metrics } : {}),
    ...(opts.sourceSecretLabel ? { sourceSecretLabel: opts.sourceSecretLabel } : {}),
    ...(opts.now ? { now: opts.now } : {}),
    ...(opts.maxExpandedBytes !== undefined ? { maxExpandedBytes: opts.maxExpandedBytes } : {}),
    ...(opts.secrets ? { secrets: opts.secrets } : {}),
    ...(opts.tmpDir !== undefined ? { tmpDir: opts.tmpDir } : {}),
  });
  if (opts.encrypted !== false) {
    seedSecret(client, 'demo-key', { 'private.pem': signingKey.privateKeyPem });
    seedApp(client, 'demo', { signingKey: { secretName: 'demo-key', key: 'private.pem' } });
    markKeyValid(client);
  } else {
    seedApp(client, 'demo');
  }
  return { client, recorder, store, fetcher, reconciler };
}

/** What the app reconciler would have done: validate the key. */
function markKeyValid(client: FakeObjectClient) {
  client
    .applyStatus(APP_RESOURCE, {
      apiVersion: 'liveupdate.dev/v1alpha1',
      kind: 'LiveUpdateApp',
      metadata: { name: 'demo', namespace: NS },
      status: {
        keyId: signingKey.keyId,
        conditions: [
          {
            type: 'KeyValid',
            status: 'True',
            reason: 'Succeeded',
            message: '',
            lastTransitionTime: '2026-11-29T10:00:00Z',
          },
        ],
      },
    })
    .catch(() => undefined);
}

const key = { namespace: NS, name: 'demo-1-0-0' };
const bundleOf = (client: FakeObjectClient, name = 'demo-1-0-0') =>
  client.peek<LiveUpdateBundle>(BUNDLE_RESOURCE, { namespace: NS, name })!;
const condition = (b: LiveUpdateBundle, type: string) => findCondition(b.status?.conditions, type);

describe('BundleReconciler', () => {
  it('fetches, encrypts, stores and verifies the artifact, then reports Ready', async () => {
    const { client, store, fetcher, reconciler, recorder } = setup();
    const zip = await webZip();
    fetcher.bodies.set('https://artifacts.example/demo-1-0-0.zip', zip);
    seedBundle(client, 'demo-1-0-0', { digest: `sha256:${createHash('sha256').update(zip).digest('hex')}` });

    expect(await reconciler.reconcile(key, ctx())).toEqual({});

    const bundle = bundleOf(client);
    expect(bundle.metadata.finalizers).toContain(FINALIZER);
    expect(condition(bundle, 'Ready')).toMatchObject({
      status: 'True',
      reason: 'Succeeded',
      observedGeneration: 1,
    });
    for (const type of [
      ConditionType.ArtifactFetched,
      ConditionType.Verified,
      ConditionType.ArtifactInStorage,
    ]) {
      expect(condition(bundle, type)?.status).toBe('True');
    }
    expect(condition(bundle, 'Stalled')).toBeUndefined();
    expect(bundle.status?.observedGeneration).toBe(1);
    const artifact = bundle.status!.artifact!;
    expect(artifact).toMatchObject({
      encrypted: true,
      keyId: signingKey.keyId,
      sha256: createHash('sha256').update(zip).digest('hex'),
    });
    expect(artifact.objectKey).toBe(`lu/${NS}/demo/bundles/${artifact.storedSha256}.zip`);
    expect(store.keys()).toEqual([artifact.objectKey]);

    const stored = await store.getBuffer(artifact.objectKey);
    expect(stored.data.equals(zip)).toBe(false);
    const verified = await verifyBundle({
      input: (await store.get(artifact.objectKey))!.body,
      checksum: artifact.checksum,
      publicKey: signingKey.publicKey,
      sessionKey: artifact.sessionKey!,
    });
    expect(verified.sha256).toBe(artifact.sha256);
    expect(recorder.reasons()).toContain('ArtifactStored');
  });

  it('stores a small artifact with one PUT of the very bytes it hashed: no HEAD before it, no GET after it (ADR 0042)', async () => {
    const { client, store, fetcher, reconciler } = setup();
    fetcher.bodies.set('https://artifacts.example/demo-1-0-0.zip', await webZip());
    seedBundle(client, 'demo-1-0-0');
    const requests: string[] = [];
    const puts: unknown[] = [];
    for (const method of ['stat', 'get', 'getBuffer', 'put', 'remove'] as const) {
      const original = store[method].bind(store) as (...args: unknown[]) => unknown;
      (store as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => {
        requests.push(method);
        if (method === 'put') puts.push(args[1]);
        return original(...args);
      };
    }

    await reconciler.reconcile(key, ctx());

    const artifact = bundleOf(client).status!.artifact!;
    expect(requests).toEqual(['put']);
    const body = puts[0] as Buffer;
    expect(Buffer.isBuffer(body)).toBe(true);
    expect(body.length).toBe(artifact.size);
    expect(createHash('sha256').update(body).digest('hex')).toBe(artifact.storedSha256);
  });

  it('builds a small zip fetched into memory without a work dir: nothing in the temp dir while it is stored (ADR 0042)', async () => {
    const parent = await mkdtemp(join(tmpdir(), 'reconciler-test-'));
    try {
      const { client, store, fetcher, reconciler } = setup({ tmpDir: parent });
      const zip = await webZip();
      const sha256 = createHash('sha256').update(zip).digest('hex');
      const inMemory: ArtifactFetcher['fetchSmallInMemory'] = (_request, max) => {
        expect(zip.length).toBeLessThanOrEqual(max);
        return Promise.resolve({ bytes: zip, size: zip.length, sha256 });
      };
      Object.assign(fetcher, { fetchSmallInMemory: inMemory });
      seedBundle(client, 'demo-1-0-0');
      const seenAtPut: string[][] = [];
      const put = store.put.bind(store);
      store.put = async (...args) => {
        seenAtPut.push(await readdir(parent));
        return put(...args);
      };

      await reconciler.reconcile(key, ctx());

      expect(condition(bundleOf(client), 'Ready')?.status).toBe('True');
      expect(seenAtPut).toEqual([[]]);
      expect(await readdir(parent)).toEqual([]);
    } finally {
      await rm(parent, { recursive: true, force: true });
    }
  });

  it('fetches and prepares while the finalizer PATCH is in flight, and stores nothing before it is on', async () => {
    const { client, store, fetcher, reconciler } = setup();
    fetcher.bodies.set('https://artifacts.example/demo-1-0-0.zip', await webZip());
    seedBundle(client, 'demo-1-0-0');
    const order: string[] = [];
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const patch = client.mergePatch.bind(client);
    client.mergePatch = async <T extends KubeObject>(type: ResourceType, k: ObjectKey, p: object) => {
      await released;
      order.push('finalizer on');
      return patch<T>(type, k, p);
    };
    const fetch = fetcher.fetch.bind(fetcher);
    fetcher.fetch = (request) => {
      order.push('fetch');
      return fetch(request);
    };
    const put = store.put.bind(store);
    store.put = (...args) => {
      order.push('put');
      return put(...args);
    };

    const done = reconciler.reconcile(key, ctx());
    for (let i = 0; i < 50 && !order.includes('fetch'); i++) await new Promise((r) => setTimeout(r, 5));
    expect(order).toEqual(['fetch']);
    release();
    await done;

    expect(order).toEqual(['fetch', 'finalizer on', 'put']);
    expect(condition(bundleOf(client), 'Ready')?.status).toBe('True');
  });

  it('a finalizer PATCH that fails ends the reconcile with its error: nothing stored, no status written', async () => {
    const { client, store, fetcher, reconciler } = setup();
    fetcher.bodies.set('https://artifacts.example/demo-1-0-0.zip', await webZip());
    seedBundle(client, 'demo-1-0-0');
    client.failNext.mergePatch = new KubeApiError('Conflict', 409, 'the object has been modified');

    await expect(reconciler.reconcile(key, ctx())).rejects.toThrow('the object has been modified');

    expect(store.keys()).toEqual([]);
    expect(client.calls.filter((c) => c.startsWith('applyStatus LiveUpdateBundle'))).toEqual([]);
    expect(bundleOf(client).metadata.finalizers ?? []).toEqual([]);
  });

  it('does not fetch again when the artifact is up to date, and rebuilds it when it vanished from the store', async () => {
    const { client, store, fetcher, reconciler } = setup();
    fetcher.bodies.set('https://artifacts.example/demo-1-0-0.zip', await webZip());
    seedBundle(client, 'demo-1-0-0');
    await reconciler.reconcile(key, ctx());
    const calls = client.calls.filter((c) => c.startsWith('applyStatus')).length;

    await reconciler.reconcile(key, ctx());
    expect(fetcher.fetched).toHaveLength(1);
    expect(client.calls.filter((c) => c.startsWith('applyStatus'))).toHaveLength(calls);

    await store.remove(bundleOf(client).status!.artifact!.objectKey);
    await reconciler.reconcile(key, ctx());
    expect(fetcher.fetched).toHaveLength(2);
    expect(store.keys()).toHaveLength(1);
  });

  it('builds the very same object and session key again when a stale read hides the stored artifact', async () => {
    const { client, store, fetcher, reconciler } = setup();
    fetcher.bodies.set('https://artifacts.example/demo-1-0-0.zip', await webZip());
    seedBundle(client, 'demo-1-0-0');
    await reconciler.reconcile(key, ctx());
    const first = bundleOf(client).status!.artifact!;
    // The informer cache (or a deposed leader, or a restarted controller before its status write) still sees the
    // bundle without status.artifact: the build runs again and must produce what devices may already have.
    const live = client.get.bind(client);
    client.get = <T extends KubeObject>(type: ResourceType, k: ObjectKey): Promise<T> =>
      type === BUNDLE_RESOURCE
        ? Promise.resolve({
            ...structuredClone(bundleOf(client)),
            status: { conditions: [] },
          } as unknown as T)
        : live<T>(type, k);
    await reconciler.reconcile(key, ctx());
    expect(fetcher.fetched).toHaveLength(2);
    const second = bundleOf(client).status!.artifact!;
    expect({ key: second.objectKey, session: second.sessionKey, checksum: second.checksum }).toEqual({
      key: first.objectKey,
      session: first.sessionKey,
      checksum: first.checksum,
    });
    expect(store.keys().filter((k) => k.includes('/bundles/'))).toEqual([first.objectKey]);
  });

  it('re-reads the stored object when a reconcile is requested, and rebuilds it when it was tampered with', async () => {
    const { client, store, fetcher, reconciler } = setup();
    fetcher.bodies.set('https://artifacts.example/demo-1-0-0.zip', await webZip());
    seedBundle(client, 'demo-1-0-0');
    await reconciler.reconcile(key, ctx());
    const artifact = bundleOf(client).status!.artifact!;
    await store.put(artifact.objectKey, Buffer.alloc(artifact.size, 1));

    await reconciler.reconcile(key, ctx());
    expect(fetcher.fetched).toHaveLength(1);

    await client.mergePatch(BUNDLE_RESOURCE, key, {
      metadata: { annotations: { [RECONCILE_REQUESTED_AT_ANNOTATION]: 'now-1' } },
    });
    await reconciler.reconcile(key, ctx());
    expect(fetcher.fetched).toHaveLength(2);
    const bundle = bundleOf(client);
    expect(bundle.status?.lastHandledReconcileAt).toBe('now-1');
    expect(condition(bundle, 'Ready')?.status).toBe('True');
    const stored = await store.getBuffer(bundle.status!.artifact!.objectKey);
    expect(createHash('sha256').update(stored.data).digest('hex')).toBe(
      bundle.status!.artifact!.storedSha256,
    );
  });

  it('reads its Secrets as itself through the reader it is given, fresh when a reconcile is requested', async () => {
    const reads: string[] = [];
    const from: { client?: FakeObjectClient } = {};
    const secrets: SecretReader = {
      get: (k, o) => {
        reads.push(`${k.name} ${o?.reader} ${o?.fresh}`);
        return directSecrets(from.client!).get(k, o);
      },
    };
    const { client, fetcher, reconciler } = setup({ secrets });
    from.client = client;
    fetcher.bodies.set('https://artifacts.example/demo-1-0-0.zip', await webZip());
    seedBundle(client, 'demo-1-0-0');
    await reconciler.reconcile(key, ctx());
    const reader = secretReaderId(BUNDLE_RESOURCE, key);
    expect(reads).toEqual([`demo-key ${reader} false`]);
    await client.mergePatch(BUNDLE_RESOURCE, key, {
      metadata: { annotations: { [RECONCILE_REQUESTED_AT_ANNOTATION]: 'now-1' } },
    });
    await reconciler.reconcile(key, ctx());
    expect(reads).toEqual([`demo-key ${reader} false`, `demo-key ${reader} true`]);
  });

  it('stores an unencrypted bundle for an app without a key', async () => {
    const { client, store, fetcher, reconciler } = setup({ encrypted: false });
    const zip = await webZip();
    fetcher.bodies.set('https://artifacts.example/demo-1-0-0.zip', zip);
    seedBundle(client, 'demo-1-0-0');
    await reconciler.reconcile(key, ctx());
    const artifact = bundleOf(client).status!.artifact!;
    expect(artifact.encrypted).toBe(false);
    expect(artifact.checksum).toBe(createHash('sha256').update(zip).digest('hex'));
    expect((await store.getBuffer(artifact.objectKey)).data.equals(zip)).toBe(true);
  });

  it("bounds the fetch timeout by the operator's maximum; the spec's timeout applies below it", async () => {
    const zip = await webZip();
    const unbounded = setup({ encrypted: false });
    unbounded.fetcher.bodies.set('https://artifacts.example/demo-1-0-0.zip', zip);
    seedBundle(unbounded.client, 'demo-1-0-0');
    await unbounded.reconciler.reconcile(key, ctx());
    const bounded = setup({ encrypted: false, maxFetchTimeoutMs: 20_000 });
    bounded.fetcher.bodies.set('https://artifacts.example/demo-1-0-0.zip', zip);
    seedBundle(bounded.client, 'demo-1-0-0');
    await bounded.reconciler.reconcile(key, ctx());
    expect(unbounded.fetcher.timeouts).toEqual([300_000]);
    expect(bounded.fetcher.timeouts).toEqual([20_000]);
  });

  it('counts fetches and stored artifacts in the liveupdate_* metrics', async () => {
    const registry = new Registry();
    const { client, fetcher, reconciler } = setup({ metrics: createControllerDomainMetrics(registry) });
    fetcher.bodies.set('https://artifacts.example/demo-1-0-0.zip', await webZip());
    seedBundle(client, 'demo-1-0-0');
    await reconciler.reconcile(key, ctx());
    const size = bundleOf(client).status!.artifact!.size;
    const text = await registry.metrics();
    expect(text).toContain(`liveupdate_artifacts_stored_total{namespace="${key.namespace}",app="demo"} 1`);
    expect(text).toContain(
      `liveupdate_artifact_stored_bytes_total{namespace="${key.namespace}",app="demo"} ${size}`,
    );
    expect(text).toContain(
      'liveupdate_artifact_fetch_duration_seconds_count{source="http",result="success"} 1',
    );
  });

  it('packs a tar.gz of a build directory into a zip', async () => {
    const { client, store, fetcher, reconciler } = setup({ encrypted: false });
    fetcher.bodies.set(
      'https://artifacts.example/demo-1-0-0.zip',
      await tarGz({ 'dist/index.html': '<!doctype html>', 'dist/app.js': '1' }),
    );
    seedBundle(client, 'demo-1-0-0');
    await reconciler.reconcile(key, ctx());
    const artifact = bundleOf(client).status!.artifact!;
    expect(condition(bundleOf(client), 'Ready')?.status).toBe('True');
    expect((await store.getBuffer(artifact.objectKey)).data.readUInt32LE(0)).toBe(0x04034b50);
  });

  it('publishes delta files and a manifest when spec.delta is true', async () => {
    const { client, store, fetcher, reconciler } = setup();
    fetcher.bodies.set('https://artifacts.example/demo-1-0-0.zip', await webZip());
    seedBundle(client, 'demo-1-0-0', { delta: true });
    await reconciler.reconcile(key, ctx());
    const artifact = bundleOf(client).status!.artifact!;
    expect(artifact.manifestFiles).toBe(2);
    const manifest = JSON.parse(
      (await store.getBuffer(artifact.manifestKey!)).data.toString('utf8'),
    ) as Array<{ fileName: string; objectKey: string }>;
    expect(manifest.map((e) => e.fileName).sort()).toEqual(['app.js', 'index.html']);
    for (const entry of manifest)
      expect(entry.objectKey).toMatch(new RegExp(`^lu/${NS}/demo/files/[0-9a-f]{64}$`));
    expect(store.keys()).toEqual(expect.arrayContaining(manifest.map((e) => e.objectKey)));
  });

  it.each([
    ['a digest mismatch', () => webZip(), 'DigestMismatch', 'VerificationFailed'],
    ['a zip without index.html', () => webZip({ 'main.js': 'x' }), 'MissingIndexHtml', 'VerificationFailed'],
    [
      'something that is not an archive',
      () => Promise.resolve(Buffer.from('<html>not a zip</html>')),
      'UnsupportedArtifact',
      'VerificationFailed',
    ],
  ])('stalls on %s with the precise reason, without requeue', async (_name, body, reason, negative) => {
    const { client, store, fetcher, reconciler, recorder } = setup();
    const data = await body();
    if (data) fetcher.bodies.set('https://artifacts.example/demo-1-0-0.zip', data);
    seedBundle(
      client,
      'demo-1-0-0',
      reason === 'DigestMismatch' ? { digest: `sha256:${'0'.repeat(64)}` } : {},
    );

    expect(await reconciler.reconcile(key, ctx())).toEqual({ terminalError: reason });

    const bundle = bundleOf(client);
    expect(condition(bundle, 'Stalled')).toMatchObject({ status: 'True', reason });
    expect(condition(bundle, 'Ready')).toMatchObject({ status: 'False', reason });
    expect(condition(bundle, negative)).toMatchObject({ status: 'True', reason });
    expect(condition(bundle, 'Reconciling')).toBeUndefined();
    expect(bundle.status?.observedGeneration).toBe(1);
    expect(bundle.status?.artifact).toBeUndefined();
    expect(store.keys()).toEqual([]);
    expect(recorder.events).toContainEqual(expect.objectContaining({ type: 'Warning', reason }));
  });

  it('does not fetch a refused artifact again for the same inputs, until a reconcile is requested or the inputs change', async () => {
    const { client, fetcher, reconciler } = setup();
    const url = 'https://artifacts.example/demo-1-0-0.zip';
    fetcher.bodies.set(url, await webZip({ 'main.js': 'x' }));
    seedBundle(client, 'demo-1-0-0');
    expect(await reconciler.reconcile(key, ctx())).toEqual({ terminalError: 'MissingIndexHtml' });
    expect(bundleOf(client).status?.refusedArtifact).toMatchObject({
      reason: 'MissingIndexHtml',
      digest: expect.stringMatching(/^sha256:[0-9a-f]{64}$/) as unknown,
    });
    const stalled = bundleOf(client).metadata.resourceVersion;
    // an app change or a new leader reconciles it again: no fetch, no status write, the same stall
    for (let i = 0; i < 3; i++)
      expect(await reconciler.reconcile(key, ctx())).toEqual({ terminalError: 'MissingIndexHtml' });
    expect(fetcher.fetched).toEqual([url]);
    expect(bundleOf(client).metadata.resourceVersion).toBe(stalled);
    // a reconcile request fetches again
    await client.mergePatch(BUNDLE_RESOURCE, key, {
      metadata: { annotations: { [RECONCILE_REQUESTED_AT_ANNOTATION]: 'retry-1' } },
    });
    fetcher.bodies.set(url, await webZip());
    expect(await reconciler.reconcile(key, ctx())).toEqual({});
    expect(fetcher.fetched).toEqual([url, url]);
    expect(bundleOf(client).status?.refusedArtifact).toBeUndefined();
    expect(condition(bundleOf(client), 'Ready')).toMatchObject({ status: 'True' });
  });

  it.each([
    ['answers 404', undefined],
    ['is unreachable', new TransientError('SourceUnavailable', 'connect ECONNREFUSED')],
  ])(
    'retries a source that %s on its own schedule, waits doubling up to spec.retryInterval, until it serves',
    async (_name, failure) => {
      let now = Date.parse('2026-12-04T10:00:00Z');
      const { client, fetcher, reconciler } = setup({ now: () => new Date(now) });
      const url = 'https://artifacts.example/demo-1-0-0.zip';
      if (failure) fetcher.bodies.set(url, failure);
      seedBundle(client, 'demo-1-0-0', { retryInterval: '10s' });
      const reason = failure ? 'SourceUnavailable' : 'SourceNotFound';

      expect(await reconciler.reconcile(key, ctx())).toEqual({ requeueAfterMs: 1000 });
      const bundle = bundleOf(client);
      expect(condition(bundle, 'Stalled')).toBeUndefined();
      expect(condition(bundle, 'Reconciling')).toMatchObject({
        status: 'True',
        reason: 'ProgressingWithRetry',
      });
      expect(condition(bundle, 'Ready')).toMatchObject({ status: 'False', reason });
      expect(condition(bundle, 'FetchFailed')).toMatchObject({ status: 'True', reason });
      now += 4000;
      expect(await reconciler.reconcile(key, ctx())).toEqual({ requeueAfterMs: 4000 });
      now += 60_000;
      expect(await reconciler.reconcile(key, ctx())).toEqual({ requeueAfterMs: 10_000 });

      fetcher.bodies.set(url, await webZip());
      expect(await reconciler.reconcile(key, ctx())).toEqual({});
      expect(condition(bundleOf(client), 'Ready')).toMatchObject({ status: 'True' });
      expect(condition(bundleOf(client), 'FetchFailed')).toBeUndefined();
    },
  );

  it('names the work directory by its pattern, not its random name, so a repeating local error writes status once', async () => {
    const { client, fetcher, reconciler } = setup();
    const failing: ArtifactFetcher = {
      fetch: (request) =>
        Promise.reject(
          Object.assign(new Error(`EACCES: permission denied, open '${request.destination}'`), {
            code: 'EACCES',
            syscall: 'open',
            path: request.destination,
          }),
        ),
    };
    fetcher.fetch = (request) => failing.fetch(request);
    seedBundle(client, 'demo-1-0-0');
    await expect(reconciler.reconcile(key, ctx())).rejects.toThrow('EACCES');
    const first = bundleOf(client).metadata.resourceVersion;
    const message = condition(bundleOf(client), 'Ready')?.message;
    await expect(reconciler.reconcile(key, ctx())).rejects.toThrow('EACCES');
    expect(condition(bundleOf(client), 'Ready')?.message).toBe(message);
    expect(bundleOf(client).metadata.resourceVersion).toBe(first);
    expect(message).toContain('liveupdate-bundle-*');
  });

  it('refuses an artifact that expands beyond what fits the work dir (the configured expansion limit)', async () => {
    const { client, fetcher, reconciler } = setup({ maxExpandedBytes: 4096 });
    fetcher.bodies.set(
      'https://artifacts.example/demo-1-0-0.zip',
      await webZip({ 'index.html': '<html></html>', 'app.js': 'x'.repeat(8192) }),
    );
    seedBundle(client, 'demo-1-0-0');
    expect(await reconciler.reconcile(key, ctx())).toEqual({ terminalError: 'TooLarge' });
    expect(condition(bundleOf(client), 'VerificationFailed')?.message).toContain('4096');
  });

  it('retries when the store is unavailable during upload', async () => {
    const { client, store, fetcher, reconciler } = setup();
    fetcher.bodies.set('https://artifacts.example/demo-1-0-0.zip', await webZip());
    seedBundle(client, 'demo-1-0-0');
    store.setUnavailable(true);
    await expect(reconciler.reconcile(key, ctx())).rejects.toThrow(/unavailable/);
    expect(condition(bundleOf(client), 'Ready')).toMatchObject({
      status: 'False',
      reason: 'StorageUnavailable',
    });
    store.setUnavailable(false);
    await reconciler.reconcile(key, ctx());
    expect(condition(bundleOf(client), 'Ready')?.status).toBe('True');
  });

  it('waits for an app whose key is not validated yet', async () => {
    const client = new FakeObjectClient();
    const fetcher = new FakeFetcher();
    const reconciler = new BundleReconciler({
      client,
      recorder: new FakeEventRecorder(),
      store: new MemoryObjectStore(),
      fetcher,
    });
    seedApp(client, 'demo', { signingKey: { secretName: 'demo-key', key: 'private.pem' } });
    seedBundle(client, 'demo-1-0-0');
    const result = await reconciler.reconcile(key, ctx());
    expect(result.requeueAfterMs).toBeGreaterThan(0);
    expect(condition(bundleOf(client), 'Reconciling')).toMatchObject({ status: 'True' });
    expect(condition(bundleOf(client), 'Ready')).toMatchObject({ status: 'False', reason: 'AppNotReady' });
    expect(fetcher.fetched).toEqual([]);
  });

  it('stalls with the app key reason when the app stalled on its signing key', async () => {
    const client = new FakeObjectClient();
    const fetcher = new FakeFetcher();
    const reconciler = new BundleReconciler({
      client,
      recorder: new FakeEventRecorder(),
      store: new MemoryObjectStore(),
      fetcher,
    });
    seedApp(client, 'demo', { signingKey: { secretName: 'demo-key', key: 'private.pem' } });
    await client.applyStatus(APP_RESOURCE, {
      apiVersion: 'liveupdate.dev/v1alpha1',
      kind: 'LiveUpdateApp',
      metadata: { name: 'demo', namespace: NS },
      status: {
        conditions: [
          {
            type: 'KeyValid',
            status: 'False',
            reason: 'SigningKeySecretNotFound',
            message: 'signing key Secret team-a/demo-key not found',
            lastTransitionTime: '2026-11-29T10:00:00Z',
          },
        ],
      },
    });
    seedBundle(client, 'demo-1-0-0');
    expect(await reconciler.reconcile(key, ctx())).toEqual({ terminalError: 'SigningKeySecretNotFound' });
    expect(condition(bundleOf(client), 'Stalled')).toMatchObject({ reason: 'SigningKeySecretNotFound' });
    expect(condition(bundleOf(client), 'Stalled')?.message).toContain('LiveUpdateApp demo');
    expect(fetcher.fetched).toEqual([]);
  });

  it('stalls a second bundle claiming the same version', async () => {
    const { client, fetcher, reconciler } = setup();
    fetcher.bodies.set('https://artifacts.example/demo-1-0-0.zip', await webZip());
    seedBundle(client, 'demo-1-0-0', {}, { creationTimestamp: '2026-11-29T09:00:00Z' });
    seedBundle(client, 'demo-again', {}, { creationTimestamp: '2026-11-29T09:30:00Z' });
    await reconciler.reconcile({ namespace: NS, name: 'demo-again' }, ctx());
    expect(condition(bundleOf(client, 'demo-again'), 'Stalled')).toMatchObject({ reason: 'VersionConflict' });
    expect(condition(bundleOf(client, 'demo-again'), 'Stalled')?.message).toContain('demo-1-0-0');
  });

  it('stalls when a source Secret is missing, without fetching', async () => {
    const { client, fetcher, reconciler } = setup();
    seedBundle(client, 'demo-1-0-0', {
      source: { http: { url: 'https://artifacts.example/demo-1-0-0.zip', secretRef: { name: 'creds' } } },
    });
    await reconciler.reconcile(key, ctx());
    expect(condition(bundleOf(client), 'Stalled')).toMatchObject({ reason: 'SourceSecretNotFound' });
    expect(fetcher.fetched).toEqual([]);
  });

  it('passes basic-auth credentials from the Secret to the fetcher and keeps them out of status', async () => {
    const { client, fetcher, reconciler } = setup();
    const seen: FetchRequest[] = [];
    const inner = fetcher.fetch.bind(fetcher);
    fetcher.fetch = (request) => (seen.push(request), inner(request));
    fetcher.bodies.set('https://artifacts.example/demo-1-0-0.zip', await webZip());
    seedSecret(client, 'creds', { username: 'ci', password: 's3cr3t-pass' });
    seedBundle(client, 'demo-1-0-0', {
      source: { http: { url: 'https://artifacts.example/demo-1-0-0.zip', secretRef: { name: 'creds' } } },
    });
    await reconciler.reconcile(key, ctx());
    expect(seen[0]?.http?.credentials).toEqual({ username: 'ci', password: 's3cr3t-pass' });
    expect(JSON.stringify(bundleOf(client))).not.toContain('s3cr3t-pass');
  });

  it('uses only Secrets carrying the required label: any other Secret of the namespace is never sent', async () => {
    const label = { key: 'liveupdate.dev/bundle-source', value: 'true' };
    const { client, fetcher, reconciler } = setup({ sourceSecretLabel: label });
    const seen: FetchRequest[] = [];
    const inner = fetcher.fetch.bind(fetcher);
    fetcher.fetch = (request) => (seen.push(request), inner(request));
    fetcher.bodies.set('https://evil.example/x.zip', await webZip());
    fetcher.bodies.set('https://artifacts.example/demo-1-0-0.zip', await webZip());
    seedSecret(client, 'database', { username: 'db', password: 'db-password' });
    seedSecret(client, 'wrong-value', { token: 't' }, { 'liveupdate.dev/bundle-source': 'false' });
    seedSecret(client, 'ci-creds', { token: 'ci-token' }, { 'liveupdate.dev/bundle-source': 'true' });
    for (const [name, secret] of [
      ['steal-1-0-0', 'database'],
      ['steal-1-0-1', 'wrong-value'],
    ] as const) {
      seedBundle(client, name, {
        version: name.slice(6).replaceAll('-', '.'),
        source: { http: { url: 'https://evil.example/x.zip', secretRef: { name: secret } } },
      });
      await reconciler.reconcile({ namespace: NS, name }, ctx());
      expect(condition(bundleOf(client, name), 'Stalled')).toMatchObject({
        reason: 'SourceSecretNotAllowed',
        message: expect.stringContaining('liveupdate.dev/bundle-source=true') as unknown,
      });
    }
    seedBundle(client, 'demo-1-0-0', {
      source: { http: { url: 'https://artifacts.example/demo-1-0-0.zip', secretRef: { name: 'ci-creds' } } },
    });
    await reconciler.reconcile(key, ctx());
    expect(seen.map((r) => r.http?.credentials)).toEqual([{ token: 'ci-token' }]);
    expect(condition(bundleOf(client), 'Ready')?.status).toBe('True');
  });

  it('does nothing while suspended', async () => {
    const { client, fetcher, reconciler } = setup();
    seedBundle(client, 'demo-1-0-0', { suspend: true });
    await reconciler.reconcile(key, ctx());
    expect(fetcher.fetched).toEqual([]);
    expect(bundleOf(client).status).toBeUndefined();
  });

  describe('deletion', () => {
    async function storedBundle(spec: Partial<LiveUpdateBundle['spec']> = {}) {
      const env = setup();
      env.fetcher.bodies.set('https://artifacts.example/demo-1-0-0.zip', await webZip());
      seedBundle(env.client, 'demo-1-0-0', spec);
      await env.reconciler.reconcile(key, ctx());
      expect(env.store.keys()).toHaveLength(1);
      return env;
    }

    it('is held while a channel serves the bundle, then removes the stored objects', async () => {
      const { client, store, reconciler } = await storedBundle();
      seedChannel(client, 'production', { bundle: 'demo-1-0-0' });
      await client.delete(BUNDLE_RESOURCE, key);

      const held = await reconciler.reconcile(key, ctx());
      expect(held.requeueAfterMs).toBeGreaterThan(0);
      expect(condition(bundleOf(client), 'DeletionBlocked')).toMatchObject({
        status: 'True',
        reason: 'ServedByChannel',
      });
      expect(condition(bundleOf(client), 'DeletionBlocked')?.message).toContain(
        'LiveUpdateChannel production',
      );
      expect(store.keys()).toHaveLength(1);

      client.updateSpec(
        { ...BUNDLE_RESOURCE, kind: 'LiveUpdateChannel', plural: 'liveupdatechannels' },
        { namespace: NS, name: 'production' },
        { app: 'demo', bundle: 'builtin' },
      );
      await reconciler.reconcile(key, ctx());
      expect(bundleOf(client)).toBeUndefined();
      expect(store.keys()).toEqual([]);
    });

    it('is held while the published index still serves the bundle', async () => {
      const { client, store, reconciler } = await storedBundle();
      const artifact = bundleOf(client).status!.artifact!;
      const app = client.peek<LiveUpdateApp>(APP_RESOURCE, { namespace: NS, name: 'demo' })!;
      await store.put(
        `lu/${NS}/demo/index.json`,
        JSON.stringify({
          apiVersion: 'liveupdate.dev/index/v1',
          kind: 'ReleaseIndex',
          revision: 1,
          generatedAt: '2026-11-29T10:00:00Z',
          app: { namespace: NS, name: 'demo', appId: app.spec.appId, defaultChannel: 'production' },
          bundles: {
            'demo-1-0-0': {
              name: 'demo-1-0-0',
              version: '1.0.0',
              objectKey: artifact.objectKey,
              size: artifact.size,
              sha256: artifact.sha256,
              encrypted: false,
              checksum: 'x',
            },
          },
          channels: [
            {
              name: 'production',
              id: 1,
              bundle: 'demo-1-0-0',
              pinnedIdHashes: [],
              policy: {
                disableAutoUpdate: 'none',
                disableAutoUpdateUnderNative: false,
                allowEmulator: true,
                allowDev: true,
                allowProd: true,
                allowDeviceSelfSet: false,
                platforms: ['android', 'ios'],
              },
            },
          ],
        }),
      );
      await client.delete(BUNDLE_RESOURCE, key);
      await reconciler.reconcile(key, ctx());
      expect(condition(bundleOf(client), 'DeletionBlocked')?.message).toContain(
        'channel production in the published index',
      );
    });

    it('leaves the objects with deletionPolicy Orphan', async () => {
      const { client, store, reconciler } = await storedBundle({ deletionPolicy: 'Orphan' });
      seedChannel(client, 'production', { bundle: 'demo-1-0-0' });
      await client.delete(BUNDLE_RESOURCE, key);
      await reconciler.reconcile(key, ctx());
      expect(bundleOf(client)).toBeUndefined();
      expect(store.keys()).toHaveLength(1);
    });
  });
});

describe('parseDuration', () => {
  it('reads Go durations', () => {
    expect(parseDuration('5m')).toBe(300_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('1.5s')).toBe(1500);
  });
});

async function tarGz(files: Record<string, string>): Promise<Buffer> {
  const pack = tar.pack();
  for (const [name, content] of Object.entries(files)) pack.entry({ name, mode: 0o644 }, content);
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack.pipe(createGzip())) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
