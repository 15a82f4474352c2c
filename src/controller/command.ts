/**
 * `liveupdate-operator controller`: parse configuration, build the dependencies (logger, metrics, Kubernetes client,
 * S3 store, event recorder, the three reconcilers), run the manager under leader election beside the admin server,
 * and shut down gracefully when the signal aborts (exit code 0), or with 1 on a fatal error.
 */
import { readFileSync } from 'node:fs';
import {
  APP_RESOURCE,
  BUNDLE_RESOURCE,
  CHANNEL_RESOURCE,
  ConditionType,
  FIELD_MANAGER,
  type LiveUpdateApp,
  type LiveUpdateBundle,
  type LiveUpdateChannel,
} from '../api/v1alpha1/index.js';
import { ConfigError } from '../config/common.js';
import { controllerHelp, loadControllerConfig, type ControllerConfig } from '../config/controller.js';
import { KubeClient } from '../kube/client.js';
import { realClock, sleep } from '../kube/clock.js';
import { loadKubeConfig } from '../kube/config.js';
import { KubeEventRecorder } from '../kube/events.js';
import { KubeLeaseStore, LeaseLostError } from '../kube/leader-election.js';
import { keyOf, type EventRecorder, type KubeObject, type ObjectClient } from '../kube/types.js';
import { AdminServer } from '../observability/admin-server.js';
import { createLogger, type Logger } from '../observability/logger.js';
import {
  PromEventMetrics,
  RestClientMetrics,
  createRegistry,
  createRuntimeMetrics,
} from '../observability/metrics.js';
import type { ObjectStore } from '../storage/object-store.js';
import { S3ObjectStore } from '../storage/s3-store.js';
import { StorageLayout } from '../storage/layout.js';
import { AppReconciler, appKeyForNamedBundle } from './app/reconciler.js';
import { BundleReconciler } from './bundle/reconciler.js';
import { ChannelReconciler, appKeyForChannel, channelKeysForBundle } from './channel/reconciler.js';
import { RootPublisher } from './publishing/root-document.js';
import { FleetTelemetry } from './telemetry/fleet-stats.js';
import { fencedClient, fencedStore } from './fencing.js';
import { Manager, generationChanged, type ControllerSpec } from './manager.js';
import { findCondition } from './common/conditions.js';
import { createControllerDomainMetrics, type ControllerDomainMetrics } from './metrics.js';
import { registerObjectMetrics } from './object-metrics.js';
import { ReferencedSecrets } from './referenced-secrets.js';
import { SecretCache, type SecretReader } from './secret-cache.js';

export interface ControllerDeps {
  client: ObjectClient;
  recorder: EventRecorder;
  store: ObjectStore;
  config: Pick<ControllerConfig, 's3' | 'artifactMaxBytes' | 'fetchTimeoutMs' | 'sourceSecretLabel'> &
    Partial<Pick<ControllerConfig, 'expandedMaxBytes'>> &
    Partial<Pick<ControllerConfig, 'telemetryIntervalMs' | 'gcIntervalMs'>> & {
      /**
       * The first requeue of a bundle or channel waiting for what it depends on (default 10 s; the reconcilers'
       * own safety net, ADR 0040). Tests set it out of reach to show that the watches alone wake them.
       */
      dependencyRequeueMs?: number;
    };
  metrics?: ControllerDomainMetrics;
  /** Root document writer shared by the app reconcilers; built from the store when omitted. */
  root?: RootPublisher;
  /** Where the reconcilers read Secrets (default: the API server through `client`). */
  secrets?: SecretReader;
}

/** How often the leader re-reads the root document and restores entries a racing writer lost. */
export const ROOT_SETTLE_PERIOD_MS = 30_000;

