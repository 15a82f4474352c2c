/**
 * Renders, validates and writes an app's release index, then its entry in the root document.
 *
 * Order matters for devices (DESIGN.md "Storage layout"): every object the index references is checked to exist
 * first, the index is written with revision = previous + 1, and only then the root points at the new revision.
 * A channel whose bundle is not Ready keeps the entry it had in the previous index, so a failed bundle never
 * takes a release away from devices. Nothing is written when the content did not change.
 */
import { createHash } from 'node:crypto';
import {
  BUILTIN_BUNDLE,
  ConditionType,
  type Artifact,
  type LiveUpdateApp,
  type LiveUpdateBundle,
  type LiveUpdateChannel,
} from '../api/v1alpha1/index.js';
import type { ObjectStore } from '../storage/object-store.js';
import { ObjectNotFoundError } from '../storage/object-store.js';
import type { StorageLayout } from '../storage/layout.js';
import {
  RELEASE_INDEX_API_VERSION,
  RELEASE_ROOT_API_VERSION,
  channelNumericId,
  hashPinnedId,
  type IndexBundle,
  type IndexChannel,
  type IndexManifestEntry,
  type IndexProvenance,
  type ReleaseIndex,
  type ReleaseRoot,
} from '../storage/release-index.js';
import { validateReleaseIndex, validateReleaseRoot } from '../storage/release-index-schema.js';
import { isConditionTrue } from './common/conditions.js';
import { canonicalJson } from './common/status.js';

/** Largest index or root document read back from the store. */
const MAX_DOCUMENT_BYTES = 64 * 1024 * 1024;
/** Stat calls in flight while checking that referenced objects exist. */
const STAT_CONCURRENCY = 8;

export interface RenderInput {
  app: LiveUpdateApp;
  channels: LiveUpdateChannel[];
  bundles: LiveUpdateBundle[];
  previous: ReleaseIndex | undefined;
  /** Delta manifests by manifest object key, for bundles published with `delta: true`. */
  manifests: ReadonlyMap<string, IndexManifestEntry[]>;
}

/** A bundle devices may be sent to: Ready for its current generation, stored, and of this app. */
export function isServable(bundle: LiveUpdateBundle, appName: string): boolean {
  const ready = bundle.status?.conditions?.find((c) => c.type === ConditionType.Ready);
  return (
    bundle.spec.app === appName &&
    !bundle.metadata.deletionTimestamp &&
    bundle.status?.artifact !== undefined &&
    ready?.status === 'True' &&
    (ready.observedGeneration === undefined || ready.observedGeneration === bundle.metadata.generation)
  );
}

export function indexBundleOf(
  bundle: LiveUpdateBundle,
  manifests: ReadonlyMap<string, IndexManifestEntry[]>,
): IndexBundle {
  const artifact = bundle.status!.artifact!;
  const manifest = artifact.manifestKey ? manifests.get(artifact.manifestKey) : undefined;
  return {
    name: bundle.metadata.name,
    version: bundle.spec.version,
    objectKey: artifact.objectKey,
    size: artifact.size,
    sha256: artifact.sha256,
    encrypted: artifact.encrypted,
    checksum: artifact.checksum,
    ...(artifact.checksumV2 ? { checksumV2: artifact.checksumV2 } : {}),
    ...(artifact.sessionKey ? { sessionKey: artifact.sessionKey } : {}),
    ...(artifact.keyId ? { keyId: artifact.keyId } : {}),
    ...(bundle.spec.minNativeVersion ? { minNativeVersion: bundle.spec.minNativeVersion } : {}),
    ...(manifest && manifest.length > 0 ? { manifest } : {}),
    ...(bundle.spec.comment ? { comment: bundle.spec.comment } : {}),
    ...(bundle.spec.link ? { link: bundle.spec.link } : {}),
    ...(bundle.spec.breaking ? { breaking: true } : {}),
    ...indexProvenance(artifact),
  };
}

