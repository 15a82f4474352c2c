import { FakeClock, flushPromises } from '../kube/clock.js';
import { FakeLeaseBackend, FakeSource, FakeStore } from '../kube/testing.js';
import { LeaseLostError } from '../kube/leader-election.js';
import type { KubeObject, ObjectClient, ObjectKey, ResourceType } from '../kube/types.js';
import { ItemExponentialFailureRateLimiter } from '../kube/workqueue.js';
import { silentLogger } from '../observability/logger.js';
import { createRegistry, createRuntimeMetrics } from '../observability/metrics.js';
import { Manager, generationChanged } from './manager.js';
import type { ReconcileContext, ReconcileResult, Reconciler } from './reconciler-interface.js';

const CM: ResourceType = {
  group: '',
  version: 'v1',
  kind: 'ConfigMap',
  plural: 'configmaps',
  namespaced: true,
};
const SECRET: ResourceType = {
  group: '',
  version: 'v1',
  kind: 'Secret',
  plural: 'secrets',
  namespaced: true,
};

const keyOf = (o: KubeObject): string => `${o.metadata.namespace}/${o.metadata.name}`;

type Behaviour = (key: ObjectKey, ctx: ReconcileContext) => Promise<ReconcileResult>;

class RecordingReconciler implements Reconciler {
  calls: { key: string; at: number; id: string }[] = [];
  inFlight = new Set<string>();
  overlap = false;
  behaviour: Behaviour = () => Promise.resolve({});
  constructor(private readonly clock: FakeClock) {}
  async reconcile(key: ObjectKey, ctx: ReconcileContext): Promise<ReconcileResult> {
    const k = `${key.namespace}/${key.name}`;
    if (this.inFlight.has(k)) this.overlap = true;
    this.inFlight.add(k);
    this.calls.push({ key: k, at: this.clock.now(), id: ctx.reconcileID });
    try {
      return await this.behaviour(key, ctx);
    } finally {
      this.inFlight.delete(k);
    }
  }
  count(k: string): number {
    return this.calls.filter((c) => c.key === k).length;
  }
}

function setup(opts: { graceMs?: number; initial?: string[]; namespaces?: string[] } = {}) {
  const clock = new FakeClock();
  const source = new FakeSource();
  for (const name of opts.initial ?? ['a']) source.put(name);
  if (opts.namespaces) {
    source.put('b', '', undefined, false, 'team-b');
    source.put('elsewhere', '', undefined, false, 'unwatched');
  }
  const metrics = createRuntimeMetrics(createRegistry({ defaultMetrics: false }));
  const reconciler = new RecordingReconciler(clock);
  const manager = new Manager({
    source,
    log: silentLogger(),
    metrics,
    clock,
    maxConcurrentReconciles: 2,
    shutdownGraceMs: opts.graceMs ?? 30_000,
    informer: { resyncMs: 0, watchdogMs: 10_000_000 },
    rateLimiter: () => new ItemExponentialFailureRateLimiter(5, 1_000_000),
    ...(opts.namespaces ? { namespaces: opts.namespaces } : {}),
  });
  manager.add({
    name: 'configmap',
    forType: CM,
    reconciler,
    watches: [
      {
        type: SECRET,
        mapFn: (s) => ({
          namespace: s.metadata.namespace ?? '',
          name: s.metadata.annotations?.['data'] ?? '',
        }),
      },
    ],
  });
  const stop = new AbortController();
  const done = manager.run(stop.signal);
  return { clock, source, metrics, reconciler, manager, stop, done };
}