/** The root document writer of a controller process, reporting to its metrics and log. */
export function rootPublisherFor(
  store: ObjectStore,
  storagePrefix: string | undefined,
  opts: { metrics?: ControllerDomainMetrics; log?: Logger } = {},
): RootPublisher {
  return new RootPublisher(store, new StorageLayout(storagePrefix ?? '').rootKey(), {
    ...(opts.metrics ? { onWrite: (r) => opts.metrics!.rootWrite(r) } : {}),
    ...(opts.log ? { log: opts.log } : {}),
  });
}

/** The three controllers and how events of one kind enqueue the others. */
export function buildControllers(deps: ControllerDeps): ControllerSpec[] {
  const { client, recorder, store } = deps;
  const metrics = deps.metrics ? { metrics: deps.metrics } : {};
  const secrets = deps.secrets ? { secrets: deps.secrets } : {};
  const storagePrefix = deps.config.s3.prefix;
  const root = deps.root ?? rootPublisherFor(store, storagePrefix, deps);
  const telemetryIntervalMs = deps.config.telemetryIntervalMs ?? 30_000;
  const dependencyRequeue =
    deps.config.dependencyRequeueMs !== undefined
      ? { dependencyRequeueMs: deps.config.dependencyRequeueMs }
      : {};
  // Half an interval: a channel requeued every interval never reads figures older than that.
  const telemetry = new FleetTelemetry({ store, cacheMs: telemetryIntervalMs / 2 });
  const channelsOfApp = (app: KubeObject, channels: LiveUpdateChannel[]): ReturnType<typeof keyOf>[] =>
    channels.filter((c) => c.spec.app === app.metadata.name).map(keyOf);
  return [
    {
      name: 'liveupdateapp',
      forType: APP_RESOURCE,
      reconciler: new AppReconciler({
        client,
        recorder,
        store,
        storagePrefix,
        root,
        gcIntervalMs: deps.config.gcIntervalMs ?? 0,
        ...metrics,
        ...secrets,
      }),
      watches: [
        { type: CHANNEL_RESOURCE, mapFn: (o) => appKeyForChannel(o as LiveUpdateChannel) },
        {
          type: BUNDLE_RESOURCE,
          mapFn: (o, cache) =>
            appKeyForNamedBundle(
              o as LiveUpdateBundle,
              cache.list<LiveUpdateChannel>(CHANNEL_RESOURCE, o.metadata.namespace),
            ),
        },
      ],
    },
    {
      name: 'liveupdatechannel',
      forType: CHANNEL_RESOURCE,
      reconciler: new ChannelReconciler({
        client,
        recorder,
        storagePrefix,
        telemetry,
        telemetryIntervalMs,
        ...dependencyRequeue,
        ...metrics,
      }),
      watches: [
        {
          type: BUNDLE_RESOURCE,
          mapFn: (o, cache) =>
            channelKeysForBundle(
              o as LiveUpdateBundle,
              cache.list<LiveUpdateChannel>(CHANNEL_RESOURCE, o.metadata.namespace),
            ),
        },
        {
          type: APP_RESOURCE,
          mapFn: (o, cache) =>
            channelsOfApp(o, cache.list<LiveUpdateChannel>(CHANNEL_RESOURCE, o.metadata.namespace)),
        },
      ],
    },
    {
      name: 'liveupdatebundle',
      forType: BUNDLE_RESOURCE,
      reconciler: new BundleReconciler({
        client,
        recorder,
        store,
        storagePrefix,
        maxArtifactBytes: deps.config.artifactMaxBytes,
        ...(deps.config.expandedMaxBytes !== undefined
          ? { maxExpandedBytes: deps.config.expandedMaxBytes }
          : {}),
        maxFetchTimeoutMs: deps.config.fetchTimeoutMs,
        ...(deps.config.sourceSecretLabel ? { sourceSecretLabel: deps.config.sourceSecretLabel } : {}),
        ...dependencyRequeue,
        ...metrics,
        ...secrets,
      }),
      watches: [
        // an app becoming ready (key, storage) unblocks its bundles; its other status writes (every publish) do not
        // concern them and must not cut short a bundle's backoff
        {
          type: APP_RESOURCE,
          updatePredicate: appReadinessChanged,
          mapFn: (o, cache) =>
            cache
              .list<LiveUpdateBundle>(BUNDLE_RESOURCE, o.metadata.namespace)
              .filter((b) => b.spec.app === o.metadata.name)
              .map(keyOf),
        },
        // a channel letting go of a bundle may unblock the bundle's deletion (a spec change, never a status one)
        {
          type: CHANNEL_RESOURCE,
          updatePredicate: generationChanged,
          mapFn: (o) => {
            const ch = o as LiveUpdateChannel;
            const ns = ch.metadata.namespace ?? '';
            const names = [ch.spec.bundle, ch.spec.rollout?.bundle].filter((n): n is string => !!n);
            return names.map((name) => ({ namespace: ns, name }));
          },
        },
      ],
    },
  ];
}

