import { Manager } from '../../../src/controller/manager.js';
import type {
  ReconcileContext,
  ReconcileResult,
  Reconciler,
} from '../../../src/controller/reconciler-interface.js';
import type { KubeClient } from '../../../src/kube/client.js';
import { KubeLeaseStore } from '../../../src/kube/leader-election.js';
import { isNotFound, type KubeObject, type ObjectKey } from '../../../src/kube/types.js';
import { silentLogger } from '../../../src/observability/logger.js';
import { createRegistry, createRuntimeMetrics } from '../../../src/observability/metrics.js';
import { cleanupTestResources, newNamespace } from '../../env/fixtures.js';
import { CONFIGMAP, newClient, waitFor } from './helpers.js';
import { TEST_TIMINGS } from './timings.js';

interface ConfigMap extends KubeObject {
  data?: Record<string, string>;
}

const REQUESTED_AT = 'liveupdate.dev/reconcile-requested-at';

/**
 * A trivial reconciler: copies data.v into the annotation test/observed and records who reconciled. ConfigMaps
 * named flaky-* fail their first two reconciles; periodic-* ask to be requeued after 200 ms.
 */
class CopyReconciler implements Reconciler {
  readonly calls = new Map<string, number>();
  readonly ids = new Set<string>();
  constructor(
    private readonly client: KubeClient,
    readonly identity: string,
  ) {}

  count(name: string): number {
    return this.calls.get(name) ?? 0;
  }

  async reconcile(key: ObjectKey, ctx: ReconcileContext): Promise<ReconcileResult> {
    const n = this.count(key.name) + 1;
    this.calls.set(key.name, n);
    this.ids.add(ctx.reconcileID);
    let cm: ConfigMap;
    try {
      cm = await this.client.get<ConfigMap>(CONFIGMAP, key);
    } catch (err) {
      if (isNotFound(err)) return {};
      throw err;
    }
    if (key.name.startsWith('flaky') && n <= 2) throw new Error(`transient failure ${n}`);
    await this.client.apply(CONFIGMAP, {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {
        name: key.name,
        namespace: key.namespace,
        annotations: { 'test/observed': cm.data?.['v'] ?? '', 'test/by': this.identity },
      },
    });
    return key.name.startsWith('periodic') ? { requeueAfterMs: 200 } : {};
  }
}

function newManager(ns: string, identity: string, leaderElection: boolean) {
  const client = newClient(`manager-${identity}`);
  const metrics = createRuntimeMetrics(createRegistry({ defaultMetrics: false }));
  const reconciler = new CopyReconciler(client, identity);
  const manager = new Manager({
    source: client,
    log: silentLogger(),
    metrics,
    namespace: ns,
    maxConcurrentReconciles: 2,
    shutdownGraceMs: 5_000,
    ...(leaderElection
      ? {
          leaderElection: {
            identity,
            name: 'manager-test',
            store: new KubeLeaseStore(client, ns, 'manager-test'),
            ...TEST_TIMINGS,
          },
        }
      : {}),
  });
  manager.add({ name: 'copy', forType: CONFIGMAP, reconciler });
  const stop = new AbortController();
  const done = manager.run(stop.signal).finally(() => client.rest.close());
  return { manager, reconciler, metrics, stop, done, client };
}

describe('Manager against the real API server', () => {
  const writer = newClient('writer');
  let ns: string;
  beforeEach(async () => {
    ns = await newNamespace('manager');
  });
  afterAll(async () => {
    writer.rest.close();
    await cleanupTestResources();
  });

  const put = (name: string, v: string, annotations: Record<string, string> = {}): Promise<unknown> =>
    writer.apply(CONFIGMAP, {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name, namespace: ns, annotations },
      data: { v },
    } as ConfigMap);
  const observed = async (name: string): Promise<Record<string, string> | undefined> =>
    (await writer.get<ConfigMap>(CONFIGMAP, { namespace: ns, name })).metadata.annotations;

  it('reconciles on events, backs off and retries errors, honours requeueAfter', async () => {
    await put('existing', '1');
    const m = newManager(ns, 'solo', false);
    await waitFor(
      'the existing object reconciled',
      async () => (await observed('existing'))?.['test/observed'] === '1',
    );
    expect(m.manager.readiness().ready).toBe(true);
    await put('existing', '2');
    await waitFor(
      'an update reconciled',
      async () => (await observed('existing'))?.['test/observed'] === '2',
    );
    // the annotation a human sets to force a reconcile triggers one
    const before = m.reconciler.count('existing');
    await put('existing', '2', { [REQUESTED_AT]: new Date().toISOString() });
    await waitFor('a requested reconcile', () => m.reconciler.count('existing') > before);

    await put('flaky', 'f');
    await waitFor(
      'the flaky object reconciled after retries',
      async () => (await observed('flaky'))?.['test/observed'] === 'f',
    );
    expect(m.reconciler.count('flaky')).toBeGreaterThanOrEqual(3);

    await put('periodic', 'p');
    await waitFor('several requeued reconciles', () => m.reconciler.count('periodic') >= 4);

    const text = await m.metrics.registry.metrics();
    expect(text).toMatch(/controller_runtime_reconcile_errors_total\{controller="copy"\} [2-9]/);
    expect(text).toMatch(
      /controller_runtime_reconcile_total\{controller="copy",result="requeue_after"\} [1-9]/,
    );
    expect(text).toMatch(/workqueue_retries_total\{name="copy"\} [2-9]/);
    const total = [...m.reconciler.calls.values()].reduce((a, b) => a + b, 0);
    expect(m.reconciler.ids.size).toBe(total); // a fresh reconcileID per reconcile
    m.stop.abort();
    await m.done;
  }, 60_000);

  it('two managers with leader election: only the leader works; the standby takes over when it stops', async () => {
    const a = newManager(ns, 'a', true);
    const b = newManager(ns, 'b', true);
    await waitFor('a leader', () => a.manager.isLeader() || b.manager.isLeader());
    const [leader, standby] = a.manager.isLeader() ? [a, b] : [b, a];
    expect(standby.manager.readiness()).toMatchObject({ ready: true });
    for (let i = 0; i < 5; i++) await put(`obj-${i}`, String(i));
    for (let i = 0; i < 5; i++) {
      await waitFor(
        `obj-${i} reconciled`,
        async () => (await observed(`obj-${i}`))?.['test/observed'] === String(i),
      );
      expect((await observed(`obj-${i}`))?.['test/by']).toBe(leader.reconciler.identity);
    }
    expect(standby.reconciler.calls.size).toBe(0);
    leader.stop.abort();
    await leader.done;
    await waitFor('the standby to lead', () => standby.manager.isLeader(), 30_000);
    await put('after-failover', 'x');
    await waitFor(
      'work done by the new leader',
      async () => (await observed('after-failover'))?.['test/by'] === standby.reconciler.identity,
    );
    standby.stop.abort();
    await standby.done;
  }, 60_000);
});
