/**
 * What the controller benchmarks read from the processes they run and share between them: Prometheus text from an
 * admin port summed by label (reconciles per controller, API requests per method), a process's memory and CPU time
 * from /proc, the wait for an idle controller, the components' entry point compiled as the image runs it, the
 * raw-I/O baseline of bundle work, and the teardown.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { get as httpsGet } from 'node:https';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { BUNDLE_RESOURCE } from '../../src/api/v1alpha1/index.js';
import { KubeClient } from '../../src/kube/client.js';
import { loadKubeConfig } from '../../src/kube/config.js';
import type { Stack } from '../../scripts/demo/stack.js';
import type { TestEnvironment } from '../env/environment.js';
import { bundleManifest, pool, type BurstZip } from '../env/bundle-burst.js';

/** Sums of every sample of the named metrics in a Prometheus text exposition, by metric and by one label. */
export function parseMetrics(
  text: string,
  labels: readonly string[] = ['controller', 'method', 'code', 'result'],
): Map<string, number> {
  const sums = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(\{([^}]*)\})? ([0-9.eE+-]+)$/.exec(line);
    if (!m) continue;
    const [, name, , labelText, value] = m;
    const v = Number(value);
    sums.set(name!, (sums.get(name!) ?? 0) + v);
    for (const label of labels) {
      const lm = new RegExp(`${label}="([^"]*)"`).exec(labelText ?? '');
      if (lm) sums.set(`${name}|${label}=${lm[1]}`, (sums.get(`${name}|${label}=${lm[1]}`) ?? 0) + v);
    }
  }
  return sums;
}

/** GET `<adminUrl>/metrics`, parsed by {@link parseMetrics}. */
export async function scrape(adminUrl: string, labels?: readonly string[]): Promise<Map<string, number>> {
  const res = await fetch(`${adminUrl}/metrics`);
  if (res.status !== 200) throw new Error(`GET ${adminUrl}/metrics: ${res.status}`);
  return parseMetrics(await res.text(), labels);
}

/** VmHWM (peak) and VmRSS of a process, in bytes. */
export async function procMemory(pid: number): Promise<{ hwm: number; rss: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
  return { hwm: kb('VmHWM') * 1024, rss: kb('VmRSS') * 1024 };
}

/** CPU seconds (user + system) a process has used; /proc/<pid>/stat counts in USER_HZ ticks (100 on Linux). */
export async function procCpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

export const mib = (b: number): string => (b / 2 ** 20).toFixed(0);

/** after[key] - before[key], a missing sample counting as 0. */
export const delta = (after: Map<string, number>, before: Map<string, number>, key: string): number =>
  (after.get(key) ?? 0) - (before.get(key) ?? 0);

/**
 * The components run as the image runs them: JavaScript compiled by tsc (`npm run build` → dist/main.js), not under
 * tsx, whose on-the-fly transform costs CPU and memory production does not have. BENCH_TSX=1 runs src/main.ts under
 * tsx instead (for comparison).
 */
