/**
 * Validation of the device "info object" (CAPGO-PROTOCOL.md §2.1): the body of update checks, the base of stats
 * events and channel calls (a JSON body, or query parameters for GET/DELETE /channel_self). It follows Capgo's
 * `plugin_parser.ts` + `plugin_validation.ts` step by step, so a device gets the same code for the same mistake:
 *
 * 1. empty body → 400 `invalid_json_body` (`invalid_query_parameters` for GET/DELETE)
 * 2. no `device_id` → 400 `missing_device_id` (not required by listChannels); no `app_id` → 400 `missing_app_id`
 * 3. a `version_build` that does not coerce to semver (`"1"` → 1.0.0, `"1.2"` → 1.2.0) → 400 `semver_error`
 * 4. every other field problem → 400 `invalid_json_body` / `invalid_query_parameters`, the message naming the field:
 *    `device_id` a UUID of ≤ 36 characters, `app_id` reverse-domain, `platform` ios/android/electron, `version_name`
 *    (non-empty for update checks), `version_build` (non-empty for update checks), `plugin_version` semver (required
 *    for update checks; a missing one on /channel_self means a legacy plugin), `is_emulator`/`is_prod` booleans
 *    (default false/true), `key_id` ≤ 20, `install_source` string ≤ 64, `defaultChannel`/`channel` strings, and for
 *    stats `version_os` and `custom_id` ≤ 36. JSON `null` is not a string.
 */
import { PLATFORMS, type Platform } from '../storage/release-index.js';
import { memoizeBounded, parseSemver } from './semver.js';

export interface DeviceInfo {
  platform: Platform;
  /** Lower-cased, as Capgo's backend does. */
  deviceId: string;
  appId: string;
  customId: string;
  /** Native version as sent (trimmed); `build` is its semver coercion. */
  versionBuild: string;
  versionCode: string;
  versionOs: string;
  /** Running bundle as sent (`builtin` for the shipped bundle). */
  versionName: string;
  /** `''` when absent (a legacy plugin on /channel_self). */
  pluginVersion: string;
  isEmulator: boolean;
  isProd: boolean;
  defaultChannel: string;
  keyId: string | undefined;
  /** `channel` of setChannel / getChannel bodies, `''` when absent. */
  channel: string;
}

/** A refused request: HTTP status, protocol error code, human message. */
export class RequestError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'RequestError';
  }
}

/** Capgo's `reverseDomainRegex`. */
const APP_ID = /^[a-z0-9]+(\.[\w-]+)+$/i;

/** True when `s[from, to)` are hex digits, any case (`| 0x20` lower-cases ASCII letters and moves no digit). */
function hexDigits(s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    const lower = c | 0x20;
    if (!((c >= 0x30 && c <= 0x39) || (lower >= 0x61 && lower <= 0x66))) return false;
  }
  return true;
}

/**
 * Capgo's `deviceIdRegex` (`/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i`: a UUID, any case),
 * written out: it runs on every update check and this is ~25 % cheaper than the expression (device-request.test.ts
 * compares both on generated inputs).
 */
export function isDeviceId(s: string): boolean {
  return (
    s.length === 36 &&
    s.charCodeAt(8) === 0x2d &&
    s.charCodeAt(13) === 0x2d &&
    s.charCodeAt(18) === 0x2d &&
    s.charCodeAt(23) === 0x2d &&
    hexDigits(s, 0, 8) &&
    hexDigits(s, 9, 13) &&
    hexDigits(s, 14, 18) &&
    hexDigits(s, 19, 23) &&
    hexDigits(s, 24, 36)
  );
}

/** A full semver (what `@std/semver` `canParse` accepts, optional leading `v`). */
const FULL_SEMVER =
  /^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$/;
const MAX_STRING = 256;
export const MAX_KEYS = 64;

/** Which request the info object belongs to: each has Capgo's own schema. */
export type RequestKind = 'update' | 'channel' | 'channel_list' | 'stats';
export type Source = 'body' | 'query';

