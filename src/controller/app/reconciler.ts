/**
 * LiveUpdateApp reconciler: appId uniqueness → signing key (public key and key_id into status) → release index
 * (render from the app's channels and Ready bundles, validate, check referenced objects, write, update the root).
 * Deletion removes the index and the root entry; the bundles' own finalizers remove their objects.
 */
import {
  APP_RESOURCE,
  BUNDLE_RESOURCE,
  CHANNEL_RESOURCE,
  ConditionType,
  Reason,
  type LiveUpdateApp,
  type LiveUpdateAppStatus,
  type LiveUpdateBundle,
  type LiveUpdateChannel,
} from '../../api/v1alpha1/index.js';
import { keyOf, type EventRecorder, type ObjectClient, type ObjectKey } from '../../kube/types.js';
import { StorageLayout } from '../../storage/layout.js';
import {
  ObjectNotFoundError,
  PreconditionFailedError,
  StoreUnavailableError,
  type ObjectStore,
} from '../../storage/object-store.js';
import type { IndexManifestEntry, ReleaseIndex } from '../../storage/release-index.js';
import { ReleaseIndexValidationError } from '../../storage/release-index-schema.js';
import { IndexConsistencyError, compileIndex } from '../../updateserver/compiled-index.js';
import { removeCondition, rfc3339, setCondition } from '../common/conditions.js';
import { StallingError, TransientError, WaitingError } from '../common/errors.js';
import { listWhere } from '../common/list.js';
import {
  reconcileObject,
  type KindSteps,
  type StepContext,
  type StepsResult,
} from '../common/reconcile-object.js';
import { parseDuration } from '../common/duration.js';
import { layoutForApp } from '../common/layout.js';
import { collectGarbage } from '../gc/collect.js';
import { readSigningKey } from '../common/secrets.js';
import { directSecrets, secretReaderId, type SecretReader } from '../secret-cache.js';
import type { ControllerDomainMetrics } from '../metrics.js';
import type { ReconcileContext, ReconcileResult, Reconciler } from '../reconciler-interface.js';
import { DocumentUnreadableError } from '../publishing/documents.js';
import {
  MissingObjectError,
  publishIndex,
  readIndex,
  type PublishResult,
} from '../publishing/index-document.js';
import { bundlesNamedByChannels, isServable, renderIndex, type RenderedIndex } from '../publishing/render.js';
import {
  RootConflictError,
  RootDocumentUnreadableError,
  RootPublisher,
} from '../publishing/root-document.js';

export interface AppReconcilerOptions {
  client: ObjectClient;
  recorder: EventRecorder;
  store: ObjectStore;
  /** The operator's storage prefix; an app's spec.storage.prefix replaces it for that app's objects. */
  storagePrefix?: string;
  /** Shared by every app reconciler of the process (root document writes are serialized through it). */
  root?: RootPublisher;
  metrics?: ControllerDomainMetrics;
  now?: () => Date;
  /** Garbage collection period per app (ADR 0017); 0 or absent disables it. */
  gcIntervalMs?: number;
  /** Floor of the GC grace period (default 10 minutes); tests lower it. */
  gcMinGraceMs?: number;
  /** Where Secrets are read (default: the API server through `client`, no cache). */
  secrets?: SecretReader;
}

const MAX_MANIFEST_BYTES = 32 * 1024 * 1024;
/** Attempts to publish the index when another writer changed it in between (each one reads it again). */
const MAX_INDEX_ATTEMPTS = 4;
/** An app that cannot be published yet looks again after this long (channel and bundle events come sooner). */
const UNPUBLISHABLE_REQUEUE_MS = 5 * 60_000;

function creationOrder(a: LiveUpdateApp, b: LiveUpdateApp): number {
  const ta = a.metadata.creationTimestamp ?? '';
  const tb = b.metadata.creationTimestamp ?? '';
  if (ta !== tb) return ta < tb ? -1 : 1;
  return `${a.metadata.namespace}/${a.metadata.name}`.localeCompare(
    `${b.metadata.namespace}/${b.metadata.name}`,
  );
}

