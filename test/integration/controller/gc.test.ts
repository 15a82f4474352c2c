// Garbage collection on the real S3 server (issue 13): a bucket full of orphans (failed and repeated builds, a deleted
// bundle, an old rebuilt zip, delta files nothing lists, a stale stats rollup) loses exactly the collectable objects,
// and every object of the published index still downloads; then GC races 100 index publishes.
// GC's clock is set 2 h ahead so that objects just written count as old; retention comes from bundle statuses,
// the index and rollup times, never from sleeping.
import { randomBytes } from 'node:crypto';
import type { LiveUpdateBundle } from '../../../src/api/v1alpha1/index.js';
import { collectGarbage, type GcResult } from '../../../src/controller/gc/collect.js';
import {
  publishIndex,
  readIndex,
  referencedKeys,
} from '../../../src/controller/publishing/index-document.js';
import { StorageLayout } from '../../../src/storage/layout.js';
import {
  RELEASE_INDEX_API_VERSION,
  type IndexBundle,
  type IndexManifestEntry,
  type ReleaseIndex,
} from '../../../src/storage/release-index.js';
import type { S3ObjectStore } from '../../../src/storage/s3-store.js';
import { INTEGRATION_TEST_TIMEOUT_MS, cleanupTestResources, newBucket, s3Store } from '../../env/fixtures.js';

const layout = new StorageLayout('lu');
const HOUR = 3_600_000;

let store: S3ObjectStore;

beforeAll(async () => {
  store = s3Store(await newBucket('gc'));
}, INTEGRATION_TEST_TIMEOUT_MS);

afterAll(() => cleanupTestResources(), INTEGRATION_TEST_TIMEOUT_MS);

const hex = (): string => randomBytes(32).toString('hex');

async function put(key: string, bytes = 256): Promise<string> {
  await store.put(key, randomBytes(bytes));
  return key;
}

function bundle(
  name: string,
  version: string,
  objectKey: string,
  lastUpdateTime: string,
  manifestKey?: string,
): LiveUpdateBundle {
  return {
    apiVersion: 'liveupdate.dev/v1alpha1',
    kind: 'LiveUpdateBundle',
    metadata: { name, namespace: 'gc' },
    spec: { app: 'demo', version, source: { http: { url: 'http://127.0.0.1/x.zip' } } },
    status: {
      artifact: {
        revision: 'r',
        objectKey,
        size: 256,
        sha256: 'a'.repeat(64),
        storedSha256: 'a'.repeat(64),
        checksum: 'a'.repeat(64),
        encrypted: false,
        lastUpdateTime,
        ...(manifestKey ? { manifestKey } : {}),
      },
    },
  };
}

function indexBundle(
  name: string,
  version: string,
  objectKey: string,
  manifest?: IndexManifestEntry[],
): IndexBundle {
  return {
    name,
    version,
    objectKey,
    size: 256,
    sha256: 'a'.repeat(64),
    encrypted: false,
    checksum: 'a'.repeat(64),
    ...(manifest ? { manifest } : {}),
  };
}

function content(
  app: { namespace: string; name: string },
  bundles: Record<string, IndexBundle>,
  served: string,
) {
  return {
    apiVersion: RELEASE_INDEX_API_VERSION,
    kind: 'ReleaseIndex' as const,
    app: { ...app, appId: `com.example.${app.name.replace(/-/g, '')}`, defaultChannel: 'production' },
    bundles,
    channels: [
      {
        name: 'production',
        id: 1,
        bundle: served,
        policy: {
          disableAutoUpdate: 'none' as const,
          disableAutoUpdateUnderNative: false,
          allowEmulator: true,
          allowDev: true,
          allowProd: true,
          allowDeviceSelfSet: false,
          platforms: ['android' as const, 'ios' as const],
        },
        pinnedIdHashes: [],
      },
    ],
  } as Omit<ReleaseIndex, 'revision' | 'generatedAt'>;
}

