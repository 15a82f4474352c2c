/**
 * The update decision (CAPGO-PROTOCOL.md §2.5), a pure function of the compiled index and the device's info object.
 * Checks run in Capgo's order so that devices see the same error for the same situation. The HTTP layer turns a
 * {@link UpdatePlan} into the wire answer (it owns download URLs).
 */
import { randomInt } from 'node:crypto';
import { hashPinnedId } from '../storage/release-index.js';
import type { CompiledApp, CompiledBundle, CompiledChannel } from './compiled-index.js';
import { ROLLOUT_BUCKETS, rolloutBucket } from './compiled-index.js';
import type { DeviceInfo } from './device-request.js';
import { atLeast, compareSemver, parseSemverCached, type SemVer } from './semver.js';

export type Kind = 'up_to_date' | 'blocked' | 'failed';

/** A non-update answer: `{error, message, kind}` plus optional extra fields Capgo adds. */
export interface ErrorAnswer {
  type: 'error';
  status: number;
  error: string;
  message: string;
  kind: Kind;
  extra?: Record<string, string | boolean>;
}

export interface UpdatePlan {
  type: 'update';
  bundle: CompiledBundle;
  channel: CompiledChannel;
  /** Which checksum the device's plugin verifies. */
  checksum: string;
  includeManifest: boolean;
  includeNotes: boolean;
}

export type Decision = ErrorAnswer | UpdatePlan;

export function errorAnswer(
  error: string,
  message: string,
  kind: Kind,
  extra?: Record<string, string | boolean>,
  status = 200,
): ErrorAnswer {
  return extra
    ? { type: 'error', status, error, message, kind, extra }
    : { type: 'error', status, error, message, kind };
}

const KEY_ID_CHECK_AFTER: SemVer = Object.freeze({
  major: 8,
  minor: 40,
  patch: 7,
  prerelease: [],
  build: '',
});

/**
 * Plugin-version gates (§2.5, §6.4). A prerelease sorts below its release (8.35.0-beta.1 is older than 8.35.0), as in
 * Capgo's `isDeprecatedPluginVersion`. Majors above 8 keep 8.x behaviour.
 */
export const pluginGates = {
  /** Delta manifests: ≥ 5.10.0 / 6.25.0 / 7.0.35 / any 8.x. */
  manifest(p: SemVer): boolean {
    if (p.major >= 8) return true;
    if (p.major === 7) return atLeast(p, 7, 0, 35);
    if (p.major === 6) return atLeast(p, 6, 25, 0);
    if (p.major === 5) return atLeast(p, 5, 10, 0);
    return false;
  },
  /** `link` / `comment`: ≥ 5.35.0 / 6.35.0 / 7.35.0 / 8.35.0. */
  notes(p: SemVer): boolean {
    if (p.major > 8) return true;
    return p.major >= 5 && atLeast(p, p.major, 35, 0);
  },
  /** Legacy V2 (base64) signed checksum: plugins older than 5.30.0 / 6.30.0 / 7.30.0. */
  needsV2Checksum(p: SemVer): boolean {
    if (p.major >= 8) return false;
    return p.major < 5 || !atLeast(p, p.major, 30, 0);
  },
  /** key_id comparison: only plugins newer than 8.40.7 send a reliable key_id. */
  keyIdCheck(p: SemVer): boolean {
    return compareSemver(p, KEY_ID_CHECK_AFTER) > 0;
  },
  /** Resetting to the builtin bundle (`{"version":"builtin"}`) needs 6.2.0. */
  builtinRevert(p: SemVer): boolean {
    return atLeast(p, 6, 2, 0);
  },
  /**
   * Plugins that keep a self-assigned channel on the device (≥ 5.34.0 / 6.34.0 / 7.34.0 / 8.x); older ones expected
   * the server to store it. An unparsable or missing plugin_version counts as old, as in Capgo.
   */
  localChannelStorage(p: SemVer | null): boolean {
    if (!p) return false;
    if (p.major >= 8) return true;
    return p.major >= 5 && atLeast(p, p.major, 34, 0);
  },
};

/** Plugins older than 5.34 / 6.34 / 7.34 (or without a plugin_version) expect the server to keep setChannel. */
export function keepsChannelOnServer(pluginVersion: string): boolean {
  return !pluginGates.localChannelStorage(pluginVersion === '' ? null : parseSemverCached(pluginVersion));
}

export interface ResolvedChannel {
  channel: CompiledChannel;
  /**
   * pinned: an owner's per-device assignment; stored: a legacy plugin's server-side override; self: the device's
   * `defaultChannel`; default: the platform's public one.
   */
  via: 'pinned' | 'stored' | 'self' | 'default';
}

/** May a device on `platform` use `channel` as its `defaultChannel` (Capgo: the platform enabled, public or self-set)? */
export function selectable(channel: CompiledChannel, platform: DeviceInfo['platform']): boolean {
  const p = channel.channel.policy;
  return p.platforms.includes(platform) && (channel.isPublic || p.allowDeviceSelfSet);
}

