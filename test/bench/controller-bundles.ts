/**
 * Controller benchmark of issue 4 (`npm run bench -- controller-bundles`): the real controller process (the Stack of
 * scripts/demo: kube-apiserver + etcd + versitygw, CRDs, bucket, namespace, `src/main.ts controller` as a child
 * process configured like the Helm chart) gets N LiveUpdateBundles (default 500, BENCH_BUNDLES) with small distinct
 * zips (test/fixtures/webapp plus one varying file) applied at once, 20 creates in flight, served by the Stack's
 * artifact server. One key Secret and one LiveUpdateApp; no channel (a bundle becomes Ready without one).
 *   - measured: time from the first create until all N are Ready (kstatus Current, listed every second), bundles/s,
 *     reconciles and reconciles/s (controller_runtime_reconcile_total scraped from the controller's /metrics),
 *     API requests in total and per reconcile (rest_client_requests_total), peak controller RSS (VmHWM of the child
 *     in /proc), objects in the bucket at the end and bundle objects (exactly N when builds are idempotent);
 *   - baseline (same run, same servers): this process doing the raw I/O of the same work with the same concurrency,
 *     nothing else: GET each zip from the artifact server, PUT an object of the stored (encrypted) size to S3, create
 *     the LiveUpdateBundle in a namespace the controller does not watch. The ratio shows the controller's overhead
 *     (fetch, validate, encrypt, sign, verify the stored object, status writes, index publishing, queueing).
 * Figures only, no assertions. BENCH_TIMEOUT_S bounds the wait for Ready (default 1200 s).
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  APP_RESOURCE,
  BUNDLE_RESOURCE,
  type LiveUpdateApp,
  type LiveUpdateBundle,
} from '../../src/api/v1alpha1/index.js';
import { KubeClient } from '../../src/kube/client.js';
import { loadKubeConfig } from '../../src/kube/config.js';
import { isReady } from '../../scripts/demo/journey.js';
import { bundleManifest, createSigningApp, packZips, pool } from '../env/bundle-burst.js';
import { Stack } from '../../scripts/demo/stack.js';
import { StorageLayout } from '../../src/storage/layout.js';
import { startEnvironment } from '../env/environment.js';
import {
  controllerEntry,
  delta,
  meanReconcileMs,
  mib,
  procCpuSeconds,
  procMemory,
  rawBundleBaseline,
  reconcilesByController,
  requestsByMethod,
  scrape,
  setUpStack,
  stopStack,
  waitControllerIdle,
  apiserverRequests,
} from './_process-figures.js';

const N = Number(process.env['BENCH_BUNDLES'] ?? 500);
const TIMEOUT_MS = Number(process.env['BENCH_TIMEOUT_S'] ?? 1200) * 1000;
const IN_FLIGHT = 20;
const NAMESPACE = 'bench-bundles';
const BASELINE_NAMESPACE = 'bench-bundles-baseline';
const APP = 'bench-app';
const BASELINE_PREFIX = 'bench-baseline/';

async function main(): Promise<void> {
  const env = await startEnvironment({ handleSignals: true });
  const workDir = await mkdtemp(join(tmpdir(), 'liveupdate-bench-bundles-'));
  const logDir = join(workDir, 'logs');
  const stack = new Stack({ env, logDir, namespace: NAMESPACE, ...controllerEntry() });
  let memTimer: NodeJS.Timeout | undefined;
  // BENCH_KEEP_LOGS=1 keeps the work dir (component logs) after a successful run too.
  let keepWorkDir = process.env['BENCH_KEEP_LOGS'] === '1';
  try {
    await setUpStack(stack, [NAMESPACE, BASELINE_NAMESPACE]);
    const kube = stack.kube;
    // The app and its key exist before the controller starts: a key Secret that appears after the controller's first
    // Secret poll counts as changed at the next poll and re-reconciles every object naming it (every bundle, mid-burst).
    await createSigningApp(kube, NAMESPACE, APP, 'dev.liveupdate.bench');
    // BENCH_CONTROLLER_NODE_OPTIONS reaches the controller process only (not this bench, not tsc), e.g.
    // `--cpu-prof --cpu-prof-dir=/tmp/prof`: the profile is written when the controller exits at the end.
    const nodeOptions = process.env['BENCH_CONTROLLER_NODE_OPTIONS'];
    await stack.startController(nodeOptions === undefined ? {} : { env: { NODE_OPTIONS: nodeOptions } });
    const pid = stack.controller!.child.pid!;
    const adminUrl = stack.controllerAdminUrl;

    // the app Ready before the burst (what is measured is the bundles)
    for (const deadline = Date.now() + 60_000; ;) {
      stack.assertRunning();
      const app = await kube.get<LiveUpdateApp>(APP_RESOURCE, { namespace: NAMESPACE, name: APP });
      if (isReady(app)) break;
      if (Date.now() > deadline) throw new Error(`LiveUpdateApp not Ready: ${JSON.stringify(app.status)}`);
      await sleep(200);
    }

    const tPack = performance.now();
    const zips = await packZips(N, workDir);
    const packMs = performance.now() - tPack;
    for (const z of zips) stack.artifacts.routes.set(z.path, z.body);
    const zipBytes = zips.reduce((s, z) => s + z.body.length, 0);

    // settle, then measure
    await sleep(2_000);
    const before = await scrape(adminUrl);
    const apiBefore = await apiserverRequests(env);
    const memBefore = await procMemory(pid);
    const cpuBefore = await procCpuSeconds(pid);
    let peakRss = memBefore.rss;
    memTimer = setInterval(() => {
      procMemory(pid).then(
        (m) => (peakRss = Math.max(peakRss, m.rss)),
        () => undefined,
      );
    }, 100);

    const writer = new KubeClient(loadKubeConfig(env.kubeconfigPath), { fieldManager: 'bench-writer' });
    const t0 = performance.now();
    await pool(N, IN_FLIGHT, async (i) => {
      const z = zips[i]!;
      await writer.create(
        BUNDLE_RESOURCE,
        bundleManifest(APP, `b-${i}`, NAMESPACE, `1.0.${i + 1}`, stack.artifacts.url(z.path), z.sha256),
      );
    });
    const createMs = performance.now() - t0;

    let readyMs = 0;
    let lastReport = 0;
    let bundles: LiveUpdateBundle[] = [];
    for (;;) {
      stack.assertRunning();
      bundles = await kube.list<LiveUpdateBundle>(BUNDLE_RESOURCE, NAMESPACE);
      const ready = bundles.filter(isReady).length;
      const stalled = bundles.filter((b) =>
        b.status?.conditions?.some((c) => c.type === 'Stalled' && c.status === 'True'),
      );
      const now = performance.now() - t0;
      if (ready === N) {
        readyMs = now;
        break;
      }
      if (now - lastReport > 30_000) {
        lastReport = now;
        console.log(`  ${(now / 1000).toFixed(0)} s: ${ready}/${N} Ready, ${stalled.length} Stalled`);
      }
      if (stalled.length > 0) {
        const c = stalled[0]!.status?.conditions?.find((x) => x.type === 'Ready');
        throw new Error(
          `${stalled.length} bundles Stalled, e.g. ${stalled[0]!.metadata.name}: ${c?.reason} ${c?.message}`,
        );
      }
      if (now > TIMEOUT_MS) throw new Error(`only ${ready}/${N} Ready after ${TIMEOUT_MS / 1000} s`);
      await sleep(1_000);
    }
    const atReady = await scrape(adminUrl);
    const cpuAtReady = await procCpuSeconds(pid);

    // let the work the burst caused drain (index publishing, echo events) for the totals
    const { settled, ms: settleMs } = await waitControllerIdle(adminUrl, atReady, 180_000);
    const apiSettled = await apiserverRequests(env);
    // the controller's requests by verb and resource (this bench's creates and LISTs of bundles left out)
    const byResource = Object.fromEntries(
      [...apiSettled]
        .map(([k, v]) => [k, v - (apiBefore.get(k) ?? 0)] as const)
        .filter(([k, v]) => v > 0 && k !== 'POST liveupdatebundles' && k !== 'LIST liveupdatebundles')
        .sort(([, a], [, b]) => b - a),
    );
    clearInterval(memTimer);
    memTimer = undefined;
    const memEnd = await procMemory(pid);
    const cpuEnd = await procCpuSeconds(pid);
    const peakHwm = Math.max(peakRss, memEnd.hwm);

    const s3 = stack.s3Client();
    const listKeys = async (prefix: string): Promise<{ count: number; bytes: number }> => {
      let count = 0;
      let bytes = 0;
      for await (const o of s3.listObjectsV2(stack.bucket, prefix, true) as AsyncIterable<{
        size?: number;
      }>) {
        count++;
        bytes += o.size ?? 0;
      }
      return { count, bytes };
    };
    const stored = await listKeys('');
    // One object per bundle, never more: a rebuild of a bundle must reuse its object (ADR 0010).
    const bundleObjects = await listKeys(
      `${new StorageLayout().appPrefix({ namespace: NAMESPACE, name: APP })}bundles/`,
    );
    // what one uncached LIST of the namespace's bundles costs the controller (JSON bytes it reads and parses)
    const listBytes = JSON.stringify(await kube.list<LiveUpdateBundle>(BUNDLE_RESOURCE, NAMESPACE)).length;

    // baseline: the same raw I/O with the same concurrency, from this process
    const sizes = new Map(bundles.map((b) => [b.metadata.name, b.status?.artifact?.size ?? 0]));
    const { ms: baselineMs, requests: baselineRequests } = await rawBundleBaseline(
      stack,
      BASELINE_NAMESPACE,
      BASELINE_PREFIX,
      zips.map((zip, i) => ({
        zip,
        app: APP,
        name: `b-${i}`,
        version: `1.0.${i + 1}`,
        storedSize: sizes.get(`b-${i}`) ?? 0,
      })),
      IN_FLIGHT,
    );
    writer.rest.close();

    const recAtReady = delta(atReady, before, 'controller_runtime_reconcile_total');
    const recTotal = delta(settled, before, 'controller_runtime_reconcile_total');
    const reqAtReady = delta(atReady, before, 'rest_client_requests_total');
    const reqTotal = delta(settled, before, 'rest_client_requests_total');
    const perController = (m: Map<string, number>): Record<string, number> =>
      reconcilesByController(m, before);
    const byMethod = requestsByMethod(settled, before);
    const errors = delta(settled, before, 'controller_runtime_reconcile_errors_total');
    const rows: [string, string, string][] = [
      ['time to all Ready (s)', (readyMs / 1000).toFixed(1), (baselineMs / 1000).toFixed(1)],
      ['  of which creating the bundles (s)', (createMs / 1000).toFixed(1), ''],
      ['ratio to baseline', (readyMs / baselineMs).toFixed(1), '1.0'],
      ['bundles/s', ((N / readyMs) * 1000).toFixed(1), ((N / baselineMs) * 1000).toFixed(1)],
      ['reconciles until all Ready', String(recAtReady), ''],
      ['  by controller (bundle/app/channel)', Object.values(perController(atReady)).join(' / '), ''],
      ['reconciles/s until all Ready', ((recAtReady / readyMs) * 1000).toFixed(1), ''],
      [`reconciles incl. settling (${(settleMs / 1000).toFixed(0)} s)`, String(recTotal), ''],
      ['  by controller (bundle/app/channel)', Object.values(perController(settled)).join(' / '), ''],
      ['reconcile errors', String(errors), ''],
      [
        'mean reconcile time, bundle / app (ms)',
        `${meanReconcileMs(settled, before, 'liveupdatebundle')} / ${meanReconcileMs(settled, before, 'liveupdateapp')}`,
        '',
      ],
      ['controller CPU until all Ready (s)', (cpuAtReady - cpuBefore).toFixed(1), ''],
      ['controller CPU incl. settling (s)', (cpuEnd - cpuBefore).toFixed(1), ''],
      ['API requests until all Ready', String(reqAtReady), ''],
      ['API requests incl. settling', String(reqTotal), String(baselineRequests)],
      [
        '  by method',
        Object.entries(byMethod)
          .map(([m, v]) => `${m} ${v}`)
          .join(', '),
        '',
      ],
      [
        '  by verb and resource (apiserver)',
        Object.entries(byResource)
          .map(([k, v]) => `${k} ${v}`)
          .join(', '),
        '',
      ],
      ['API requests / reconcile', (reqTotal / recTotal).toFixed(2), ''],
      ['API requests / bundle', (reqTotal / N).toFixed(2), (baselineRequests / N).toFixed(2)],
      ['controller RSS before burst (MiB)', mib(memBefore.rss), ''],
      ['peak controller RSS (MiB, VmHWM)', mib(peakHwm), ''],
      ['controller RSS at the end (MiB)', mib(memEnd.rss), ''],
      ['objects in the bucket', String(stored.count), String(N)],
      ['bundle objects (must equal N)', String(bundleObjects.count), String(N)],
      ['bytes in the bucket (KiB)', (stored.bytes / 1024).toFixed(0), ''],
      [`one LIST of the ${N} bundles (KiB of JSON)`, (listBytes / 1024).toFixed(0), ''],
    ];
    console.log(
      `${N} LiveUpdateBundles, ${IN_FLIGHT} creates in flight, zips ${(zipBytes / N / 1024).toFixed(1)} KiB on average ` +
        `(packed in ${(packMs / 1000).toFixed(1)} s, not timed); controller = real child process (pid ${pid})`,
    );
    console.log(
      ['metric', 'controller', 'baseline (raw I/O)'].map((h, i) => h.padEnd(i === 0 ? 42 : 24)).join(''),
    );
    for (const r of rows) console.log(r.map((c, i) => c.padEnd(i === 0 ? 42 : 24)).join(''));
    console.log(
      JSON.stringify({
        bench: 'controller-bundles',
        bundles: N,
        inFlight: IN_FLIGHT,
        zipBytesAvg: Math.round(zipBytes / N),
        readyMs: Math.round(readyMs),
        createMs: Math.round(createMs),
        baselineMs: Math.round(baselineMs),
        ratio: Number((readyMs / baselineMs).toFixed(2)),
        bundlesPerSec: Number(((N / readyMs) * 1000).toFixed(2)),
        reconcilesAtReady: recAtReady,
        reconcilesPerSec: Number(((recAtReady / readyMs) * 1000).toFixed(2)),
        reconcilesTotal: recTotal,
        reconcilesByController: perController(settled),
        reconcileErrors: errors,
        meanReconcileMs: {
          liveupdatebundle: Number(meanReconcileMs(settled, before, 'liveupdatebundle')),
          liveupdateapp: Number(meanReconcileMs(settled, before, 'liveupdateapp')),
        },
        controllerCpuSecondsAtReady: Number((cpuAtReady - cpuBefore).toFixed(2)),
        controllerCpuSecondsTotal: Number((cpuEnd - cpuBefore).toFixed(2)),
        apiRequestsAtReady: reqAtReady,
        apiRequestsTotal: reqTotal,
        apiRequestsByMethod: byMethod,
        apiRequestsByResource: byResource,
        apiRequestsPerReconcile: Number((reqTotal / recTotal).toFixed(2)),
        baselineApiRequests: baselineRequests,
        controllerRssBeforeBytes: memBefore.rss,
        controllerPeakRssBytes: peakHwm,
        controllerRssEndBytes: memEnd.rss,
        bucketObjects: stored.count,
        bundleObjects: bundleObjects.count,
        bucketBytes: stored.bytes,
        bundleListJsonBytes: listBytes,
      }),
    );
  } catch (err) {
    keepWorkDir = true;
    const tail = await stack.controller?.tail(4000).catch(() => '');
    console.error(
      `controller log: ${join(logDir, 'controller.log')}${tail ? `\n--- tail ---\n${tail}` : ''}`,
    );
    throw err;
  } finally {
    if (memTimer) clearInterval(memTimer);
    await stopStack(stack, env, { workDir, logDir, keep: keepWorkDir });
  }
}

await main();
