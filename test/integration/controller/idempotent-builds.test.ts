// Builds are idempotent (ADR 0010): the controller as a real process gets 200 LiveUpdateBundles at once, through an
// apiserver proxy that delivers watch events 2 s late, so its caches lag its own status writes (a loaded apiserver).
// A second reconcile of a bundle on such a stale read (or after a restart, or by a deposed leader) must not build it
// again into a second object with a new session key. Checked from outside: exactly 200 bundle objects in the bucket, every
// status object downloadable and whole, and no session key or object key changes after Ready while the controller
// keeps reconciling (watched for WATCH_MS).
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BucketItem } from 'minio';
import { BUNDLE_RESOURCE, type LiveUpdateBundle } from '../../../src/api/v1alpha1/index.js';
import { StorageLayout } from '../../../src/storage/layout.js';
import { isReady } from '../../../scripts/demo/journey.js';
import { Stack } from '../../../scripts/demo/stack.js';
import { bundleManifest, createSigningApp, packZips, pool } from '../../env/bundle-burst.js';
import { cleanupTestResources, newBucket, newNamespace, testEnvironment } from '../../env/fixtures.js';
import { SlowWatchProxy } from './slow-watch-proxy.js';

const TEST_TIMEOUT_MS = 600_000;
const N = 200;
const APP = 'burst';
/** How long the Ready bundles are watched for a changed artifact (the controller resyncs and republishes meanwhile). */
const WATCH_MS = 30_000;

/** How late the proxy delivers watch events to the controller. */
const WATCH_DELAY_MS = 2_000;

let stack: Stack | undefined;
let proxy: SlowWatchProxy | undefined;
let workDir = '';

afterAll(async () => {
  await stack?.stop();
  await proxy?.stop();
  if (workDir) await rm(workDir, { recursive: true, force: true });
  await cleanupTestResources();
}, TEST_TIMEOUT_MS);

function artifactOf(b: LiveUpdateBundle): string {
  const a = b.status?.artifact;
  return `${a?.objectKey} ${a?.sessionKey} ${a?.checksum}`;
}

test(
  `${N} bundles applied at once: exactly ${N} objects, every one downloadable, no artifact changes after Ready`,
  async () => {
    workDir = await mkdtemp(join(tmpdir(), 'liveupdate-burst-'));
    const namespace = await newNamespace('burst');
    proxy = new SlowWatchProxy(testEnvironment(), WATCH_DELAY_MS);
    await proxy.start();
    stack = new Stack({
      env: await proxy.environment(workDir),
      logDir: join(workDir, 'logs'),
      namespace,
      bucket: await newBucket('burst'),
    });
    await stack.installCrds();
    await stack.artifacts.start();
    await stack.startController();
    const kube = stack.kube;
    await createSigningApp(kube, namespace, APP, `com.example.burst${Date.now().toString(36)}`);
    const zips = await packZips(N, workDir, 'burst');
    for (const z of zips) stack.artifacts.routes.set(z.path, z.body);

    await pool(N, 20, async (i) => {
      const z = zips[i]!;
      await kube.create(
        BUNDLE_RESOURCE,
        bundleManifest(APP, `b-${i}`, namespace, `1.0.${i + 1}`, stack!.artifacts.url(z.path), z.sha256),
      );
    });

    // Ready, recording each bundle's artifact the first time it is seen Ready.
    const firstReady = new Map<string, string>();
    const changed: string[] = [];
    const observe = (bundles: LiveUpdateBundle[]) => {
      for (const b of bundles.filter(isReady)) {
        const seen = firstReady.get(b.metadata.name);
        if (seen === undefined) firstReady.set(b.metadata.name, artifactOf(b));
        else if (seen !== artifactOf(b)) changed.push(`${b.metadata.name}: ${seen} -> ${artifactOf(b)}`);
      }
    };
    for (const deadline = Date.now() + 420_000; firstReady.size < N;) {
      stack.assertRunning();
      observe(await kube.list<LiveUpdateBundle>(BUNDLE_RESOURCE, namespace));
      if (Date.now() > deadline) throw new Error(`only ${firstReady.size}/${N} bundles Ready`);
      await sleep(500);
    }
    // Keep watching while the controller keeps working (index publishes, app events re-enqueue every bundle).
    for (const end = Date.now() + WATCH_MS; Date.now() < end;) {
      observe(await kube.list<LiveUpdateBundle>(BUNDLE_RESOURCE, namespace));
      await sleep(1_000);
    }
    expect(changed).toEqual([]);

    const bundles = await kube.list<LiveUpdateBundle>(BUNDLE_RESOURCE, namespace);
    const s3 = stack.s3Client();
    const prefix = `${new StorageLayout().appPrefix({ namespace, name: APP })}bundles/`;
    const stored: string[] = [];
    for await (const item of s3.listObjectsV2(stack.bucket, prefix, true) as AsyncIterable<BucketItem>)
      stored.push(item.name!);
    expect(stored).toHaveLength(N);
    const inStatus = bundles.map((b) => b.status!.artifact!.objectKey).sort();
    expect(inStatus).toEqual([...stored].sort());
    // Every status object downloads whole: content-addressed, so its bytes hash to its name.
    await pool(N, 16, async (i) => {
      const artifact = bundles[i]!.status!.artifact!;
      const chunks: Buffer[] = [];
      for await (const c of await s3.getObject(stack!.bucket, artifact.objectKey)) chunks.push(c as Buffer);
      const body = Buffer.concat(chunks);
      expect(body.length).toBe(artifact.size);
      expect(`${prefix}${createHash('sha256').update(body).digest('hex')}.zip`).toBe(artifact.objectKey);
    });
  },
  TEST_TIMEOUT_MS,
);
