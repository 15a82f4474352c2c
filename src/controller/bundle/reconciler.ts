/**
 * LiveUpdateBundle reconciler, in Flux source-controller's shape: app → version conflict → artifact (fetch, digest,
 * validate or pack, encrypt and sign, upload content-addressed, re-read and verify) → status.artifact.
 * Idempotent: when the inputs' fingerprint equals status.artifact.revision and the stored object is still there with
 * its size, nothing is fetched again. Deletion removes the stored objects unless a channel (or the published index)
 * still serves the bundle, or deletionPolicy is Orphan.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  APP_RESOURCE,
  BUNDLE_RESOURCE,
  CHANNEL_RESOURCE,
  ConditionType,
  Reason,
  type Artifact,
  type LiveUpdateApp,
  type LiveUpdateBundle,
  type LiveUpdateBundleStatus,
  type LiveUpdateChannel,
} from '../../api/v1alpha1/index.js';
import type { SigningKey } from '../../bundle/index.js';
import {
  isNotFound,
  keyOf,
  type Condition,
  type EventRecorder,
  type ObjectClient,
  type ObjectKey,
} from '../../kube/types.js';
import { ObjectNotFoundError, StoreUnavailableError, type ObjectStore } from '../../storage/object-store.js';
import { findCondition, removeCondition, rfc3339, setCondition } from '../common/conditions.js';
import { parseDuration } from '../common/duration.js';
import { ReconcileError, StallingError, TransientError, WaitingError } from '../common/errors.js';
import {
  reconcileObject,
  type DeletionResult,
  type KindSteps,
  type StepContext,
  type StepsResult,
} from '../common/reconcile-object.js';
import type { LabelRequirement } from '../../config/controller.js';
import { readSigningKey } from '../common/secrets.js';
import { layoutForApp } from '../common/layout.js';
import { listWhere } from '../common/list.js';
import { readIndex } from '../publishing/index-document.js';
import type { ControllerDomainMetrics } from '../metrics.js';
import type { ReconcileContext, ReconcileResult, Reconciler } from '../reconciler-interface.js';
import { IN_MEMORY_BUILD_MAX_BYTES, prepareArtifact, storeArtifact, verifyStored } from './artifact.js';
import { SourceFetcher, type ArtifactFetcher, type FetchRequest } from './fetch.js';
import { sourceCredentials } from './source-credentials.js';
import { directSecrets, secretReaderId, type SecretReader, type SecretReadOptions } from '../secret-cache.js';

export interface BundleReconcilerOptions {
  client: ObjectClient;
  recorder: EventRecorder;
  store: ObjectStore;
  storagePrefix?: string;
  fetcher?: ArtifactFetcher;
  /** Parent of the per-reconcile work dirs (default: the OS temp dir). */
  tmpDir?: string;
  /** Largest artifact accepted from a source (default 256 MiB). */
  maxArtifactBytes?: number;
  /** Most bytes an artifact may expand to (config's expandedMaxBytes; default: the zip validator's 1 GiB). */
  maxExpandedBytes?: number;
  /** Upper bound on one fetch, whatever spec.source.timeout says (default: no bound beyond the spec's). */
  maxFetchTimeoutMs?: number;
  metrics?: ControllerDomainMetrics;
  /** Environment whose HTTPS_PROXY/HTTP_PROXY/NO_PROXY apply to http and OCI fetches (default: process.env). */
  proxyEnv?: NodeJS.ProcessEnv;
  /** Label every Secret a source names must carry (credentials and CA); undefined: any Secret of the namespace. */
  sourceSecretLabel?: LabelRequirement;
  /** Wait before looking again at an app that is missing or not ready (default 10 s). */
  dependencyRequeueMs?: number;
  /** Where Secrets are read (default: the API server through `client`, no cache). */
  secrets?: SecretReader;
  now?: () => Date;
}

