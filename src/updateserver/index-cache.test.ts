import { silentLogger } from '../observability/logger.js';
import { createRegistry, type Registry } from '../observability/metrics.js';
import { MemoryObjectStore } from '../storage/memory-store.js';
import type { ReleaseIndex } from '../storage/release-index.js';
import { IndexCache } from './index-cache.js';
import { UpdateServerMetrics } from './metrics.js';
import { APP_ID, layout, publish, rootFor, sampleIndex } from './testing/fixtures.js';

function otherApp(revision = 1): ReleaseIndex {
  const i = sampleIndex(revision);
  i.app = { ...i.app, name: 'other', appId: 'com.example.other' };
  return i;
}

async function metric(
  registry: Registry,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const m = await registry.getSingleMetric(name)?.get();
  return (m?.values ?? [])
    .filter((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val))
    .reduce((a, v) => a + v.value, 0);
}

describe('IndexCache', () => {
  let store: MemoryObjectStore;
  let registry: Registry;
  let cache: IndexCache;
  let now: number;
  beforeEach(() => {
    store = new MemoryObjectStore();
    registry = createRegistry({ defaultMetrics: false });
    now = 1_000_000;
    cache = new IndexCache({
      store,
      layout,
      logger: silentLogger(),
      metrics: new UpdateServerMetrics(registry),
      now: () => now,
    });
  });

  it('is ready only after the first complete load, and serves every app of the root', async () => {
    expect(cache.ready).toBe(false);
    await publish(store, [sampleIndex(3), otherApp(1)]);
    expect(await cache.poll()).toBe(true);
    expect(cache.ready).toBe(true);
    expect(cache.app(APP_ID)?.revision).toBe(3);
    expect(cache.app('com.example.other')?.revision).toBe(1);
    expect(cache.snapshot.objects.has(sampleIndex().bundles['app-1-4-1']!.objectKey)).toBe(true);
    expect(await metric(registry, 'liveupdate_index_revision', { app_id: APP_ID })).toBe(3);
  });

  it('does a conditional GET of the root and fetches no index when nothing changed', async () => {
    await publish(store, [sampleIndex(1)]);
    await cache.poll();
    const before = { ...store.calls };
    expect(await cache.poll()).toBe(false);
    expect(store.calls.get - before.get).toBe(1);
    expect(store.calls.getBuffer - before.getBuffer).toBe(0);
  });

  it('swaps in a new revision', async () => {
    await publish(store, [sampleIndex(1)]);
    await cache.poll();
    const first = cache.snapshot;
    const next = sampleIndex(2);
    next.channels[0]!.bundle = 'app-1-5-0';
    await publish(store, [next]);
    expect(await cache.poll()).toBe(true);
    expect(cache.app(APP_ID)?.defaultChannel.channel.bundle).toBe('app-1-5-0');
    // The old snapshot object is untouched (requests in flight keep a consistent view).
    expect(first.apps.get(APP_ID)?.revision).toBe(1);
  });

  it('refuses a corrupt index, keeps the previous one, counts the error and reports a reason', async () => {
    await publish(store, [sampleIndex(1)]);
    await cache.poll();
    await store.put(
      layout.indexKey({ namespace: 'apps', name: 'example' }),
      '{"apiVersion": "liveupdate.dev/index/v1", "revision": 2',
    );
    await store.put(layout.rootKey(), JSON.stringify(rootFor([sampleIndex(2)])));
    await cache.poll();
    expect(cache.app(APP_ID)?.revision).toBe(1);
    expect(cache.ready).toBe(true);
    expect(cache.reason).toMatch(/not JSON/);
    expect(await metric(registry, 'liveupdate_index_load_errors_total', { reason: 'index_invalid' })).toBe(1);
    // Schema violation.
    const bad = sampleIndex(2) as unknown as Record<string, unknown>;
    bad['channels'] = 'nope';
    await store.put(layout.indexKey({ namespace: 'apps', name: 'example' }), JSON.stringify(bad));
    await cache.poll();
    expect(cache.app(APP_ID)?.revision).toBe(1);
    expect(cache.reason).toMatch(/schema/);
    // Fixed: loads at the next poll although the root did not change.
    await store.put(layout.indexKey({ namespace: 'apps', name: 'example' }), JSON.stringify(sampleIndex(2)));
    await cache.poll();
    expect(cache.app(APP_ID)?.revision).toBe(2);
    expect(cache.reason).toBeUndefined();
  });

  it('refuses an index older than the root announces (eventual consistency), and an index for another app', async () => {
    await publish(store, [sampleIndex(1)]);
    await cache.poll();
    await store.put(layout.rootKey(), JSON.stringify(rootFor([sampleIndex(5)])));
    await cache.poll();
    expect(cache.reason).toMatch(/revision 1, the root announces 5/);
    await store.put(layout.indexKey({ namespace: 'apps', name: 'example' }), JSON.stringify(otherApp(5)));
    await cache.poll();
    expect(cache.reason).toMatch(/is for app com.example.other/);
    expect(cache.app(APP_ID)?.revision).toBe(1);
  });

  it('keeps serving when the store is down, and the index age grows', async () => {
    await publish(store, [sampleIndex(1)]);
    await cache.poll();
    expect(await metric(registry, 'liveupdate_index_age_seconds', { app_id: APP_ID })).toBe(0);
    store.setUnavailable(true);
    now += 60_000;
    await cache.poll();
    expect(cache.app(APP_ID)?.revision).toBe(1);
    expect(cache.reason).toMatch(/unavailable/);
    expect(await metric(registry, 'liveupdate_index_age_seconds', { app_id: APP_ID })).toBe(60);
    expect(await metric(registry, 'liveupdate_index_load_errors_total', { reason: 'root_unavailable' })).toBe(
      1,
    );
    store.setUnavailable(false);
    await cache.poll();
    expect(await metric(registry, 'liveupdate_index_age_seconds', { app_id: APP_ID })).toBe(0);
  });

  it('is ready with a corrupt first index of one app: that app alone is failed, the other served', async () => {
    await publish(store, [sampleIndex(1), otherApp(1)]);
    await store.put(layout.indexKey({ namespace: 'apps', name: 'example' }), 'garbage');
    await cache.poll();
    expect(cache.ready).toBe(true);
    expect(cache.app(APP_ID)).toBeUndefined();
    expect(cache.failure(APP_ID)).toMatch(/not JSON/);
    expect(cache.app(otherApp(1).app.appId)).toBeDefined();
    expect(cache.failure(otherApp(1).app.appId)).toBeUndefined();
    expect(cache.reason).toMatch(/\(failed\).*not JSON/);
  });

  it('keeps the last good state when the root disappears, and counts root_missing', async () => {
    await publish(store, [sampleIndex(1)]);
    await cache.poll();
    await store.remove(layout.rootKey());
    await cache.poll();
    expect(cache.app(APP_ID)?.revision).toBe(1);
    expect(cache.reason).toMatch(/root.*not found/);
  });

  it('treats a missing root as "no apps yet" (ready), and drops apps removed from the root', async () => {
    await cache.poll();
    expect(cache.ready).toBe(true);
    expect(cache.snapshot.apps.size).toBe(0);
    await publish(store, [sampleIndex(1), otherApp(1)]);
    await cache.poll();
    expect(cache.snapshot.apps.size).toBe(2);
    await store.put(layout.rootKey(), JSON.stringify(rootFor([otherApp(1)])));
    await cache.poll();
    expect(cache.app(APP_ID)).toBeUndefined();
    expect(cache.snapshot.objects.size).toBeGreaterThan(0);
  });

  it('refuses an inconsistent index (default channel missing) like a corrupt one', async () => {
    const i = sampleIndex(1);
    i.app.defaultChannel = 'missing';
    await publish(store, [i]);
    await cache.poll();
    expect(cache.app(APP_ID)).toBeUndefined();
    expect(cache.reason).toMatch(/default channel "missing"/);
  });

  it('refuses a root that is not a valid root document', async () => {
    await publish(store, [sampleIndex(1)]);
    await cache.poll();
    await store.put(layout.rootKey(), JSON.stringify({ kind: 'ReleaseRoot' }));
    await cache.poll();
    expect(cache.reason).toMatch(/root/);
    expect(cache.app(APP_ID)?.revision).toBe(1);
  });
});

describe('IndexCache revisions', () => {
  it('loads an app recreated with a lower revision', async () => {
    const store = new MemoryObjectStore();
    const cache = new IndexCache({
      store,
      layout,
      logger: silentLogger(),
      metrics: new UpdateServerMetrics(createRegistry({ defaultMetrics: false })),
    });
    await publish(store, [sampleIndex(7)]);
    await cache.poll();
    await publish(store, [sampleIndex(1)]);
    await cache.poll();
    expect(cache.app(APP_ID)?.revision).toBe(1);
  });
});