/** The artifact's origin as the index records it; absent for artifacts stored before provenance existed. */
function indexProvenance(artifact: Artifact): Pick<IndexBundle, 'provenance'> {
  const provenance: IndexProvenance = {
    ...(artifact.sourceDigest ? { sourceDigest: artifact.sourceDigest } : {}),
    ...(artifact.provenance?.ociManifestDigest
      ? { ociManifestDigest: artifact.provenance.ociManifestDigest }
      : {}),
    ...(artifact.provenance?.signatureProvider === 'cosign' && artifact.provenance.signatureKeyId
      ? {
          signatureProvider: 'cosign' as const,
          signatureKeyId: artifact.provenance.signatureKeyId,
          ...(artifact.provenance.signatureDigest
            ? { signatureDigest: artifact.provenance.signatureDigest }
            : {}),
        }
      : {}),
  };
  return Object.keys(provenance).length > 0 ? { provenance } : {};
}

/** Seed of the sticky rollout hash: stable while the rollout bundle stays, new when it changes. */
export function rolloutId(namespace: string, channel: string, bundle: string): string {
  return createHash('sha256').update(`${namespace}/${channel}/${bundle}`).digest('hex').slice(0, 16);
}

function policyOf(channel: LiveUpdateChannel): IndexChannel['policy'] {
  const p = channel.spec.policy ?? {};
  return {
    disableAutoUpdate: p.disableAutoUpdate ?? 'none',
    disableAutoUpdateUnderNative: p.disableAutoUpdateUnderNative ?? false,
    allowEmulator: p.allowEmulator ?? true,
    allowDev: p.allowDev ?? true,
    allowProd: p.allowProd ?? true,
    allowDeviceSelfSet: p.allowDeviceSelfSet ?? false,
    platforms: [...(p.platforms ?? ['ios', 'android'])].sort(),
  };
}

class IndexBuilder {
  readonly bundles: Record<string, IndexBundle> = {};
  private readonly live: Map<string, LiveUpdateBundle>;

  constructor(private readonly input: RenderInput) {
    const appName = input.app.metadata.name;
    this.live = new Map(input.bundles.filter((b) => isServable(b, appName)).map((b) => [b.metadata.name, b]));
  }

  /** The bundle entry for `name`: the live one when servable, else the one the previous index served. */
  resolve(name: string): string | undefined {
    if (name === BUILTIN_BUNDLE) return BUILTIN_BUNDLE;
    const bundle = this.live.get(name);
    const entry = bundle ? indexBundleOf(bundle, this.input.manifests) : undefined;
    if (!entry) return undefined;
    this.bundles[name] = entry;
    return name;
  }

  /** Keeps a previous entry (and the bundle entries it references) verbatim. */
  keepPrevious(previous: IndexChannel): IndexChannel | undefined {
    const old = this.input.previous;
    if (!old) return undefined;
    for (const name of [previous.bundle, previous.rollout?.bundle]) {
      if (name === undefined || name === BUILTIN_BUNDLE) continue;
      const entry = old.bundles[name];
      if (!entry) return undefined;
      this.bundles[name] ??= entry;
    }
    return previous;
  }

