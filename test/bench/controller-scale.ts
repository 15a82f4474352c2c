/**
 * Scale scenario of issue 17 (`npm run bench -- controller-scale`): the real controller and two update-service replicas
 * (scripts/demo/stack.ts: kube-apiserver + etcd + versitygw, the components compiled by tsc as the image runs them)
 * with 500 LiveUpdateApps (BENCH_SCALE_APPS), each with its own signing-key Secret, 2 LiveUpdateChannels
 * (`production`, the app's default, and `beta`, selectable by devices) and 10 LiveUpdateBundles
 * (BENCH_SCALE_BUNDLES_PER_APP) with small distinct zips from the Stack's artifact server.
 *
 * Order: the keys and apps exist before the controller starts, the channels and bundles are created (20 in flight)
 * once it runs, as CI pipelines add them to a running installation. Apps first because a Secret first named after
 * the controller's first Secret poll makes the next poll re-reconcile every object naming it (each bundle of the app;
 * docs/performance.md); that cost is a different measurement from the one here.
 *
 * Part 1, convergence (timed from the first create; readiness from a watch of the three kinds, exact to the event):
 * time until all bundles are Ready, all channels Ready and serving their bundle, all apps Ready; bundle create→Ready
 * p50/p99; controller reconciles, API requests (by method, per bundle), CPU and peak RSS; the release root and the
 * per-app indexes in S3 (count, total, max, p50 bytes); each replica's RSS with no app and after loading every index;
 * and a raw-I/O baseline of the same bundle work done by this process (as controller-bundles does) for the ratio.
 *
 * Part 2, edit → device: BENCH_SCALE_EDITS channel edits (100; one per app, spread over the apps, alternating
 * production and beta) start on an open-loop schedule (mean gap BENCH_SCALE_EDIT_GAP_MS, uniformly jittered so the
 * edits do not line up with the replicas' polls). Each edit runs the real `kubectl apply -f` (BENCH_KUBECTL, default
 * `kubectl` on PATH) of the channel's manifest with another Ready bundle; devices (POST /updates bodies shaped like the
 * plugin's) poll both replicas every 50 ms until each answers the new version. Per edit: apply start → both replicas
 * answer it, split at the moment the release root in S3 (read every 50 ms) announces the app's next revision.
 * The replicas poll the store at the chart's default interval (values.yaml `updateServer.indexPollSeconds`,
 * BENCH_SCALE_POLL_SECONDS overrides) with the chart's default `updateServer.nodeOptions`.
 *
 * All apps live in one namespace unless BENCH_SCALE_NAMESPACES spreads them; the controller then watches exactly
 * those namespaces. The raw-I/O baseline uses another namespace, which it does not watch.
 *
 * Figures only, no assertions; a bundle that stalls, no progress for BENCH_SCALE_STALL_S (180 s), an edit never
 * served or a component that dies fails the run (exit 1) with the evidence. BENCH_TIMEOUT_S bounds each wait
 * (3600 s); BENCH_KEEP_LOGS=1 keeps the logs. Method: docs/adr/0039-edit-to-device-latency.md.
 */
