// The device journey against the real image: the controller and the update service run as podman containers of the
// image built from the Dockerfile (`npm run image`), configured from the rendered chart (scripts/demo/pods.ts): the
// chart's env, args, uid/gid, read-only root, dropped capabilities, limits, /tmp emptyDir and, for the controller, a
// ServiceAccount token bound to the chart's RBAC. Changes are awaited by polling with deadlines, never by timing.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { APP_RESOURCE, BUNDLE_RESOURCE, CHANNEL_RESOURCE } from '../../../src/api/v1alpha1/index.js';
import {
  FIRST_VERSION,
  Journey,
  SECOND_VERSION,
  deviceIds,
  startProcessJourney,
  type ProcessJourney,
} from '../../../scripts/demo/journey.js';
import type { Stack } from '../../../scripts/demo/stack.js';
import { buildah, podmanFlags, run } from '../../../scripts/image/containers.js';
import {
  buildImage,
  imageNodeVersion,
  satisfiesEngines,
  type BuiltImage,
} from '../../../scripts/image/build.js';
import {
  INTEGRATION_TEST_TIMEOUT_MS,
  KUBECTL,
  cleanupTestResources,
  newBucket,
  newNamespace,
  testEnvironment,
  toolBinary,
} from '../../env/fixtures.js';
import { repoRoot } from '../../env/process-utils.js';

/** A cold image build (base, npm ci) takes minutes on 2 cores; CI builds it before the tests (warm: seconds). */
const IMAGE_BUILD_TIMEOUT_MS = 20 * 60_000;
const device = deviceIds(1, 'container-device')[0]!;

let image: BuiltImage;
let started: ProcessJourney | undefined;
let stack: Stack;
let journey: Journey;
let namespace: string;

function podmanExec(container: string, script: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'podman',
      [...podmanFlags(), 'exec', container, 'node', '--input-type=module', '-e', script],
      { encoding: 'utf8' },
      (error, stdout, stderr) => (error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(stdout)),
    );
  });
}

/** Runs a step; a failure carries the end of the component logs that explain it. */
const withLogs = <T>(fn: () => Promise<T>): Promise<T> => started!.withLogs(fn);

beforeAll(async () => {
  image = await buildImage({ repo: repoRoot(), log: () => undefined });
  namespace = await newNamespace('containers');
  started = await startProcessJourney('containers', {
    env: testEnvironment(),
    namespace,
    bucket: await newBucket('containers'),
    run: { controller: 'container', 'update-server': 'container' },
    containers: { image: image.imageId, helm: toolBinary('helm'), kubectl: KUBECTL },
  });
  ({ stack, journey } = started);
  await journey.createKey();
}, IMAGE_BUILD_TIMEOUT_MS);

afterAll(async () => {
  const stopped = started ? await started.stop() : {};
  await cleanupTestResources();
  // Both containers shut down gracefully on SIGTERM (forwarded by `podman run` to node, PID 1).
  expect(stopped).toEqual({ controller: 'exit code 0', 'update-server': 'exit code 0' });
}, INTEGRATION_TEST_TIMEOUT_MS);