  channel(channel: LiveUpdateChannel): IndexChannel | undefined {
    const { namespace, name } = this.input.app.metadata;
    const previous = this.input.previous?.channels.find((c) => c.name === channel.metadata.name);
    const bundle = this.resolve(channel.spec.bundle);
    if (!bundle) return previous ? this.keepPrevious(previous) : undefined;
    const rollout = channel.spec.rollout;
    const rolloutBundle = rollout ? this.resolve(rollout.bundle) : undefined;
    const entry: IndexChannel = {
      name: channel.metadata.name,
      id: channelNumericId(namespace ?? '', name, channel.metadata.name),
      bundle,
      policy: policyOf(channel),
      pinnedIdHashes: [...new Set((channel.spec.pinnedDevices ?? []).map(hashPinnedId))].sort(),
    };
    if (rollout && rolloutBundle) {
      entry.rollout = {
        bundle: rolloutBundle,
        percentage: roundPercentage(rollout.percentage),
        id: rolloutId(namespace ?? '', channel.metadata.name, rolloutBundle),
        ...(rollout.paused ? { paused: true } : {}),
        ...(rollout.sticky === false ? { sticky: false } : {}),
      };
    } else if (rollout && previous?.rollout?.bundle === rollout.bundle) {
      // The rollout bundle stopped being servable: keep rolling out what devices already get.
      const kept = this.input.previous?.bundles[previous.rollout.bundle];
      if (kept) {
        this.bundles[previous.rollout.bundle] ??= kept;
        entry.rollout = previous.rollout;
      }
    }
    return entry;
  }
}

/** Rollout percentages are published with two decimals; the channel compares what it sees with this. */
export function roundPercentage(p: number): number {
  return Math.round(p * 100) / 100;
}

/** The index content for the app's current state; revision and generatedAt are set by {@link publishIndex}. */
export function renderIndex(input: RenderInput): Omit<ReleaseIndex, 'revision' | 'generatedAt'> {
  const { app } = input;
  const builder = new IndexBuilder(input);
  const channels = input.channels
    .filter((c) => c.spec.app === app.metadata.name && !c.metadata.deletionTimestamp)
    .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))
    .map((c) => builder.channel(c))
    .filter((c): c is IndexChannel => c !== undefined);
  return {
    apiVersion: RELEASE_INDEX_API_VERSION,
    kind: 'ReleaseIndex',
    app: {
      namespace: app.metadata.namespace ?? '',
      name: app.metadata.name,
      appId: app.spec.appId,
      ...(app.status?.keyId && isConditionTrue(app.status.conditions, ConditionType.KeyValid)
        ? { keyId: app.status.keyId }
        : {}),
      defaultChannel: app.spec.defaultChannel ?? 'production',
    },
    bundles: Object.fromEntries(Object.entries(builder.bundles).sort(([a], [b]) => a.localeCompare(b))),
    channels,
  };
}

/** Content equality that ignores revision and generatedAt. */
export function sameContent(
  a: Omit<ReleaseIndex, 'revision' | 'generatedAt'>,
  b: ReleaseIndex | undefined,
): boolean {
  if (!b) return false;
  const { revision: _r, generatedAt: _g, ...rest } = b;
  return canonicalJson(a) === canonicalJson(rest);
}

export class MissingObjectError extends Error {
  constructor(readonly key: string) {
    super(`the index references ${key}, which is not in the store`);
    this.name = 'MissingObjectError';
  }
}

export interface PublishResult {
  index: ReleaseIndex;
  indexKey: string;
  /** sha256:<hex> of the written document. */
  digest: string;
  /** False when the content was unchanged and nothing was written. */
  written: boolean;
}

async function readJson(store: ObjectStore, key: string, signal?: AbortSignal): Promise<unknown> {
  try {
    const { data } = await store.getBuffer(key, {
      maxBytes: MAX_DOCUMENT_BYTES,
      ...(signal ? { signal } : {}),
    });
    return JSON.parse(data.toString('utf8')) as unknown;
  } catch (error) {
    if (error instanceof ObjectNotFoundError) return undefined;
    if (error instanceof SyntaxError) return undefined;
    throw error;
  }
}

/** The index currently in the store, or undefined when absent or not a valid index (it is then replaced). */
export async function readIndex(
  store: ObjectStore,
  key: string,
  signal?: AbortSignal,
): Promise<ReleaseIndex | undefined> {
  const doc = await readJson(store, key, signal);
  if (doc === undefined) return undefined;
  try {
    return validateReleaseIndex(doc);
  } catch {
    return undefined;
  }
}

