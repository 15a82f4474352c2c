// `npm run test:cluster`: the chart on a real node. The image built from the Dockerfile is imported into containerd,
// `helm install --wait` deploys the chart (values adapted only where the loopback node forces it:
// test/cluster/hostnet-postrender.ts), the kubelet runs the Pods and their probes, devices reach the update service
// through its Service (test/cluster/service-proxy.ts stands in for kube-proxy and follows the EndpointSlices), the
// device journey runs, the controller's leader Pod is deleted and its replacement takes over, and a rolling upgrade of
// the chart runs while devices keep checking for updates, none of whose requests may fail. Not part of `npm test`
// (docs/adr/0020, docs/adr/0029).
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { APP_RESOURCE, BUNDLE_RESOURCE, CHANNEL_RESOURCE } from '../../src/api/v1alpha1/index.js';
import { FIRST_VERSION, Journey, SECOND_VERSION, deviceIds } from '../../scripts/demo/journey.js';
import { Stack } from '../../scripts/demo/stack.js';
import { buildImage, type BuiltImage } from '../../scripts/image/build.js';
import { run } from '../../scripts/image/containers.js';
import { startEnvironment, type TestEnvironment } from '../env/environment.js';
import { freePort, repoRoot } from '../env/process-utils.js';
import { ensureTool } from '../env/testbin.js';
import type { PostRenderSettings } from './hostnet-postrender.js';
import { NODE_NAME, SingleNodeCluster } from './node.js';
import { ServiceProxy } from './service-proxy.js';

const SETUP_TIMEOUT_MS = 40 * 60_000;
const STEP_TIMEOUT_MS = 5 * 60_000;
const RELEASE = 'lu';
const RELEASE_NAMESPACE = 'liveupdate-system';
const APP_NAMESPACE = 'demo';
const S3_SECRET = 'liveupdate-s3';
const UPDATE_SERVICE = `${RELEASE}-liveupdate-operator-update-server`;
const device = deviceIds(1, 'cluster-device')[0]!;
/** Devices checking during the rolling upgrade: many, each asking rarely, as a fleet does (per-device rate limit). */
const fleet = deviceIds(200, 'cluster-fleet');
const progress = (message: string) => process.stderr.write(`[cluster] ${message}\n`);

let env: TestEnvironment | undefined;
let cluster: SingleNodeCluster | undefined;
let image: BuiltImage;
let work: string;
let helm: string;
let stack: Stack;
let journey: Journey;
let proxy: ServiceProxy;
let postRenderer: string;
/** The loopback ports of the current helm revision (every install/upgrade picks new ones: see hostnet-postrender). */
let ports: RevisionPorts;

interface RevisionPorts {
  readonly update: number;
  readonly updateAdmin: number;
  readonly controllerAdmin: number;
}

interface PodList {
  items: {
    metadata: { name: string; labels: Record<string, string>; deletionTimestamp?: string };
    spec: { nodeName?: string };
    status: { phase: string; containerStatuses?: { ready: boolean; restartCount: number }[] };
  }[];
}

async function pods(component: string): Promise<PodList['items']> {
  const list = JSON.parse(
    await cluster!.kubectl([
      '-n',
      RELEASE_NAMESPACE,
      'get',
      'pods',
      '-l',
      `app.kubernetes.io/component=${component}`,
      '-o',
      'json',
    ]),
  ) as PodList;
  return list.items;
}

async function leaseHolder(): Promise<string | undefined> {
  const lease = JSON.parse(
    await cluster!.kubectl([
      '-n',
      RELEASE_NAMESPACE,
      'get',
      'lease',
      `${RELEASE}-liveupdate-operator-controller`,
      '-o',
      'json',
    ]),
  ) as { spec: { holderIdentity?: string } };
  return lease.spec.holderIdentity;
}

async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 180_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(500);
  }
}

/**
 * `kubectl rollout status` of both Deployments. `helm --wait` alone proves little here: it expects
 * replicas - maxUnavailable ready Pods, and the node forces maxUnavailable 1 with one replica.
 */