/** Refusals of spec.source.oci.verify: they set VerificationFailed, not FetchFailed. */
const SIGNATURE_REASONS: ReadonlySet<string> = new Set([
  Reason.SignatureMissing,
  Reason.SignatureInvalid,
  Reason.SignatureDigestMismatch,
  Reason.VerificationKeyInvalid,
]);

const DEFAULT_MAX_ARTIFACT_BYTES = 256 * 1024 * 1024;
const DELETION_REQUEUE_MS = 30_000;

/**
 * Source failures that heal by themselves (the artifact is not uploaded yet, the server is down): retried on the
 * bundle's own schedule instead of stalling (docs/adr/0032-recovery-without-kubectl.md).
 */
const RETRIED_SOURCE_REASONS: ReadonlySet<string> = new Set([
  Reason.SourceNotFound,
  Reason.SourceUnavailable,
]);
const FIRST_SOURCE_RETRY_MS = 1000;
const DEFAULT_RETRY_INTERVAL_MS = 5 * 60_000;

/**
 * The wait before the next fetch attempt: as long as the source has been failing (so the waits double: 1 s, 2 s,
 * 4 s, ...), at least 1 s and at most the bundle's retryInterval. Derived from the FetchFailed condition's
 * lastTransitionTime, so it survives a controller restart and needs no state of its own.
 */
export function sourceRetryDelayMs(failingForMs: number, retryIntervalMs: number): number {
  return Math.min(Math.max(failingForMs, FIRST_SOURCE_RETRY_MS), retryIntervalMs);
}

/** A retried source failure as a transient error with its retry delay; any other error unchanged. */
function onSourceSchedule(
  bundle: LiveUpdateBundle,
  status: LiveUpdateBundleStatus,
  error: unknown,
  now: Date,
) {
  if (!(error instanceof ReconcileError) || !RETRIED_SOURCE_REASONS.has(error.reason)) return error;
  const since = findCondition(status.conditions, ConditionType.FetchFailed)?.lastTransitionTime;
  const failingForMs = since ? now.getTime() - Date.parse(since) : 0;
  const intervalMs = parseDuration(bundle.spec.retryInterval ?? '') || DEFAULT_RETRY_INTERVAL_MS;
  return new TransientError(error.reason, error.message, {
    cause: error,
    retryAfterMs: sourceRetryDelayMs(failingForMs, intervalMs),
  });
}

/** The app whose index lists a bundle: the manager enqueues it for every bundle event. */
export function appKeyForBundle(bundle: LiveUpdateBundle): ObjectKey {
  return { namespace: bundle.metadata.namespace ?? '', name: bundle.spec.app };
}

/** Whether the bundle is encrypted: spec.encryption, else the app's default when it has a key. */
export function wantsEncryption(bundle: LiveUpdateBundle, app: LiveUpdateApp): boolean {
  return bundle.spec.encryption ?? (app.spec.signingKey !== undefined && (app.spec.encryptByDefault ?? true));
}

/** Fingerprint of everything the stored artifact depends on; source is immutable but included for safety. */
export function artifactRevision(
  bundle: LiveUpdateBundle,
  encrypted: boolean,
  keyId: string | undefined,
): string {
  const inputs = JSON.stringify([
    bundle.spec.source,
    bundle.spec.digest ?? '',
    encrypted,
    keyId ?? '',
    bundle.spec.delta ?? false,
  ]);
  return `sha256:${createHash('sha256').update(inputs).digest('hex')}`;
}

/**
 * What identifies one build of a bundle: the object (namespace, name, uid: a re-created bundle is a new build), the
 * inputs' fingerprint and the fetched artifact's digest. Encryption is derived from it, so building it twice gives
 * the same object and session key (docs/adr/0010-idempotent-builds.md).
 */
export function buildId(bundle: LiveUpdateBundle, revision: string, artifactSha256: string): string {
  const { namespace, name, uid } = bundle.metadata;
  return JSON.stringify(['liveupdate-build/v1', namespace ?? '', name, uid ?? '', revision, artifactSha256]);
}

