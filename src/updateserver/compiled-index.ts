/**
 * A release index compiled for serving: lookups by channel name and pinned-id hash, parsed versions, the rollout
 * threshold, and the set of object keys devices may download. Compiling also checks what the JSON schema cannot
 * (references between channels and bundles, versions that parse), so a structurally valid but inconsistent index is
 * refused like a corrupt one and the previous revision keeps serving.
 */
import { hash } from 'node:crypto';
import {
  PLATFORMS,
  type IndexBundle,
  type IndexChannel,
  type Platform,
  type ReleaseIndex,
} from '../storage/release-index.js';
import type { AppRef } from '../storage/layout.js';
import { parseSemver, type SemVer } from './semver.js';

/** Rollout buckets: a device is in a rollout of p % when its bucket is below p × 100. */
export const ROLLOUT_BUCKETS = 10_000;

export interface CompiledBundle {
  bundle: IndexBundle;
  semver: SemVer;
  minNative: SemVer | undefined;
}

export interface CompiledChannel {
  channel: IndexChannel;
  /** The name devices see (`deviceName`, else metadata.name). */
  deviceName: string;
  /** Public (Capgo's `public`): the default channel of at least one platform. */
  isPublic: boolean;
  /** The bundle served to devices outside the rollout share; `builtin` resets devices to the shipped bundle. */
  stable: CompiledBundle | 'builtin';
  /**
   * Present while a rollout is served (not rolled back; at 0 % nobody new enters). `held`: paused, devices already on the
   * rollout bundle keep it and nobody else enters. `sticky: false`: devices not on it draw at every check.
   */
  rollout: CompiledRollout | undefined;
}

export interface CompiledRollout {
  bundle: CompiledBundle;
  threshold: number;
  id: string;
  held: boolean;
  sticky: boolean;
}

export interface CompiledApp {
  index: ReleaseIndex;
  appId: string;
  ref: AppRef;
  revision: number;
  /** By device-visible name. */
  channels: ReadonlyMap<string, CompiledChannel>;
  /** By metadata.name. */
  byObjectName: ReadonlyMap<string, CompiledChannel>;
  defaultChannel: CompiledChannel;
  /** The public channel of each platform (`defaultChannels[p]`, else `defaultChannel`), when it serves that platform. */
  publicChannel: Readonly<Partial<Record<Platform, CompiledChannel>>>;
  /** Send bundle link/comment (Capgo's `expose_metadata`). */
  exposeBundleMetadata: boolean;
  /** hashPinnedId(device or custom id) → channel; the first channel listing an id wins. */
  pins: ReadonlyMap<string, CompiledChannel>;
  /** Bundle version names this index serves (stats keep these versions, others are counted as `other`). */
  versions: ReadonlySet<string>;
  /** Every object key the index references (zips and delta files), with its size. */
  objects: ReadonlyMap<string, number>;
}

export class IndexConsistencyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IndexConsistencyError';
  }
}

function compileBundle(index: ReleaseIndex, name: string, where: string): CompiledBundle {
  const bundle = index.bundles[name];
  if (!bundle) throw new IndexConsistencyError(`${where} references bundle "${name}" that is not in bundles`);
  const semver = parseSemver(bundle.version);
  if (!semver)
    throw new IndexConsistencyError(`bundle "${name}" has a version that is not semver: ${bundle.version}`);
  let minNative: SemVer | undefined;
  if (bundle.minNativeVersion !== undefined) {
    const parsed = parseSemver(bundle.minNativeVersion);
    if (!parsed) throw new IndexConsistencyError(`bundle "${name}" has an invalid minNativeVersion`);
    minNative = parsed;
  }
  return { bundle, semver, minNative };
}

export function compileIndex(index: ReleaseIndex): CompiledApp {
  const channels = new Map<string, CompiledChannel>();
  const byObjectName = new Map<string, CompiledChannel>();
  const pins = new Map<string, CompiledChannel>();
  const versions = new Set<string>();
  const objects = new Map<string, number>();
  for (const b of Object.values(index.bundles)) {
    versions.add(b.version);
    objects.set(b.objectKey, b.size);
    for (const f of b.manifest ?? []) objects.set(f.objectKey, f.size);
  }
  for (const ch of index.channels) {
    const deviceName = ch.deviceName ?? ch.name;
    if (byObjectName.has(ch.name)) throw new IndexConsistencyError(`channel "${ch.name}" appears twice`);
    if (channels.has(deviceName))
      throw new IndexConsistencyError(`two channels are named "${deviceName}" for devices`);
    const stable =
      ch.bundle === 'builtin' ? 'builtin' : compileBundle(index, ch.bundle, `channel "${ch.name}"`);
    let rollout: CompiledChannel['rollout'];
    if (ch.rollout && !ch.rollout.rolledBack) {
      rollout = {
        bundle: compileBundle(index, ch.rollout.bundle, `rollout of channel "${ch.name}"`),
        threshold: Math.round(Math.min(100, ch.rollout.percentage) * (ROLLOUT_BUCKETS / 100)),
        id: ch.rollout.id,
        held: ch.rollout.paused === true,
        sticky: ch.rollout.sticky !== false,
      };
    }
    const compiled: CompiledChannel = { channel: ch, deviceName, isPublic: false, stable, rollout };
    channels.set(deviceName, compiled);
    byObjectName.set(ch.name, compiled);
    for (const h of ch.pinnedIdHashes) if (!pins.has(h)) pins.set(h, compiled);
  }
  const defaultChannel = byObjectName.get(index.app.defaultChannel);
  if (!defaultChannel) {
    throw new IndexConsistencyError(
      `default channel "${index.app.defaultChannel}" is not among the channels`,
    );
  }
  const publicChannel: Partial<Record<Platform, CompiledChannel>> = {};
  for (const p of PLATFORMS) {
    const name = index.app.defaultChannels?.[p];
    // A per-platform default that is not served (deleted, not Ready yet) leaves the platform without a public
    // channel (devices get no_channel), as in Capgo; it does not make the whole index unusable.
    const ch = name === undefined ? defaultChannel : byObjectName.get(name);
    if (!ch) continue;
    ch.isPublic = true;
    if (ch.channel.policy.platforms.includes(p)) publicChannel[p] = ch;
  }
  return {
    index,
    appId: index.app.appId,
    ref: { namespace: index.app.namespace, name: index.app.name },
    revision: index.revision,
    channels,
    byObjectName,
    defaultChannel,
    publicChannel,
    exposeBundleMetadata: index.app.exposeBundleMetadata === true,
    pins,
    versions,
    objects,
  };
}

/**
 * The sticky rollout bucket of a device in [0, 10000): a hash of the rollout id and the device id. The same device
 * always lands in the same bucket for one rollout, so raising the percentage only adds devices; a new rollout (new
 * id) reshuffles.
 */
export function rolloutBucket(rolloutId: string, deviceId: string): number {
  // The first 6 bytes, big-endian: from the hex digest (a Buffer digest costs an allocation more per request).
  const hex = hash('sha256', `${rolloutId}\0${deviceId.toLowerCase()}`, 'hex');
  return Number.parseInt(hex.slice(0, 12), 16) % ROLLOUT_BUCKETS;
}