const invalidCode = (source: Source): string =>
  source === 'query' ? 'invalid_query_parameters' : 'invalid_json_body';

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isEmpty(o: Record<string, unknown>): boolean {
  for (const _ in o) return false;
  return true;
}

/** `Object.keys(o).length > max` without the array (bodies come from JSON.parse: no inherited enumerable keys). */
function hasMoreKeysThan(o: Record<string, unknown>, max: number): boolean {
  let n = 0;
  for (const _ in o) if (++n > max) return true;
  return false;
}

/** Capgo's `fixSemver` + parse: `"1"` → 1.0.0, `"1.2"` → 1.2.0, `builtin`/`unknown` → 0.0.0. */
export const coerceVersionBuild: (v: string) => string | undefined = memoizeBounded((v) => {
  if (v === 'builtin' || v === 'unknown') return '0.0.0';
  const s = parseSemver(v);
  if (!s) return undefined;
  const pre = s.prerelease.length > 0 ? `-${s.prerelease.join('.')}` : '';
  return `${s.major}.${s.minor}.${s.patch}${pre}`;
});

/**
 * True when `v` is a version `plugin_version` may carry (x.y.z with optional prerelease/build). Memoized: a fleet
 * runs a handful of plugin versions, and every update check asks.
 */
export const isPluginVersion: (v: string) => boolean = memoizeBounded(
  (v) => v.length <= 128 && FULL_SEMVER.test(v),
);

class Fields {
  constructor(
    private readonly o: Record<string, unknown>,
    private readonly code: string,
  ) {}

  fail(key: string, why: string): never {
    throw new RequestError(400, this.code, `${key} ${why}`);
  }

  optional(key: string, max = MAX_STRING): string | undefined {
    const v = this.o[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'string') this.fail(key, 'must be a string');
    if (v.length > max) this.fail(key, `must be at most ${max} characters`);
    return v;
  }

  required(key: string, allowEmpty: boolean, max = MAX_STRING): string {
    const v = this.o[key];
    if (v === undefined) this.fail(key, 'is required');
    const s = this.optional(key, max)!;
    if (!allowEmpty && s === '') this.fail(key, 'must not be empty');
    return s;
  }

  bool(key: string, source: Source, fallback: boolean): boolean {
    const v = this.o[key];
    if (v === undefined) return fallback;
    if (typeof v === 'boolean') return v;
    // Capgo's convertQueryToBody: only the string "true" is true.
    if (source === 'query' && typeof v === 'string') return v === 'true';
    return this.fail(key, 'must be a boolean');
  }
}

/**
 * The identity part only (steps 1–2 and the id formats): where a full info object is not needed (rate limiting a
 * stats batch). Throws the same errors as {@link parseDeviceInfo}.
 */
export function parseIdentity(
  raw: Record<string, unknown>,
  source: Source = 'body',
): { deviceId: string; appId: string } {
  if (isEmpty(raw)) throw new RequestError(400, invalidCode(source), 'the request carries no fields');
  const device = raw['device_id'];
  if (device === undefined || device === null || device === '') {
    throw new RequestError(400, 'missing_device_id', 'device_id is required');
  }
  const app = raw['app_id'];
  if (app === undefined || app === null || app === '')
    throw new RequestError(400, 'missing_app_id', 'app_id is required');
  const f: Fields = new Fields(raw, invalidCode(source));
  if (typeof device !== 'string' || !isDeviceId(device))
    f.fail('device_id', 'must be a UUID of at most 36 characters');
  if (typeof app !== 'string' || app.length > 255 || !APP_ID.test(app))
    f.fail('app_id', 'must be a reverse-domain identifier such as com.example.app');
  return { deviceId: device.toLowerCase(), appId: app };
}