export class BundleReconciler implements Reconciler, KindSteps<LiveUpdateBundle, LiveUpdateBundleStatus> {
  readonly type = BUNDLE_RESOURCE;
  readonly transientReason = Reason.UnexpectedError;
  /** The finalizer PATCH of a new bundle runs while it is fetched and prepared; nothing is stored before it is on. */
  readonly awaitsFinalizer = true;
  private readonly fetcher: ArtifactFetcher;
  private readonly requeueMs: number;
  private readonly secrets: SecretReader;

  constructor(private readonly opts: BundleReconcilerOptions) {
    this.fetcher = opts.fetcher ?? new SourceFetcher();
    this.requeueMs = opts.dependencyRequeueMs ?? 10_000;
    this.secrets = opts.secrets ?? directSecrets(opts.client);
  }

  /** How this reconcile reads Secrets: as this bundle (the Secret poll compares versions), fresh when requested. */
  private secretRead(bundle: LiveUpdateBundle, ctx: StepContext): SecretReadOptions {
    return { fresh: ctx.forced, reader: secretReaderId(BUNDLE_RESOURCE, keyOf(bundle)) };
  }

  reconcile(key: ObjectKey, ctx: ReconcileContext): Promise<ReconcileResult> {
    return reconcileObject(this.opts, this, key, ctx);
  }

  async reconcileLive(
    bundle: LiveUpdateBundle,
    status: LiveUpdateBundleStatus,
    ctx: StepContext,
  ): Promise<StepsResult> {
    const app = await this.getApp(bundle);
    await this.checkVersionConflict(bundle);
    const encrypted = wantsEncryption(bundle, app);
    const key = encrypted ? await this.signingKey(bundle, app, ctx) : undefined;
    const revision = artifactRevision(bundle, encrypted, key?.keyId);
    if (await this.artifactUpToDate(bundle, app, status, revision, ctx)) {
      return { reason: Reason.Succeeded, message: readyMessage(bundle, status.artifact!) };
    }
    this.checkRefused(status, revision, ctx);
    const artifact = await this.buildArtifact(bundle, app, status, key, revision, ctx).catch(
      (error: unknown) => {
        throw onSourceSchedule(bundle, status, error, ctx.now());
      },
    );
    status.artifact = artifact;
    this.opts.recorder.event(
      bundle,
      'Normal',
      Reason.ArtifactStored,
      `stored ${artifact.objectKey} (${artifact.size} bytes)`,
    );
    ctx.log.info(
      { objectKey: artifact.objectKey, size: artifact.size, sha256: artifact.sha256 },
      'artifact stored',
    );
    return { reason: Reason.Succeeded, message: readyMessage(bundle, artifact) };
  }

  private async getApp(bundle: LiveUpdateBundle): Promise<LiveUpdateApp> {
    try {
      return await this.opts.client.get<LiveUpdateApp>(APP_RESOURCE, appKeyForBundle(bundle));
    } catch (error) {
      if (isNotFound(error))
        throw new WaitingError(
          Reason.AppNotFound,
          `LiveUpdateApp ${bundle.spec.app} not found`,
          this.requeueMs,
        );
      throw error;
    }
  }

  /** Two bundles of one app may not claim the same version: the older one keeps it, the newer stalls. */
  private async checkVersionConflict(bundle: LiveUpdateBundle): Promise<void> {
    const claims = (b: LiveUpdateBundle): boolean =>
      b.spec.app === bundle.spec.app &&
      b.spec.version === bundle.spec.version &&
      !b.metadata.deletionTimestamp;
    const namespace = bundle.metadata.namespace ?? '';
    const owner = (await listWhere(this.opts.client, BUNDLE_RESOURCE, namespace, claims)).sort(
      (a, b) =>
        (a.metadata.creationTimestamp ?? '').localeCompare(b.metadata.creationTimestamp ?? '') ||
        a.metadata.name.localeCompare(b.metadata.name),
    )[0];
    if (owner && owner.metadata.name !== bundle.metadata.name) {
      throw new StallingError(
        Reason.VersionConflict,
        `version ${bundle.spec.version} of app ${bundle.spec.app} is already published by LiveUpdateBundle ${owner.metadata.name}`,
      );
    }
  }