async function rolledOut(): Promise<void> {
  for (const component of ['controller', 'update-server']) {
    try {
      await cluster!.kubectl([
        '-n',
        RELEASE_NAMESPACE,
        'rollout',
        'status',
        `deployment/${RELEASE}-liveupdate-operator-${component}`,
        '--timeout=4m',
      ]);
    } catch (error) {
      // What a human would look at: the Pods, their events, the container's last words.
      const diagnostics = await Promise.all([
        cluster!.kubectl(['-n', RELEASE_NAMESPACE, 'get', 'pods', '-o', 'wide']).catch(String),
        cluster!
          .kubectl([
            '-n',
            RELEASE_NAMESPACE,
            'describe',
            'pods',
            '-l',
            `app.kubernetes.io/component=${component}`,
          ])
          .catch(String),
        cluster!.podLogTails(RELEASE_NAMESPACE, `${RELEASE}-liveupdate-operator-${component}-`, 3000),
      ]);
      if (error instanceof Error) error.message = `${error.message}\n${diagnostics.join('\n').slice(-8000)}`;
      throw error;
    }
  }
}

/**
 * What decides where the Service sends devices, for a failure message: the Pods as the kubelet reports them (ready,
 * podIP), the node's addresses, the EndpointSlices as the API server has them, what the proxy's informer holds, and
 * the end of the kube-controller-manager's log (it writes the slices).
 */
async function serviceDiagnostics(): Promise<string> {
  const get = (args: readonly string[]) => cluster!.kubectl(args).catch((error: unknown) => String(error));
  const [podsText, node, slices, kcm] = await Promise.all([
    get([
      '-n',
      RELEASE_NAMESPACE,
      'get',
      'pods',
      '-o',
      'jsonpath={range .items[*]}{.metadata.name} ready={.status.containerStatuses[0].ready} podIP={.status.podIP} hostIP={.status.hostIP} deleting={.metadata.deletionTimestamp}{"\\n"}{end}',
    ]),
    get(['get', 'node', NODE_NAME, '-o', 'jsonpath={.status.addresses}']),
    get(['-n', RELEASE_NAMESPACE, 'get', 'endpointslices', '-o', 'yaml']),
    cluster!.logTail('kube-controller-manager', 3000),
  ]);
  return [
    `Pods:\n${podsText}`,
    `node addresses: ${node}`,
    `the proxy routes to: ${JSON.stringify(proxy.backends())}; its informer holds ${JSON.stringify(proxy.slices())}`,
    `EndpointSlices (API server):\n${slices}`,
    `kube-controller-manager log (end):\n${kcm}`,
  ].join('\n');
}

/**
 * Until the Service routes to exactly the ready update-server Pods: a Pod the kubelet reports ready is in the
 * Service only once the EndpointSlice controller has written it, and a kube-proxy has programmed it; `rollout status`
 * waits for neither. Devices are only sent once they would reach the Pod.
 */
async function serviceRoutesToReadyPods(): Promise<void> {
  const started = Date.now();
  const readyPods = async () =>
    (await pods('update-server'))
      .filter((p) => !p.metadata.deletionTimestamp && p.status.containerStatuses?.[0]?.ready)
      .map((p) => p.metadata.name)
      .sort();
  try {
    await waitFor(
      'the Service to route to the ready update server Pods',
      async () => {
        const ready = await readyPods();
        const routed = proxy.backends().map((b) => b.pod);
        return ready.length > 0 && JSON.stringify(ready) === JSON.stringify(routed) ? true : undefined;
      },
      120_000,
    );
  } catch (error) {
    if (error instanceof Error) error.message = `${error.message}\n${await serviceDiagnostics()}`;
    throw error;
  }
  progress(
    `the Service routed to the ready update server Pod ${Date.now() - started} ms after rollout status`,
  );
}

