// Least privilege as deployed: the chart is installed into the real test apiserver, then the controller runs with
// the token of the chart's controller ServiceAccount (not admin) and the environment the chart gives it, in
// cluster-wide and in namespaced mode (controller.watchNamespaces with two namespaces), and publishes an app that
// devices then get from the update service. The update service runs with S3 credentials of its own, limited by the
// policy the chart renders (<fullname>-s3-policies) applied as a bucket policy on the test's S3 server: it serves
// devices and writes its stats, and cannot write or delete bundles or indexes.
import { jest } from '@jest/globals';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { BucketItem } from 'minio';
import {
  APP_RESOURCE,
  BUNDLE_RESOURCE,
  CHANNEL_RESOURCE,
  SECRET_RESOURCE,
} from '../../../src/api/v1alpha1/index.js';
import { generateSigningKey } from '../../../src/bundle/index.js';
import type { KubeObject } from '../../../src/kube/types.js';
import { FIRST_VERSION, Journey, deviceIds } from '../../../scripts/demo/journey.js';
import { Stack, StepError } from '../../../scripts/demo/stack.js';
import { minioClientFor } from '../../env/environment.js';
import {
  cleanupTestResources,
  newBucket,
  newNamespace,
  s3Client,
  testEnvironment,
  toolBinary,
} from '../../env/fixtures.js';
import {
  chartPath,
  containerEnv,
  findObject,
  helm,
  parseManifests,
  serviceAccountKubeconfig,
} from './chart-helpers.js';

jest.setTimeout(600_000);

const RELEASE = 'liveupdate-operator';
const SA = `${RELEASE}-controller`;
const device = deviceIds(1, 'as-deployed')[0]!;

type Statement = Record<string, unknown>;
type Condition = { type: string; status: string; reason: string };