  /** The app's key once the app has validated it; bundles wait for their app rather than judge its key. */
  private async signingKey(
    bundle: LiveUpdateBundle,
    app: LiveUpdateApp,
    ctx: StepContext,
  ): Promise<SigningKey> {
    if (!app.spec.signingKey) {
      throw new StallingError(
        Reason.AppHasNoSigningKey,
        `spec.encryption is true but LiveUpdateApp ${app.metadata.name} has no signing key`,
      );
    }
    const keyValid = findCondition(app.status?.conditions, ConditionType.KeyValid);
    if (keyValid?.status === 'False') {
      // The app stalled on its key (Secret missing, wrong format): a human must act, so the bundle stalls too.
      throw new StallingError(keyValid.reason, `LiveUpdateApp ${app.metadata.name}: ${keyValid.message}`);
    }
    if (keyValid?.status !== 'True') {
      throw new WaitingError(
        Reason.AppNotReady,
        `waiting for LiveUpdateApp ${app.metadata.name} to validate its signing key`,
        this.requeueMs,
      );
    }
    try {
      const key = await readSigningKey(this.secrets, app, this.secretRead(bundle, ctx));
      if (key) return key;
    } catch (error) {
      if (!(error instanceof StallingError)) throw error;
    }
    throw new WaitingError(
      Reason.AppNotReady,
      `the signing key of LiveUpdateApp ${app.metadata.name} is not usable`,
      this.requeueMs,
    );
  }

  /**
   * An artifact refused for these very inputs is not fetched again (an app change or a new leader changes nothing
   * about its bytes): the bundle stays stalled with the recorded reason until the inputs change or a reconcile is
   * requested.
   */
  private checkRefused(status: LiveUpdateBundleStatus, revision: string, ctx: StepContext): void {
    const refused = status.refusedArtifact;
    if (!refused) return;
    if (refused.revision !== revision || ctx.forced) {
      delete status.refusedArtifact;
      return;
    }
    ctx.log.debug(
      { digest: refused.digest },
      'artifact refused before for these inputs, not fetching it again',
    );
    throw new StallingError(refused.reason, refused.message);
  }

  /** Same inputs and the stored object still there with its size (or its full digest, when a reconcile was requested). */
  private async artifactUpToDate(
    bundle: LiveUpdateBundle,
    app: LiveUpdateApp,
    status: LiveUpdateBundleStatus,
    revision: string,
    ctx: StepContext,
  ): Promise<boolean> {
    const artifact = status.artifact;
    if (!artifact || artifact.revision !== revision) return false;
    // verifyStored may remove a corrupt object: a store write, so after the finalizer like the upload.
    await ctx.finalizerAdded;
    const layout = layoutForApp(app, this.opts.storagePrefix);
    const expectedKey = layout.bundleKey(
      { namespace: bundle.metadata.namespace ?? '', name: app.metadata.name },
      artifact.storedSha256,
    );
    try {
      const info = await this.opts.store.stat(artifact.objectKey, ctx.signal);
      if (artifact.objectKey === expectedKey && info.size === artifact.size) {
        if (ctx.forced) {
          await verifyStored(
            this.opts.store,
            artifact.objectKey,
            artifact.size,
            artifact.storedSha256,
            ctx.signal,
          );
        }
        this.markStored(bundle, status, ctx, artifact.objectKey);
        return true;
      }
    } catch (error) {
      if (error instanceof StoreUnavailableError)
        throw new TransientError(Reason.StorageUnavailable, error.message, { cause: error });
      if (!(error instanceof ObjectNotFoundError) && !(error instanceof TransientError)) throw error;
    }
    ctx.log.info({ objectKey: artifact.objectKey }, 'stored artifact missing or changed, rebuilding');
    delete status.artifact;
    removeCondition((status.conditions ??= []), ConditionType.ArtifactInStorage);
    return false;
  }