/**
 * Capgo's channel resolution: pinned ids (its per-device overrides) → the channel named by `defaultChannel` when it
 * serves the platform and is public or self-assignable → the platform's public channel. No fallback: a
 * `defaultChannel` naming a missing, private or other-platform channel, or a platform without a public channel,
 * resolves to nothing (`no_channel`).
 */
export function resolveChannel(
  app: CompiledApp,
  device: Pick<DeviceInfo, 'deviceId' | 'customId' | 'defaultChannel' | 'platform'>,
  /** A legacy plugin's server-side override (channel metadata.name), honoured while the channel allows self-set. */
  stored?: string,
): ResolvedChannel | undefined {
  if (app.pins.size > 0) {
    const byDevice = app.pins.get(hashPinnedId(device.deviceId));
    if (byDevice) return { channel: byDevice, via: 'pinned' };
    if (device.customId !== '') {
      const byCustom = app.pins.get(hashPinnedId(device.customId));
      if (byCustom) return { channel: byCustom, via: 'pinned' };
    }
  }
  if (stored !== undefined) {
    const ch = app.byObjectName.get(stored);
    if (ch?.channel.policy.allowDeviceSelfSet) return { channel: ch, via: 'stored' };
  }
  if (device.defaultChannel !== '') {
    const wanted = app.channels.get(device.defaultChannel);
    return wanted && selectable(wanted, device.platform) ? { channel: wanted, via: 'self' } : undefined;
  }
  const pub = app.publicChannel[device.platform];
  return pub ? { channel: pub, via: 'default' } : undefined;
}

/**
 * The bundle a device gets from a channel. A device already running the rollout bundle keeps it while the rollout is
 * served (held or not, sticky or not): pausing never downgrades. Otherwise, unless the rollout is held, the device
 * gets it when its bucket falls in the share: a hash of the device id (sticky) or a fresh draw per check.
 */
export function targetOf(
  channel: CompiledChannel,
  deviceId: string,
  currentVersion: string,
): CompiledBundle | 'builtin' {
  const r = channel.rollout;
  if (!r) return channel.stable;
  if (currentVersion === r.bundle.bundle.version) return r.bundle;
  if (r.held) return channel.stable;
  const bucket = r.sticky ? rolloutBucket(r.id, deviceId) : randomInt(ROLLOUT_BUCKETS);
  return bucket < r.threshold ? r.bundle : channel.stable;
}

function keyIdsDiffer(device: string, bundle: string): boolean {
  const n = Math.min(device.length, bundle.length, 20);
  return device.slice(0, n) !== bundle.slice(0, n);
}

/** The answers that do not depend on the request: allocated once, and their serialized body can be cached. */
const sharedAnswers = new WeakSet<ErrorAnswer>();
const shared = (d: ErrorAnswer): ErrorAnswer => {
  sharedAnswers.add(Object.freeze(d));
  return d;
};
/** True for an answer every request that gets it shares (see {@link decideUpdate}). */
export const isSharedAnswer = (d: ErrorAnswer): boolean => sharedAnswers.has(d);
const NO_CHANNEL = shared(errorAnswer('no_channel', 'no default channel or override', 'failed'));
const NO_NEW_VERSION = shared(
  errorAnswer('no_new_version_available', 'No new version available', 'up_to_date'),
);
const ALREADY_ON_BUILTIN = shared(errorAnswer('already_on_builtin', 'Already on builtin', 'up_to_date'));

/**
 * The update decision, check for check in the order of Capgo's `update.ts`. `device` comes from
 * {@link parseDeviceInfo} (validated, `version_build` coerced to semver).
 */
