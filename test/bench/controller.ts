/**
 * Controller runtime benchmark (`npm run bench -- controller`) on a real kube-apiserver + etcd of its own:
 * N ConfigMaps (default 500) are applied at once; a trivial reconciler server-side-applies one annotation per object.
 *   - runtime: the Manager (informer → de-duplicating rate-limited queue → 4 workers), started before the burst;
 *   - baseline (same run, same apiserver): a hand-written loop with 4 concurrent workers over a plain list of the
 *     same objects (no informer, no queue), i.e. the cheapest possible way to touch every object once.
 * Prints time until every object carries the annotation, reconciles/s, API requests per reconcile (counted in the
 * client's transport) and peak RSS. Figures only, no assertions. BENCH_OBJECTS overrides N.
 */
import { Manager } from '../../src/controller/manager.js';
import type { Reconciler } from '../../src/controller/reconciler-interface.js';
import { KubeClient } from '../../src/kube/client.js';
import { loadKubeConfig, type KubeConfig } from '../../src/kube/config.js';
import type { KubeObject, ObjectClient, ObjectKey, ResourceType } from '../../src/kube/types.js';
import { silentLogger } from '../../src/observability/logger.js';
import { createRegistry, createRuntimeMetrics } from '../../src/observability/metrics.js';
import { startEnvironment } from '../env/environment.js';

const N = Number(process.env['BENCH_OBJECTS'] ?? 500);
const WORKERS = 4;
const CM: ResourceType = {
  group: '',
  version: 'v1',
  kind: 'ConfigMap',
  plural: 'configmaps',
  namespaced: true,
};

interface ConfigMap extends KubeObject {
  data?: Record<string, string>;
}

/** Reads the object, then applies the annotation: a minimal but realistic get → write reconcile. */
class MarkReconciler implements Reconciler {
  reconciles = 0;
  constructor(
    private readonly client: ObjectClient,
    private readonly mark: string,
  ) {}
  async reconcile(key: ObjectKey): Promise<{ requeueAfterMs?: number }> {
    this.reconciles++;
    const cm = await this.client.get<ConfigMap>(CM, key);
    if (cm.metadata.annotations?.['bench/mark'] === this.mark) return {};
    await this.client.apply(CM, {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: key.name, namespace: key.namespace, annotations: { 'bench/mark': this.mark } },
    });
    return {};
  }
}

async function createNamespace(client: KubeClient, name: string): Promise<void> {
  await client.apply(
    { group: '', version: 'v1', kind: 'Namespace', plural: 'namespaces', namespaced: false },
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name } },
  );
}

async function burst(client: KubeClient, ns: string): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < N) {
        const i = next++;
        await client.apply(CM, {
          apiVersion: 'v1',
          kind: 'ConfigMap',
          metadata: { name: `cm-${i}`, namespace: ns },
          data: { i: String(i) },
        } as ConfigMap);
      }
    }),
  );
}

async function allMarked(client: KubeClient, ns: string, mark: string): Promise<boolean> {
  const items = await client.list<ConfigMap>(CM, ns);
  return items.length === N && items.every((o) => o.metadata.annotations?.['bench/mark'] === mark);
}

interface RunResult {
  ms: number;
  burstMs: number;
  reconciles: number;
  requests: number;
  peakRss: number;
  rssBefore: number;
}

let peakRss = 0;

/** The Manager running before the burst; `cached` = the reconciler reads through manager.cachedClient. */
async function runManager(
  kc: KubeConfig,
  writer: KubeClient,
  checker: KubeClient,
  ns: string,
  cached: boolean,
): Promise<RunResult> {
  await createNamespace(writer, ns);
  const client = new KubeClient(kc, { fieldManager: 'bench-controller' });
  const manager = new Manager({
    source: client,
    log: silentLogger(),
    metrics: createRuntimeMetrics(createRegistry({ defaultMetrics: false })),
    namespace: ns,
    maxConcurrentReconciles: WORKERS,
  });
  const reconciler = new MarkReconciler(cached ? manager.cachedClient(client) : client, ns);
  manager.add({ name: 'bench', forType: CM, reconciler });
  const stop = new AbortController();
  const done = manager.run(stop.signal);
  while (!manager.readiness().ready) await new Promise((r) => setTimeout(r, 20));
  const rssBefore = process.memoryUsage().rss;
  peakRss = rssBefore;
  const requestsBefore = client.rest.totalRequests();
  const t0 = performance.now();
  await burst(writer, ns);
  const burstMs = performance.now() - t0;
  while (!(await allMarked(checker, ns, ns))) await new Promise((r) => setTimeout(r, 100));
  const ms = performance.now() - t0;
  // let the echo events of our own writes settle so the count includes them
  await new Promise((r) => setTimeout(r, 1_000));
  const result = {
    ms,
    burstMs,
    reconciles: reconciler.reconciles,
    requests: client.rest.totalRequests() - requestsBefore,
    peakRss,
    rssBefore,
  };
  stop.abort();
  await done;
  client.rest.close();
  return result;
}