/** New ports for the next helm revision; the admin URLs the test reads follow them. */
async function nextRevisionPorts(): Promise<RevisionPorts> {
  ports = { update: await freePort(), updateAdmin: await freePort(), controllerAdmin: await freePort() };
  stack.updateAdminUrl = `http://127.0.0.1:${ports.updateAdmin}`;
  stack.controllerAdminUrl = `http://127.0.0.1:${ports.controllerAdmin}`;
  return ports;
}

/** helm with its own home dirs; with `revision`, through the post-renderer with that revision's ports. */
function helmRun(args: readonly string[], revision?: RevisionPorts): Promise<string> {
  const api = new URL(env!.apiServerUrl);
  const settings: PostRenderSettings | undefined = revision && {
    apiServer: { host: api.hostname, port: api.port },
    ports: {
      controller: { admin: ['LIVEUPDATE_ADMIN_ADDR', revision.controllerAdmin] },
      'update-server': {
        http: ['LIVEUPDATE_LISTEN_ADDR', revision.update],
        admin: ['LIVEUPDATE_ADMIN_ADDR', revision.updateAdmin],
      },
    },
  };
  return run(helm, [...args, ...(settings ? ['--post-renderer', postRenderer] : [])], {
    env: {
      ...process.env,
      KUBECONFIG: env!.kubeconfigPath,
      HELM_CACHE_HOME: join(work, 'helm', 'cache'),
      HELM_CONFIG_HOME: join(work, 'helm', 'config'),
      HELM_DATA_HOME: join(work, 'helm', 'data'),
      ...(settings ? { LIVEUPDATE_POSTRENDER: JSON.stringify(settings) } : {}),
    },
  });
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'liveupdate-cluster-'));
  helm = await ensureTool('helm', { progress });
  image = await buildImage({ repo: repoRoot(), log: progress });
  env = await startEnvironment({ progress, serviceAccountAdmission: true });
  cluster = await SingleNodeCluster.start(env, progress);
  await cluster.importImage(image.archive, image.reference);

  stack = new Stack({ env, logDir: join(work, 'logs'), namespace: APP_NAMESPACE });
  await stack.ensureNamespace(RELEASE_NAMESPACE);
  await stack.ensureNamespace(APP_NAMESPACE);
  await stack.createBucket();
  await cluster.kubectl([
    '-n',
    RELEASE_NAMESPACE,
    'create',
    'secret',
    'generic',
    S3_SECRET,
    `--from-literal=accessKeyId=${env.s3.accessKey}`,
    `--from-literal=secretAccessKey=${env.s3.secretKey}`,
  ]);
  // Devices and download URLs go through the update service's Service, as in a cluster.
  proxy = new ServiceProxy({
    kube: stack.kube,
    namespace: RELEASE_NAMESPACE,
    service: UPDATE_SERVICE,
    portName: 'http',
    listenPort: await freePort(),
  });
  await proxy.start();
  stack.publicUrl = `http://127.0.0.1:${proxy.options.listenPort}`;
  await stack.artifacts.start();

  postRenderer = join(work, 'postrender.sh');
  await writeFile(
    postRenderer,
    `#!/bin/sh\nexec "${process.execPath}" --import tsx "${join(repoRoot(), 'test', 'cluster', 'hostnet-postrender.ts')}"\n`,
  );
  await chmod(postRenderer, 0o755);
  const values = {
    image: { pullPolicy: 'Never' },
    s3: {
      mode: 'external',
      bucket: stack.bucket,
      existingSecret: S3_SECRET,
      external: { endpoint: env.s3.endpoint },
    },
    // One replica each: on one host network a second Pod of a Deployment would need the same ports.
    controller: { replicas: 1 },
    updateServer: {
      replicas: 1,
      publicUrl: stack.publicUrl,
      indexPollSeconds: 1,
      autoscaling: { enabled: false },
    },
  };
  await writeFile(join(work, 'values.json'), JSON.stringify(values));
  const started = Date.now();
  await helmRun(
    [
      'install',
      RELEASE,
      join(repoRoot(), 'charts', 'liveupdate-operator'),
      '-n',
      RELEASE_NAMESPACE,
      '-f',
      join(work, 'values.json'),
      '--wait',
      '--timeout',
      '5m',
    ],
    await nextRevisionPorts(),
  );
  await rolledOut();
  progress(`helm install --wait + rollout status took ${Date.now() - started} ms`);
  await serviceRoutesToReadyPods();

  journey = new Journey({
    stack,
    namespace: APP_NAMESPACE,
    workDir: work,
    appId: `com.example.cluster${randomBytes(3).toString('hex')}`,
    waitMs: 90_000,
  });
  await journey.packBuilds([FIRST_VERSION, SECOND_VERSION]);
  await journey.createKey();
}, SETUP_TIMEOUT_MS);