/**
 * The app whose index may list the bundle, when one of the app's channels names it: other bundle events cannot change
 * what the app publishes (with 5,000 bundles in one app, each one's status writes enqueued the app).
 */
export function appKeyForNamedBundle(
  bundle: LiveUpdateBundle,
  channels: readonly LiveUpdateChannel[],
): ObjectKey | undefined {
  if (!bundlesNamedByChannels(channels, bundle.spec.app).has(bundle.metadata.name)) return undefined;
  return { namespace: bundle.metadata.namespace ?? '', name: bundle.spec.app };
}

export class AppReconciler implements Reconciler, KindSteps<LiveUpdateApp, LiveUpdateAppStatus> {
  readonly type = APP_RESOURCE;
  readonly transientReason = Reason.UnexpectedError;
  private readonly root: RootPublisher;
  private readonly secrets: SecretReader;

  constructor(private readonly opts: AppReconcilerOptions) {
    this.secrets = opts.secrets ?? directSecrets(opts.client);
    this.root =
      opts.root ?? new RootPublisher(opts.store, new StorageLayout(opts.storagePrefix ?? '').rootKey());
  }

  reconcile(key: ObjectKey, ctx: ReconcileContext): Promise<ReconcileResult> {
    return reconcileObject(this.opts, this, key, ctx);
  }

  async reconcileLive(
    app: LiveUpdateApp,
    status: LiveUpdateAppStatus,
    ctx: StepContext,
  ): Promise<StepsResult> {
    await this.checkUniqueAppId(app);
    await this.reconcileSigningKey(app, status, ctx);
    const result = await this.reconcileIndex(app, status, ctx);
    const gcMs = this.opts.gcIntervalMs ?? 0;
    if (gcMs <= 0) return result;
    await this.collectIfDue(app, ctx, gcMs);
    return { ...result, requeueAfterMs: gcMs };
  }

  /** Last GC run per app in this process: a run is due once per interval (and at the first reconcile). */
  private readonly lastGc = new Map<string, number>();

  /** Runs garbage collection after the publish step, so the work queue serializes it with the app's publishes. */
  private async collectIfDue(app: LiveUpdateApp, ctx: StepContext, intervalMs: number): Promise<void> {
    const namespace = app.metadata.namespace ?? '';
    const id = `${namespace}/${app.metadata.name}`;
    const started = ctx.now().getTime();
    if (started - (this.lastGc.get(id) ?? -Infinity) < intervalMs) return;
    this.lastGc.set(id, started);
    const clock = performance.now();
    try {
      const bundles = await listWhere<LiveUpdateBundle>(
        this.opts.client,
        BUNDLE_RESOURCE,
        namespace,
        (b) => b.spec.app === app.metadata.name,
      );
      const result = await collectGarbage({
        store: this.opts.store,
        layout: layoutForApp(app, this.opts.storagePrefix),
        app: { namespace, name: app.metadata.name },
        bundles,
        keepLast: app.spec.retention?.keepLast ?? 10,
        unreferencedTtlMs: parseDuration(app.spec.retention?.unreferencedTTL ?? '168h'),
        statsRetentionMs: parseDuration(app.spec.statsRetention ?? '720h') || parseDuration('720h'),
        now: ctx.now(),
        ...(this.opts.gcMinGraceMs !== undefined ? { minGraceMs: this.opts.gcMinGraceMs } : {}),
        signal: ctx.signal,
      });
      const seconds = (performance.now() - clock) / 1000;
      this.opts.metrics?.gcRun(namespace, app.metadata.name, {
        objects: result.deleted.length,
        bytes: result.bytes,
        errors: result.errors,
        seconds,
        success: result.errors === 0,
      });
      if (result.aborted) this.lastGc.delete(id);
      ctx.log.info(
        {
          scanned: result.scanned,
          deleted: result.deleted.length,
          bytes: result.bytes,
          errors: result.errors,
          ...(result.aborted ? { aborted: result.aborted } : {}),
          seconds,
        },
        'garbage collection finished',
      );
    } catch (error) {
      if (ctx.signal.aborted) throw error;
      this.opts.metrics?.gcRun(namespace, app.metadata.name, {
        objects: 0,
        bytes: 0,
        errors: 1,
        seconds: (performance.now() - clock) / 1000,
        success: false,
      });
      ctx.log.warn({ err: error }, 'garbage collection failed');
    }
  }