import { spawn } from 'node:child_process';
import { generateKeyPair } from 'node:crypto';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse as parseYaml } from 'yaml';
import {
  API_VERSION,
  APP_RESOURCE,
  BUNDLE_RESOURCE,
  CHANNEL_RESOURCE,
  SECRET_RESOURCE,
  type LiveUpdateApp,
  type LiveUpdateBundle,
  type LiveUpdateChannel,
} from '../../src/api/v1alpha1/index.js';
import { loadSigningKey } from '../../src/bundle/index.js';
import { KubeClient } from '../../src/kube/client.js';
import { loadKubeConfig } from '../../src/kube/config.js';
import { Informer } from '../../src/kube/informer.js';
import type { Condition, KubeObject, ResourceType } from '../../src/kube/types.js';
import { silentLogger } from '../../src/observability/logger.js';
import type { ReleaseRoot } from '../../src/storage/release-index.js';
import { androidBody } from '../../src/updateserver/testing/fixtures.js';
import { deviceId, isReady } from '../../scripts/demo/journey.js';
import { REPO, Stack, type UpdateServerReplica } from '../../scripts/demo/stack.js';
import { bundleManifest, packZips, pool, type BurstZip } from '../env/bundle-burst.js';
import { startEnvironment } from '../env/environment.js';
import {
  CONTROLLERS,
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

const APPS = Number(process.env['BENCH_SCALE_APPS'] ?? 500);
const BUNDLES_PER_APP = Number(process.env['BENCH_SCALE_BUNDLES_PER_APP'] ?? 10);
const EDITS = Math.min(Number(process.env['BENCH_SCALE_EDITS'] ?? 100), APPS);
const EDIT_GAP_MS = Number(process.env['BENCH_SCALE_EDIT_GAP_MS'] ?? 1000);
const TIMEOUT_MS = Number(process.env['BENCH_TIMEOUT_S'] ?? 3600) * 1000;
/** The window over which the idle controller's cost is measured: the chart's telemetry interval. */
const REST_WINDOW_MS = 30_000;
/** Convergence fails when no bundle (once all are Ready: no channel or app) became Ready for this long (BENCH_SCALE_STALL_S). */
const STALL_MS = Number(process.env['BENCH_SCALE_STALL_S'] ?? 180) * 1000;
const KUBECTL = process.env['BENCH_KUBECTL'] ?? 'kubectl';
const IN_FLIGHT = 20;
/** How often devices ask each replica, and this process reads the release root, while an edit is in flight. */
const PROBE_MS = 50;
const REPLICAS = 2;
/**
 * BENCH_SCALE_NAMESPACES (1): the apps spread round-robin over that many namespaces (one per team, say). One namespace
 * is the hardest case for anything that lists a whole namespace.
 */
const NAMESPACE_COUNT = Number(process.env['BENCH_SCALE_NAMESPACES'] ?? 1);
const NAMESPACES: readonly string[] = Array.from({ length: NAMESPACE_COUNT }, (_, i) =>
  NAMESPACE_COUNT === 1 ? 'bench-scale' : `bench-scale-${i}`,
);
const BASELINE_NAMESPACE = 'bench-scale-baseline';
const namespaceOf = (a: number): string => NAMESPACES[a % NAMESPACES.length]!;
const BASELINE_PREFIX = 'bench-baseline/';
/** Every device runs native 1.0.0 with its builtin bundle; the live versions are 1.0.1… */
const NATIVE_VERSION = '1.0.0';

if (BUNDLES_PER_APP < 3)
  throw new Error('BENCH_SCALE_BUNDLES_PER_APP must be at least 3 (2 served + 1 to switch to)');

const appName = (a: number): string => `a${a}`;
const appId = (a: number): string => `dev.liveupdate.scale.a${a}`;
const bundleName = (a: number, b: number): string => `a${a}-b${b}`;
const bundleVersion = (b: number): string => `1.0.${b + 1}`;
const CHANNELS = ['production', 'beta'] as const;
type ChannelKind = (typeof CHANNELS)[number];
const channelName = (a: number, c: ChannelKind): string => `a${a}-${c}`;

/** The channel as its Git repository would hold it; `beta` is the one devices may select themselves. */
function channelManifest(a: number, c: ChannelKind, bundle: number): LiveUpdateChannel {
  return {
    apiVersion: API_VERSION,
    kind: 'LiveUpdateChannel',
    metadata: { name: channelName(a, c), namespace: namespaceOf(a) },
    spec: {
      app: appName(a),
      deviceName: c,
      bundle: bundleName(a, bundle),
      ...(c === 'beta' ? { policy: { allowDeviceSelfSet: true } } : {}),
    },
  };
}

/** The chart's defaults for the update service: index poll interval and NODE_OPTIONS. */
async function chartUpdateServerDefaults(): Promise<{ pollSeconds: number; nodeOptions: string }> {
  const values = parseYaml(await readFile(join(REPO, 'charts/liveupdate-operator/values.yaml'), 'utf8')) as {
    updateServer?: { indexPollSeconds?: number; nodeOptions?: string };
  };
  const pollSeconds = Number(
    process.env['BENCH_SCALE_POLL_SECONDS'] ?? values.updateServer?.indexPollSeconds ?? 5,
  );
  return { pollSeconds, nodeOptions: values.updateServer?.nodeOptions ?? '' };
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

function summary(values: readonly number[]): { p50: number; p90: number; p99: number; max: number } {
  const s = [...values].sort((a, b) => a - b);
  return {
    p50: percentile(s, 50),
    p90: percentile(s, 90),
    p99: percentile(s, 99),
    max: s[s.length - 1] ?? NaN,
  };
}

const secs = (ms: number): string => (ms / 1000).toFixed(2);

/** A small deterministic PRNG (mulberry32): the same edit schedule on every run. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function generatePrivateKeyPem(): Promise<string> {
  return new Promise((resolve, reject) =>
    generateKeyPair(
      'rsa',
      {
        modulusLength: 2048,
        publicKeyEncoding: { type: 'pkcs1', format: 'pem' },
        privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
      },
      (err, _pub, priv) => (err ? reject(err) : resolve(priv)),
    ),
  );
}

/**
 * Follows one kind through a watch and records, per object, when it first satisfied `done` and whether it does now;
 * `onChange` runs after every event (the caller checks its own "all done" condition there).
 */
type Observed = KubeObject & { status?: { conditions?: Condition[] } };

class Progress<T extends Observed> {
  readonly informer: Informer<T>;
  readonly current = new Set<string>();
  readonly firstDone = new Map<string, number>();
  stalled: T | undefined;

  constructor(
    kube: KubeClient,
    type: ResourceType,
    private readonly done: (obj: T) => boolean,
    private readonly onChange: () => void,
  ) {
    this.informer = new Informer<T>({
      type,
      source: kube,
      log: silentLogger(),
      resyncMs: 0,
    });
    const see = (obj: T): void => {
      if (!NAMESPACES.includes(obj.metadata.namespace ?? '')) return;
      const name = obj.metadata.name;
      if (this.done(obj)) {
        this.current.add(name);
        if (!this.firstDone.has(name)) this.firstDone.set(name, performance.now());
      } else this.current.delete(name);
      if (obj.status?.conditions?.some((c) => c.type === 'Stalled' && c.status === 'True'))
        this.stalled ??= obj;
      this.onChange();
    };
    this.informer.addHandlers({
      onAdd: see,
      onUpdate: (_old, obj) => see(obj),
      onDelete: (obj) => this.current.delete(obj.metadata.name),
    });
  }
}

/** Reads the release root from S3 every PROBE_MS while someone waits for an app's revision to pass a mark. */
class RootReader {
  latest = new Map<string, number>();
  private waiters: { app: string; after: number; resolve: (ms: number) => void }[] = [];
  private stopped = false;
  private loop: Promise<void> | undefined;
  reads = 0;

  constructor(private readonly read: () => Promise<ReleaseRoot>) {}

  async refresh(): Promise<void> {
    const root = await this.read();
    this.reads++;
    const t = performance.now();
    this.latest = new Map(root.apps.map((a) => [a.name, a.revision]));
    this.waiters = this.waiters.filter((w) => {
      if ((this.latest.get(w.app) ?? 0) <= w.after) return true;
      w.resolve(t);
      return false;
    });
  }

  start(): void {
    this.loop = (async () => {
      while (!this.stopped) {
        if (this.waiters.length > 0) await this.refresh().catch(() => undefined);
        await sleep(PROBE_MS);
      }
    })();
  }

  /** Resolves with the time of the first read showing the app above `after`. */
  next(app: string, after: number): Promise<number> {
    return new Promise((resolve) => this.waiters.push({ app, after, resolve }));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

/** POST /updates as the plugin sends it, from a device of app `a` on channel `c`; the version it is told to install. */
async function askVersion(
  replica: UpdateServerReplica,
  a: number,
  c: ChannelKind,
  keyId: string,
): Promise<string> {
  const body = androidBody({
    app_id: appId(a),
    device_id: deviceId(a, 'controller-scale'),
    version_build: NATIVE_VERSION,
    version_code: '100',
    version_name: 'builtin',
    defaultChannel: c === 'production' ? '' : c,
    key_id: keyId,
  });
  const res = await fetch(`${replica.publicUrl}/updates`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const answer = (await res.json()) as Record<string, unknown>;
  return typeof answer['version'] === 'string'
    ? answer['version']
    : `${res.status}:${String(answer['error'])}`;
}

/** VmRSS of a process, the median of 3 readings 500 ms apart (a single reading may catch a GC's transient). */
async function settledRss(pid: number): Promise<number> {
  const readings: number[] = [];
  for (let i = 0; i < 3; i++) {
    if (i > 0) await sleep(500);
    readings.push((await procMemory(pid)).rss);
  }
  return readings.sort((a, b) => a - b)[1]!;
}

function runKubectl(args: readonly string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(KUBECTL, [...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, output }));
  });
}

interface EditResult {
  app: number;
  channel: ChannelKind;
  version: string;
  /** From kubectl's start: it exited, the root announced the new revision, each replica answered, both answered. */
  kubectlMs: number;
  rootMs: number;
  replicaMs: number[];
  bothMs: number;
  error?: string;
}

async function main(): Promise<void> {
  const env = await startEnvironment({ handleSignals: true });
  const workDir = await mkdtemp(join(tmpdir(), 'liveupdate-bench-scale-'));
  const logDir = join(workDir, 'logs');
  const stack = new Stack({ env, logDir, namespace: NAMESPACES[0]!, ...controllerEntry() });
  const timers: NodeJS.Timeout[] = [];
  const progresses: { informer: Pick<Informer, 'start' | 'waitForSync' | 'stop'> }[] = [];
  let roots: RootReader | undefined;
  let watcher: KubeClient | undefined;
  let keepWorkDir = process.env['BENCH_KEEP_LOGS'] === '1';
  const nBundles = APPS * BUNDLES_PER_APP;
  const nChannels = APPS * CHANNELS.length;
  try {
    await setUpStack(stack, [...NAMESPACES, BASELINE_NAMESPACE]);
    const kube = stack.kube;

    // keys (distinct per app, generated on libuv's thread pool) and apps, before the controller starts
    const tKeys = performance.now();
    const keyIds: string[] = new Array<string>(APPS);
    await pool(APPS, 8, async (a) => {
      const pem = await generatePrivateKeyPem();
      keyIds[a] = loadSigningKey(pem).keyId;
      await kube.create(SECRET_RESOURCE, {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: `${appName(a)}-signing-key`, namespace: namespaceOf(a) },
        stringData: { 'private.pem': pem },
      } as KubeObject & { stringData: Record<string, string> });
      await kube.create(APP_RESOURCE, {
        apiVersion: API_VERSION,
        kind: 'LiveUpdateApp',
        metadata: { name: appName(a), namespace: namespaceOf(a) },
        spec: {
          appId: appId(a),
          signingKey: { secretName: `${appName(a)}-signing-key`, key: 'private.pem' },
          defaultChannel: channelName(a, 'production'),
          encryptByDefault: true,
        },
      } as LiveUpdateApp);
    });
    const keysMs = performance.now() - tKeys;

    const tPack = performance.now();
    const zips: BurstZip[] = await packZips(nBundles, workDir, 'scale');
    const packMs = performance.now() - tPack;
    for (const z of zips) stack.artifacts.routes.set(z.path, z.body);
    const zipBytes = zips.reduce((s, z) => s + z.body.length, 0);

    // the update-service replicas, as the chart deploys them, before anything is published
    const chart = await chartUpdateServerDefaults();
    const replicaEnv = {
      LIVEUPDATE_INDEX_POLL_SECONDS: String(chart.pollSeconds),
      ...(chart.nodeOptions ? { NODE_OPTIONS: chart.nodeOptions } : {}),
    };
    const replicas: UpdateServerReplica[] = [];
    for (let r = 0; r < REPLICAS; r++)
      replicas.push(await stack.startUpdateServerReplica(`scale-${r}`, { env: replicaEnv }));
    const replicaPids = replicas.map((r) => r.component.child.pid!);
    for (const r of replicas) {
      for (const deadline = Date.now() + 60_000; ; await sleep(200)) {
        if (
          (await fetch(`${r.adminUrl}/readyz`).then(
            (x) => x.status,
            () => 0,
          )) === 200
        )
          break;
        if (Date.now() > deadline) throw new Error(`replica ${r.name} not ready after 60 s`);
      }
    }

    // the Stack's namespace holds the lease; the controller watches the benchmark's namespaces (not the baseline's)
    await stack.startController({ env: { LIVEUPDATE_WATCH_NAMESPACE: NAMESPACES.join(',') } });
    const pid = stack.controller!.child.pid!;
    const adminUrl = stack.controllerAdminUrl;

    // readiness from watches of the three kinds (the bench's own client, not the controller's)
    watcher = new KubeClient(loadKubeConfig(env.kubeconfigPath), { fieldManager: 'bench-watcher' });
    let allDoneAt: number | undefined;
    const bundles = new Progress<LiveUpdateBundle>(watcher, BUNDLE_RESOURCE, isReady, () => check());
    const channels = new Progress<LiveUpdateChannel>(
      watcher,
      CHANNEL_RESOURCE,
      (c) => isReady(c) && c.status?.servingBundle === c.spec.bundle,
      () => check(),
    );
    const apps = new Progress<LiveUpdateApp>(watcher, APP_RESOURCE, isReady, () => check());
    progresses.push(bundles, channels, apps);
    function check(): void {
      if (
        allDoneAt === undefined &&
        bundles.current.size === nBundles &&
        channels.current.size === nChannels &&
        apps.current.size === APPS
      )
        allDoneAt = performance.now();
    }
    for (const p of progresses) p.informer.start();
    await Promise.all(progresses.map((p) => p.informer.waitForSync()));

    await sleep(2_000); // settle after start (apps without channels), then measure
    const before = await scrape(adminUrl);
    const apiBefore = await apiserverRequests(env);
    const cpuBefore = await procCpuSeconds(pid);
    // the replicas have been idle since they started: their RSS with nothing published
    const replicaEmpty = await Promise.all(replicaPids.map((p) => settledRss(p)));
    const replicaCpuBefore = await Promise.all(replicaPids.map((p) => procCpuSeconds(p)));
    const memBefore = await procMemory(pid);
    let peakRss = memBefore.rss;
    timers.push(
      setInterval(() => {
        procMemory(pid).then(
          (m) => (peakRss = Math.max(peakRss, m.rss)),
          () => undefined,
        );
      }, 200),
    );

    // the burst: per app its two channels and its bundles, app after app, 20 creates in flight
    const writer = new KubeClient(loadKubeConfig(env.kubeconfigPath), { fieldManager: 'bench-writer' });
    const perApp = CHANNELS.length + BUNDLES_PER_APP;
    const createdAt = new Map<string, number>();
    const t0 = performance.now();
    await pool(APPS * perApp, IN_FLIGHT, async (i) => {
      const a = Math.floor(i / perApp);
      const j = i % perApp;
      if (j < CHANNELS.length) {
        const manifest = channelManifest(a, CHANNELS[j]!, j);
        // as `kubectl apply` would have created it, so the edits below are ordinary three-way merges
        manifest.metadata.annotations = {
          'kubectl.kubernetes.io/last-applied-configuration': JSON.stringify(manifest),
        };
        await writer.create(CHANNEL_RESOURCE, manifest);
        return;
      }
      const b = j - CHANNELS.length;
      const z = zips[a * BUNDLES_PER_APP + b]!;
      await writer.create(
        BUNDLE_RESOURCE,
        bundleManifest(
          appName(a),
          bundleName(a, b),
          namespaceOf(a),
          bundleVersion(b),
          stack.artifacts.url(z.path),
          z.sha256,
        ),
      );
      createdAt.set(bundleName(a, b), performance.now());
    });
    const createMs = performance.now() - t0;

    let lastReport = 0;
    let lastProgress = { at: 0, count: -1 };
    for (;;) {
      stack.assertRunning();
      const now = performance.now() - t0;
      if (allDoneAt !== undefined) break;
      if (bundles.stalled) {
        const c = bundles.stalled.status?.conditions?.find((x) => x.type === 'Ready');
        throw new Error(`bundle ${bundles.stalled.metadata.name} Stalled: ${c?.reason} ${c?.message}`);
      }
      const state =
        `bundles ${bundles.current.size}/${nBundles} Ready, channels ${channels.current.size}/${nChannels} ` +
        `serving, apps ${apps.current.size}/${APPS} Ready`;
      if (now - lastReport > 30_000) {
        lastReport = now;
        console.log(`  ${(now / 1000).toFixed(0)} s: ${state}`);
      }
      // progress: a bundle became Ready, or once all are, a channel or an app (channels trickle in while bundles stall)
      const count =
        bundles.firstDone.size < nBundles
          ? bundles.firstDone.size
          : nBundles + channels.firstDone.size + apps.firstDone.size;
      if (count !== lastProgress.count) lastProgress = { at: now, count };
      if (now - lastProgress.at > STALL_MS || now > TIMEOUT_MS) {
        const m = await scrape(adminUrl, ['name']);
        const figures = [
          'workqueue_depth|name=liveupdatebundle',
          'workqueue_depth|name=liveupdateapp',
          'workqueue_depth|name=liveupdatechannel',
          'nodejs_eventloop_lag_p99_seconds',
          'nodejs_eventloop_lag_max_seconds',
          'controller_runtime_reconcile_errors_total',
        ].map((k) => `${k} ${m.get(k) ?? '-'}`);
        throw new Error(
          `${now > TIMEOUT_MS ? `not converged after ${TIMEOUT_MS / 1000} s` : `no progress for ${STALL_MS / 1000} s`}: ` +
            `${state}; controller: ${figures.join(', ')}`,
        );
      }
      await sleep(250);
    }
    const lastOf = (p: { firstDone: Map<string, number> }): number => Math.max(...p.firstDone.values()) - t0;
    const bundlesReadyMs = lastOf(bundles);
    const channelsServingMs = lastOf(channels);
    const allReadyMs = allDoneAt - t0;
    const bundleLatency = summary([...bundles.firstDone].map(([name, t]) => t - (createdAt.get(name) ?? t0)));
    const atReady = await scrape(adminUrl);
    const cpuAtReady = await procCpuSeconds(pid);

    // let the work the burst caused drain (index publishing, echo events)
    const { settled, ms: settleMs } = await waitControllerIdle(adminUrl, atReady, 300_000, [
      'liveupdatebundle',
      'liveupdateapp',
    ]);
    const tSettled = performance.now();
    const apiSettled = await apiserverRequests(env);
    const cpuSettled = await procCpuSeconds(pid);
    const memSettled = await procMemory(pid);
    const peakHwm = Math.max(peakRss, memSettled.hwm);

    // the release root and indexes in S3
    const s3 = stack.s3Client();
    const objects: { name: string; size: number }[] = [];
    for await (const o of s3.listObjectsV2(stack.bucket, '', true) as AsyncIterable<{
      name?: string;
      size?: number;
    }>)
      if (o.name) objects.push({ name: o.name, size: o.size ?? 0 });
    const rootObject = objects.find((o) => o.name === 'root.json' || o.name.endsWith('/root.json'));
    const indexSizes = objects
      .filter((o) => o.name.endsWith('/index.json'))
      .map((o) => o.size)
      .sort((a, b) => a - b);
    const bundleObjects = objects.filter((o) => o.name.includes('/bundles/')).length;
    const readRoot = async (): Promise<ReleaseRoot> => {
      const stream = await s3.getObject(stack.bucket, rootObject?.name ?? 'root.json');
      const chunks: Buffer[] = [];
      for await (const c of stream as AsyncIterable<Buffer>) chunks.push(c);
      return JSON.parse(Buffer.concat(chunks).toString('utf8')) as ReleaseRoot;
    };
    const root = await readRoot();

    // both replicas serve every app at the root's revision
    const tServe = performance.now();
    for (const r of replicas) {
      for (;;) {
        stack.assertRunning();
        const m = await scrape(r.adminUrl, ['app_id']);
        const behind = root.apps.filter(
          (e) => (m.get(`liveupdate_index_revision|app_id=${e.appId}`) ?? 0) < e.revision,
        );
        if (behind.length === 0) break;
        if (performance.now() - tServe > 120_000)
          throw new Error(
            `replica ${r.name} still behind the root on ${behind.length} apps after 120 s, e.g. ${behind[0]!.appId}`,
          );
        await sleep(250);
      }
    }
    const replicaLoaded = await Promise.all(replicaPids.map((p) => settledRss(p)));
    const replicaCpuLoaded = await Promise.all(replicaPids.map((p) => procCpuSeconds(p)));

    // what the converged installation costs at rest: one telemetry interval (every Ready channel requeues once in it)
    await sleep(Math.max(0, REST_WINDOW_MS - (performance.now() - tSettled)));

    // part 2: channel edits with kubectl apply, devices polling both replicas
    roots = new RootReader(readRoot);
    await roots.refresh();
    roots.start();
    const rand = random(17);
    const editsBefore = await scrape(adminUrl);
    const apiEditsBefore = await apiserverRequests(env);
    const editCpuBefore = await procCpuSeconds(pid);
    const restMs = performance.now() - tSettled;
    const tEdits = performance.now();
    let startAt = 0;
    const edits = await Promise.all(
      Array.from({ length: EDITS }, async (_, k): Promise<EditResult> => {
        startAt += EDIT_GAP_MS * (0.5 + rand());
        const myStart = startAt;
        const a = Math.floor((k * APPS) / EDITS);
        const c = CHANNELS[k % CHANNELS.length]!;
        const b = CHANNELS.length + (k % (BUNDLES_PER_APP - CHANNELS.length));
        const version = bundleVersion(b);
        const file = join(workDir, `edit-${k}.yaml`);
        await writeFile(file, JSON.stringify(channelManifest(a, c, b)));
        const result: EditResult = {
          app: a,
          channel: c,
          version,
          kubectlMs: NaN,
          rootMs: NaN,
          replicaMs: [],
          bothMs: NaN,
        };
        await sleep(Math.max(0, tEdits + myStart - performance.now())); // the schedule, not a measurement
        const revision = roots!.latest.get(appName(a)) ?? 0;
        const start = performance.now();
        const rootSeen = roots!.next(appName(a), revision).then((t) => (result.rootMs = t - start));
        const applied = runKubectl(['--kubeconfig', env.kubeconfigPath, 'apply', '-f', file]).then((r) => {
          result.kubectlMs = performance.now() - start;
          if (r.code !== 0) throw new Error(`kubectl apply exited ${r.code}: ${r.output.trim()}`);
        });
        const served = replicas.map(async (replica, i) => {
          let last = '';
          for (;;) {
            last = await askVersion(replica, a, c, keyIds[a]!);
            if (last === version) return (result.replicaMs[i] = performance.now() - start);
            if (performance.now() - start > 120_000)
              throw new Error(`replica ${replica.name} still answers ${last} after 120 s`);
            await sleep(PROBE_MS);
          }
        });
        try {
          await Promise.all([applied, ...served]);
          result.bothMs = Math.max(...result.replicaMs);
          await Promise.race([rootSeen, sleep(10_000)]);
        } catch (error) {
          result.error = error instanceof Error ? error.message : String(error);
        }
        return result;
      }),
    );
    const editsMs = performance.now() - tEdits;
    await roots.stop();
    const editsAfter = await scrape(adminUrl);
    const apiEditsAfter = await apiserverRequests(env);
    const editCpu = (await procCpuSeconds(pid)) - editCpuBefore;
    const replicaEnd = await Promise.all(replicaPids.map((p) => procMemory(p)));
    const replicaCpuEnd = await Promise.all(replicaPids.map((p) => procCpuSeconds(p)));

    // baseline: the raw I/O of the bundle work from this process at the same concurrency (GET the zip, PUT an
    // object of the stored size, create the object in a namespace the controller does not watch)
    const sizes = new Map(
      bundles.informer.list().map((b) => [b.metadata.name, b.status?.artifact?.size ?? 0]),
    );
    const baseline = await rawBundleBaseline(
      stack,
      BASELINE_NAMESPACE,
      BASELINE_PREFIX,
      zips.map((zip, i) => {
        const name = bundleName(Math.floor(i / BUNDLES_PER_APP), i % BUNDLES_PER_APP);
        return {
          zip,
          app: appName(Math.floor(i / BUNDLES_PER_APP)),
          name,
          version: bundleVersion(i % BUNDLES_PER_APP),
          storedSize: sizes.get(name) ?? 0,
        };
      }),
      IN_FLIGHT,
    );
    const baselineMs = baseline.ms;
    writer.rest.close();

    // figures
    const failed = edits.filter((e) => e.error !== undefined);
    const ok = edits.filter((e) => e.error === undefined);
    const both = summary(ok.map((e) => e.bothMs));
    const toRoot = summary(ok.filter((e) => !Number.isNaN(e.rootMs)).map((e) => e.rootMs));
    const rootToBoth = summary(ok.filter((e) => !Number.isNaN(e.rootMs)).map((e) => e.bothMs - e.rootMs));
    const kubectlTime = summary(ok.map((e) => e.kubectlMs));
    const firstReplica = summary(ok.map((e) => Math.min(...e.replicaMs)));
    const reconciles = reconcilesByController;
    const byMethod = requestsByMethod;
    // the apiserver counts every client: leave out what this benchmark asked for (its creates; kubectl's discovery,
    // GET and PATCH of the channel) and the long-running LIST/WATCH of every informer
    const fmtResources = (
      after: Map<string, number>,
      base: Map<string, number>,
      own: readonly string[],
    ): string =>
      [...after]
        .map(([k, v]) => [k, v - (base.get(k) ?? 0)] as const)
        .filter(
          ([k, v]) =>
            v > 0 &&
            !own.includes(k) &&
            !/^\S+ (\/|$)/.test(k) &&
            !k.startsWith('WATCH') &&
            !k.startsWith('LIST'),
        )
        .sort(([, a], [, b]) => b - a)
        .slice(0, 8)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ');
    const fmtMethods = (r: Record<string, number>): string =>
      Object.entries(r)
        .map(([m, v]) => `${m} ${v}`)
        .join(', ');
    const reqTotal = delta(settled, before, 'rest_client_requests_total');
    const recTotal = delta(settled, before, 'controller_runtime_reconcile_total');
    const indexTotal = indexSizes.reduce((s, x) => s + x, 0);
    const kib = (b: number): string => (b / 1024).toFixed(1);
    const perReplica = (f: (i: number) => string): string => replicas.map((_, i) => f(i)).join(' / ');

    const rows: [string, string][] = [
      ['bundles created (s)', secs(createMs)],
      ['all bundles Ready (s)', secs(bundlesReadyMs)],
      ['  raw-I/O baseline of the same bundle work (s)', secs(baselineMs)],
      ['  ratio to baseline', (bundlesReadyMs / baselineMs).toFixed(1)],
      [
        '  bundle create → Ready p50 / p99 / max (s)',
        `${secs(bundleLatency.p50)} / ${secs(bundleLatency.p99)} / ${secs(bundleLatency.max)}`,
      ],
      ['all channels serving their bundle (s)', secs(channelsServingMs)],
      ['everything Ready at once (s)', secs(allReadyMs)],
      [`reconciles incl. settling (${secs(settleMs)} s)`, String(recTotal)],
      ['  bundle / app / channel', Object.values(reconciles(settled, before)).join(' / ')],
      [
        '  mean reconcile ms, bundle / app / channel',
        CONTROLLERS.map((c) => meanReconcileMs(settled, before, c)).join(' / '),
      ],
      ['reconcile errors', String(delta(settled, before, 'controller_runtime_reconcile_errors_total'))],
      [
        `at rest (${secs(restMs)} s): reconciles/s b/a/c, requests/s, CPU`,
        `${Object.values(reconciles(editsBefore, settled))
          .map((n) => ((n / restMs) * 1000).toFixed(1))
          .join(
            ' / ',
          )}, ${((delta(editsBefore, settled, 'rest_client_requests_total') / restMs) * 1000).toFixed(1)}, ${(
          (editCpuBefore - cpuSettled) /
          (restMs / 1000)
        ).toFixed(2)}`,
      ],
      [
        'index publishes / root writes',
        `${delta(settled, before, 'liveupdate_release_index_publishes_total')} / ${delta(settled, before, 'liveupdate_root_document_writes_total|result=written')} (conflicts ${delta(settled, before, 'liveupdate_root_document_writes_total|result=conflict')})`,
      ],
      [
        'API requests until all Ready / incl. settling',
        `${delta(atReady, before, 'rest_client_requests_total')} / ${reqTotal}`,
      ],
      ['  by method', fmtMethods(byMethod(settled, before))],
      [
        '  by verb and resource (apiserver)',
        fmtResources(apiSettled, apiBefore, ['POST liveupdatebundles', 'POST liveupdatechannels']),
      ],
      [
        '  per bundle / per reconcile',
        `${(reqTotal / nBundles).toFixed(2)} / ${(reqTotal / recTotal).toFixed(2)}`,
      ],
      [
        'controller CPU until all Ready / incl. settling (s)',
        `${(cpuAtReady - cpuBefore).toFixed(1)} / ${(cpuSettled - cpuBefore).toFixed(1)}`,
      ],
      [
        'controller RSS before / peak (VmHWM) / settled (MiB)',
        `${mib(memBefore.rss)} / ${mib(peakHwm)} / ${mib(memSettled.rss)}`,
      ],
      ['root.json (KiB)', rootObject ? kib(rootObject.size) : 'missing'],
      [`app indexes: count / total (KiB)`, `${indexSizes.length} / ${kib(indexTotal)}`],
      [
        '  p50 / max (KiB)',
        `${kib(percentile(indexSizes, 50))} / ${kib(indexSizes[indexSizes.length - 1] ?? 0)}`,
      ],
      ['bundle objects in S3 (must equal bundles)', `${bundleObjects} / ${nBundles}`],
      [
        `replica RSS, no app → ${APPS} apps loaded (MiB)`,
        perReplica((i) => `${mib(replicaEmpty[i]!)} → ${mib(replicaLoaded[i]!)}`),
      ],
      ['replica peak RSS (VmHWM, MiB) at the end', perReplica((i) => mib(replicaEnd[i]!.hwm))],
      [
        'replica CPU during the burst (s)',
        perReplica((i) => (replicaCpuLoaded[i]! - replicaCpuBefore[i]!).toFixed(1)),
      ],
      [`edits (kubectl apply) served by both replicas`, `${ok.length} / ${EDITS} in ${secs(editsMs)} s`],
      [
        '  apply → both replicas answer p50 / p90 / p99 / max (s)',
        `${secs(both.p50)} / ${secs(both.p90)} / ${secs(both.p99)} / ${secs(both.max)}`,
      ],
      [
        '  apply → root announces the revision p50 / p90 / p99 / max',
        `${secs(toRoot.p50)} / ${secs(toRoot.p90)} / ${secs(toRoot.p99)} / ${secs(toRoot.max)}`,
      ],
      [
        '  root → both replicas answer p50 / p90 / p99 / max',
        `${secs(rootToBoth.p50)} / ${secs(rootToBoth.p90)} / ${secs(rootToBoth.p99)} / ${secs(rootToBoth.max)}`,
      ],
      ['  apply → first replica answers p50 / p99', `${secs(firstReplica.p50)} / ${secs(firstReplica.p99)}`],
      ['  kubectl apply itself p50 / p99', `${secs(kubectlTime.p50)} / ${secs(kubectlTime.p99)}`],
      [
        '  controller: reconciles (bundle/app/channel), API requests',
        `${Object.values(reconciles(editsAfter, editsBefore)).join(' / ')}, ${delta(editsAfter, editsBefore, 'rest_client_requests_total')} (${fmtMethods(byMethod(editsAfter, editsBefore))})`,
      ],
      [
        '  by verb and resource (apiserver)',
        fmtResources(apiEditsAfter, apiEditsBefore, ['GET liveupdatechannels', 'PATCH liveupdatechannels']),
      ],
      ['  controller CPU during the edits (s)', editCpu.toFixed(1)],
      [
        '  replica CPU during the edits (s)',
        perReplica((i) => (replicaCpuEnd[i]! - replicaCpuLoaded[i]!).toFixed(1)),
      ],
    ];
    console.log(
      `${APPS} apps in ${NAMESPACES.length} namespace(s) × (${CHANNELS.length} channels + ${BUNDLES_PER_APP} bundles) = ` +
        `${nChannels} channels, ${nBundles} ` +
        `bundles; zips ${kib(zipBytes / nBundles)} KiB on average; ${IN_FLIGHT} creates in flight; ${REPLICAS} ` +
        `update-service replicas polling every ${chart.pollSeconds} s (NODE_OPTIONS=${chart.nodeOptions || 'none'}); ` +
        `devices and the root read every ${PROBE_MS} ms; ${EDITS} edits, mean gap ${EDIT_GAP_MS} ms. Not timed: ` +
        `keys + apps ${secs(keysMs)} s, zips ${secs(packMs)} s`,
    );
    for (const [k, v] of rows) console.log(`${k.padEnd(64)}${v}`);
    for (const e of failed)
      console.log(`edit FAILED: ${channelName(e.app, e.channel)} → ${e.version}: ${e.error}`);
    console.log(
      JSON.stringify({
        bench: 'controller-scale',
        apps: APPS,
        namespaces: NAMESPACES.length,
        channels: nChannels,
        bundles: nBundles,
        replicas: REPLICAS,
        pollSeconds: chart.pollSeconds,
        createMs: Math.round(createMs),
        bundlesReadyMs: Math.round(bundlesReadyMs),
        channelsServingMs: Math.round(channelsServingMs),
        allReadyMs: Math.round(allReadyMs),
        baselineMs: Math.round(baselineMs),
        bundleCreateToReadyMs: bundleLatency,
        reconciles: reconciles(settled, before),
        apiRequests: reqTotal,
        apiRequestsByMethod: byMethod(settled, before),
        controllerCpuSeconds: Number((cpuSettled - cpuBefore).toFixed(2)),
        controllerPeakRssBytes: peakHwm,
        rootBytes: rootObject?.size ?? 0,
        indexes: {
          count: indexSizes.length,
          totalBytes: indexTotal,
          p50Bytes: percentile(indexSizes, 50),
          maxBytes: indexSizes[indexSizes.length - 1] ?? 0,
        },
        replicaRssEmptyBytes: replicaEmpty,
        replicaRssLoadedBytes: replicaLoaded,
        edits: {
          ok: ok.length,
          failed: failed.length,
          applyToBothMs: both,
          applyToRootMs: toRoot,
          rootToBothMs: rootToBoth,
          kubectlMs: kubectlTime,
        },
        rootReads: roots.reads,
      }),
    );
    if (failed.length > 0) throw new Error(`${failed.length} of ${EDITS} edits never reached both replicas`);
  } catch (err) {
    keepWorkDir = true;
    const tail = await stack.controller?.tail(4000).catch(() => '');
    console.error(`logs: ${logDir}${tail ? `\n--- controller log tail ---\n${tail}` : ''}`);
    throw err;
  } finally {
    for (const t of timers) clearInterval(t);
    await roots?.stop();
    await Promise.all(progresses.map((p) => p.informer.stop()));
    watcher?.rest.close();
    await stopStack(stack, env, { workDir, logDir, keep: keepWorkDir });
  }
}

await main();