/** An artifact server that answers 401 unless the request carries `Bearer <token>`. */
async function startTokenSource(
  token: string,
  body: Buffer,
): Promise<{ url: string; stop(): Promise<void> }> {
  const server = createServer((req, res) => {
    if (req.headers.authorization !== `Bearer ${token}`) res.writeHead(401).end();
    else res.writeHead(200, { 'content-type': 'application/zip', 'content-length': body.length }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    stop: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function keys(bucket: string): Promise<string[]> {
  const names: string[] = [];
  for await (const item of s3Client().listObjectsV2(bucket, '', true) as AsyncIterable<BucketItem>)
    names.push(item.name ?? '');
  return names;
}

/** The controller's environment from the installed release, minus what points at the cluster's own services. */
function controllerEnv(manifest: string, releaseNamespace: string): NodeJS.ProcessEnv {
  const { env } = containerEnv(findObject(parseManifests(manifest), 'Deployment', SA));
  const keep = [
    'LIVEUPDATE_LEADER_ELECT',
    'LIVEUPDATE_LEASE_NAME',
    'LIVEUPDATE_WATCH_NAMESPACE',
    'LIVEUPDATE_SOURCE_SECRET_LABEL',
    'LIVEUPDATE_MAX_CONCURRENT_RECONCILES',
  ];
  return {
    ...Object.fromEntries(keep.map((name) => [name, env[name]])),
    LIVEUPDATE_LEASE_NAMESPACE: releaseNamespace,
  };
}

/** A user of the test's S3 server with the update server's policy from the chart, as a bucket policy. */
async function updateServerCredentials(manifest: string, bucket: string) {
  const { s3 } = testEnvironment();
  const accessKey = `us${randomBytes(6).toString('hex')}`;
  const secretKey = randomBytes(18).toString('base64url');
  await promisify(execFile)(toolBinary('versitygw'), [
    'admin',
    '--access',
    s3.accessKey,
    '--secret',
    s3.secretKey,
    '--endpoint-url',
    s3.endpoint,
    'create-user',
    '--access',
    accessKey,
    '--secret',
    secretKey,
    '--role',
    'user',
  ]);
  const policies = findObject(parseManifests(manifest), 'ConfigMap', `${RELEASE}-s3-policies`);
  const policy = JSON.parse((policies['data'] as Record<string, string>)['update-server.json']!) as {
    Statement: Statement[];
  };
  const bucketPolicy = {
    Version: '2012-10-17',
    Statement: policy.Statement.map((s) => ({ ...s, Principal: { AWS: [accessKey] } })),
  };
  await s3Client().setBucketPolicy(bucket, JSON.stringify(bucketPolicy));
  return { accessKey, secretKey };
}

describe.each([
  { mode: 'cluster-wide', scoped: false },
  { mode: 'namespaced', scoped: true },
])('the chart as deployed, $mode', ({ scoped }) => {
  let workDir: string;
  let releaseNamespace: string;
  let appNamespace: string;
  let otherNamespace: string;
  let bucket: string;
  let manifest: string;
  let stack: Stack | undefined;
  let credentials: { accessKey: string; secretKey: string };
  let first: Journey | undefined;

  const withLogs = <T>(fn: () => Promise<T>): Promise<T> => stack!.explainFailures(fn);

  function journey(namespace: string): Journey {
    return new Journey({
      stack: stack!,
      namespace,
      workDir: join(workDir, namespace),
      appId: `com.example.deployed${randomBytes(3).toString('hex')}`,
      waitMs: 90_000,
    });
  }

  beforeAll(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'as-deployed-'));
    releaseNamespace = await newNamespace('deployed');
    appNamespace = await newNamespace('apps');
    otherNamespace = await newNamespace('apps-b');
    bucket = await newBucket('deployed');
    stack = new Stack({
      env: testEnvironment(),
      logDir: join(workDir, 'logs'),
      namespace: appNamespace,
      bucket,
    });
    await stack.installCrds();
    await stack.artifacts.start();
    // --no-hooks: the credentials hook Job would never run without a controller-manager (s3-credentials-hook.test.ts
    // runs its command with its ServiceAccount instead); this test gives each component its credentials itself.
    const values = ['--no-hooks', '--set', 'crds.enabled=false', '--set', `s3.bucket=${bucket}`];
    if (scoped) values.push('--set', `controller.watchNamespaces={${appNamespace},${otherNamespace}}`);
    const install = await helm(['install', RELEASE, chartPath, '--namespace', releaseNamespace, ...values], {
      timeoutMs: 180_000,
    });
    if (install.code !== 0) throw new Error(`helm install failed:\n${install.stderr}`);
    manifest = (await helm(['get', 'manifest', RELEASE, '-n', releaseNamespace])).stdout;
    const kubeconfig = await serviceAccountKubeconfig(SA, releaseNamespace, workDir);
    credentials = await updateServerCredentials(manifest, bucket);
    await stack.explainFailures(async () => {
      await stack!.startController({
        // Referenced Secrets are polled every 2 s here (the chart's default is 30 s) to keep the test short.
        env: {
          KUBECONFIG: kubeconfig,
          ...controllerEnv(manifest, releaseNamespace),
          LIVEUPDATE_SECRET_POLL_SECONDS: '2',
        },
      });
      await stack!.startUpdateServer({
        env: {
          LIVEUPDATE_S3_ACCESS_KEY_ID: credentials.accessKey,
          LIVEUPDATE_S3_SECRET_ACCESS_KEY: credentials.secretKey,
        },
      });
    });
  }, 300_000);

  afterAll(async () => {
    const stopped = stack ? await stack.stop() : {};
    await helm(['uninstall', RELEASE, '--namespace', releaseNamespace]);
    await rm(workDir, { recursive: true, force: true });
    await cleanupTestResources();
    expect(stopped).toEqual({ controller: 'exit code 0', 'update-server': 'exit code 0' });
  }, 120_000);

  it('the controller runs with its ServiceAccount token and the chart environment', () => {
    const env = controllerEnv(manifest, releaseNamespace);
    expect(env['LIVEUPDATE_WATCH_NAMESPACE']).toBe(scoped ? `${appNamespace},${otherNamespace}` : '');
    expect(env['LIVEUPDATE_SOURCE_SECRET_LABEL']).toBe('liveupdate.dev/bundle-source=true');
  });

  it('publishes an app that devices get from the update service', () =>
    withLogs(async () => {
      const j = (first = journey(appNamespace));
      await j.packBuilds([FIRST_VERSION]);
      await j.createResources(FIRST_VERSION);
      await j.waitReady([
        { type: APP_RESOURCE, name: j.appName },
        { type: BUNDLE_RESOURCE, name: j.build(FIRST_VERSION).bundleName },
        { type: CHANNEL_RESOURCE, name: j.channelName },
      ]);
      await j.waitUntilServed([device], 'builtin', (o) => o[0] === FIRST_VERSION, 'the first bundle');
      // A device reports its install: the update service writes the rollup with its own credentials.
      const stats = await fetch(stack!.statsUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ ...j.deviceBody(device, FIRST_VERSION), action: 'set' }),
      });
      expect(stats.status).toBe(200);
    }));

  if (scoped) {
    it('publishes in the second watched namespace too, and leaves an unwatched namespace alone', () =>
      withLogs(async () => {
        const unwatched = await newNamespace('unwatched');
        const ignored = journey(unwatched);
        await ignored.packBuilds([FIRST_VERSION]);
        await ignored.createResources(FIRST_VERSION);
        const j = journey(otherNamespace);
        await j.packBuilds([FIRST_VERSION]);
        await j.createResources(FIRST_VERSION);
        await j.waitReady([
          { type: APP_RESOURCE, name: j.appName },
          { type: BUNDLE_RESOURCE, name: j.build(FIRST_VERSION).bundleName },
        ]);
        // By now the controller has handled everything it watches; the unwatched app was never touched.
        expect((await ignored.app()).status).toBeUndefined();
        expect(await stack!.controller!.tail(200_000)).not.toMatch(/forbidden/i);
      }));
  } else {
    it('sends no Secret that lacks the source label: the bundle stalls with SourceSecretNotAllowed', () =>
      withLogs(async () => {
        await createSecret('database', { username: 'db', password: 'db-password' });
        const name = await createBundle('steal', '9.9.9', {
          http: { url: `${stack!.artifacts.url('/nothing.zip')}`, secretRef: { name: 'database' } },
        });
        const stalled = await untilCondition(name, (c) => c.type === 'Stalled' && c.status === 'True');
        expect(stalled.reason).toBe('SourceSecretNotAllowed');
      }));

    // Recovery without kubectl (docs/adr/0032-recovery-without-kubectl.md): nobody annotates anything below.
    it('a bundle applied before its artifact was uploaded becomes Ready once the source serves it', () =>
      withLogs(async () => {
        const path = `/${first!.appName}/late/web.zip`;
        const name = await createBundle('late', '3.0.0', { http: { url: stack!.artifacts.url(path) } });
        const failed = await untilCondition(name, (c) => c.type === 'FetchFailed' && c.status === 'True');
        expect(failed.reason).toBe('SourceNotFound');
        // The CI upload finishes after the manifest was merged.
        stack!.artifacts.routes.set(path, await readFile(first!.build(FIRST_VERSION).zipPath));
        await untilCondition(name, (c) => c.type === 'Ready' && c.status === 'True');
      }));

    it('a rotated source credential Secret is used without an annotation', () =>
      withLogs(async () => {
        const zip = await readFile(first!.build(FIRST_VERSION).zipPath);
        const source = await startTokenSource('rotated-token', zip);
        try {
          const secretName = 'artifact-token';
          await createSecret(
            secretName,
            { token: 'expired-token' },
            { 'liveupdate.dev/bundle-source': 'true' },
          );
          const name = await createBundle('token', '3.1.0', {
            http: { url: `${source.url}/web.zip`, secretRef: { name: secretName } },
          });
          const stalled = await untilCondition(name, (c) => c.type === 'Stalled' && c.status === 'True');
          expect(stalled.reason).toBe('SourceUnauthorized');
          await stack!.kube.mergePatch(
            SECRET_RESOURCE,
            { namespace: appNamespace, name: secretName },
            { stringData: { token: 'rotated-token' } },
          );
          await untilCondition(name, (c) => c.type === 'Ready' && c.status === 'True');
        } finally {
          await source.stop();
        }
      }));

    it('a rotated signing key is picked up by the app and its bundles without an annotation', () =>
      withLogs(async () => {
        const j = first!;
        const app = await j.app();
        const rotated = generateSigningKey();
        expect(rotated.keyId).not.toBe(app.status?.keyId);
        const ref = app.spec.signingKey!;
        await stack!.kube.mergePatch(
          SECRET_RESOURCE,
          { namespace: appNamespace, name: ref.secretName },
          { stringData: { [ref.key ?? 'private.pem']: rotated.privateKeyPem } },
        );
        for (const deadline = Date.now() + 60_000; ;) {
          const bundle = await stack!.kube.get<KubeObject & { status?: { artifact?: { keyId?: string } } }>(
            BUNDLE_RESOURCE,
            { namespace: appNamespace, name: j.build(FIRST_VERSION).bundleName },
          );
          if (
            (await j.app()).status?.keyId === rotated.keyId &&
            bundle.status?.artifact?.keyId === rotated.keyId
          )
            break;
          if (Date.now() > deadline) throw new StepError('the rotated key was not picked up', 'controller');
          await new Promise((resolve) => setTimeout(resolve, 500));
        }
      }));

    async function createSecret(
      name: string,
      stringData: Record<string, string>,
      labels?: Record<string, string>,
    ) {
      await stack!.kube.create(SECRET_RESOURCE, {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name, namespace: appNamespace, ...(labels ? { labels } : {}) },
        stringData,
      } as never);
    }

    /** A bundle `<app>-<suffix>` of the first journey's app; returns its name. */
    async function createBundle(suffix: string, version: string, source: object): Promise<string> {
      const name = `${first!.appName}-${suffix}`;
      await stack!.kube.create(BUNDLE_RESOURCE, {
        apiVersion: 'liveupdate.dev/v1alpha1',
        kind: 'LiveUpdateBundle',
        metadata: { name, namespace: appNamespace },
        spec: { app: first!.appName, version, source },
      } as never);
      return name;
    }

    /** Polls the bundle until one of its conditions matches (60 s deadline). */
    async function untilCondition(name: string, match: (c: Condition) => boolean): Promise<Condition> {
      for (const deadline = Date.now() + 60_000; ;) {
        const bundle = await stack!.kube.get<KubeObject & { status?: { conditions?: Condition[] } }>(
          BUNDLE_RESOURCE,
          { namespace: appNamespace, name },
        );
        const found = bundle.status?.conditions?.find(match);
        if (found) return found;
        if (Date.now() > deadline)
          throw new StepError(
            `bundle ${name}: no matching condition in ${JSON.stringify(bundle.status?.conditions)}`,
            'controller',
          );
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
  }

  it("the update service's credentials write stats but cannot write or delete bundles and indexes", () =>
    withLogs(async () => {
      const own = minioClientFor({
        ...testEnvironment().s3,
        accessKey: credentials.accessKey,
        secretKey: credentials.secretKey,
      });
      const objects = await keys(bucket);
      const bundleKey = objects.find((key) => key.includes('/bundles/'));
      const indexKey = objects.find((key) => key.endsWith('/index.json'));
      expect([typeof bundleKey, typeof indexKey]).toEqual(['string', 'string']);
      await own.statObject(bucket, bundleKey!); // reads work
      const denied = async (what: string, attempt: Promise<unknown>) =>
        attempt.then(
          () => `${what}: allowed`,
          (error: { code?: string; message?: string }) => `${what}: ${error.code ?? error.message}`,
        );
      expect([
        await denied('overwrite bundle', own.putObject(bucket, bundleKey!, Buffer.from('evil'))),
        await denied('overwrite index', own.putObject(bucket, indexKey!, Buffer.from('{}'))),
        await denied('delete bundle', own.removeObject(bucket, bundleKey!)),
      ]).toEqual([
        'overwrite bundle: AccessDenied',
        'overwrite index: AccessDenied',
        'delete bundle: AccessDenied',
      ]);
      // Its stats rollups (flushed every few seconds after the device checks above) are written all the same.
      for (const deadline = Date.now() + 60_000; ;) {
        if ((await keys(bucket)).some((key) => key.includes('/stats/'))) break;
        if (Date.now() > deadline) throw new StepError('no stats rollup written', 'update-server');
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }));
});