  /** The oldest app claiming an appId owns it; later ones stall, so devices never see two indexes for one id. */
  private async checkUniqueAppId(app: LiveUpdateApp): Promise<void> {
    // Only the claimants are copied: every app of the cluster was, in each app reconcile (issue 17).
    const claimants = (
      await listWhere<LiveUpdateApp>(
        this.opts.client,
        APP_RESOURCE,
        undefined,
        (a) => a.spec.appId === app.spec.appId && !a.metadata.deletionTimestamp,
      )
    ).sort(creationOrder);
    const owner = claimants[0];
    if (
      owner &&
      !(owner.metadata.namespace === app.metadata.namespace && owner.metadata.name === app.metadata.name)
    ) {
      throw new StallingError(
        Reason.DuplicateAppId,
        `appId ${app.spec.appId} is already used by LiveUpdateApp ${owner.metadata.namespace}/${owner.metadata.name}`,
      );
    }
  }

  private async reconcileSigningKey(
    app: LiveUpdateApp,
    status: LiveUpdateAppStatus,
    ctx: StepContext,
  ): Promise<void> {
    const conditions = (status.conditions ??= []);
    const generation = app.metadata.generation ?? 0;
    if (!app.spec.signingKey) {
      delete status.keyId;
      delete status.publicKey;
      removeCondition(conditions, ConditionType.KeyValid);
      return;
    }
    try {
      const key = await readSigningKey(this.secrets, app, {
        fresh: ctx.forced,
        reader: secretReaderId(APP_RESOURCE, keyOf(app)),
      });
      if (!key) return;
      status.keyId = key.keyId;
      status.publicKey = key.publicKeyPem;
      setCondition(
        conditions,
        {
          type: ConditionType.KeyValid,
          status: 'True',
          reason: Reason.Succeeded,
          message: `key_id ${key.keyId}`,
          observedGeneration: generation,
        },
        ctx.now(),
      );
    } catch (error) {
      if (error instanceof StallingError) {
        delete status.keyId;
        delete status.publicKey;
        setCondition(
          conditions,
          {
            type: ConditionType.KeyValid,
            status: 'False',
            reason: error.reason,
            message: error.message,
            observedGeneration: generation,
          },
          ctx.now(),
        );
      }
      throw error;
    }
  }

  private async reconcileIndex(
    app: LiveUpdateApp,
    status: LiveUpdateAppStatus,
    ctx: StepContext,
  ): Promise<StepsResult> {
    const namespace = app.metadata.namespace ?? '';
    // The app's channels only: the namespace may hold a thousand of other apps' (issue 17).
    const channels = await listWhere<LiveUpdateChannel>(
      this.opts.client,
      CHANNEL_RESOURCE,
      namespace,
      (c) => c.spec.app === app.metadata.name,
    );
    // Only the bundles this app's channels name: the index lists no other, and an app may have thousands.
    const named = bundlesNamedByChannels(channels, app.metadata.name);
    const bundles = await listWhere<LiveUpdateBundle>(
      this.opts.client,
      BUNDLE_RESOURCE,
      namespace,
      (b) => b.spec.app === app.metadata.name && named.has(b.metadata.name),
    );
    let published: PublishResult;
    for (let attempt = 1; ; attempt++) {
      try {
        published = await this.publishOnce(app, status, channels, bundles, ctx);
        break;
      } catch (error) {
        // Someone else wrote the index since it was read: render again from a fresh read.
        if (error instanceof PreconditionFailedError && attempt < MAX_INDEX_ATTEMPTS) {
          ctx.log.info({ attempt, key: error.key }, 'release index changed while publishing, retrying');
          continue;
        }
        throw this.publishError(error);
      }
    }
    this.recordPublished(app, status, published, ctx);
    const { revision } = published.index;
    return {
      reason: Reason.IndexPublished,
      message: `published index revision ${revision} (${published.index.channels.length} channels, ${Object.keys(published.index.bundles).length} bundles)`,
    };
  }