export function decideUpdate(app: CompiledApp, device: DeviceInfo, stored?: string): Decision {
  const plugin = parseSemverCached(device.pluginVersion);
  const build = parseSemverCached(device.versionBuild);
  if (!plugin || !build) {
    return errorAnswer(
      'semver_error',
      `version_build "${device.versionBuild}" is not a semantic version`,
      'failed',
    );
  }
  if (plugin.major === 4) {
    return errorAnswer(
      'unsupported_plugin_version',
      `Plugin version ${device.pluginVersion} (v4) is no longer supported. Please upgrade to v5.10.0 or later.`,
      'failed',
    );
  }
  // Capgo replaces version_name "builtin" by version_build; a device whose bundle name equals its native version is
  // on the shipped bundle.
  const current = device.versionName === 'builtin' ? device.versionBuild : device.versionName;
  const resolved = resolveChannel(app, device, stored);
  if (!resolved) return NO_CHANNEL;
  const { channel } = resolved;
  const target = targetOf(channel, device.deviceId, current);
  const policy = channel.channel.policy;
  const targetVersion = target === 'builtin' ? 'builtin' : target.bundle.version;

  if (target !== 'builtin') {
    const bundle = target.bundle;
    if (device.keyId !== undefined && bundle.keyId !== undefined && pluginGates.keyIdCheck(plugin)) {
      if (keyIdsDiffer(device.keyId, bundle.keyId)) {
        return errorAnswer(
          'key_id_mismatch',
          'Device encryption key does not match bundle encryption key. The device may have a different public key than the one used to encrypt this bundle.',
          'blocked',
          { deviceKeyId: device.keyId, bundleKeyId: bundle.keyId.slice(0, 20) },
        );
      }
    }
  }
  if (current === targetVersion) return NO_NEW_VERSION;
  const extra = { version: targetVersion, old: current };
  if (!policy.platforms.includes(device.platform)) {
    return errorAnswer(
      `disabled_platform_${device.platform}`,
      `Cannot update, ${device.platform} is disabled`,
      'blocked',
      extra,
    );
  }
  const nativeExtra = { major: true, version: targetVersion, old: device.versionBuild };
  const mode = policy.disableAutoUpdate;
  if (target !== 'builtin' && mode === 'major' && target.semver.major > build.major) {
    return errorAnswer(
      'disable_auto_update_to_major',
      'Cannot upgrade major version',
      'blocked',
      nativeExtra,
    );
  }
  // Capgo's cannot_update_via_private_channel cannot happen here: resolution only lands on a private channel
  // without self-assignment through a pin, which is an owner override.
  if (target !== 'builtin') {
    const v = target.semver;
    if (mode === 'minor' && (v.major !== build.major || v.minor !== build.minor)) {
      return errorAnswer(
        'disable_auto_update_to_minor',
        'Cannot upgrade minor version',
        'blocked',
        nativeExtra,
      );
    }
    // Only a patch increase within the native major.minor.
    if (mode === 'patch' && !(v.major === build.major && v.minor === build.minor && v.patch > build.patch)) {
      return errorAnswer(
        'disable_auto_update_to_patch',
        'Cannot upgrade patch version',
        'blocked',
        nativeExtra,
      );
    }
    if (mode === 'metadata' && !target.minNative) {
      return errorAnswer(
        'misconfigured_channel',
        `Channel ${channel.deviceName} is misconfigured`,
        'failed',
        { version: targetVersion, old: device.versionBuild },
      );
    }
    // The bundle's native minimum (Capgo's min_update_version) applies on every channel, not only in "metadata"
    // mode: a bundle built for a newer native shell breaks older ones (ADR 0015).
    if (target.minNative && compareSemver(target.minNative, build) > 0) {
      return errorAnswer(
        'disable_auto_update_to_metadata',
        'Cannot upgrade version, min update version > current version',
        'blocked',
        nativeExtra,
      );
    }
    if (policy.disableAutoUpdateUnderNative && compareSemver(v, build) < 0) {
      return errorAnswer(
        'disable_auto_update_under_native',
        'Cannot revert under native version',
        'blocked',
        extra,
      );
    }
  }
  const env = environmentChecks(channel, device, extra);
  if (env) return env;

  if (target === 'builtin') {
    if (!pluginGates.builtinRevert(plugin)) {
      return errorAnswer(
        'revert_to_builtin_plugin_version_too_old',
        'revert_to_builtin used, but plugin version is too old',
        'failed',
      );
    }
    return device.versionName === 'builtin' || device.versionName === device.versionBuild
      ? ALREADY_ON_BUILTIN
      : errorAnswer('already_on_builtin', 'Already on builtin', 'up_to_date', { version: 'builtin' });
  }

  const bundle = target.bundle;
  let checksum = bundle.checksum;
  if (bundle.encrypted && pluginGates.needsV2Checksum(plugin)) {
    if (bundle.checksumV2 === undefined) {
      return errorAnswer(
        'unsupported_plugin_version',
        `Encrypted bundles need @capgo/capacitor-updater 5.30.0 / 6.30.0 / 7.30.0 or newer (device has ${device.pluginVersion})`,
        'failed',
        extra,
      );
    }
    checksum = bundle.checksumV2;
  }
  return {
    type: 'update',
    bundle: target,
    channel,
    checksum,
    includeManifest:
      bundle.manifest !== undefined && bundle.manifest.length > 0 && pluginGates.manifest(plugin),
    includeNotes: app.exposeBundleMetadata && pluginGates.notes(plugin),
  };
}

function environmentChecks(
  channel: CompiledChannel,
  device: DeviceInfo,
  extra: Record<string, string | boolean>,
): ErrorAnswer | undefined {
  const policy = channel.channel.policy;
  if (device.isProd && !policy.allowProd) {
    return errorAnswer('disable_prod_build', 'Cannot update, prod build is disabled', 'blocked', extra);
  }
  if (!device.isProd && !policy.allowDev) {
    return errorAnswer('disable_dev_build', 'Cannot update, dev build is disabled', 'blocked', extra);
  }
  if (!device.isEmulator && policy.allowDevice === false) {
    return errorAnswer('disable_device', 'Cannot update, device is disabled', 'blocked', extra);
  }
  if (device.isEmulator && !policy.allowEmulator) {
    return errorAnswer('disable_emulator', 'Cannot update, emulator is disabled', 'blocked', extra);
  }
  return undefined;
}
