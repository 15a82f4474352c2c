// Drives the three reconcilers directly (no manager) against the real apiserver and S3 server, plus a local HTTP
// server that plays the artifact source. `converge()` reconciles every object until nothing changes any more.
import { createHash, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  API_VERSION,
  APP_RESOURCE,
  BUNDLE_RESOURCE,
  CHANNEL_RESOURCE,
  ConditionType,
  FIELD_MANAGER,
  type LiveUpdateApp,
  type LiveUpdateBundle,
  type LiveUpdateChannel,
} from '../../../src/api/v1alpha1/index.js';
import { packDirectory } from '../../../src/bundle/index.js';
import { AppReconciler } from '../../../src/controller/app/reconciler.js';
import { BundleReconciler, type BundleReconcilerOptions } from '../../../src/controller/bundle/reconciler.js';
import { ChannelReconciler } from '../../../src/controller/channel/reconciler.js';
import { findCondition } from '../../../src/controller/common/conditions.js';
import type { Reconciler } from '../../../src/controller/reconciler-interface.js';
import { KubeClient } from '../../../src/kube/client.js';
import { KubeEventRecorder } from '../../../src/kube/events.js';
import type { Condition, KubeObject, ObjectKey, ResourceType } from '../../../src/kube/types.js';
import { silentLogger } from '../../../src/observability/logger.js';
import { S3ObjectStore } from '../../../src/storage/s3-store.js';
import { kubeConfig, testEnvironment } from '../../env/fixtures.js';

/** The demo stack's artifact server (path → zip body), shared by these tests. */
export { ArtifactServer } from '../../../scripts/demo/stack.js';

export interface Harness {
  user: KubeClient;
  controllerClient: KubeClient;
  store: S3ObjectStore;
  storagePrefix: string;
  app: AppReconciler;
  bundle: BundleReconciler;
  channel: ChannelReconciler;
}

/**
 * Fresh clients and reconcilers; pass the `storagePrefix` of another harness to play a restarted controller, and
 * `bundleOptions` for bundle reconciler settings (e.g. the proxy environment).
 */
export function newHarness(
  bucket: string,
  storagePrefix = `it-${randomUUID().slice(0, 8)}`,
  bundleOptions: Pick<BundleReconcilerOptions, 'proxyEnv' | 'sourceSecretLabel'> = {},
): Harness {
  const kc = kubeConfig();
  const controllerClient = new KubeClient(kc, { fieldManager: FIELD_MANAGER });
  const user = new KubeClient(kc, { fieldManager: 'integration-test' });
  const recorder = new KubeEventRecorder(controllerClient, {
    controller: 'liveupdate.dev/controller',
    instance: 'test',
    log: silentLogger(),
  });
  const { s3 } = testEnvironment();
  const store = new S3ObjectStore({
    endpoint: s3.endpoint,
    bucket,
    region: s3.region,
    accessKeyId: s3.accessKey,
    secretAccessKey: s3.secretKey,
  });
  const deps = { client: controllerClient, recorder, store, storagePrefix };
  return {
    user,
    controllerClient,
    store,
    storagePrefix,
    app: new AppReconciler(deps),
    bundle: new BundleReconciler({ ...deps, dependencyRequeueMs: 100, ...bundleOptions }),
    channel: new ChannelReconciler({ ...deps, dependencyRequeueMs: 100 }),
  };
}

function ctx() {
  return { reconcileID: randomUUID(), log: silentLogger(), signal: new AbortController().signal };
}

async function reconcileAll(
  reconciler: Reconciler,
  client: KubeClient,
  type: ResourceType,
  namespace: string,
): Promise<string> {
  const objects = await client.list<KubeObject>(type, namespace);
  const fingerprint: string[] = [];
  for (const obj of objects) {
    const key: ObjectKey = { namespace, name: obj.metadata.name };
    try {
      await reconciler.reconcile(key, ctx());
    } catch {
      // transient: the next round retries, as the work queue would
    }
  }
  for (const obj of await client.list<KubeObject>(type, namespace))
    fingerprint.push(`${obj.metadata.name}@${obj.metadata.resourceVersion}`);
  return fingerprint.join(',');
}

/** Reconciles apps, bundles and channels in rounds until a round changes nothing (at most `rounds`). */
export async function converge(h: Harness, namespace: string, rounds = 12): Promise<void> {
  let previous = '';
  for (let round = 0; round < rounds; round++) {
    const state = [
      await reconcileAll(h.bundle, h.controllerClient, BUNDLE_RESOURCE, namespace),
      await reconcileAll(h.app, h.controllerClient, APP_RESOURCE, namespace),
      await reconcileAll(h.channel, h.controllerClient, CHANNEL_RESOURCE, namespace),
    ].join('|');
    if (state === previous) return;
    previous = state;
  }
}

/** kstatus "Current": Ready=True for the current generation, nothing Reconciling or Stalled. */
export function isCurrent(
  obj: KubeObject & {
    status?: { observedGeneration?: number; conditions?: Condition[] };
  },
): boolean {
  const conditions = obj.status?.conditions;
  return (
    obj.status?.observedGeneration === obj.metadata.generation &&
    findCondition(conditions, ConditionType.Ready)?.status === 'True' &&
    findCondition(conditions, ConditionType.Stalled)?.status !== 'True' &&
    findCondition(conditions, ConditionType.Reconciling)?.status !== 'True'
  );
}

const WEBAPP = fileURLToPath(new URL('../../fixtures/webapp/', import.meta.url));

/** The fixture web app (test/fixtures/webapp) packed into `dir/app.zip`: its bytes and their sha256 (hex). */
export async function packWebapp(dir: string): Promise<{ zip: Buffer; sha256: string }> {
  await packDirectory(WEBAPP, join(dir, 'app.zip'));
  const zip = await readFile(join(dir, 'app.zip'));
  return { zip, sha256: createHash('sha256').update(zip).digest('hex') };
}

export const manifests = {
  /** The Secret holding an app's signing key (`private.pem`), named as the apps of these tests reference it. */
  signingKeySecret(namespace: string, privateKeyPem: string, name = 'demo-key'): KubeObject {
    return {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name, namespace },
      stringData: { 'private.pem': privateKeyPem },
    } as KubeObject;
  },
  app(namespace: string, spec: Partial<LiveUpdateApp['spec']> = {}): LiveUpdateApp {
    return {
      apiVersion: API_VERSION,
      kind: 'LiveUpdateApp',
      metadata: { name: 'demo', namespace },
      spec: { appId: `com.example.it${randomUUID().slice(0, 6)}`, ...spec },
    };
  },
  bundle(
    namespace: string,
    name: string,
    spec: Partial<LiveUpdateBundle['spec']> & Pick<LiveUpdateBundle['spec'], 'version' | 'source'>,
  ): LiveUpdateBundle {
    return {
      apiVersion: API_VERSION,
      kind: 'LiveUpdateBundle',
      metadata: { name, namespace },
      spec: { app: 'demo', ...spec },
    };
  },
  channel(namespace: string, name: string, spec: Partial<LiveUpdateChannel['spec']>): LiveUpdateChannel {
    return {
      apiVersion: API_VERSION,
      kind: 'LiveUpdateChannel',
      metadata: { name, namespace },
      spec: { app: 'demo', bundle: 'builtin', ...spec },
    };
  },
};
