/**
 * Strict validation of the device "info object" (CAPGO-PROTOCOL.md §2.1), which is the body of update checks and the
 * base of stats events and channel calls (as a JSON body, or as query parameters for GET/DELETE /channel_self).
 * Structural problems are HTTP 400 with a stable error code; semantic ones (a native version that is not semver, an
 * unknown app) are answered by the routes with the protocol's 200 error answers.
 */
import { PLATFORMS, type Platform } from '../storage/release-index.js';

export interface DeviceInfo {
  platform: Platform;
  /** Lower-cased, as Capgo's backend does. */
  deviceId: string;
  appId: string;
  customId: string;
  versionBuild: string;
  versionCode: string;
  versionOs: string;
  versionName: string;
  pluginVersion: string;
  isEmulator: boolean;
  isProd: boolean;
  defaultChannel: string;
  keyId: string | undefined;
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

const DEVICE_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;
const APP_ID = /^[A-Za-z0-9_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)+$/;
const MAX_STRING = 256;
export const MAX_KEYS = 64;

type Source = 'body' | 'query';

function str(
  o: Record<string, unknown>,
  key: string,
  required: boolean,
  max = MAX_STRING,
): string | undefined {
  const v = o[key];
  if (v === undefined || (v === null && !required)) {
    if (required) throw new RequestError(400, 'invalid_json_body', `${key} is required`);
    return undefined;
  }
  if (typeof v !== 'string') throw new RequestError(400, 'invalid_json_body', `${key} must be a string`);
  if (v.length > max)
    throw new RequestError(400, 'invalid_json_body', `${key} must be at most ${max} characters`);
  return v;
}

function bool(o: Record<string, unknown>, key: string, source: Source, fallback: boolean): boolean {
  const v = o[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v === 'boolean') return v;
  if (source === 'query' && (v === 'true' || v === 'false')) return v === 'true';
  throw new RequestError(400, 'invalid_json_body', `${key} must be a boolean`);
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Only the identity part: used where a full info object is not required (stats events, rate limiting). */
export function parseIdentity(raw: Record<string, unknown>): { deviceId: string; appId: string } {
  const device = raw['device_id'];
  if (device === undefined || device === null || device === '') {
    throw new RequestError(400, 'missing_device_id', 'device_id is required');
  }
  if (typeof device !== 'string' || !DEVICE_ID.test(device)) {
    throw new RequestError(
      400,
      'invalid_device_id',
      'device_id must be a string of at most 64 letters, digits, ".", "_", ":" or "-"',
    );
  }
  const app = raw['app_id'];
  if (app === undefined || app === null || app === '')
    throw new RequestError(400, 'missing_app_id', 'app_id is required');
  if (typeof app !== 'string' || app.length > 255 || !APP_ID.test(app)) {
    throw new RequestError(
      400,
      'invalid_app_id',
      'app_id must be a reverse-domain identifier such as com.example.app',
    );
  }
  return { deviceId: device.toLowerCase(), appId: app };
}

export function parseDeviceInfo(raw: unknown, source: Source = 'body'): DeviceInfo {
  if (!isPlainObject(raw)) throw new RequestError(400, 'invalid_json_body', 'the body must be a JSON object');
  if (Object.keys(raw).length > MAX_KEYS) {
    throw new RequestError(400, 'invalid_json_body', `the body must have at most ${MAX_KEYS} fields`);
  }
  const { deviceId, appId } = parseIdentity(raw);
  const platform = str(raw, 'platform', true);
  if (!PLATFORMS.includes(platform as Platform)) {
    throw new RequestError(400, 'invalid_json_body', `platform must be one of ${PLATFORMS.join(', ')}`);
  }
  const keyId = str(raw, 'key_id', false, 64);
  return {
    platform: platform as Platform,
    deviceId,
    appId,
    customId: str(raw, 'custom_id', false) ?? '',
    versionBuild: str(raw, 'version_build', true) ?? '',
    versionCode: str(raw, 'version_code', false) ?? '',
    versionOs: str(raw, 'version_os', false) ?? '',
    versionName: str(raw, 'version_name', true) ?? '',
    pluginVersion: str(raw, 'plugin_version', true) ?? '',
    isEmulator: bool(raw, 'is_emulator', source, false),
    isProd: bool(raw, 'is_prod', source, true),
    defaultChannel: str(raw, 'defaultChannel', false) ?? '',
    keyId: keyId === undefined || keyId === '' ? undefined : keyId,
  };
}
