/**
 * The release index: the one document per LiveUpdateApp that configures the update service.
 *
 * Written only by the controller (leader), after every object it references was stored and re-read; read by every
 * update-service replica, which validates it against {@link releaseIndexSchema} and swaps it in atomically.
 * It holds everything needed to answer devices and nothing secret: no private key, no S3 credentials.
 * Pinned device and custom ids are stored as {@link hashPinnedId} digests, not in clear.
 */
import { createHash, hash } from 'node:crypto';

export const RELEASE_INDEX_API_VERSION = 'liveupdate.dev/index/v1' as const;
export const RELEASE_ROOT_API_VERSION = 'liveupdate.dev/index-root/v1' as const;
/**
 * Schema version of both documents this build writes and the highest it reads. Additive fields that older readers may
 * ignore keep the version (readers ignore, writers keep, fields they do not know); a change older readers must not
 * serve raises it, and they then refuse the document instead of misreading it (docs/adr/0007-conditional-writes.md).
 */
export const RELEASE_SCHEMA_VERSION = 1;

export type Platform = 'ios' | 'android' | 'electron';
export const PLATFORMS: readonly Platform[] = ['ios', 'android', 'electron'];

/** Which kinds of upgrade (compared with the device's native `version_build`) are refused by a channel. */
export type DisableAutoUpdate = 'none' | 'patch' | 'minor' | 'major' | 'metadata';

export interface IndexManifestEntry {
  /** Path relative to the bundle root, `.br` suffix when the body is Brotli-compressed. */
  fileName: string;
  /** What devices receive as `file_hash`: signed (V3 hex) when the app has a key, else sha256 hex. */
  fileHash: string;
  /** Object key (relative to the store bucket) of the stored, possibly encrypted, body. */
  objectKey: string;
  size: number;
}

export interface IndexBundle {
  /** metadata.name of the LiveUpdateBundle. */
  name: string;
  /** Semver version name devices see as `version`. */
  version: string;
  /** Object key of the zip devices download (encrypted when `encrypted`). */
  objectKey: string;
  /** Size in bytes of the stored object. */
  size: number;
  /** Lowercase hex sha256 of the plain (decrypted) zip. */
  sha256: string;
  encrypted: boolean;
  /** `checksum` for current plugins: V3 hex signature when encrypted, plain sha256 hex otherwise. */
  checksum: string;
  /** Legacy V2 (base64) checksum for plugins older than 5.30.0 / 6.30.0 / 7.30.0. Encrypted bundles only. */
  checksumV2?: string;
  /** `iv:key` session key, encrypted bundles only. */
  sessionKey?: string;
  /** key_id of the signing key (first 20 characters of the public key body). */
  keyId?: string;
  /** Devices whose native `version_build` is lower are refused (`disable_auto_update_under_native` semantics differ). */
  minNativeVersion?: string;
  /** Delta manifest, when the bundle was published with `delta: true`. */
  manifest?: IndexManifestEntry[];
  comment?: string;
  link?: string;
  breaking?: boolean;
  /**
   * Where the artifact came from, so that "CI signature → our signed checksum" can be inspected: the sha256 of the
   * artifact as fetched and, for OCI sources, the manifest digest and the cosign key that verified its signature.
   */
  provenance?: IndexProvenance;
}

export interface IndexProvenance {
  /** sha256:<hex> of the artifact as fetched from its source. */
  sourceDigest?: string;
  ociManifestDigest?: string;
  signatureProvider?: 'cosign';
  /** sha256:<hex> of the DER public key that verified the signature. */
  signatureKeyId?: string;
  signatureDigest?: string;
}

export interface IndexChannelPolicy {
  disableAutoUpdate: DisableAutoUpdate;
  /** Refuse bundles whose version is lower than the device's native version_build. */
  disableAutoUpdateUnderNative: boolean;
  allowEmulator: boolean;
  allowDev: boolean;
  allowProd: boolean;
  /** Devices may select this channel themselves (`setChannel`, `defaultChannel`). */
  allowDeviceSelfSet: boolean;
  platforms: Platform[];
  /** Physical (non-emulator) devices may update (Capgo's `allow_device`); absent means true. */
  allowDevice?: boolean;
}