async function keysUnder(prefix: string): Promise<Set<string>> {
  const keys = new Set<string>();
  for await (const info of store.list(prefix)) keys.add(info.key);
  return keys;
}

describe('garbage collection on the real S3 server', () => {
  it(
    'deletes exactly the collectable objects; every object of the published index still downloads',
    async () => {
      const app = { namespace: 'gc', name: 'demo' };
      const file = (h = hex()) => layout.deltaFileKey(app, h);
      const zip = () => layout.bundleKey(app, hex());
      const recent = new Date(Date.now() + 2 * HOUR - 60_000).toISOString();
      const old = new Date(Date.now() - 30 * 24 * HOUR).toISOString();

      // Served: A with delta files F1, F2 (F2 shared with the unreferenced bundle B).
      const [a, f1, f2] = [await put(zip()), await put(file()), await put(file())];
      const manifestA = [f1, f2].map((k, i) => ({
        fileName: `f${i}.js`,
        fileHash: hex(),
        objectKey: k,
        size: 256,
      }));
      // B: unreferenced but the most recent (keepLast: 1 keeps it), its manifest lists F2 and F3.
      const [b, f3] = [await put(zip()), await put(file())];
      const bManifest = `${file()}.json`;
      await store.put(
        bManifest,
        JSON.stringify([f2, f3].map((k) => ({ fileName: 'x', fileHash: 'y', objectKey: k, size: 256 }))),
      );
      // C: unreferenced, older than keepLast allows and than the TTL: zip, manifest and its only file go.
      const [c, f4] = [await put(zip()), await put(file())];
      const cManifest = `${file()}.json`;
      await store.put(
        cManifest,
        JSON.stringify([{ fileName: 'x', fileHash: 'y', objectKey: f4, size: 256 }]),
      );
      // Orphans: failed/repeated builds, a deleted bundle (zip, manifest, file), the old zip of a rebuilt bundle.
      const orphans = [
        await put(zip()),
        await put(zip()),
        await put(zip()),
        await put(`${file()}.json`),
        await put(file()),
      ];
      // Stats: a live replica and one gone for 40 days.
      const rollup = (updatedAt: string) =>
        JSON.stringify({
          apiVersion: 'liveupdate.dev/stats-rollup/v1',
          kind: 'StatsRollup',
          replica: 'r',
          appId: 'com.example.demo',
          startedAt: updatedAt,
          updatedAt,
          counters: [],
        });
      const liveRollup = `${layout.statsPrefix(app)}update-server-live.json`;
      const staleRollup = `${layout.statsPrefix(app)}update-server-gone.json`;
      await store.put(liveRollup, rollup(new Date().toISOString()));
      await store.put(staleRollup, rollup(new Date(Date.now() - 40 * 24 * HOUR).toISOString()));
      // Legacy plugins' channel overrides (ADR 0016) are kept while younger than statsRetention.
      const overrides = layout.channelOverridesKey(app, 'ab');
      await store.put(overrides, '{"apiVersion":"liveupdate.dev/channel-overrides/v1","entries":{}}');

      const published = await publishIndex(
        store,
        layout,
        content(app, { 'demo-a': indexBundle('demo-a', '1.0.0', a, manifestA) }, 'demo-a'),
        {
          previous: undefined,
          knownRevision: 0,
          now: new Date(),
        },
      );
      const before = await keysUnder(layout.appPrefix(app));
      const result = await collectGarbage({
        store,
        layout,
        app,
        bundles: [
          bundle('demo-a', '1.0.0', a, old),
          bundle('demo-b', '1.1.0', b, recent, bManifest),
          bundle('demo-c', '0.9.0', c, old, cManifest),
        ],
        keepLast: 1,
        unreferencedTtlMs: HOUR,
        statsRetentionMs: 720 * HOUR,
        now: new Date(Date.now() + 2 * HOUR),
        minGraceMs: 0,
      });
      const collectable = [c, cManifest, f4, ...orphans, staleRollup];
      expect(result.aborted).toBeUndefined();
      expect(result.errors).toBe(0);
      expect(new Set(result.deleted.map((d) => d.key))).toEqual(new Set(collectable));
      expect(result.bytes).toBe(result.deleted.reduce((n, d) => n + d.size, 0));
      const after = await keysUnder(layout.appPrefix(app));
      expect(after).toEqual(new Set([...before].filter((k) => !collectable.includes(k))));
      expect(after).toEqual(
        new Set([published.indexKey, a, f1, f2, b, bManifest, f3, liveRollup, overrides]),
      );
      for (const key of referencedKeys(published.index))
        expect((await store.getBuffer(key)).data.length).toBe(256);
      process.stdout.write(
        `GC figures: ${result.deleted.length} objects, ${result.bytes} bytes collected of ${result.scanned} scanned\n`,
      );
    },
    INTEGRATION_TEST_TIMEOUT_MS,
  );

  it(
    'races 100 publishes: no publish fails, no published index ever misses an object, the orphans go',
    async () => {
      const app = { namespace: 'gc', name: 'race' };
      const bundles: LiveUpdateBundle[] = [];
      const entries: IndexBundle[] = [];
      // The 100 releases are built first (their bundles' statuses record them, as the bundle reconciler does).
      for (let i = 0; i < 100; i++) {
        const key = await put(layout.bundleKey(app, hex()), 64);
        bundles.push(bundle(`race-${i}`, `1.0.${i}`, key, new Date(Date.now() - i * 1000).toISOString()));
        entries.push(indexBundle(`race-${i}`, `1.0.${i}`, key));
      }
      const orphans = await Promise.all(
        Array.from({ length: 50 }, () => put(layout.bundleKey(app, hex()), 64)),
      );
      let publishing = true;
      const runs: GcResult[] = [];
      const gcLoop = (async () => {
        while (publishing) {
          runs.push(
            await collectGarbage({
              store,
              layout,
              app,
              bundles,
              keepLast: 100,
              unreferencedTtlMs: HOUR,
              statsRetentionMs: HOUR,
              now: new Date(Date.now() + 2 * HOUR),
              minGraceMs: 0,
            }),
          );
        }
      })();
      const missing: string[] = [];
      for (let i = 0; i < 100; i++) {
        const previous = await readIndex(store, layout.indexKey(app));
        const kept = Object.fromEntries(entries.slice(Math.max(0, i - 2), i + 1).map((e) => [e.name, e]));
        const result = await publishIndex(store, layout, content(app, kept, `race-${i}`), {
          previous,
          knownRevision: 0,
          now: new Date(),
        });
        for (const key of referencedKeys(result.index)) {
          try {
            await store.stat(key);
          } catch {
            missing.push(`revision ${result.index.revision}: ${key}`);
          }
        }
      }
      publishing = false;
      await gcLoop;
      runs.push(
        await collectGarbage({
          store,
          layout,
          app,
          bundles,
          keepLast: 100,
          unreferencedTtlMs: HOUR,
          statsRetentionMs: HOUR,
          now: new Date(Date.now() + 2 * HOUR),
          minGraceMs: 0,
        }),
      );
      expect(missing).toEqual([]);
      const final = (await readIndex(store, layout.indexKey(app)))!.doc;
      expect(final.revision).toBe(100);
      for (const key of referencedKeys(final)) expect((await store.getBuffer(key)).data.length).toBe(64);
      const left = await keysUnder(layout.appPrefix(app));
      for (const o of orphans) expect(left.has(o)).toBe(false);
      for (const e of entries) expect(left.has(e.objectKey)).toBe(true);
      const aborted = runs.filter((r) => r.aborted).length;
      process.stdout.write(
        `GC race: ${runs.length} GC runs during 100 publishes, ${aborted} aborted by an index change\n`,
      );
    },
    INTEGRATION_TEST_TIMEOUT_MS,
  );
});