  private async buildArtifact(
    bundle: LiveUpdateBundle,
    app: LiveUpdateApp,
    status: LiveUpdateBundleStatus,
    key: SigningKey | undefined,
    revision: string,
    ctx: StepContext,
  ): Promise<Artifact> {
    const parent = this.opts.tmpDir ?? tmpdir();
    // Created when a file is first written (the fetcher's file, a tarball's packing, a delta build); a small zip
    // fetched into memory never needs it (ADR 0042). A fetcher that cannot fetch into memory gets it at once.
    const work = join(parent, `${WORK_DIR_PREFIX}${randomBytes(12).toString('hex')}`);
    if (!this.fetcher.fetchSmallInMemory) await mkdir(work, { mode: 0o700 });
    try {
      return await this.buildIn(work, bundle, app, status, key, revision, ctx);
    } catch (error) {
      throw withoutWorkDir(error, work, join(parent, `${WORK_DIR_PREFIX}*`));
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }

  private async buildIn(
    work: string,
    bundle: LiveUpdateBundle,
    app: LiveUpdateApp,
    status: LiveUpdateBundleStatus,
    key: SigningKey | undefined,
    revision: string,
    ctx: StepContext,
  ): Promise<Artifact> {
    const fetched = await this.track(status, bundle, ctx, 'fetch', () => this.fetch(bundle, work, ctx));
    const prepared = await this.track(status, bundle, ctx, 'verify', async () => {
      checkDigest(bundle, fetched.sha256);
      return prepareArtifact({
        fetched: 'bytes' in fetched ? { bytes: fetched.bytes } : { path: fetched.path },
        workDir: work,
        key,
        delta: bundle.spec.delta ?? false,
        buildId: buildId(bundle, revision, fetched.sha256),
        ...(this.opts.maxExpandedBytes !== undefined ? { maxExpandedBytes: this.opts.maxExpandedBytes } : {}),
        signal: ctx.signal,
      });
    }).catch((error: unknown) => {
      if (error instanceof StallingError) {
        status.refusedArtifact = {
          revision,
          digest: `sha256:${fetched.sha256}`,
          reason: error.reason,
          message: error.message,
        };
      }
      throw error;
    });
    const layout = layoutForApp(app, this.opts.storagePrefix);
    const appRef = { namespace: bundle.metadata.namespace ?? '', name: app.metadata.name };
    // The finalizer is on the object before anything exists in the store (deletion must find and remove it).
    await ctx.finalizerAdded;
    const stored = await storeArtifact(this.opts.store, layout, appRef, prepared, ctx.signal).catch(
      (error: unknown) => {
        if (error instanceof StoreUnavailableError)
          throw new TransientError(Reason.StorageUnavailable, error.message, { cause: error });
        throw error;
      },
    );
    this.opts.metrics?.artifactStored(appRef.namespace, appRef.name, prepared.storedSize);
    const artifact: Artifact = {
      revision,
      objectKey: stored.objectKey,
      size: prepared.storedSize,
      sha256: prepared.sha256,
      storedSha256: prepared.storedSha256,
      sourceDigest: `sha256:${fetched.sha256}`,
      encrypted: prepared.encrypted,
      checksum: prepared.checksum,
      ...(prepared.checksumV2 ? { checksumV2: prepared.checksumV2 } : {}),
      ...(prepared.sessionKey ? { sessionKey: prepared.sessionKey } : {}),
      ...(prepared.keyId ? { keyId: prepared.keyId } : {}),
      ...(stored.manifestKey
        ? { manifestKey: stored.manifestKey, manifestFiles: stored.manifestFiles ?? 0 }
        : {}),
      ...(fetched.provenance ? { provenance: fetched.provenance } : {}),
      lastUpdateTime: rfc3339(ctx.now()),
    };
    this.markStored(bundle, status, ctx, stored.objectKey);
    return artifact;
  }

  /**
   * Runs the fetch or verify phase and records its domain conditions: the positive one on success, the negative one
   * (FetchFailed / VerificationFailed) with the failure's reason while it is failing.
   */
  private async track<T>(
    status: LiveUpdateBundleStatus,
    bundle: LiveUpdateBundle,
    ctx: StepContext,
    phase: 'fetch' | 'verify',
    run: () => Promise<T>,
  ): Promise<T> {
    const conditions = (status.conditions ??= []);
    const conditionsOf = (p: 'fetch' | 'verify') =>
      p === 'fetch'
        ? ([ConditionType.ArtifactFetched, ConditionType.FetchFailed] as const)
        : ([ConditionType.Verified, ConditionType.VerificationFailed] as const);
    const set = (c: Omit<Condition, 'lastTransitionTime'>) => setCondition(conditions, c, ctx.now());
    const generation = bundle.metadata.generation ?? 0;
    try {
      const result = await run();
      const [positive, negative] = conditionsOf(phase);
      removeCondition(conditions, negative);
      set({
        type: positive,
        status: 'True',
        reason: Reason.Succeeded,
        message: phase === 'fetch' ? 'artifact fetched' : 'digest and zip checked',
        observedGeneration: generation,
      });
      return result;
    } catch (error) {
      if (error instanceof ReconcileError) {
        // An OCI signature is checked while fetching (before the bundle layer is downloaded) but is a verification.
        const failed = SIGNATURE_REASONS.has(error.reason) ? 'verify' : phase;
        const [positive, negative] = conditionsOf(failed);
        set({
          type: negative,
          status: 'True',
          reason: error.reason,
          message: error.message,
          observedGeneration: generation,
        });
        set({
          type: positive,
          status: 'False',
          reason: error.reason,
          message: error.message,
          observedGeneration: generation,
        });
      }
      throw error;
    }
  }

  private markStored(
    bundle: LiveUpdateBundle,
    status: LiveUpdateBundleStatus,
    ctx: StepContext,
    message: string,
  ): void {
    setCondition(
      (status.conditions ??= []),
      {
        type: ConditionType.ArtifactInStorage,
        status: 'True',
        reason: Reason.Succeeded,
        message,
        observedGeneration: bundle.metadata.generation ?? 0,
      },
      ctx.now(),
    );
  }

  private async fetch(bundle: LiveUpdateBundle, work: string, ctx: StepContext) {
    const request: FetchRequest = {
      source: bundle.spec.source,
      destination: join(work, 'fetched'),
      maxBytes: this.opts.maxArtifactBytes ?? DEFAULT_MAX_ARTIFACT_BYTES,
      timeoutMs: Math.min(
        parseDuration(bundle.spec.source.timeout ?? '5m') || 300_000,
        this.opts.maxFetchTimeoutMs ?? Number.POSITIVE_INFINITY,
      ),
      signal: ctx.signal,
      proxyEnv: this.opts.proxyEnv ?? process.env,
      ...(await sourceCredentials(
        this.secrets,
        bundle,
        this.opts.sourceSecretLabel,
        this.secretRead(bundle, ctx),
      )),
    };
    const started = performance.now();
    const source = bundle.spec.source.s3 ? 's3' : bundle.spec.source.oci ? 'oci' : 'http';
    try {
      // Small artifacts are built in memory (ADR 0042): no fetched file, no sealed file.
      const fetched = this.fetcher.fetchSmallInMemory
        ? await this.fetcher.fetchSmallInMemory(request, IN_MEMORY_BUILD_MAX_BYTES)
        : await this.fetcher.fetch(request);
      this.opts.metrics?.artifactFetched(source, 'success', (performance.now() - started) / 1000);
      return fetched;
    } catch (error) {
      this.opts.metrics?.artifactFetched(source, 'error', (performance.now() - started) / 1000);
      throw error;
    }
  }

  async reconcileDelete(
    bundle: LiveUpdateBundle,
    status: LiveUpdateBundleStatus,
    ctx: StepContext,
  ): Promise<DeletionResult> {
    const conditions = (status.conditions ??= []);
    const artifact = status.artifact;
    if (bundle.spec.deletionPolicy === 'Orphan' || !artifact) return { done: true };
    const holders = await this.servingChannels(bundle, ctx);
    if (holders.length > 0) {
      setCondition(
        conditions,
        {
          type: ConditionType.DeletionBlocked,
          status: 'True',
          reason: Reason.ServedByChannel,
          message: `still served by ${holders.join(', ')}; point the channel at another bundle first`,
          observedGeneration: bundle.metadata.generation ?? 0,
        },
        ctx.now(),
      );
      return { done: false, requeueAfterMs: DELETION_REQUEUE_MS };
    }
    for (const key of [artifact.objectKey, artifact.manifestKey]) {
      if (!key) continue;
      await this.opts.store.remove(key, ctx.signal).catch((error: unknown) => {
        if (!(error instanceof ObjectNotFoundError)) throw error;
      });
    }
    ctx.log.info({ objectKey: artifact.objectKey }, 'stored artifact removed');
    return { done: true };
  }

  /** Channels that reference the bundle, and the published index if it still points at the bundle's object. */
  private async servingChannels(bundle: LiveUpdateBundle, ctx: StepContext): Promise<string[]> {
    const namespace = bundle.metadata.namespace ?? '';
    const channels = await this.opts.client.list<LiveUpdateChannel>(CHANNEL_RESOURCE, namespace);
    const holders = channels
      .filter((c) => c.spec.app === bundle.spec.app && !c.metadata.deletionTimestamp)
      .filter(
        (c) => c.spec.bundle === bundle.metadata.name || c.spec.rollout?.bundle === bundle.metadata.name,
      )
      .map((c) => `LiveUpdateChannel ${c.metadata.name}`);
    if (holders.length > 0) return holders;
    const app = await this.opts.client
      .get<LiveUpdateApp>(APP_RESOURCE, appKeyForBundle(bundle))
      .catch((error: unknown) => {
        if (isNotFound(error)) return undefined;
        throw error;
      });
    if (!app) return [];
    const layout = layoutForApp(app, this.opts.storagePrefix);
    // An index this version cannot read throws: deletion waits rather than guess that nothing serves the bundle.
    const index = (
      await readIndex(this.opts.store, layout.indexKey({ namespace, name: app.metadata.name }), ctx.signal)
    )?.doc;
    const objectKey = bundle.status?.artifact?.objectKey;
    return (index?.channels ?? [])
      .filter((c) =>
        [c.bundle, c.rollout?.bundle].some(
          (name) => name !== undefined && index?.bundles[name]?.objectKey === objectKey,
        ),
      )
      .map((c) => `channel ${c.name} in the published index`);
  }
}

const WORK_DIR_PREFIX = 'liveupdate-bundle-';

/**
 * An error whose message names the per-build work directory, with that random name replaced by its pattern: a
 * repeating local failure (an unwritable or full /tmp) then gives the same message, and the same status, each time.
 */
function withoutWorkDir(error: unknown, work: string, pattern: string): unknown {
  if (!(error instanceof Error) || error instanceof ReconcileError || !error.message.includes(work))
    return error;
  const { code } = error as NodeJS.ErrnoException;
  return Object.assign(
    new Error(error.message.replaceAll(work, pattern), { cause: error }),
    code ? { code } : {},
  );
}

function checkDigest(bundle: LiveUpdateBundle, sha256: string): void {
  const expected = bundle.spec.digest;
  if (expected && expected !== `sha256:${sha256}`) {
    throw new StallingError(
      Reason.DigestMismatch,
      `the artifact's digest is sha256:${sha256}, spec.digest is ${expected}`,
    );
  }
}

function readyMessage(bundle: LiveUpdateBundle, artifact: Artifact): string {
  return `stored version ${bundle.spec.version} (${artifact.encrypted ? 'encrypted, ' : ''}sha256:${artifact.sha256.slice(0, 12)})`;
}