export interface IndexRollout {
  /** Bundle name (key of `bundles`) served to the rollout share of devices. */
  bundle: string;
  /** 0–100, may have up to two decimals. */
  percentage: number;
  /**
   * Seed of the sticky device hash. Stable for one rollout so that a device's answer does not change while the
   * percentage grows; changes when the rollout bundle changes.
   */
  id: string;
  /**
   * The rollout is held (`spec.rollout.paused`, or a failure threshold with `onFailure: Pause`): devices already on
   * the rollout bundle keep it, every other device gets the stable bundle. Nobody is downgraded, nobody new enters.
   */
  paused?: boolean;
  /** A failure threshold with `onFailure: Rollback` tripped: devices on the rollout bundle are offered the stable one. */
  rolledBack?: boolean;
  /** Absent or true: a device's share is a hash of its id. False: devices not on the rollout bundle draw at every check. */
  sticky?: boolean;
}

export interface IndexChannel {
  /** metadata.name of the LiveUpdateChannel. */
  name: string;
  /** The name devices see and send (`defaultChannel`, setChannel, listChannels); absent means `name`. Unique per app. */
  deviceName?: string;
  /** Stable numeric id for `listChannels` (devices require a number). */
  id: number;
  /** Bundle name served to everyone not in the rollout share, or the literal `builtin` to reset devices. */
  bundle: string;
  rollout?: IndexRollout;
  policy: IndexChannelPolicy;
  /** {@link hashPinnedId} of device ids / custom ids that always get this channel (QA devices). */
  pinnedIdHashes: string[];
}

export interface ReleaseIndex {
  apiVersion: typeof RELEASE_INDEX_API_VERSION;
  kind: 'ReleaseIndex';
  /** {@link RELEASE_SCHEMA_VERSION} of the writer; absent = 1. */
  schemaVersion?: number;
  /** Monotonically increasing per app. */
  revision: number;
  /** RFC 3339 time the controller rendered it. */
  generatedAt: string;
  app: {
    namespace: string;
    name: string;
    /** Reverse-domain Capacitor app id devices send as `app_id`. */
    appId: string;
    /** key_id of the app's signing key, when it has one. */
    keyId?: string;
    /** Channel used when a device has no pinned or self-selected channel. */
    defaultChannel: string;
    /**
     * Per-platform public channel (Capgo has one public channel per platform); a platform absent here uses
     * `defaultChannel`. Channel metadata.names.
     */
    defaultChannels?: Partial<Record<Platform, string>>;
    /** Send bundle `link`/`comment` to plugins that read them (Capgo's app-level `expose_metadata`); absent is false. */
    exposeBundleMetadata?: boolean;
  };
  /** Bundles referenced by at least one channel, by LiveUpdateBundle name. */
  bundles: Record<string, IndexBundle>;
  channels: IndexChannel[];
}

/** The small root document listing every app index, so that N apps cost one poll. */
export interface ReleaseRoot {
  apiVersion: typeof RELEASE_ROOT_API_VERSION;
  kind: 'ReleaseRoot';
  /** {@link RELEASE_SCHEMA_VERSION} of the writer; absent = 1. */
  schemaVersion?: number;
  generatedAt: string;
  apps: Array<{ namespace: string; name: string; appId: string; indexKey: string; revision: number }>;
}

/**
 * Digest stored in the index for a pinned device id or custom id (ids are personal data). Also computed on the
 * update-check hot path, hence the one-shot `crypto.hash`.
 */
export function hashPinnedId(id: string): string {
  return hash('sha256', `liveupdate-pin:${id.trim().toLowerCase()}`);
}

/** Stable numeric channel id for `listChannels`: the first 6 bytes of sha256(namespace/app/channel). */
export function channelNumericId(namespace: string, app: string, channel: string): number {
  return createHash('sha256').update(`${namespace}/${app}/${channel}`).digest().readUIntBE(0, 6);
}