describe('device journey against the image, run as the chart configures its Pods', () => {
  it('the image runs the Node of package.json engines and is labelled with the commit it was built from', async () => {
    const { engines, version: packageVersion } = JSON.parse(
      await readFile(join(repoRoot(), 'package.json'), 'utf8'),
    ) as { engines: { node: string }; version: string };
    const version = await imageNodeVersion(image.imageId);
    expect(satisfiesEngines(version, engines.node)).toBe(true);
    expect(image.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    // buildah 1.28's --format has no json function: read the whole inspect document.
    const inspected = JSON.parse(await buildah(['inspect', '--type', 'image', image.imageId])) as {
      OCIv1: { config: { Labels: Record<string, string> } };
    };
    const labels = inspected.OCIv1.config.Labels;
    expect(labels).toMatchObject({
      'org.opencontainers.image.version': packageVersion,
      'org.opencontainers.image.revision': (await run('git', ['-C', repoRoot(), 'rev-parse', 'HEAD'])).trim(),
    });
  });

  it(
    'the controller container runs as 65532 without capabilities, cannot write its code or root, only /tmp',
    async () => {
      const report = JSON.parse(
        await podmanExec(
          stack.controller!.container!,
          `import { readFileSync, writeFileSync } from 'node:fs';
           const status = readFileSync('/proc/1/status', 'utf8');
           const field = (name) => new RegExp('^' + name + ':\\\\s*(\\\\S+)', 'm').exec(status)[1];
           const tryWrite = (path) => { try { writeFileSync(path, 'x'); return 'written'; } catch (e) { return e.code; } };
           console.log(JSON.stringify({ uid: process.getuid(), gid: process.getgid(), capEff: field('CapEff'),
             noNewPrivs: field('NoNewPrivs'), app: tryWrite('/app/x'), root: tryWrite('/x'), tmp: tryWrite('/tmp/x'),
             token: readFileSync('/var/run/secrets/kubernetes.io/serviceaccount/namespace', 'utf8') }));`,
        ),
      ) as Record<string, unknown>;
      expect(report).toEqual({
        uid: 65532,
        gid: 65532,
        capEff: '0000000000000000',
        noNewPrivs: '1',
        app: 'EROFS',
        root: 'EROFS',
        tmp: 'written',
        token: namespace,
      });
    },
    INTEGRATION_TEST_TIMEOUT_MS,
  );

  it(
    'the resources become Ready, a device gets the bundle, the download verifies and decrypts to the packed zip',
    () =>
      withLogs(async () => {
        await journey.createResources(FIRST_VERSION);
        await journey.waitReady([
          { type: APP_RESOURCE, name: journey.appName },
          { type: BUNDLE_RESOURCE, name: journey.build(FIRST_VERSION).bundleName },
          { type: CHANNEL_RESOURCE, name: journey.channelName },
        ]);
        await journey.waitUntilServed([device], 'builtin', (o) => o[0] === FIRST_VERSION, 'the first bundle');
        const answer = await journey.checkUpdate(device, 'builtin');
        expect(answer.status).toBe(200);
        expect(answer.body).toMatchObject({ version: FIRST_VERSION });
        const result = await journey.downloadAndVerify(answer, 'first');
        expect(result.sha256).toBe(journey.build(FIRST_VERSION).sha256);
        expect(
          (await readFile(result.decrypted)).equals(await readFile(journey.build(FIRST_VERSION).zipPath)),
        ).toBe(true);
      }),
    INTEGRATION_TEST_TIMEOUT_MS,
  );

  it(
    'a promotion reaches the device',
    () =>
      withLogs(async () => {
        await journey.createBundle(SECOND_VERSION);
        await journey.waitReady([{ type: BUNDLE_RESOURCE, name: journey.build(SECOND_VERSION).bundleName }]);
        await journey.setChannelBundle(SECOND_VERSION);
        await journey.waitChannelReady();
        await journey.waitUntilServed([device], 'builtin', (o) => o[0] === SECOND_VERSION, 'the promotion');
        expect(Journey.outcome(await journey.checkUpdate(device, SECOND_VERSION))).toBe(
          'up_to_date:no_new_version_available',
        );
      }),
    INTEGRATION_TEST_TIMEOUT_MS,
  );

  it('the controller leads through the chart’s Lease, as its Pod name', async () => {
    const lease = await new Promise<string>((resolve, reject) =>
      execFile(
        KUBECTL,
        ['--kubeconfig', testEnvironment().kubeconfigPath, '-n', namespace, 'get', 'leases', '-o', 'json'],
        { encoding: 'utf8' },
        (error, stdout) => (error ? reject(new Error(error.message)) : resolve(stdout)),
      ),
    );
    const holders = (JSON.parse(lease) as { items: { spec: { holderIdentity?: string } }[] }).items.map(
      (item) => item.spec.holderIdentity,
    );
    expect(holders).toContain(stack.controller!.container);
  });
});