afterAll(async () => {
  if (cluster) {
    await helmRun(['uninstall', RELEASE, '-n', RELEASE_NAMESPACE, '--wait', '--timeout', '2m']).catch(
      (e: unknown) => progress(`helm uninstall: ${String(e)}`),
    );
    await waitFor(
      'the Pods to be gone',
      async () =>
        (await pods('controller')).length + (await pods('update-server')).length === 0 ? true : undefined,
      120_000,
    ).catch(() => undefined);
  }
  await proxy?.stop();
  await stack?.stop();
  await cluster?.stop();
  await env?.stop();
  if (work) await rm(work, { recursive: true, force: true });
}, STEP_TIMEOUT_MS);

describe('the chart on a real single-node cluster', () => {
  it(
    'helm install --wait: both components run on the node as 65532 and pass their probes',
    async () => {
      for (const component of ['controller', 'update-server']) {
        const list = await pods(component);
        expect(list).toHaveLength(1);
        expect(list[0]!.spec.nodeName).toBe(NODE_NAME);
        expect(list[0]!.status.containerStatuses?.[0]?.ready).toBe(true);
      }
      expect((await fetch(`${stack.controllerAdminUrl}/readyz`)).status).toBe(200);
      // The Service routes to the update server Pod: its EndpointSlice says ready, as the kubelet's probe does.
      const [updatePod] = await pods('update-server');
      expect(proxy.backends()).toEqual([{ pod: updatePod!.metadata.name, port: ports.update }]);
      expect((await fetch(`${stack.publicUrl}/healthz`)).status).toBe(200);
    },
    STEP_TIMEOUT_MS,
  );

  it(
    'the journey: resources Ready, a device downloads and verifies the bundle',
    async () => {
      await journey.createResources(FIRST_VERSION);
      await journey.waitReady([
        { type: APP_RESOURCE, name: journey.appName },
        { type: BUNDLE_RESOURCE, name: journey.build(FIRST_VERSION).bundleName },
        { type: CHANNEL_RESOURCE, name: journey.channelName },
      ]);
      await journey.waitUntilServed([device], 'builtin', (o) => o[0] === FIRST_VERSION, 'the first bundle');
      const result = await journey.downloadAndVerify(await journey.checkUpdate(device, 'builtin'), 'first');
      expect(result.sha256).toBe(journey.build(FIRST_VERSION).sha256);
    },
    STEP_TIMEOUT_MS,
  );

  it(
    'leader failover: the leader Pod is deleted, its replacement takes the Lease and publishes',
    async () => {
      const before = (await pods('controller'))[0]!.metadata.name;
      expect(await leaseHolder()).toBe(before);
      await cluster!.kubectl(['-n', RELEASE_NAMESPACE, 'delete', 'pod', before, '--wait=true']);
      const after = await waitFor('a new leader', async () => {
        const holder = await leaseHolder();
        return holder && holder !== before ? holder : undefined;
      });
      expect((await pods('controller')).map((p) => p.metadata.name)).toContain(after);
      await journey.createBundle(SECOND_VERSION);
      await journey.waitReady([{ type: BUNDLE_RESOURCE, name: journey.build(SECOND_VERSION).bundleName }]);
      await journey.setChannelBundle(SECOND_VERSION);
      await journey.waitChannelReady();
      await journey.waitUntilServed([device], 'builtin', (o) => o[0] === SECOND_VERSION, 'the promotion');
    },
    STEP_TIMEOUT_MS,
  );

  it(
    'rolling upgrade of the chart while devices keep checking: no request fails, old and new Pods both answer',
    async () => {
      const oldPods = (await pods('update-server')).map((p) => p.metadata.name);
      proxy.routed.clear();
      let stop = false;
      const outcomes = { ok: 0, failed: new Map<string, number>() };
      let next = 0;
      // A few devices at a time, each running 1.0.1 and expecting the channel's 1.1.0.
      const checking = Array.from({ length: 4 }, async () => {
        while (!stop) {
          const id = fleet[next++ % fleet.length]!;
          const outcome = await journey.checkUpdate(id, FIRST_VERSION).then(
            (a) => (a.status === 200 && a.body['version'] === SECOND_VERSION ? 'ok' : `HTTP ${a.status}`),
            (error: unknown) => String(error).slice(0, 200),
          );
          if (outcome === 'ok') outcomes.ok++;
          else outcomes.failed.set(outcome, (outcomes.failed.get(outcome) ?? 0) + 1);
          await sleep(50);
        }
      });
      const started = Date.now();
      await helmRun(
        [
          'upgrade',
          RELEASE,
          join(repoRoot(), 'charts', 'liveupdate-operator'),
          '-n',
          RELEASE_NAMESPACE,
          '--reuse-values',
          '--set-string',
          'updateServer.podAnnotations.liveupdate\\.dev/rollout=2',
          '--set-string',
          'controller.podAnnotations.liveupdate\\.dev/rollout=2',
          '--wait',
          '--timeout',
          '5m',
        ],
        await nextRevisionPorts(),
      );
      await rolledOut();
      // Until the old Pod has drained and exited: its shutdown is part of what devices live through.
      await waitFor('the old update server Pod to be gone', async () =>
        (await pods('update-server')).some((p) => oldPods.includes(p.metadata.name)) ? undefined : true,
      );
      const upgradeMs = Date.now() - started;
      // More checks, all answered by the new Pod.
      const checked = () => outcomes.ok + total(outcomes.failed);
      const checkedBefore = checked();
      await waitFor('more checks after the upgrade', () =>
        Promise.resolve(checked() - checkedBefore >= 20 ? true : undefined),
      );
      stop = true;
      await Promise.all(checking);
      const failed = total(outcomes.failed);
      progress(
        `rolling upgrade took ${upgradeMs} ms; device checks: ${outcomes.ok} ok, ${failed} failed` +
          (failed ? ` (${[...outcomes.failed].map(([what, n]) => `${n}× ${what}`).join('; ')})` : '') +
          `; connections per Pod:port ${JSON.stringify(Object.fromEntries(proxy.routed))}, refused ${proxy.refused}`,
      );
      if (failed > 0 || proxy.refused > 0)
        progress(`devices were refused or failed:\n${await serviceDiagnostics()}`);
      const newPods = (await pods('update-server')).map((p) => p.metadata.name);
      expect(newPods).toHaveLength(1);
      expect(oldPods).not.toContain(newPods[0]);
      // Both revisions answered devices during the upgrade, and not one request failed.
      const routedTo = [...proxy.routed.keys()].map((key) => key.slice(0, key.lastIndexOf(':')));
      expect(routedTo).toEqual(expect.arrayContaining([...oldPods, newPods[0]]));
      expect(proxy.refused).toBe(0);
      expect(Object.fromEntries(outcomes.failed)).toEqual({});
      expect(outcomes.ok).toBeGreaterThan(0);
    },
    STEP_TIMEOUT_MS,
  );
});

function total(counts: Map<string, number>): number {
  return [...counts.values()].reduce((a, b) => a + b, 0);
}
