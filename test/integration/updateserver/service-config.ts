// The update service's configuration for tests that run serve() against a test S3 server on 127.0.0.1.
import type { UpdateServerConfig } from '../../../src/config/update-server.js';
import { freePort } from '../../env/process-utils.js';

export interface TestS3 {
  readonly endpoint: string;
  readonly region: string;
  readonly accessKey: string;
  readonly secretKey: string;
}

/** Free ports, 1 s index polls and stats flushes, no shutdown delay; `base`/`admin` are the two URLs. */
export async function serviceConfig(
  s3: TestS3,
  bucket: string,
  overrides: Partial<UpdateServerConfig> = {},
): Promise<{ config: UpdateServerConfig; base: string; admin: string }> {
  const [port, adminPort] = [await freePort(), await freePort()];
  const base = `http://127.0.0.1:${port}`;
  const config: UpdateServerConfig = {
    logLevel: 'silent',
    adminAddr: { host: '127.0.0.1', port: adminPort },
    listenAddr: { host: '127.0.0.1', port },
    s3: {
      endpoint: new URL(s3.endpoint),
      region: s3.region,
      bucket,
      prefix: 'lu',
      accessKeyId: s3.accessKey,
      secretAccessKey: s3.secretKey,
      caFile: undefined,
      pathStyle: true,
    },
    publicUrl: new URL(base),
    indexPollSeconds: 1,
    presignDownloads: false,
    presignEndpoint: undefined,
    presignExpirySeconds: 3600,
    replicaName: 'it-0',
    statsFlushSeconds: 1,
    statsWindowSeconds: 3600,
    rateLimitPerDevice: 0,
    rateLimitPerAddress: 0,
    trustProxy: false,
    updatePath: '/updates',
    statsPath: '/stats',
    channelPath: '/channel_self',
    maxStatsBodyBytes: 1024 * 1024,
    shutdownDelaySeconds: 0,
    shutdownTimeoutSeconds: 5,
    s3TimeoutSeconds: 2,
    ...overrides,
  };
  return { config, base, admin: `http://127.0.0.1:${adminPort}` };
}