  private async publishOnce(
    app: LiveUpdateApp,
    status: LiveUpdateAppStatus,
    channels: LiveUpdateChannel[],
    bundles: LiveUpdateBundle[],
    ctx: StepContext,
  ): Promise<PublishResult> {
    const namespace = app.metadata.namespace ?? '';
    const layout = layoutForApp(app, this.opts.storagePrefix);
    const appRef = { namespace, name: app.metadata.name };
    const store = this.opts.store;
    const previous = await readIndex(store, layout.indexKey(appRef), ctx.signal);
    const manifests = await this.loadManifests(app, bundles, ctx.signal);
    const content = renderIndex({
      app: { ...app, status },
      channels,
      bundles,
      previous: previous?.doc,
      manifests,
    });
    assertServable(content, app, channels);
    const published = await publishIndex(store, layout, content, {
      previous,
      knownRevision: status.index?.revision ?? 0,
      now: ctx.now(),
      signal: ctx.signal,
    });
    await this.root.upsert(
      {
        ...appRef,
        appId: app.spec.appId,
        indexKey: published.indexKey,
        revision: published.index.revision,
      },
      ctx.signal,
    );
    return published;
  }

  private publishError(error: unknown): Error {
    if (error instanceof RootDocumentUnreadableError)
      return new TransientError(Reason.RootDocumentUnreadable, error.message);
    if (error instanceof DocumentUnreadableError)
      return new TransientError(
        Reason.IndexDocumentUnreadable,
        `${error.message}; it is not rewritten: repair it, or delete it to let the controller write it again`,
      );
    if (error instanceof ReleaseIndexValidationError)
      return new StallingError(Reason.IndexInvalid, error.message);
    if (error instanceof MissingObjectError)
      return new TransientError(Reason.StorageVerificationFailed, error.message);
    if (error instanceof PreconditionFailedError || error instanceof RootConflictError)
      return new TransientError(
        Reason.ConcurrentWrite,
        `${error.message}: another writer kept changing it, retrying`,
      );
    if (error instanceof StoreUnavailableError)
      return new TransientError(Reason.StorageUnavailable, error.message, { cause: error });
    return error as Error;
  }

  private recordPublished(
    app: LiveUpdateApp,
    status: LiveUpdateAppStatus,
    published: PublishResult,
    ctx: StepContext,
  ) {
    const { index } = published;
    const previousRevision = status.index?.revision;
    status.index = {
      objectKey: published.indexKey,
      revision: index.revision,
      digest: published.digest,
      channels: index.channels.length,
      bundles: Object.keys(index.bundles).length,
      lastPublishTime: published.written
        ? rfc3339(ctx.now())
        : (status.index?.lastPublishTime ?? rfc3339(new Date(index.generatedAt))),
    };
    status.channels = channelSummaries(index);
    setCondition(
      (status.conditions ??= []),
      {
        type: ConditionType.Published,
        status: 'True',
        reason: Reason.IndexPublished,
        message: `revision ${index.revision}`,
        observedGeneration: app.metadata.generation ?? 0,
      },
      ctx.now(),
    );
    if (published.written) {
      ctx.log.info({ revision: index.revision, digest: published.digest }, 'release index published');
      this.opts.metrics?.indexPublished(app.metadata.namespace ?? '', app.metadata.name, index.revision);
      if (previousRevision !== index.revision) {
        this.opts.recorder.event(
          app,
          'Normal',
          Reason.IndexPublished,
          `published release index revision ${index.revision}`,
        );
      }
    }
  }