export function controllerEntry(): { compiledMain?: string } {
  if (process.env['BENCH_TSX'] === '1') {
    console.log('components: src/main.ts under tsx (BENCH_TSX=1)');
    return {};
  }
  const repo = fileURLToPath(new URL('../../', import.meta.url));
  const r = spawnSync(
    process.execPath,
    [join(repo, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'],
    {
      cwd: repo,
      stdio: 'inherit',
    },
  );
  if (r.status !== 0) throw new Error('npm run build (tsc -p tsconfig.build.json) failed');
  console.log('components: dist/main.js compiled by tsc (as in the image)');
  return { compiledMain: join(repo, 'dist/main.js') };
}

/**
 * The apiserver's own request counts (apiserver_request_total) by "VERB resource[/subresource]": what was asked for,
 * by kind, whoever asked (the caller leaves out this bench's own requests).
 */
export async function apiserverRequests(env: { apiServerUrl: string; token: string; caFile: string }) {
  const ca = await readFile(env.caFile, 'utf8');
  const text = await new Promise<string>((resolve, reject) => {
    const req = httpsGet(
      `${env.apiServerUrl}/metrics`,
      { ca, headers: { authorization: `Bearer ${env.token}` } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve(body));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
  });
  const counts = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith('apiserver_request_total{')) continue;
    const label = (name: string) => new RegExp(`[{,]${name}="([^"]*)"`).exec(line)?.[1] ?? '';
    const sub = label('subresource');
    const key = `${label('verb')} ${label('resource')}${sub ? `/${sub}` : ''}`;
    counts.set(key, (counts.get(key) ?? 0) + Number(line.split(' ').at(-1)));
  }
  return counts;
}

export const CONTROLLERS = ['liveupdatebundle', 'liveupdateapp', 'liveupdatechannel'] as const;

/** Reconciles between two scrapes of the controller, per controller (bundle, app, channel). */
export function reconcilesByController(
  after: Map<string, number>,
  before: Map<string, number>,
): Record<string, number> {
  return Object.fromEntries(
    CONTROLLERS.map((c) => [c, delta(after, before, `controller_runtime_reconcile_total|controller=${c}`)]),
  );
}

/** API requests between two scrapes of the controller, per HTTP method (methods never used left out). */
export function requestsByMethod(
  after: Map<string, number>,
  before: Map<string, number>,
): Record<string, number> {
  return Object.fromEntries(
    ['GET', 'POST', 'PUT', 'PATCH', 'DELETE']
      .map((m) => [m, delta(after, before, `rest_client_requests_total|method=${m}`)] as const)
      .filter(([, v]) => v > 0),
  );
}

/** Mean reconcile time (ms) of one controller between two scrapes, '-' without reconciles. */
export function meanReconcileMs(
  after: Map<string, number>,
  before: Map<string, number>,
  controller: string,
): string {
  const sum = delta(after, before, `controller_runtime_reconcile_time_seconds_sum|controller=${controller}`);
  const count = delta(
    after,
    before,
    `controller_runtime_reconcile_time_seconds_count|controller=${controller}`,
  );
  return count > 0 ? ((sum / count) * 1000).toFixed(0) : '-';
}

/**
 * Lets the work a burst caused drain (index publishing, echo events): scrapes every second until the controller was
 * idle three times in a row (empty queues, and no active worker and no new reconcile of the given controllers), at
 * most `maxMs`. Ready channels requeue themselves every telemetry interval forever, so a benchmark with many channels
 * names only the bundle and app controllers.
 */
export async function waitControllerIdle(
  adminUrl: string,
  last: Map<string, number>,
  maxMs: number,
  controllers: readonly string[] = CONTROLLERS,
): Promise<{ settled: Map<string, number>; ms: number }> {
  const start = performance.now();
  let settled = last;
  for (let stable = 0; stable < 3 && performance.now() - start < maxMs;) {
    await sleep(1_000);
    const m = await scrape(adminUrl);
    const idle =
      (m.get('workqueue_depth') ?? 0) === 0 &&
      controllers.every(
        (c) =>
          (m.get(`controller_runtime_active_workers|controller=${c}`) ?? 0) === 0 &&
          m.get(`controller_runtime_reconcile_total|controller=${c}`) ===
            settled.get(`controller_runtime_reconcile_total|controller=${c}`),
      );
    stable = idle ? stable + 1 : 0;
    settled = m;
  }
  return { settled, ms: performance.now() - start };
}

/** One bundle of the raw-I/O baseline: its zip, and the object it becomes (in a namespace no controller watches). */
export interface BaselineBundle {
  readonly zip: BurstZip;
  readonly app: string;
  readonly name: string;
  readonly version: string;
  /** Size of the stored (encrypted) object the controller wrote for it; 0 = the zip's size. */
  readonly storedSize: number;
}

/**
 * The raw I/O of the controller's bundle work, done by the benchmark itself at the same concurrency and nothing else:
 * GET each zip from the artifact server, PUT an object of the stored size to S3 (under `prefix`), create the
 * LiveUpdateBundle in `namespace`. Returns its wall time and API requests.
 */
export async function rawBundleBaseline(
  stack: Stack,
  namespace: string,
  prefix: string,
  bundles: readonly BaselineBundle[],
  inFlight: number,
): Promise<{ ms: number; requests: number }> {
  const s3 = stack.s3Client();
  const writer = new KubeClient(loadKubeConfig(stack.options.env.kubeconfigPath), {
    fieldManager: 'bench-baseline',
  });
  try {
    const t = performance.now();
    await pool(bundles.length, inFlight, async (i) => {
      const b = bundles[i]!;
      const res = await fetch(stack.artifacts.url(b.zip.path));
      await res.arrayBuffer();
      const body = randomBytes(b.storedSize || b.zip.body.length);
      await s3.putObject(stack.bucket, `${prefix}${i}`, body, body.length);
      await writer.create(
        BUNDLE_RESOURCE,
        bundleManifest(b.app, b.name, namespace, b.version, stack.artifacts.url(b.zip.path), b.zip.sha256),
      );
    });
    return { ms: performance.now() - t, requests: writer.rest.totalRequests() };
  } finally {
    writer.rest.close();
  }
}

/** The CRDs, the namespaces, the bucket and the artifact server: what the benchmarks need before the components. */
export async function setUpStack(stack: Stack, namespaces: readonly string[]): Promise<void> {
  await stack.installCrds();
  for (const ns of namespaces) await stack.ensureNamespace(ns);
  await stack.createBucket();
  await stack.artifacts.start();
}

/** Stops the stack's processes and the environment, prints how each ended, and removes `workDir` unless kept. */
export async function stopStack(
  stack: Stack,
  env: TestEnvironment,
  dirs: { workDir: string; logDir: string; keep: boolean },
): Promise<void> {
  const stopped = await stack.stop();
  console.log(
    `stopped: ${Object.entries(stopped)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
  );
  await env.stop();
  if (dirs.keep) console.log(`logs kept in ${dirs.logDir}`);
  else await rm(dirs.workDir, { recursive: true, force: true });
}
