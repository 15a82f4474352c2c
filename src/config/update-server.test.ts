import { ConfigError } from './common.js';
import { parseUpdateServerConfig } from './update-server.js';

const base = {
  LIVEUPDATE_S3_ENDPOINT: 'http://minio:9000',
  LIVEUPDATE_S3_BUCKET: 'liveupdate',
  LIVEUPDATE_PUBLIC_URL: 'https://updates.example.com',
};

describe('update-server configuration', () => {
  it('applies the documented defaults', () => {
    const c = parseUpdateServerConfig([], { ...base, POD_NAME: 'update-server-abc' })!;
    expect(c.listenAddr).toEqual({ host: '0.0.0.0', port: 8080 });
    expect(c.adminAddr).toEqual({ host: '0.0.0.0', port: 8081 });
    expect(c.indexPollSeconds).toBe(5);
    expect(c.presignDownloads).toBe(false);
    expect(c.statsFlushSeconds).toBe(30);
    expect(c.replicaName).toBe('update-server-abc');
    expect(c.s3.pathStyle).toBe(true);
    expect(c.updatePath).toBe('/updates');
  });

  it('reads the environment contract and lets flags win', () => {
    const c = parseUpdateServerConfig(['--index-poll-seconds', '2', '--presign-downloads'], {
      ...base,
      LIVEUPDATE_LISTEN_ADDR: '127.0.0.1:9090',
      LIVEUPDATE_INDEX_POLL_SECONDS: '7',
      LIVEUPDATE_REPLICA_NAME: 'r-1',
      POD_NAME: 'ignored',
      LIVEUPDATE_RATE_LIMIT_PER_DEVICE: '0',
      LIVEUPDATE_RATE_LIMIT_PER_ADDRESS: '500',
      LIVEUPDATE_S3_PREFIX: 'prod/',
      LIVEUPDATE_S3_ACCESS_KEY_ID: 'id',
      LIVEUPDATE_S3_SECRET_ACCESS_KEY: 'secret',
      LIVEUPDATE_STATS_FLUSH_SECONDS: '10',
      LIVEUPDATE_UPDATE_PATH: '/api/updates/',
    })!;
    expect(c.listenAddr).toEqual({ host: '127.0.0.1', port: 9090 });
    expect(c.indexPollSeconds).toBe(2);
    expect(c.presignDownloads).toBe(true);
    expect(c.replicaName).toBe('r-1');
    expect(c.rateLimitPerDevice).toBe(0);
    expect(c.rateLimitPerAddress).toBe(500);
    expect(c.s3.prefix).toBe('prod');
    expect(c.statsFlushSeconds).toBe(10);
    expect(c.updatePath).toBe('/api/updates');
  });

  it('reports every problem at once', () => {
    let err: unknown;
    try {
      parseUpdateServerConfig(['--index-poll-seconds', '0'], { LIVEUPDATE_PUBLIC_URL: 'ftp://x' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const msg = (err as ConfigError).message;
    expect(msg).toMatch(/LIVEUPDATE_S3_ENDPOINT/);
    expect(msg).toMatch(/LIVEUPDATE_S3_BUCKET/);
    expect(msg).toMatch(/ftp/);
    expect(msg).toMatch(/index-poll-seconds/);
  });

  it('takes trusted proxies as booleans, hop counts, or lists mixing CIDRs and keywords', () => {
    const trust = (raw: string) =>
      parseUpdateServerConfig([], { ...base, LIVEUPDATE_TRUST_PROXY: raw })!.trustProxy;
    expect(trust('false')).toBe(false);
    expect(trust('2')).toBe(2);
    expect(trust('uniquelocal')).toBe('uniquelocal');
    expect(trust('10.42.0.0/16, 127.0.0.1,loopback,fd00::/8')).toBe(
      '10.42.0.0/16,127.0.0.1,loopback,fd00::/8',
    );
    for (const bad of ['10.0.0.0/33', 'ingress-nginx', '10.0.0/8', 'loopback,', '1.2.3.4/8/9']) {
      expect(() => trust(bad)).toThrow(/LIVEUPDATE_TRUST_PROXY/);
    }
  });

  it('refuses colliding paths', () => {
    expect(() => parseUpdateServerConfig([], { ...base, LIVEUPDATE_STATS_PATH: '/updates' })).toThrow(
      ConfigError,
    );
  });

  it('returns undefined for --help', () => {
    expect(parseUpdateServerConfig(['--help'], {})).toBeUndefined();
  });
});
