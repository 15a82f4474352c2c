// The root document several writers share (one per controller installation or namespace shard, and a zombie
// leader) against the real S3 server: concurrent publishes lose nothing, a root written by a newer version keeps the
// fields this version does not know, an unreadable root is never rewritten.
import { jest } from '@jest/globals';
import { RootPublisher } from '../../../src/controller/publishing/root-document.js';
import type { S3ObjectStore } from '../../../src/storage/s3-store.js';
import { cleanupTestResources, newBucket, s3Store } from '../../env/fixtures.js';

jest.setTimeout(300_000);

const ROOT_KEY = 'root.json';

const storeFor = s3Store;

interface RootDoc {
  apps: Array<{ namespace: string; name: string; revision: number } & Record<string, unknown>>;
  [field: string]: unknown;
}

async function readRoot(store: S3ObjectStore): Promise<RootDoc> {
  const { data } = await store.getBuffer(ROOT_KEY);
  return JSON.parse(data.toString('utf8')) as RootDoc;
}

function entry(namespace: string, name: string, revision: number) {
  return {
    namespace,
    name,
    appId: `com.example.${namespace}.${name}`,
    indexKey: `${namespace}/${name}/index.json`,
    revision,
  };
}

afterAll(() => cleanupTestResources());

describe('root document shared by several writers', () => {
  it('two controllers publishing different apps concurrently lose no entry (1,000 interleaved publishes)', async () => {
    const bucket = await newBucket('root-race');
    const stores = [storeFor(bucket), storeFor(bucket)];
    const writers = stores.map((s) => new RootPublisher(s, ROOT_KEY));
    const APPS = 5;
    const REVISIONS = 100; // 2 writers × 5 apps × 100 revisions = 1,000 publishes
    const publish = async (writer: RootPublisher, namespace: string, app: number) => {
      for (let revision = 1; revision <= REVISIONS; revision++)
        await writer.upsert(entry(namespace, `app-${app}`, revision));
    };
    await Promise.all(
      writers.flatMap((writer, w) =>
        Array.from({ length: APPS }, (_, app) => publish(writer, `tenant-${w}`, app)),
      ),
    );
    // Each writer's periodic check (RootPublisher.run) re-reads the root and repairs what a racing writer lost.
    await Promise.all(writers.map((w) => w.settle()));
    const root = await readRoot(stores[0]!);
    const got = root.apps.map((a) => `${a.namespace}/${a.name}@${a.revision}`).sort();
    const want = [0, 1]
      .flatMap((w) => Array.from({ length: APPS }, (_, app) => `tenant-${w}/app-${app}@${REVISIONS}`))
      .sort();
    expect(got).toEqual(want);
  });

  it('one controller publishing several apps at once reports no repair: with no other writer nothing is lost', async () => {
    const bucket = await newBucket('root-single');
    const store = storeFor(bucket);
    const results: string[] = [];
    const writer = new RootPublisher(store, ROOT_KEY, { onWrite: (r) => results.push(r) });
    const APPS = 5;
    const REVISIONS = 20;
    // Each app's publishes are sequential with a short pause, as reconciles of different apps arrive: upserts come
    // while another app's write is in flight.
    await Promise.all(
      Array.from({ length: APPS }, async (_, app) => {
        for (let revision = 1; revision <= REVISIONS; revision++) {
          await new Promise((resolve) => setTimeout(resolve, Math.random() * 4));
          await writer.upsert(entry('solo', `app-${app}`, revision));
        }
      }),
    );
    await writer.settle();
    const root = await readRoot(store);
    expect(root.apps.map((a) => `${a.name}@${a.revision}`).sort()).toEqual(
      Array.from({ length: APPS }, (_, app) => `app-${app}@${REVISIONS}`),
    );
    expect(results.filter((r) => r !== 'written')).toEqual([]);
  });

  it('keeps the fields a newer version wrote when this version publishes', async () => {
    const bucket = await newBucket('root-newer');
    const store = storeFor(bucket);
    await store.put(
      ROOT_KEY,
      JSON.stringify({
        apiVersion: 'liveupdate.dev/index-root/v1',
        kind: 'ReleaseRoot',
        schemaVersion: 1,
        generatedAt: '2026-12-01T00:00:00Z',
        shards: { count: 1 },
        apps: [{ ...entry('other', 'app', 7), channelsDigest: 'sha256:abc' }],
      }),
    );
    await new RootPublisher(store, ROOT_KEY).upsert(entry('mine', 'app', 1));
    const root = await readRoot(store);
    expect(root['shards']).toEqual({ count: 1 });
    expect(root.apps).toEqual([
      { ...entry('mine', 'app', 1) },
      { ...entry('other', 'app', 7), channelsDigest: 'sha256:abc' },
    ]);
  });

  it.each([
    ['not JSON', '{"apiVersion": "liveupdate.dev/index-root/v1", "apps": ['],
    [
      'an invalid known field',
      JSON.stringify({
        apiVersion: 'liveupdate.dev/index-root/v1',
        kind: 'ReleaseRoot',
        generatedAt: '2026-12-01T00:00:00Z',
        apps: 'everything',
      }),
    ],
    [
      'a schema version this one does not know',
      JSON.stringify({
        apiVersion: 'liveupdate.dev/index-root/v1',
        kind: 'ReleaseRoot',
        schemaVersion: 99,
        generatedAt: '2026-12-01T00:00:00Z',
        apps: [entry('other', 'app', 3)],
      }),
    ],
  ])('refuses to rewrite a root that is %s', async (_what, body) => {
    const bucket = await newBucket('root-bad');
    const store = storeFor(bucket);
    await store.put(ROOT_KEY, body);
    const err = await new RootPublisher(store, ROOT_KEY)
      .upsert(entry('mine', 'app', 1))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).name).toBe('RootDocumentUnreadableError');
    expect((await store.getBuffer(ROOT_KEY)).data.toString('utf8')).toBe(body);
  });
});
