/**
 * Renders an app's release index from its LiveUpdateApp, channels and Ready bundles. Pure: no store access.
 * A channel whose bundle is not Ready keeps the entry it had in the previous index, so a failed bundle never takes a
 * release away from devices. The app and channel reconcilers share the servability and rollout rules defined here.
 */
import { createHash } from 'node:crypto';
import {
  BUILTIN_BUNDLE,
  ConditionType,
  type Artifact,
  type LiveUpdateApp,
  type LiveUpdateBundle,
  type LiveUpdateChannel,
} from '../../api/v1alpha1/index.js';
import {
  RELEASE_INDEX_API_VERSION,
  RELEASE_SCHEMA_VERSION,
  channelNumericId,
  hashPinnedId,
  type IndexBundle,
  type IndexChannel,
  type IndexManifestEntry,
  type IndexProvenance,
  type ReleaseIndex,
} from '../../storage/release-index.js';
import { deviceNameHolders, deviceNameOf } from '../channel/device-name.js';
import { rolloutStateOf } from '../channel/rollout-state.js';
import { isConditionTrue } from '../common/conditions.js';
import { canonicalJson } from '../common/status.js';

export interface RenderInput {
  app: LiveUpdateApp;
  channels: LiveUpdateChannel[];
  bundles: LiveUpdateBundle[];
  previous: ReleaseIndex | undefined;
  /** Delta manifests by manifest object key, for bundles published with `delta: true`. */
  manifests: ReadonlyMap<string, IndexManifestEntry[]>;
}

/**
 * The bundles an app's index may list: those its channels name (bundle and rollout bundle). No other bundle changes
 * what is published, so the app reconciler reads only these, and only their events enqueue the app.
 */
export function bundlesNamedByChannels(channels: readonly LiveUpdateChannel[], appName: string): Set<string> {
  const names = new Set<string>();
  for (const c of channels) {
    if (c.spec.app !== appName) continue;
    names.add(c.spec.bundle);
    if (c.spec.rollout?.bundle) names.add(c.spec.rollout.bundle);
  }
  return names;
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
    // Written only when false, so indexes of channels that do not use it stay byte-identical.
    ...(p.allowDevice === false ? { allowDevice: false } : {}),
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
      ...(channel.spec.deviceName !== undefined && channel.spec.deviceName !== channel.metadata.name
        ? { deviceName: channel.spec.deviceName }
        : {}),
      id: channelNumericId(namespace ?? '', name, channel.metadata.name),
      bundle,
      policy: policyOf(channel),
      pinnedIdHashes: [...new Set((channel.spec.pinnedDevices ?? []).map(hashPinnedId))].sort(),
    };
    if (rollout && rolloutBundle) {
      const state = rolloutStateOf(channel);
      entry.rollout = {
        bundle: rolloutBundle,
        percentage: roundPercentage(rollout.percentage),
        id: rolloutId(namespace ?? '', channel.metadata.name, rolloutBundle),
        ...(state === 'Paused' ? { paused: true } : {}),
        ...(state === 'RolledBack' ? { rolledBack: true } : {}),
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

/** An index without the fields the writer sets (revision, generatedAt). */
export type RenderedIndex = Omit<ReleaseIndex, 'revision' | 'generatedAt'>;

/** The index content for the app's current state; revision and generatedAt are set when it is published. */
export function renderIndex(input: RenderInput): RenderedIndex {
  const { app } = input;
  const builder = new IndexBuilder(input);
  const live = input.channels.filter(
    (c) => c.spec.app === app.metadata.name && !c.metadata.deletionTimestamp,
  );
  const holders = deviceNameHolders(live);
  const channels = live
    .filter((c) => holders.get(deviceNameOf(c)) === c)
    .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))
    .map((c) => builder.channel(c))
    .filter((c): c is IndexChannel => c !== undefined);
  return {
    apiVersion: RELEASE_INDEX_API_VERSION,
    kind: 'ReleaseIndex',
    schemaVersion: RELEASE_SCHEMA_VERSION,
    app: {
      namespace: app.metadata.namespace ?? '',
      name: app.metadata.name,
      appId: app.spec.appId,
      ...(app.status?.keyId && isConditionTrue(app.status.conditions, ConditionType.KeyValid)
        ? { keyId: app.status.keyId }
        : {}),
      defaultChannel: app.spec.defaultChannel ?? 'production',
      ...(app.spec.defaultChannels && Object.keys(app.spec.defaultChannels).length > 0
        ? { defaultChannels: { ...app.spec.defaultChannels } }
        : {}),
      ...(app.spec.exposeBundleMetadata === true ? { exposeBundleMetadata: true } : {}),
    },
    bundles: Object.fromEntries(Object.entries(builder.bundles).sort(([a], [b]) => a.localeCompare(b))),
    channels,
  };
}

/** Content equality that ignores revision and generatedAt. */
export function sameContent(a: RenderedIndex, b: ReleaseIndex | undefined): boolean {
  if (!b) return false;
  const { revision: _r, generatedAt: _g, ...rest } = b;
  return canonicalJson(a) === canonicalJson(rest);
}
