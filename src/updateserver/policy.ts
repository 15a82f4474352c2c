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
import { atLeast, compareSemver, parseSemver, type SemVer } from './semver.js';

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

export interface ResetAnswer {
  type: 'reset';
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

export type Decision = ErrorAnswer | ResetAnswer | UpdatePlan;

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

/** Plugin-version gates (§2.5, §6.4). Majors above 8 are assumed to keep 8.x behaviour. */
export const pluginGates = {
  /** Delta manifests: ≥ 5.10.0 / 6.25.0 / 7.0.35 / any 8.x. */
  manifest(p: SemVer): boolean {
    if (p.major >= 8) return true;
    if (p.major === 7) return atLeast(p, 7, 0, 35);
    if (p.major === 6) return atLeast(p, 6, 25, 0);
    if (p.major === 5) return atLeast(p, 5, 10, 0);
    return false;
  },
  /** `link` / `comment`: ≥ x.35.0 on the 5–8 lines. */
  notes(p: SemVer): boolean {
    if (p.major > 8) return true;
    return p.major >= 5 && p.minor >= 35;
  },
  /** Legacy V2 (base64) signed checksum: plugins older than 5.30.0 / 6.30.0 / 7.30.0. */
  needsV2Checksum(p: SemVer): boolean {
    if (p.major >= 8) return false;
    return p.major < 5 || p.minor < 30;
  },
  /** key_id comparison: only plugins newer than 8.40.7 send a reliable key_id. */
  keyIdCheck(p: SemVer): boolean {
    return compareSemver(p, { major: 8, minor: 40, patch: 7, prerelease: [], build: '' }) > 0;
  },
};

export interface ResolvedChannel {
  channel: CompiledChannel;
  via: 'pinned' | 'self' | 'default';
}

/** Pinned ids → `defaultChannel` when that channel allows self-assignment and the platform → the app's default. */
export function resolveChannel(
  app: CompiledApp,
  device: Pick<DeviceInfo, 'deviceId' | 'customId' | 'defaultChannel' | 'platform'>,
): ResolvedChannel {
  if (app.pins.size > 0) {
    const byDevice = app.pins.get(hashPinnedId(device.deviceId));
    if (byDevice) return { channel: byDevice, via: 'pinned' };
    if (device.customId !== '') {
      const byCustom = app.pins.get(hashPinnedId(device.customId));
      if (byCustom) return { channel: byCustom, via: 'pinned' };
    }
  }
  if (device.defaultChannel !== '') {
    const wanted = app.channels.get(device.defaultChannel);
    if (
      wanted &&
      wanted.channel.policy.allowDeviceSelfSet &&
      wanted.channel.policy.platforms.includes(device.platform)
    ) {
      return { channel: wanted, via: 'self' };
    }
  }
  return { channel: app.defaultChannel, via: 'default' };
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

export function decideUpdate(app: CompiledApp, device: DeviceInfo): Decision {
  const plugin = parseSemver(device.pluginVersion);
  if (!plugin) {
    return errorAnswer(
      'unsupported_plugin_version',
      `plugin_version "${device.pluginVersion}" is not a version`,
      'failed',
    );
  }
  const build = parseSemver(device.versionBuild);
  if (!build) {
    return errorAnswer(
      'semver_error',
      `version_build "${device.versionBuild}" is not a semantic version`,
      'failed',
    );
  }
  // A device on its shipped bundle reports "builtin": its baseline is the native version.
  const current = device.versionName === 'builtin' ? device.versionBuild : device.versionName;
  const { channel } = resolveChannel(app, device);
  const target = targetOf(channel, device.deviceId, current);
  const policy = channel.channel.policy;

  if (target === 'builtin') {
    if (!policy.platforms.includes(device.platform)) {
      return errorAnswer(
        `disabled_platform_${device.platform}`,
        `Channel is disabled for ${device.platform}`,
        'blocked',
      );
    }
    const env = environmentChecks(channel, device);
    if (env) return env;
    if (device.versionName === 'builtin') {
      return errorAnswer('already_on_builtin', 'Already on the builtin bundle', 'up_to_date');
    }
    return { type: 'reset' };
  }

  const bundle = target.bundle;
  const version = bundle.version;
  const extra = { version, old: current };

  if (device.keyId !== undefined && bundle.keyId !== undefined && pluginGates.keyIdCheck(plugin)) {
    if (keyIdsDiffer(device.keyId, bundle.keyId)) {
      return errorAnswer(
        'key_id_mismatch',
        'The bundle is encrypted for another public key than the one configured in the app',
        'blocked',
        { ...extra, deviceKeyId: device.keyId, bundleKeyId: bundle.keyId.slice(0, 20) },
      );
    }
  }
  if (current === version) {
    return errorAnswer('no_new_version_available', 'No new version available', 'up_to_date');
  }
  if (!policy.platforms.includes(device.platform)) {
    return errorAnswer(
      `disabled_platform_${device.platform}`,
      `Channel is disabled for ${device.platform}`,
      'blocked',
      extra,
    );
  }
  const v = target.semver;
  const mode = policy.disableAutoUpdate;
  if (mode === 'major' && v.major > build.major) {
    return errorAnswer(
      'disable_auto_update_to_major',
      'A native store update is required for this version',
      'blocked',
      {
        ...extra,
        major: true,
      },
    );
  }
  if (mode === 'minor' && (v.major > build.major || (v.major === build.major && v.minor > build.minor))) {
    return errorAnswer(
      'disable_auto_update_to_minor',
      'Minor updates are disabled on this channel',
      'blocked',
      {
        ...extra,
        major: true,
      },
    );
  }
  if (mode === 'patch' && compareSemver({ ...v, prerelease: [] }, { ...build, prerelease: [] }) > 0) {
    return errorAnswer(
      'disable_auto_update_to_patch',
      'Patch updates are disabled on this channel',
      'blocked',
      {
        ...extra,
        major: true,
      },
    );
  }
  // The bundle's native minimum (Capgo's min_update_version, "metadata" mode) always applies: a bundle built for a
  // newer native shell would break older ones.
  if (target.minNative && compareSemver(target.minNative, build) > 0) {
    return errorAnswer(
      'disable_auto_update_to_metadata',
      `This version needs native version ${bundle.minNativeVersion ?? ''} or newer`,
      'blocked',
      { ...extra, major: true },
    );
  }
  if (policy.disableAutoUpdateUnderNative && compareSemver(v, build) < 0) {
    return errorAnswer(
      'disable_auto_update_under_native',
      'The channel version is lower than the native version',
      'blocked',
      extra,
    );
  }
  const env = environmentChecks(channel, device, extra);
  if (env) return env;

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
    includeNotes: pluginGates.notes(plugin),
  };
}

function environmentChecks(
  channel: CompiledChannel,
  device: DeviceInfo,
  extra?: Record<string, string | boolean>,
): ErrorAnswer | undefined {
  const policy = channel.channel.policy;
  if (device.isProd && !policy.allowProd) {
    return errorAnswer(
      'disable_prod_build',
      'Production builds are disabled on this channel',
      'blocked',
      extra,
    );
  }
  if (!device.isProd && !policy.allowDev) {
    return errorAnswer(
      'disable_dev_build',
      'Development builds are disabled on this channel',
      'blocked',
      extra,
    );
  }
  if (device.isEmulator && !policy.allowEmulator) {
    return errorAnswer('disable_emulator', 'Emulators are disabled on this channel', 'blocked', extra);
  }
  return undefined;
}