export function referencedKeys(index: Pick<ReleaseIndex, 'bundles'>): string[] {
  const keys = new Set<string>();
  for (const bundle of Object.values(index.bundles)) {
    keys.add(bundle.objectKey);
    for (const file of bundle.manifest ?? []) keys.add(file.objectKey);
  }
  return [...keys];
}

async function assertObjectsExist(store: ObjectStore, keys: string[], signal?: AbortSignal): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < keys.length) {
      const key = keys[next++]!;
      try {
        await store.stat(key, signal);
      } catch (error) {
        if (error instanceof ObjectNotFoundError) throw new MissingObjectError(key);
        throw error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(STAT_CONCURRENCY, keys.length) }, worker));
}

function digestOf(body: string): string {
  return `sha256:${createHash('sha256').update(body).digest('hex')}`;
}

/**
 * Writes `content` as the app's next index revision unless the stored one already has this content.
 * `knownRevision` (from the app's status) guards against a lost or replaced index making the revision go back.
 */
export async function publishIndex(
  store: ObjectStore,
  layout: StorageLayout,
  content: Omit<ReleaseIndex, 'revision' | 'generatedAt'>,
  opts: { previous: ReleaseIndex | undefined; knownRevision: number; now: Date; signal?: AbortSignal },
): Promise<PublishResult> {
  const indexKey = layout.indexKey(content.app);
  if (opts.previous && sameContent(content, opts.previous) && opts.previous.revision >= opts.knownRevision) {
    return {
      index: opts.previous,
      indexKey,
      digest: digestOf(JSON.stringify(opts.previous)),
      written: false,
    };
  }
  const index = validateReleaseIndex({
    ...content,
    revision: Math.max(opts.previous?.revision ?? 0, opts.knownRevision) + 1,
    generatedAt: opts.now.toISOString(),
  });
  await assertObjectsExist(store, referencedKeys(index), opts.signal);
  const body = JSON.stringify(index);
  await store.put(indexKey, body, {
    contentType: 'application/json',
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  return { index, indexKey, digest: digestOf(body), written: true };
}

/**
 * Read-modify-write of the root document, serialized within this process (only the leader writes, but its workers
 * reconcile several apps at once).
 */
export class RootPublisher {
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly store: ObjectStore,
    private readonly rootKey: string,
  ) {}

  upsert(entry: ReleaseRoot['apps'][number], now: Date, signal?: AbortSignal): Promise<void> {
    return this.update(
      (apps) => [...apps.filter((a) => !(a.namespace === entry.namespace && a.name === entry.name)), entry],
      now,
      signal,
    );
  }

  remove(app: { namespace: string; name: string }, now: Date, signal?: AbortSignal): Promise<void> {
    return this.update(
      (apps) => apps.filter((a) => !(a.namespace === app.namespace && a.name === app.name)),
      now,
      signal,
    );
  }

  private update(
    change: (apps: ReleaseRoot['apps']) => ReleaseRoot['apps'],
    now: Date,
    signal?: AbortSignal,
  ): Promise<void> {
    const run = this.chain.then(() => this.write(change, now, signal));
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async write(
    change: (apps: ReleaseRoot['apps']) => ReleaseRoot['apps'],
    now: Date,
    signal?: AbortSignal,
  ) {
    const current = await readJson(this.store, this.rootKey, signal);
    let apps: ReleaseRoot['apps'] = [];
    try {
      if (current !== undefined) apps = validateReleaseRoot(current).apps;
    } catch {
      apps = [];
    }
    const next = change(apps).sort((a, b) =>
      `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`),
    );
    if (current !== undefined && canonicalJson(next) === canonicalJson(apps)) return;
    const root = validateReleaseRoot({
      apiVersion: RELEASE_ROOT_API_VERSION,
      kind: 'ReleaseRoot',
      generatedAt: now.toISOString(),
      apps: next,
    });
    await this.store.put(this.rootKey, JSON.stringify(root), {
      contentType: 'application/json',
      ...(signal ? { signal } : {}),
    });
  }
}