  /** Delta manifests of the servable bundles that have one, read from the store. */
  private async loadManifests(app: LiveUpdateApp, bundles: LiveUpdateBundle[], signal: AbortSignal) {
    const manifests = new Map<string, IndexManifestEntry[]>();
    for (const bundle of bundles) {
      const key = bundle.status?.artifact?.manifestKey;
      if (!key || !isServable(bundle, app.metadata.name)) continue;
      try {
        const { data } = await this.opts.store.getBuffer(key, { maxBytes: MAX_MANIFEST_BYTES, signal });
        manifests.set(key, JSON.parse(data.toString('utf8')) as IndexManifestEntry[]);
      } catch (error) {
        if (!(error instanceof ObjectNotFoundError)) throw error;
      }
    }
    return manifests;
  }

  async reconcileDelete(app: LiveUpdateApp, _status: LiveUpdateAppStatus, ctx: StepContext) {
    const appRef = { namespace: app.metadata.namespace ?? '', name: app.metadata.name };
    const layout = layoutForApp(app, this.opts.storagePrefix);
    await this.root.remove(appRef, ctx.signal).catch((error: unknown) => {
      throw this.publishError(error);
    });
    await this.opts.store.remove(layout.indexKey(appRef), ctx.signal).catch((error: unknown) => {
      if (!(error instanceof ObjectNotFoundError)) throw error;
    });
    ctx.log.info('release index removed');
    return { done: true as const };
  }
}

function channelSummaries(index: ReleaseIndex): NonNullable<LiveUpdateAppStatus['channels']> {
  return index.channels.map((c) => ({
    name: c.name,
    bundle: c.bundle,
    ...(index.bundles[c.bundle] ? { version: index.bundles[c.bundle]!.version } : {}),
    ...(c.rollout
      ? {
          rolloutBundle: c.rollout.bundle,
          ...(index.bundles[c.rollout.bundle]
            ? { rolloutVersion: index.bundles[c.rollout.bundle]!.version }
            : {}),
          rolloutPercentage: c.rollout.percentage,
          rolloutState: c.rollout.rolledBack ? 'RolledBack' : c.rollout.paused ? 'Paused' : 'Active',
        }
      : {}),
  }));
}

/**
 * Refuses an index the update service could not serve, with the service's own compile step: the App then says why
 * (no channel published yet, default channel not published) instead of Ready, and the previous index keeps serving.
 */
function assertServable(content: RenderedIndex, app: LiveUpdateApp, channels: LiveUpdateChannel[]): void {
  const ofApp = channels.filter((c) => c.spec.app === app.metadata.name && !c.metadata.deletionTimestamp);
  const published = content.channels.map((c) => c.name);
  if (published.length === 0) {
    const message =
      ofApp.length === 0
        ? 'no LiveUpdateChannel references this app: create one so that devices can be answered'
        : `no channel can be published yet: ${ofApp.map((c) => c.metadata.name).join(', ')} wait for a Ready bundle`;
    if (ofApp.length === 0) throw new StallingError(Reason.NoChannelPublished, message);
    throw new WaitingError(Reason.NoChannelPublished, message, UNPUBLISHABLE_REQUEUE_MS);
  }
  const defaultChannel = content.app.defaultChannel;
  if (!published.includes(defaultChannel)) {
    const exists = ofApp.some((c) => c.metadata.name === defaultChannel);
    const message = exists
      ? `default channel "${defaultChannel}" is not published yet: its bundle is not Ready (published: ${published.join(', ')})`
      : `spec.defaultChannel "${defaultChannel}" names no LiveUpdateChannel of this app (published: ${published.join(', ')})`;
    if (!exists) throw new StallingError(Reason.DefaultChannelNotFound, message);
    throw new WaitingError(Reason.DefaultChannelNotFound, message, UNPUBLISHABLE_REQUEUE_MS);
  }
  try {
    compileIndex({ ...content, revision: 1, generatedAt: new Date(0).toISOString() });
  } catch (error) {
    if (error instanceof IndexConsistencyError) throw new StallingError(Reason.IndexInvalid, error.message);
    throw error;
  }
}