async function main(): Promise<void> {
  const env = await startEnvironment({ handleSignals: true });
  peakRss = process.memoryUsage().rss;
  const rssTimer = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 50);
  try {
    const kc = loadKubeConfig(env.kubeconfigPath);
    const writer = new KubeClient(kc, { fieldManager: 'bench-writer' });
    const checker = new KubeClient(kc, { fieldManager: 'bench-checker' });

    const runtime = await runManager(kc, writer, checker, 'bench-runtime', false);
    const cachedRun = await runManager(kc, writer, checker, 'bench-cached', true);

    // baseline: list once, then 4 concurrent loops doing the same get + apply per object
    await createNamespace(writer, 'bench-baseline');
    await burst(writer, 'bench-baseline');
    const base = new KubeClient(kc, { fieldManager: 'bench-baseline' });
    const baseReconciler = new MarkReconciler(base, 'baseline');
    const t1 = performance.now();
    const items = await base.list(CM, 'bench-baseline');
    let next = 0;
    await Promise.all(
      Array.from({ length: WORKERS }, async () => {
        while (next < items.length) {
          const o = items[next++]!;
          await baseReconciler.reconcile({ namespace: 'bench-baseline', name: o.metadata.name });
        }
      }),
    );
    const baselineMs = performance.now() - t1;
    const baselineRequests = base.rest.totalRequests();

    const cols = (f: (r: RunResult) => string, b: string): string[] => [f(runtime), f(cachedRun), b];
    const rows: [string, ...string[]][] = [
      ['time to all reconciled (ms)', ...cols((r) => r.ms.toFixed(0), baselineMs.toFixed(0))],
      ['  of which applying objects', ...cols((r) => r.burstMs.toFixed(0), '(not timed)')],
      ['ratio to baseline', ...cols((r) => (r.ms / baselineMs).toFixed(2), '1.00')],
      ['reconciles', ...cols((r) => String(r.reconciles), String(baseReconciler.reconciles))],
      [
        'reconciles/s',
        ...cols(
          (r) => ((r.reconciles / r.ms) * 1000).toFixed(1),
          ((baseReconciler.reconciles / baselineMs) * 1000).toFixed(1),
        ),
      ],
      [
        'API requests / object',
        ...cols((r) => (r.requests / N).toFixed(2), (baselineRequests / N).toFixed(2)),
      ],
      [
        'API requests / reconcile',
        ...cols(
          (r) => (r.requests / r.reconciles).toFixed(2),
          (baselineRequests / baseReconciler.reconciles).toFixed(2),
        ),
      ],
      [
        'peak RSS during burst (MiB)',
        ...cols(
          (r) => `${(r.peakRss / 2 ** 20).toFixed(0)} (+${((r.peakRss - r.rssBefore) / 2 ** 20).toFixed(0)})`,
          '',
        ),
      ],
    ];
    console.log(
      `${N} ConfigMaps, ${WORKERS} workers; the runtime reconciles while the objects are being applied; RSS is the whole bench process`,
    );
    console.log(
      ['metric', 'runtime', 'runtime+cached reads', 'baseline loop']
        .map((h, i) => h.padEnd(i === 0 ? 30 : 22))
        .join(''),
    );
    for (const r of rows) console.log(r.map((c, i) => c.padEnd(i === 0 ? 30 : 22)).join(''));
    for (const c of [writer, checker, base]) c.rest.close();
  } finally {
    clearInterval(rssTimer);
    await env.stop();
  }
}

await main();
