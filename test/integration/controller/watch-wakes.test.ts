// The controller's three reconcilers under the real Manager (informers, work queues, watch mappings) against the real
// apiserver and S3 server, with the reconcilers' own "look again later" timers set an hour out: whatever waits for
// something else is woken by the watches alone (ADR 0040). A channel created before its bundle and app, and a bundle
// created before its app, all become Ready once the app and its key Secret arrive; if the chain of watch mappings were
// broken, one of them would sit waiting for its hour and the wait below would time out (without the bundle
// controller's app watch it does; the channel has two ways to be woken here: its bundle's events and its app's).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  APP_RESOURCE,
  BUNDLE_RESOURCE,
  CHANNEL_RESOURCE,
  ConditionType,
  FIELD_MANAGER,
  SECRET_RESOURCE,
  type LiveUpdateBundle,
  type LiveUpdateChannel,
} from '../../../src/api/v1alpha1/index.js';
import { generateSigningKey } from '../../../src/bundle/index.js';
import { buildControllers } from '../../../src/controller/command.js';
import { findCondition } from '../../../src/controller/common/conditions.js';
import { Manager } from '../../../src/controller/manager.js';
import { KubeEventRecorder } from '../../../src/kube/events.js';
import type { KubeObject, ResourceType } from '../../../src/kube/types.js';
import { silentLogger } from '../../../src/observability/logger.js';
import { createRegistry, createRuntimeMetrics } from '../../../src/observability/metrics.js';
import { cleanupTestResources, newBucket, newNamespace, testEnvironment } from '../../env/fixtures.js';
import { installCrds } from '../api/crds.js';
import { waitFor } from '../kube/helpers.js';
import { ArtifactServer, isCurrent, manifests, newHarness, packWebapp } from './harness.js';

const HOUR_MS = 3_600_000;
const server = new ArtifactServer();
let work: string;
let zipSha: string;

beforeAll(async () => {
  await installCrds();
  await server.start();
  work = await mkdtemp(join(tmpdir(), 'liveupdate-wake-'));
  const { zip, sha256 } = await packWebapp(work);
  zipSha = sha256;
  server.routes.set('/app-1.0.0.zip', zip);
});

afterAll(async () => {
  await server.stop();
  await rm(work, { recursive: true, force: true });
  await cleanupTestResources();
});

it('a channel and a bundle created before what they wait for are woken by the watches, not by their timers', async () => {
  const namespace = await newNamespace('wake');
  const bucket = await newBucket('wake');
  const h = newHarness(bucket);
  const { s3 } = testEnvironment();
  const manager = new Manager({
    source: h.controllerClient,
    log: silentLogger(),
    metrics: createRuntimeMetrics(createRegistry({ defaultMetrics: false })),
    namespace,
    maxConcurrentReconciles: 2,
    shutdownGraceMs: 5_000,
  });
  const recorder = new KubeEventRecorder(h.controllerClient, {
    controller: FIELD_MANAGER,
    instance: 'watch-wakes-test',
    log: silentLogger(),
  });
  for (const spec of buildControllers({
    client: manager.cachedClient(h.controllerClient),
    recorder,
    store: h.store,
    config: {
      s3: {
        endpoint: new URL(s3.endpoint),
        region: s3.region,
        bucket,
        prefix: h.storagePrefix,
        accessKeyId: s3.accessKey,
        secretAccessKey: s3.secretKey,
        caFile: undefined,
        pathStyle: true,
      },
      artifactMaxBytes: 64 * 1024 * 1024,
      fetchTimeoutMs: 30_000,
      sourceSecretLabel: undefined,
      telemetryIntervalMs: HOUR_MS,
      dependencyRequeueMs: HOUR_MS,
    },
  }))
    manager.add(spec);
  const stop = new AbortController();
  const running = manager.run(stop.signal);
  try {
    const condition = async (type: ResourceType, name: string) =>
      findCondition(
        (await h.user.get<KubeObject & { status?: { conditions?: [] } }>(type, { namespace, name })).status
          ?.conditions,
        ConditionType.Ready,
      );

    // The channel first: neither its bundle nor its app exists.
    await h.user.create(
      CHANNEL_RESOURCE,
      manifests.channel(namespace, 'production', { bundle: 'demo-1-0-0' }),
    );
    const channelWaiting = await waitFor('the channel to wait', async () => {
      const ready = await condition(CHANNEL_RESOURCE, 'production');
      return ready?.status === 'False' ? ready.reason : undefined;
    });
    // Then the bundle: its app does not exist yet.
    await h.user.create(
      BUNDLE_RESOURCE,
      manifests.bundle(namespace, 'demo-1-0-0', {
        version: '1.0.0',
        digest: `sha256:${zipSha}`,
        source: { http: { url: server.url('/app-1.0.0.zip') } },
      }),
    );
    const bundleWaiting = await waitFor('the bundle to wait for its app', async () => {
      const ready = await condition(BUNDLE_RESOURCE, 'demo-1-0-0');
      return ready?.status === 'False' ? ready.reason : undefined;
    });
    expect({ channelWaiting, bundleWaiting }).toEqual({
      channelWaiting: expect.stringMatching(/NotFound$/) as unknown,
      bundleWaiting: expect.stringMatching(/^App/) as unknown,
    });

    // Last, the key Secret and the app. Every wait ends through a watch: app → bundle, bundle → channel,
    // channel → app (its index), app → channel (published).
    const signingKey = generateSigningKey();
    await h.user.create(SECRET_RESOURCE, manifests.signingKeySecret(namespace, signingKey.privateKeyPem));
    await h.user.create(APP_RESOURCE, manifests.app(namespace, { signingKey: { secretName: 'demo-key' } }));
    const [bundle, channel] = await waitFor(
      'the bundle and the channel to be Ready',
      async () => {
        const objects = await Promise.all([
          h.user.get<LiveUpdateBundle>(BUNDLE_RESOURCE, { namespace, name: 'demo-1-0-0' }),
          h.user.get<LiveUpdateChannel>(CHANNEL_RESOURCE, { namespace, name: 'production' }),
        ]);
        return objects.every(isCurrent) ? objects : undefined;
      },
      90_000,
    );
    expect(channel.status).toMatchObject({ servingBundle: 'demo-1-0-0', servingVersion: '1.0.0' });
    expect(bundle.status?.artifact?.sha256).toBeDefined();
  } finally {
    stop.abort();
    await running;
    h.user.rest.close();
    h.controllerClient.rest.close();
  }
}, 180_000);