/** What a bundle reads of its app: the spec, and whether the app validated its key and is ready. */
export function appReadinessChanged(oldObj: KubeObject, newObj: KubeObject): boolean {
  if (generationChanged(oldObj, newObj)) return true;
  const statusOf = (obj: KubeObject, type: string) =>
    findCondition((obj as LiveUpdateApp).status?.conditions, type)?.status;
  return [ConditionType.KeyValid, ConditionType.Ready].some(
    (type) => statusOf(oldObj, type) !== statusOf(newObj, type),
  );
}

export async function run(argv: string[], signal: AbortSignal): Promise<number> {
  let config: ControllerConfig | null;
  try {
    config = loadControllerConfig(argv);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`liveupdate-operator controller: ${err.message}\n\n${controllerHelp()}`);
      return 2;
    }
    throw err;
  }
  if (!config) {
    process.stdout.write(controllerHelp());
    return 0;
  }
  const log = createLogger({ level: config.logLevel, name: 'controller' });
  try {
    return await runWithConfig(config, log, signal);
  } catch (err) {
    log.fatal({ err }, 'controller failed');
    return 1;
  }
}

export async function runWithConfig(
  config: ControllerConfig,
  log: Logger,
  signal: AbortSignal,
): Promise<number> {
  const registry = createRegistry();
  const metrics = createRuntimeMetrics(registry);
  const client = new KubeClient(loadKubeConfig(config.kubeconfig), {
    fieldManager: FIELD_MANAGER,
    userAgent: `liveupdate-operator/controller (${config.identity})`,
    onRequest: new RestClientMetrics(registry).observe,
  });
  const store = new S3ObjectStore({
    endpoint: config.s3.endpoint.origin,
    bucket: config.s3.bucket,
    region: config.s3.region,
    pathStyle: config.s3.pathStyle,
    ...(config.s3.accessKeyId !== undefined ? { accessKeyId: config.s3.accessKeyId } : {}),
    ...(config.s3.secretAccessKey !== undefined ? { secretAccessKey: config.s3.secretAccessKey } : {}),
    ...(config.s3.caFile ? { ca: readFileSync(config.s3.caFile, 'utf8') } : {}),
  });
  const recorder = new KubeEventRecorder(client, {
    controller: 'liveupdate.dev/controller',
    instance: config.identity,
    log,
    metrics: new PromEventMetrics(registry),
  });
  const manager = new Manager({
    source: client,
    log,
    metrics,
    namespaces: config.watchNamespaces,
    maxConcurrentReconciles: config.maxConcurrentReconciles,
    shutdownGraceMs: config.shutdownGraceMs,
    ...(config.leaderElection.enabled
      ? {
          leaderElection: {
            identity: config.identity,
            name: config.leaderElection.name,
            store: new KubeLeaseStore(client, config.leaderElection.namespace, config.leaderElection.name),
          },
        }
      : {}),
  });
  const domainMetrics = createControllerDomainMetrics(registry);
  registerObjectMetrics(registry, (type) => manager.cachedObjects(type));
  // Reconcilers read their own kinds from the informer caches (as controller-runtime's default client does): a bundle
  // reconcile no longer LISTs every bundle of the namespace from the API server. Writes and Secrets go to the API.
  // Every write of the reconcilers is fenced by the lease (ADR 0009); reads come from the caches.
  const reads = fencedClient(manager.cachedClient(client), manager);
  const writes = fencedStore(store, manager);
  const root = rootPublisherFor(writes, config.s3.prefix, { metrics: domainMetrics, log });
  // Secrets are read through a cache the Secret poll keeps current (ADR 0037); without the poll, from the API.
  const secretCache =
    config.secretPollMs > 0 ? new SecretCache({ client, maxAgeMs: config.secretPollMs }) : undefined;
  for (const c of buildControllers({
    client: reads,
    recorder,
    store: writes,
    config,
    metrics: domainMetrics,
    root,
    ...(secretCache ? { secrets: secretCache } : {}),
  }))
    manager.add(c);
  manager.addRunnable({ name: 'root-document', run: (s) => root.run(s, ROOT_SETTLE_PERIOD_MS) });
  if (secretCache) {
    manager.addRunnable(
      new ReferencedSecrets({
        cache: secretCache,
        objects: (type) => manager.cachedObjects(type),
        enqueue: (controller, key) => manager.enqueue(controller, key),
        log,
        periodMs: config.secretPollMs,
      }),
    );
  }

  const admin = new AdminServer({
    host: config.adminAddr.host,
    port: config.adminAddr.port,
    registry,
    log,
    liveness: [
      {
        name: 'leader-election',
        check: () =>
          manager.healthy() ? { ok: true } : { ok: false, reason: 'leader lease not renewed in time' },
      },
    ],
    readiness: [
      {
        name: 'manager',
        check: () => {
          const r = manager.readiness();
          return { ok: r.ready, reason: r.reason };
        },
      },
    ],
  });
  await admin.start();
  signal.addEventListener('abort', () => admin.markShuttingDown(), { once: true });
  log.info(
    {
      identity: config.identity,
      leaderElection: config.leaderElection.enabled
        ? `${config.leaderElection.namespace}/${config.leaderElection.name}`
        : false,
      watchNamespaces: config.watchNamespaces.length > 0 ? config.watchNamespaces : '(all)',
      maxConcurrentReconciles: config.maxConcurrentReconciles,
    },
    'controller starting',
  );
  const bucketReady = ensureBucketUntilDone(store, log, signal);
  try {
    try {
      await manager.run(signal);
    } catch (err) {
      if (!(err instanceof LeaseLostError)) throw err;
      // controller-runtime's behaviour: never campaign again in a process that lost its lease; the pod restarts.
      log.error('leader election lost: exiting so that this replica restarts as a standby');
      return 1;
    }
    await recorder.flush();
    await bucketReady;
  } finally {
    await admin.close();
    client.rest.close();
  }
  log.info('controller stopped');
  return 0;
}

/**
 * Creates the store's bucket when it is missing, retrying while the store is unreachable (reconciles that need it
 * meanwhile fail as transient and are retried with backoff). Gives up quietly on shutdown.
 */
async function ensureBucketUntilDone(store: S3ObjectStore, log: Logger, signal: AbortSignal): Promise<void> {
  for (let delayMs = 1_000; !signal.aborted; delayMs = Math.min(delayMs * 2, 60_000)) {
    try {
      if (await store.ensureBucket(signal)) log.info({ bucket: store.bucket }, 'created the store bucket');
      return;
    } catch (err) {
      if (signal.aborted) return;
      log.warn({ err, bucket: store.bucket, retryInMs: delayMs }, 'cannot ensure the store bucket exists');
      await sleep(realClock, delayMs, signal).catch(() => undefined);
    }
  }
}