describe('Manager', () => {
  it('reconciles existing objects, then every add/update/delete and mapped watch event, with a reconcileID each', async () => {
    const { clock, source, reconciler, manager, stop, done } = setup();
    await clock.advance(0);
    expect(manager.readiness().ready).toBe(true);
    expect(reconciler.calls.map((c) => c.key)).toEqual(['ns/a']);
    source.put('a', 'changed', undefined, true);
    source.put('b', '', undefined, true);
    await clock.advance(0);
    source.remove('b');
    source.put('s1', 'a', SECRET, true);
    await clock.advance(0);
    expect(reconciler.calls.map((c) => c.key)).toEqual(['ns/a', 'ns/a', 'ns/b', 'ns/b', 'ns/a']);
    expect(new Set(reconciler.calls.map((c) => c.id)).size).toBe(5);
    stop.abort();
    await done;
    expect(manager.readiness().ready).toBe(false);
  });

  it('retries a failing reconcile with exponential backoff, then forgets after success', async () => {
    const { clock, reconciler, metrics, stop, done } = setup();
    let failures = 3;
    reconciler.behaviour = () =>
      failures-- > 0 ? Promise.reject(new Error('transient')) : Promise.resolve({});
    await clock.advance(1_000);
    const times = reconciler.calls.map((c) => c.at - reconciler.calls[0]!.at);
    expect(times).toEqual([0, 5, 15, 35]);
    const text = await metrics.registry.metrics();
    expect(text).toContain('controller_runtime_reconcile_errors_total{controller="configmap"} 3');
    expect(text).toContain('controller_runtime_reconcile_total{controller="configmap",result="error"} 3');
    expect(text).toContain('controller_runtime_reconcile_total{controller="configmap",result="success"} 1');
    expect(text).toContain('controller_runtime_max_concurrent_reconciles{controller="configmap"} 2');
    stop.abort();
    await done;
  });

  it('counts a terminal error (Stalled) as an error without requeue, and a programming error as a panic', async () => {
    const { clock, source, reconciler, metrics, manager, stop, done } = setup({ initial: ['a', 'b'] });
    reconciler.behaviour = (key) =>
      key.name === 'a'
        ? Promise.resolve({ terminalError: 'DigestMismatch' })
        : Promise.reject(new TypeError("Cannot read properties of undefined (reading 'spec')"));
    await clock.advance(0);
    expect(reconciler.count('ns/a')).toBe(1);
    await clock.advance(1_000);
    expect(reconciler.count('ns/a')).toBe(1);
    const text = await metrics.registry.metrics();
    expect(text).toContain('controller_runtime_terminal_reconcile_errors_total{controller="configmap"} 1');
    const panics = /controller_runtime_reconcile_panics_total\{controller="configmap"\} (\d+)/.exec(text);
    expect(Number(panics?.[1])).toBe(reconciler.count('ns/b'));
    expect(Number(panics?.[1])).toBeGreaterThan(1);
    expect(
      manager
        .cachedObjects(CM)
        .map((o) => o.metadata.name)
        .sort(),
    ).toEqual(['a', 'b']);
    source.remove('a');
    await clock.advance(0);
    expect(manager.cachedObjects(CM).map((o) => o.metadata.name)).toEqual(['b']);
    stop.abort();
    await done;
    expect(manager.cachedObjects(CM)).toEqual([]);
  });

  it('a network failure (undici TypeError with a cause) is not a panic', async () => {
    const { clock, reconciler, metrics, stop, done } = setup();
    reconciler.behaviour = () =>
      Promise.reject(new TypeError('fetch failed', { cause: new Error('connect ECONNREFUSED') }));
    await clock.advance(100);
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/controller_runtime_reconcile_errors_total\{controller="configmap"\} [1-9]/);
    expect(text).not.toMatch(/controller_runtime_reconcile_panics_total\{controller="configmap"\} [1-9]/);
    stop.abort();
    await done;
  });

  it('requeueAfter reconciles again after the delay', async () => {
    const { clock, reconciler, stop, done } = setup();
    reconciler.behaviour = () => Promise.resolve({ requeueAfterMs: 60_000 });
    await clock.advance(0);
    expect(reconciler.count('ns/a')).toBe(1);
    await clock.advance(59_999);
    expect(reconciler.count('ns/a')).toBe(1);
    await clock.advance(1);
    expect(reconciler.count('ns/a')).toBe(2);
    stop.abort();
    await done;
  });

  it('never reconciles one key concurrently; events during a reconcile cause exactly one more', async () => {
    const { clock, source, reconciler, stop, done } = setup();
    let release: (() => void) | undefined;
    reconciler.behaviour = () => new Promise((r) => (release = () => r({})));
    await clock.advance(0);
    for (let i = 0; i < 5; i++) source.put('a', `v${i}`, undefined, true);
    await clock.advance(0);
    expect(reconciler.count('ns/a')).toBe(1);
    release!();
    await clock.advance(0);
    expect(reconciler.count('ns/a')).toBe(2);
    release!();
    await clock.advance(0);
    expect(reconciler.count('ns/a')).toBe(2);
    expect(reconciler.overlap).toBe(false);
    stop.abort();
    await done;
  });

  it('on shutdown waits for in-flight reconciles up to the grace period, then aborts them', async () => {
    const { clock, reconciler, stop, done } = setup({ graceMs: 5_000 });
    const aborted: unknown[] = [];
    reconciler.behaviour = (_k, ctx) =>
      new Promise((_resolve, reject) => {
        ctx.signal.addEventListener('abort', () => {
          aborted.push(ctx.signal.reason);
          reject(new Error('aborted'));
        });
      });
    await clock.advance(0);
    let finished = false;
    void done.then(() => (finished = true));
    stop.abort(new Error('received SIGTERM'));
    await clock.advance(4_999);
    expect(aborted).toHaveLength(0);
    expect(finished).toBe(false);
    await clock.advance(1);
    expect(aborted).toHaveLength(1);
    await flushPromises();
    expect(finished).toBe(true);
    // the aborted key was not re-queued with backoff
    expect(reconciler.count('ns/a')).toBe(1);
  });

  it('does not take new work once shutting down', async () => {
    const { clock, source, reconciler, stop, done } = setup();
    const releases: (() => void)[] = [];
    reconciler.behaviour = () => new Promise((r) => releases.push(() => r({})));
    await clock.advance(0);
    source.put('b', '', undefined, true);
    source.put('c', '', undefined, true);
    await clock.advance(0);
    stop.abort();
    await clock.advance(0);
    for (const r of releases) r();
    await clock.advance(0);
    await done;
    // a, then b (the second worker) were in flight; c was never started
    expect(reconciler.calls.map((c) => c.key)).toEqual(['ns/a', 'ns/b']);
  });

  it('with leader election: works only while leading; losing the lease aborts in-flight reconciles at once, fences writes and ends run with LeaseLostError', async () => {
    const clock = new FakeClock();
    const source = new FakeSource();
    source.put('a');
    const backend = new FakeLeaseBackend();
    const store = new FakeStore(backend);
    const reconciler = new RecordingReconciler(clock);
    const aborted: unknown[] = [];
    reconciler.behaviour = (_k, ctx) =>
      new Promise((_resolve, reject) =>
        ctx.signal.addEventListener('abort', () => {
          aborted.push(ctx.signal.reason);
          reject(new Error('aborted'));
        }),
      );
    // someone else holds the lease at first
    backend.create({ holderIdentity: 'other', leaseDurationSeconds: 15, leaseTransitions: 0 });
    const manager = new Manager({
      source,
      log: silentLogger(),
      metrics: createRuntimeMetrics(createRegistry({ defaultMetrics: false })),
      clock,
      shutdownGraceMs: 30_000,
      informer: { resyncMs: 0, watchdogMs: 10_000_000 },
      leaderElection: { identity: 'me', name: 'test', store },
    });
    manager.add({ name: 'configmap', forType: CM, reconciler });
    const stop = new AbortController();
    const done = manager.run(stop.signal);
    await clock.advance(10_000);
    expect(manager.isLeader()).toBe(false);
    expect(manager.readiness()).toMatchObject({ ready: true, reason: 'standby (leader: other)' });
    expect(reconciler.calls).toHaveLength(0);
    expect(source.lists).toBe(0); // a standby does not even list
    await clock.advance(10_000); // the other holder's lease expired by our observation
    expect(manager.isLeader()).toBe(true);
    expect(manager.holdsLease()).toBe(true);
    expect(reconciler.calls).toHaveLength(1);
    const ended = done.then(
      () => 'resolved',
      (err: unknown) => err,
    );
    store.partitioned = true;
    // renewals fail: past the renew deadline the fence closes even before the loss is noticed
    await clock.advance(2_000 + 8_000);
    expect(manager.holdsLease()).toBe(false);
    await clock.advance(2_000);
    // lost: no grace period, the reconcile was aborted with LeaseLostError
    expect(aborted).toHaveLength(1);
    expect(aborted[0]).toBeInstanceOf(LeaseLostError);
    expect(manager.isLeader()).toBe(false);
    // never a candidate again in this process: run ends with LeaseLostError (the command exits non-zero)
    store.partitioned = false;
    await clock.advance(30_000);
    expect(await ended).toBeInstanceOf(LeaseLostError);
    expect(manager.isLeader()).toBe(false);
    expect(reconciler.calls).toHaveLength(1);
  });

  it('cachedClient serves get/list from synced caches (deep copies) and delegates the rest', async () => {
    const { clock, manager, stop, done } = setup({ initial: ['a', 'b'] });
    const calls: string[] = [];
    const api = {
      get: () => (
        calls.push('get'),
        Promise.resolve({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'api' } })
      ),
      list: () => (calls.push('list'), Promise.resolve([])),
      apply: () => (
        calls.push('apply'),
        Promise.resolve({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' } })
      ),
      mergePatch: () => (
        calls.push('mergePatch'),
        Promise.resolve({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' } })
      ),
      applyStatus: () => (
        calls.push('applyStatus'),
        Promise.resolve({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' } })
      ),
      delete: () => (calls.push('delete'), Promise.resolve()),
    } as unknown as ObjectClient;
    const cached = manager.cachedClient(api);
    await clock.advance(0);
    const a = await cached.get(CM, { namespace: 'ns', name: 'a' });
    expect(a.metadata.name).toBe('a');
    a.metadata.name = 'mutated';
    expect((await cached.get(CM, { namespace: 'ns', name: 'a' })).metadata.name).toBe('a');
    await expect(cached.get(CM, { namespace: 'ns', name: 'nope' })).rejects.toMatchObject({
      reason: 'NotFound',
    });
    expect((await cached.list(CM, 'ns')).map((o) => o.metadata.name).sort()).toEqual(['a', 'b']);
    expect(calls).toEqual([]);
    await cached.list(CM, 'ns', 'x=y'); // label selectors go to the API
    await cached.get({ ...CM, plural: 'services', kind: 'Service' }, { namespace: 'ns', name: 's' }); // no informer
    await cached.apply(CM, a);
    expect(calls).toEqual(['list', 'get', 'apply']);
    stop.abort();
    await done;
    await cached.get(CM, { namespace: 'ns', name: 'a' }); // caches stopped: back to the API
    expect(calls.at(-1)).toBe('get');
  });

  it('with a list of namespaces, lists and watches each of them and never cluster-wide', async () => {
    const { clock, source, reconciler, manager, stop, done } = setup({ namespaces: ['ns', 'team-b'] });
    const apiLists: (string | undefined)[] = [];
    const api = {
      list: (_type: ResourceType, namespace?: string) => (apiLists.push(namespace), Promise.resolve([])),
    } as unknown as ObjectClient;
    const cached = manager.cachedClient(api);
    await cached.list(CM); // before the caches synced: one list per watched namespace
    expect(apiLists).toEqual(['ns', 'team-b']);
    await clock.advance(0);
    expect(reconciler.calls.map((c) => c.key).sort()).toEqual(['ns/a', 'team-b/b']);
    expect((await cached.list(CM)).map((o) => o.metadata.name).sort()).toEqual(['a', 'b']);
    expect((await cached.listMatching!(CM, undefined, (o) => o.metadata.name === 'b')).map(keyOf)).toEqual([
      'team-b/b',
    ]);
    source.put('c', '', undefined, true, 'team-b');
    await clock.advance(0);
    expect(reconciler.count('team-b/c')).toBe(1);
    expect(apiLists).toHaveLength(2);
    expect(source.scopes.length).toBeGreaterThan(0);
    expect(source.scopes.filter((ns) => ns !== 'ns' && ns !== 'team-b')).toEqual([]);
    stop.abort();
    await done;
  });

  it('a status-only update of its own type (its own status write) neither re-queues the key nor cuts its backoff short', async () => {
    const { clock, source, reconciler, stop, done } = setup();
    let writes = 0;
    // every failure "writes" a status with a different message, as an error carrying a random path did
    reconciler.behaviour = () => {
      if (writes >= 500) return Promise.reject(new Error('enough')); // bounds the loop this test guards against
      const current = source.objects.get('a')!;
      const updated: KubeObject = {
        ...current,
        metadata: { ...current.metadata, resourceVersion: String(++source.rv) },
        status: { message: `failed in /tmp/work-${++writes}` },
      } as KubeObject;
      source.objects.set('a', updated);
      source.current().emit({ type: 'MODIFIED', object: updated });
      return Promise.reject(new Error(`failed in /tmp/work-${writes}`));
    };
    for (let t = 0; t < 1_000; t += 10) await clock.advance(10);
    // backoff 5 ms · 2^n: at most log2(1000 / 5 + 1) ≈ 7.7 failures fit into a second
    expect(reconciler.count('ns/a')).toBeLessThanOrEqual(8);
    expect(writes).toBe(reconciler.count('ns/a'));
    stop.abort();
    await done;
  });

  it('a kind without metadata.generation (a ConfigMap) reconciles on every change: it has no status to tell apart', async () => {
    const { clock, source, reconciler, stop, done } = setup();
    await clock.advance(0);
    const current = source.objects.get('a')!;
    const { generation: _dropped, ...metadata } = current.metadata;
    const withData = (v: string): KubeObject => {
      const obj = {
        ...current,
        metadata: { ...metadata, resourceVersion: String(++source.rv) },
        data: { v },
      } as KubeObject;
      source.objects.set('a', obj);
      source.current().emit({ type: 'MODIFIED', object: obj });
      return obj;
    };
    withData('1');
    await clock.advance(0);
    const before = reconciler.count('ns/a');
    withData('2'); // only data changed, as `kubectl apply` of a ConfigMap does
    await clock.advance(0);
    expect(reconciler.count('ns/a')).toBe(before + 1);
    stop.abort();
    await done;
  });

  it('an annotation or generation change still reconciles at once while the key backs off', async () => {
    const { clock, source, reconciler, stop, done } = setup();
    reconciler.behaviour = () => Promise.reject(new Error('transient'));
    await clock.advance(60_000); // backoff now well beyond a minute
    const before = reconciler.count('ns/a');
    source.put('a', 'liveupdate.dev/reconcile-requested-at', undefined, true);
    await clock.advance(0);
    expect(reconciler.count('ns/a')).toBe(before + 1);
    const current = source.objects.get('a')!;
    const bumped = {
      ...current,
      metadata: { ...current.metadata, generation: 2, resourceVersion: String(++source.rv) },
    };
    source.current().emit({ type: 'MODIFIED', object: bumped });
    await clock.advance(0);
    expect(reconciler.count('ns/a')).toBe(before + 2);
    stop.abort();
    await done;
  });

  it('a watched kind enqueues on updates only when its predicate says so; a resync skips keys that back off', async () => {
    const clock = new FakeClock();
    const source = new FakeSource();
    source.put('a');
    source.put('s1', 'a', SECRET);
    const reconciler = new RecordingReconciler(clock);
    const manager = new Manager({
      source,
      log: silentLogger(),
      metrics: createRuntimeMetrics(createRegistry({ defaultMetrics: false })),
      clock,
      informer: { resyncMs: 10_000, watchdogMs: 10_000_000 },
      rateLimiter: () => new ItemExponentialFailureRateLimiter(5, 1_000_000),
    });
    manager.add({
      name: 'configmap',
      forType: CM,
      reconciler,
      watches: [
        {
          type: SECRET,
          mapFn: (s) => ({ namespace: 'ns', name: s.metadata.annotations?.['data'] ?? '' }),
          updatePredicate: generationChanged,
        },
      ],
    });
    const stop = new AbortController();
    const done = manager.run(stop.signal);
    await clock.advance(0);
    expect(reconciler.count('ns/a')).toBe(1);
    const secret = source.bucket('secrets').get('s1')!;
    source.current('secrets').emit({
      type: 'MODIFIED',
      object: { ...secret, metadata: { ...secret.metadata, resourceVersion: String(++source.rv) } },
    });
    await clock.advance(0);
    expect(reconciler.count('ns/a')).toBe(1); // metadata-only change of the watched object
    source.current('secrets').emit({
      type: 'MODIFIED',
      object: {
        ...secret,
        metadata: { ...secret.metadata, generation: 5, resourceVersion: String(++source.rv) },
      },
    });
    await clock.advance(0);
    const afterChange = reconciler.count('ns/a');
    expect(afterChange).toBeGreaterThan(1);
    await clock.advance(10_000); // a resync of a healthy key reconciles it
    expect(reconciler.count('ns/a')).toBeGreaterThan(afterChange);
    reconciler.behaviour = () => Promise.reject(new Error('transient'));
    source.put('a', 'x', undefined, true);
    const before = reconciler.count('ns/a');
    for (let t = 0; t < 200_000; t += 1_000) await clock.advance(1_000); // 20 resyncs
    // backoff 5 ms · 2^n alone allows log2(200 s / 5 ms + 1) + 1 ≈ 16.3 attempts; each resync would add one
    expect(reconciler.count('ns/a') - before).toBeLessThanOrEqual(17);
    stop.abort();
    await done;
  });

  it('a resync skips keys reconciled within the last half period: a burst is not reconciled twice', async () => {
    const clock = new FakeClock();
    const source = new FakeSource();
    source.put('a');
    const reconciler = new RecordingReconciler(clock);
    const manager = new Manager({
      source,
      log: silentLogger(),
      metrics: createRuntimeMetrics(createRegistry({ defaultMetrics: false })),
      clock,
      informer: { resyncMs: 10_000, watchdogMs: 10_000_000 },
    });
    manager.add({ name: 'configmap', forType: CM, reconciler });
    const stop = new AbortController();
    const done = manager.run(stop.signal);
    await clock.advance(0);
    expect(reconciler.count('ns/a')).toBe(1);
    // created just before the resync: reconciled once, not again by the resync 4 s later
    await clock.advance(6_000);
    source.put('b', '', undefined, true);
    await clock.advance(0);
    expect(reconciler.count('ns/b')).toBe(1);
    await clock.advance(4_000);
    expect(reconciler.count('ns/a')).toBe(2);
    expect(reconciler.count('ns/b')).toBe(1);
    // the next resync looks at both again
    await clock.advance(10_000);
    expect(reconciler.count('ns/a')).toBe(3);
    expect(reconciler.count('ns/b')).toBe(2);
    stop.abort();
    await done;
  });
});
