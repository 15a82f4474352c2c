// `npm run test:cluster`: the chart on a real node. The image built from the Dockerfile is imported into containerd,
// `helm install --wait` deploys the chart (values adapted only where the loopback node forces it:
// test/cluster/hostnet-postrender.ts), the kubelet runs the Pods and their probes, the device journey runs against
// them, the controller's leader Pod is deleted and its replacement takes over, and a rolling upgrade of the chart runs
// while a device keeps checking for updates. Not part of `npm test` (see docs/adr/0020).
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

const SETUP_TIMEOUT_MS = 40 * 60_000;
const STEP_TIMEOUT_MS = 5 * 60_000;
const RELEASE = 'lu';
const RELEASE_NAMESPACE = 'liveupdate-system';
const APP_NAMESPACE = 'demo';
const S3_SECRET = 'liveupdate-s3';
const device = deviceIds(1, 'cluster-device')[0]!;
const progress = (message: string) => process.stderr.write(`[cluster] ${message}\n`);

let env: TestEnvironment | undefined;
let cluster: SingleNodeCluster | undefined;
let image: BuiltImage;
let work: string;
let helm: string;
let helmEnv: NodeJS.ProcessEnv;
let stack: Stack;
let journey: Journey;
let ports: { update: number; updateAdmin: number; controllerAdmin: number };

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
        cluster!
          .kubectl([
            '-n',
            RELEASE_NAMESPACE,
            'logs',
            '-l',
            `app.kubernetes.io/component=${component}`,
            '--tail=40',
          ])
          .catch(String),
      ]);
      if (error instanceof Error) error.message = `${error.message}\n${diagnostics.join('\n').slice(-8000)}`;
      throw error;
    }
  }
}

function helmRun(args: readonly string[]): Promise<string> {
  return run(helm, args, { env: helmEnv });
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
  ports = { update: await freePort(), updateAdmin: await freePort(), controllerAdmin: await freePort() };
  stack.publicUrl = `http://127.0.0.1:${ports.update}`;
  stack.updateAdminUrl = `http://127.0.0.1:${ports.updateAdmin}`;
  stack.controllerAdminUrl = `http://127.0.0.1:${ports.controllerAdmin}`;
  await stack.artifacts.start();

  const api = new URL(env.apiServerUrl);
  const settings: PostRenderSettings = {
    apiServer: { host: api.hostname, port: api.port },
    ports: {
      controller: { admin: ['LIVEUPDATE_ADMIN_ADDR', ports.controllerAdmin] },
      'update-server': {
        http: ['LIVEUPDATE_LISTEN_ADDR', ports.update],
        admin: ['LIVEUPDATE_ADMIN_ADDR', ports.updateAdmin],
      },
    },
  };
  const postRenderer = join(work, 'postrender.sh');
  await writeFile(
    postRenderer,
    `#!/bin/sh\nexec "${process.execPath}" --import tsx "${join(repoRoot(), 'test', 'cluster', 'hostnet-postrender.ts')}"\n`,
  );
  await chmod(postRenderer, 0o755);
  helmEnv = {
    ...process.env,
    KUBECONFIG: env.kubeconfigPath,
    HELM_CACHE_HOME: join(work, 'helm', 'cache'),
    HELM_CONFIG_HOME: join(work, 'helm', 'config'),
    HELM_DATA_HOME: join(work, 'helm', 'data'),
    LIVEUPDATE_POSTRENDER: JSON.stringify(settings),
  };
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
  await helmRun([
    'install',
    RELEASE,
    join(repoRoot(), 'charts', 'liveupdate-operator'),
    '-n',
    RELEASE_NAMESPACE,
    '-f',
    join(work, 'values.json'),
    '--post-renderer',
    postRenderer,
    '--wait',
    '--timeout',
    '5m',
  ]);
  await rolledOut();
  progress(`helm install --wait + rollout status took ${Date.now() - started} ms`);

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
    'rolling upgrade of the chart while a device keeps checking: the new Pods serve it',
    async () => {
      const oldPods = (await pods('update-server')).map((p) => p.metadata.name);
      let stop = false;
      const outcomes = { ok: 0, failed: 0, firstFailure: '' };
      const checking = (async () => {
        while (!stop) {
          const outcome = await journey.checkUpdate(device, FIRST_VERSION).then(
            (a) => (a.status === 200 && a.body['version'] === SECOND_VERSION ? 'ok' : `HTTP ${a.status}`),
            (error: unknown) => String(error).slice(0, 200),
          );
          if (outcome === 'ok') outcomes.ok++;
          else {
            outcomes.failed++;
            outcomes.firstFailure ||= outcome;
          }
          await sleep(100);
        }
      })();
      const started = Date.now();
      await helmRun([
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
        '--post-renderer',
        join(work, 'postrender.sh'),
        '--wait',
        '--timeout',
        '5m',
      ]);
      await rolledOut();
      const upgradeMs = Date.now() - started;
      // A few more checks against the new Pods.
      await sleep(2000);
      stop = true;
      await checking;
      progress(
        `rolling upgrade took ${upgradeMs} ms; device checks during it: ${outcomes.ok} ok, ${outcomes.failed} failed` +
          (outcomes.failed ? ` (first: ${outcomes.firstFailure})` : ''),
      );
      const newPods = (await pods('update-server')).filter((p) => !p.metadata.deletionTimestamp);
      expect(newPods.map((p) => p.metadata.name).some((n) => oldPods.includes(n))).toBe(false);
      expect(outcomes.ok).toBeGreaterThan(0);
      // The last checks, after the upgrade, were answered by the new Pod.
      const answer = await journey.checkUpdate(device, FIRST_VERSION);
      expect(answer.body).toMatchObject({ version: SECOND_VERSION });
    },
    STEP_TIMEOUT_MS,
  );
});
