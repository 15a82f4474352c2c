/** Registry credentials from a docker config JSON (`.dockerconfigjson` of a kubernetes.io/dockerconfigjson Secret). */
import { OciError } from './errors.js';

export type RegistryCredentials = { username: string; password: string } | { token: string };

interface DockerConfig {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
}

/** The credentials for `registry` (host[:port]); undefined when the config has none for it. */
export function credentialsFromDockerConfig(json: string, registry: string): RegistryCredentials | undefined {
  let config: DockerConfig;
  try {
    config = JSON.parse(json) as DockerConfig;
  } catch {
    throw new OciError('OciDockerConfigInvalid', 'the docker config is not JSON');
  }
  if (typeof config !== 'object' || config === null || typeof config.auths !== 'object') {
    throw new OciError('OciDockerConfigInvalid', 'the docker config has no "auths" object');
  }
  const entry = Object.entries(config.auths ?? {}).find(([key]) => hostOf(key) === registry)?.[1];
  if (!entry) return undefined;
  if (entry.identitytoken) return { token: entry.identitytoken };
  if (entry.username !== undefined) return { username: entry.username, password: entry.password ?? '' };
  if (entry.auth) {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0)
      throw new OciError('OciDockerConfigInvalid', `the auth entry of ${registry} is not user:password`);
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  return undefined;
}

/** `https://host:port/v1/` and `host:port` both name host:port. */
function hostOf(key: string): string {
  return key.replace(/^[a-z]+:\/\//, '').replace(/\/.*$/, '');
}
