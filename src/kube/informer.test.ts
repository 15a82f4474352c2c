import { FakeClock, flushPromises } from './clock.js';
import { Informer } from './informer.js';
import { FakeSource } from './testing.js';
import { KubeApiError, type ResourceType } from './types.js';
import { silentLogger } from '../observability/logger.js';

const TYPE: ResourceType = {
  group: '',
  version: 'v1',
  kind: 'ConfigMap',
  plural: 'configmaps',
  namespaced: true,
};

function setup(opts: { resyncMs?: number; watchdogMs?: number } = {}) {
  const clock = new FakeClock();
  const source = new FakeSource();
  const informer = new Informer({
    type: TYPE,
    source,
    log: silentLogger(),
    clock,
    resyncMs: opts.resyncMs ?? 0,
    watchdogMs: opts.watchdogMs ?? 60_000,
    watchTimeoutSeconds: () => 300,
  });
  const seen: string[] = [];
  informer.addHandlers({
    onAdd: (o) => seen.push(`add ${o.metadata.name}`),
    onUpdate: (_old, o) => seen.push(`update ${o.metadata.name}`),
    onDelete: (o) => seen.push(`delete ${o.metadata.name}`),
  });
  return { clock, source, informer, seen };
}

describe('Informer', () => {
  let stop: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await stop?.();
    stop = undefined;
  });

  it('lists, syncs, then applies watch events to the cache and handlers', async () => {
    const { source, informer, seen } = setup();
    stop = () => informer.stop();
    source.put('a');
    informer.start();
    await informer.waitForSync();
    expect(informer.hasSynced()).toBe(true);
    await flushPromises();
    expect(source.current().opts.resourceVersion).toBe('2');
    const b = source.put('b');
    source.current().emit({ type: 'ADDED', object: b });
    source.current().emit({ type: 'MODIFIED', object: source.put('a', 'x') });
    source.current().emit({ type: 'DELETED', object: b });
    source.current().emit({
      type: 'BOOKMARK',
      object: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: '', resourceVersion: '99' } },
    });
    expect(seen).toEqual(['add a', 'add b', 'update a', 'delete b']);
    expect(informer.get('ns/a')?.metadata.annotations?.['data']).toBe('x');
    expect(informer.get('ns/b')).toBeUndefined();
    // a normal server-side close re-watches from the last version (the bookmark's) without relisting
    source.current().end();
    await flushPromises();
    expect(source.lists).toBe(1);
    expect(source.current().opts.resourceVersion).toBe('99');
  });

  it('restarts after a watch error with backoff and relists, noticing what changed in between', async () => {
    const { clock, source, informer, seen } = setup();
    stop = () => informer.stop();
    source.put('a');
    source.put('b');
    informer.start();
    await informer.waitForSync();
    await flushPromises();
    source.objects.delete('b');
    source.put('c');
    source.listFailures.push(new KubeApiError('Unavailable', 0, 'connection refused'));
    source.current().fail(new Error('socket hang up'));
    await flushPromises();
    expect(source.lists).toBe(1); // waiting for the backoff
    await clock.advance(800);
    expect(source.lists).toBe(2); // that list failed too
    await clock.advance(1599);
    expect(source.lists).toBe(2); // doubled backoff
    await clock.advance(1);
    expect(source.lists).toBe(3);
    expect(seen).toEqual(['add a', 'add b', 'update a', 'add c', 'delete b']);
    expect(informer.stats.failures).toBe(2);
    expect(
      informer
        .list()
        .map((o) => o.metadata.name)
        .sort(),
    ).toEqual(['a', 'c']);
  });

  it('relists at once on 410 Gone', async () => {
    const { source, informer } = setup();
    stop = () => informer.stop();
    informer.start();
    await informer.waitForSync();
    await flushPromises();
    source.current().fail(new KubeApiError('Gone', 410, 'too old resource version'));
    await flushPromises();
    expect(source.lists).toBe(2);
    expect(informer.stats.failures).toBe(0);
  });

  it('restarts a silent watch after the watchdog period', async () => {
    const { clock, source, informer } = setup({ watchdogMs: 60_000 });
    stop = () => informer.stop();
    informer.start();
    await informer.waitForSync();
    await flushPromises();
    await clock.advance(30_000);
    source.current().emit({
      type: 'BOOKMARK',
      object: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: '', resourceVersion: '5' } },
    });
    await clock.advance(59_000);
    expect(informer.stats.watchdogRestarts).toBe(0); // the bookmark re-armed it
    await clock.advance(1_000);
    expect(informer.stats.watchdogRestarts).toBe(1);
    expect(source.lists).toBe(2);
    expect(source.watches).toHaveLength(2);
  });

  it('resyncs periodically: relists and re-delivers cached objects as updates', async () => {
    const { clock, source, informer, seen } = setup({ resyncMs: 600_000, watchdogMs: 10_000_000 });
    stop = () => informer.stop();
    source.put('a');
    informer.start();
    await informer.waitForSync();
    await clock.advance(599_000);
    expect(seen).toEqual(['add a']);
    await clock.advance(1_000);
    expect(seen).toEqual(['add a', 'update a']);
    expect(source.lists).toBe(2);
  });

  it('stop ends the loop, clears the cache and the synced flag', async () => {
    const { source, informer } = setup();
    source.put('a');
    informer.start();
    await informer.waitForSync();
    await informer.stop();
    expect(informer.hasSynced()).toBe(false);
    expect(informer.list()).toEqual([]);
    expect(informer.isRunning()).toBe(false);
  });
});