export function parseDeviceInfo(
  raw: unknown,
  kind: RequestKind = 'update',
  source: Source = 'body',
): DeviceInfo {
  const code = invalidCode(source);
  if (!isPlainObject(raw) || isEmpty(raw))
    throw new RequestError(400, code, 'the body must be a JSON object');
  if (hasMoreKeysThan(raw, MAX_KEYS)) {
    throw new RequestError(400, code, `the body must have at most ${MAX_KEYS} fields`);
  }
  const deviceRaw = raw['device_id'];
  if (kind !== 'channel_list' && (deviceRaw === undefined || deviceRaw === null || deviceRaw === '')) {
    throw new RequestError(400, 'missing_device_id', 'device_id is required');
  }
  const appRaw = raw['app_id'];
  if (appRaw === undefined || appRaw === null || appRaw === '')
    throw new RequestError(400, 'missing_app_id', 'app_id is required');
  const buildRaw = raw['version_build'];
  let build: string | undefined;
  if (typeof buildRaw === 'string' && buildRaw !== '') {
    build = coerceVersionBuild(buildRaw.trim());
    if (build === undefined) {
      throw new RequestError(
        400,
        'semver_error',
        `Native version: ${buildRaw.slice(0, 64)} doesn't follow semver convention (version_build)`,
      );
    }
  }

  const f: Fields = new Fields(raw, code);
  if (typeof appRaw !== 'string' || appRaw.length > 255 || !APP_ID.test(appRaw))
    f.fail('app_id', 'must be a reverse-domain identifier such as com.example.app');
  let deviceId = '';
  if (deviceRaw !== undefined && deviceRaw !== '') {
    if (typeof deviceRaw !== 'string' || !isDeviceId(deviceRaw))
      f.fail('device_id', 'must be a UUID of at most 36 characters');
    deviceId = deviceRaw.toLowerCase();
  }
  const update = kind === 'update';
  const versionName =
    kind === 'channel_list' ? (f.optional('version_name') ?? '') : f.required('version_name', !update);
  const versionBuild =
    kind === 'update' || kind === 'channel'
      ? f.required('version_build', !update)
      : (f.optional('version_build') ?? '');
  const isEmulator = f.bool('is_emulator', source, false);
  const isProd = f.bool('is_prod', source, true);
  const platform = kind === 'stats' ? f.required('platform', true) : raw['platform'];
  if (kind !== 'stats' && (platform === undefined || !PLATFORMS.includes(platform as Platform)))
    f.fail('platform', `must be one of ${PLATFORMS.join(', ')}`);
  let pluginVersion = '';
  const pluginRaw = raw['plugin_version'];
  if (update) {
    if (pluginRaw === undefined) f.fail('plugin_version', 'is required');
    if (typeof pluginRaw !== 'string' || !isPluginVersion(pluginRaw))
      f.fail('plugin_version', 'must be a semantic version such as 8.51.23');
    pluginVersion = pluginRaw;
  } else {
    pluginVersion = f.optional('plugin_version', 128) ?? '';
  }
  const installSource = raw['install_source'];
  if (installSource !== undefined) f.optional('install_source', 64);
  const keyId = f.optional('key_id', 20);
  const versionOs = kind === 'stats' ? f.required('version_os', true) : (f.optional('version_os') ?? '');
  const customId = f.optional('custom_id', kind === 'stats' ? 36 : MAX_STRING) ?? '';
  return {
    platform: platform as Platform,
    deviceId,
    appId: appRaw,
    customId,
    versionBuild: build ?? versionBuild,
    versionCode: f.optional('version_code') ?? '',
    versionOs,
    versionName,
    pluginVersion,
    isEmulator,
    isProd,
    defaultChannel: f.optional('defaultChannel') ?? '',
    keyId: keyId === undefined || keyId === '' ? undefined : keyId,
    channel: f.optional('channel') ?? '',
  };
}

/** Capgo's `convertQueryToBody`: the info fields of a GET/DELETE query, device id lower-cased. */
export function queryToBody(query: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of [
    'version_name',
    'version_build',
    'platform',
    'app_id',
    'device_id',
    'plugin_version',
    'defaultChannel',
    'channel',
    'custom_id',
    'is_emulator',
    'is_prod',
    'version_os',
    'key_id',
  ]) {
    const v = query[key];
    if (typeof v === 'string') out[key] = v;
  }
  return out;
}
