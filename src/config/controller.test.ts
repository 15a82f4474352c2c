import { ConfigError } from './common.js';
import { MAX_EXPANDED_BYTES, buildDiskLimits, controllerHelp, loadControllerConfig } from './controller.js';

const BASE = {
  LIVEUPDATE_S3_ENDPOINT: 'http://minio:9000',
  LIVEUPDATE_S3_BUCKET: 'liveupdate',
  POD_NAMESPACE: 'liveupdate-system',
  POD_NAME: 'controller-0',
};

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('controller configuration', () => {
  it('bounds how far an artifact may expand so that every bundle worker building at once fits the work dir', () => {
    const MiB = 1024 ** 2;
    for (const [workDir, workers, artifact] of [
      [4096 * MiB, 4, 256 * MiB],
      [1024 * MiB, 1, 64 * MiB],
      [64 * 1024 * MiB, 2, 256 * MiB],
      [512 * MiB, 8, 8 * MiB],
    ] as const) {
      const limits = buildDiskLimits(workDir, workers, artifact);
      if (typeof limits === 'string') throw new Error(limits);
      // peak of one build: the fetched artifact plus three times the expanded size (see buildDiskLimits)
      expect(workers * (artifact + 3 * limits.expandedMaxBytes)).toBeLessThanOrEqual(workDir);
      expect(limits.expandedMaxBytes).toBeGreaterThanOrEqual(artifact);
      expect(limits.expandedMaxBytes).toBeLessThanOrEqual(MAX_EXPANDED_BYTES);
    }
    // the old chart defaults: 1Gi /tmp, 4 workers, 256 MiB artifacts expanding to 1 GiB each
    expect(
      problems(() =>
        loadControllerConfig([], {
          ...BASE,
          LIVEUPDATE_WORK_DIR_BYTES: '1Gi',
          LIVEUPDATE_ARTIFACT_MAX_BYTES: '256Mi',
        }),
      ),
    ).toEqual([
      expect.stringMatching(/^LIVEUPDATE_WORK_DIR_BYTES \(--work-dir-bytes\) 1073741824 is too small/),
    ]);
  });

  it('applies the documented defaults', () => {
    const c = loadControllerConfig([], BASE)!;
    expect(c).toMatchObject({
      logLevel: 'info',
      adminAddr: { host: '0.0.0.0', port: 8081 },
      leaderElection: { enabled: true, namespace: 'liveupdate-system', name: 'liveupdate-controller' },
      identity: 'controller-0',
      watchNamespaces: [],
      sourceSecretLabel: undefined,
      maxConcurrentReconciles: 4,
      artifactMaxBytes: 256 * 1024 ** 2,
      expandedMaxBytes: 256 * 1024 ** 2,
      fetchTimeoutMs: 300_000,
      shutdownGraceMs: 20_000,
      kubeconfig: undefined,
    });
    expect(c.s3).toMatchObject({ region: 'us-east-1', bucket: 'liveupdate', prefix: '', pathStyle: true });
    expect(c.s3.endpoint.href).toBe('http://minio:9000/');
  });

  it('reads every option from the environment, and flags win over it', () => {
    const env = {
      ...BASE,
      LIVEUPDATE_LOG_LEVEL: 'debug',
      LIVEUPDATE_ADMIN_ADDR: '127.0.0.1:9090',
      LIVEUPDATE_LEADER_ELECT: 'false',
      LIVEUPDATE_LEASE_NAMESPACE: 'other',
      LIVEUPDATE_LEASE_NAME: 'lease',
      LIVEUPDATE_POD_NAME: 'pod-a',
      LIVEUPDATE_WATCH_NAMESPACE: 'apps, team-b',
      LIVEUPDATE_SOURCE_SECRET_LABEL: 'liveupdate.dev/bundle-source=true',
      LIVEUPDATE_MAX_CONCURRENT_RECONCILES: '8',
      LIVEUPDATE_ARTIFACT_MAX_BYTES: '512Mi',
      LIVEUPDATE_FETCH_TIMEOUT_SECONDS: '60',
      LIVEUPDATE_SHUTDOWN_GRACE_SECONDS: '5',
      LIVEUPDATE_S3_PREFIX: 'prod/',
      LIVEUPDATE_S3_PATH_STYLE: 'false',
      LIVEUPDATE_S3_ACCESS_KEY_ID: 'ak',
      LIVEUPDATE_S3_SECRET_ACCESS_KEY: 'sk',
    };
    const c = loadControllerConfig(
      ['--max-concurrent-reconciles=2', '--leader-elect', '--admin-addr', ':8082'],
      env,
    )!;
    expect(c).toMatchObject({
      logLevel: 'debug',
      adminAddr: { host: '0.0.0.0', port: 8082 },
      leaderElection: { enabled: true, namespace: 'other', name: 'lease' },
      identity: 'pod-a',
      watchNamespaces: ['apps', 'team-b'],
      sourceSecretLabel: { key: 'liveupdate.dev/bundle-source', value: 'true' },
      maxConcurrentReconciles: 2,
      artifactMaxBytes: 512 * 1024 ** 2,
      fetchTimeoutMs: 60_000,
      shutdownGraceMs: 5_000,
    });
    expect(c.s3).toMatchObject({
      prefix: 'prod',
      pathStyle: false,
      accessKeyId: 'ak',
      secretAccessKey: 'sk',
    });
  });

  it('reports every problem at once, naming the variable and the flag', () => {
    const p = problems(() =>
      loadControllerConfig(['--max-concurrent-reconciles=0', '--bogus'], {
        LIVEUPDATE_S3_ENDPOINT: 'ftp://x',
        LIVEUPDATE_ADMIN_ADDR: 'nonsense',
        LIVEUPDATE_LEADER_ELECT: 'maybe',
      }),
    );
    expect(p).toEqual(
      expect.arrayContaining([
        'unknown flag --bogus',
        expect.stringMatching(/^--max-concurrent-reconciles: 0 is out of range/),
        expect.stringMatching(/^LIVEUPDATE_S3_ENDPOINT: "ftp:\/\/x" must use http: or https:/),
        expect.stringMatching(/^LIVEUPDATE_ADMIN_ADDR: "nonsense" is not host:port/),
        expect.stringMatching(/^LIVEUPDATE_LEADER_ELECT: "maybe" is not a boolean/),
        expect.stringMatching(/^LIVEUPDATE_S3_BUCKET \(--s3-bucket\) is required/),
      ]),
    );
  });

  it('requires a lease namespace for leader election outside a cluster', () => {
    const { POD_NAMESPACE: _ns, ...env } = BASE;
    expect(problems(() => loadControllerConfig([], env))).toEqual([
      expect.stringMatching(/LIVEUPDATE_LEASE_NAMESPACE/),
    ]);
    expect(loadControllerConfig(['--leader-elect=false'], env)?.leaderElection.enabled).toBe(false);
  });

  it('refuses a bad namespace list or source-Secret label, naming the variable', () => {
    const p = problems(() =>
      loadControllerConfig([], {
        ...BASE,
        LIVEUPDATE_WATCH_NAMESPACE: 'apps,Bad_NS',
        LIVEUPDATE_SOURCE_SECRET_LABEL: 'no spaces=x y',
      }),
    );
    expect(p).toEqual([
      expect.stringMatching(/^LIVEUPDATE_WATCH_NAMESPACE: "Bad_NS" is not a valid Kubernetes name/),
      expect.stringMatching(/^LIVEUPDATE_SOURCE_SECRET_LABEL: "no spaces=x y" is not a label/),
    ]);
    expect(
      loadControllerConfig([], { ...BASE, LIVEUPDATE_SOURCE_SECRET_LABEL: 'team' })?.sourceSecretLabel,
    ).toEqual({
      key: 'team',
    });
  });

  it('requires S3 credentials in pairs', () => {
    expect(problems(() => loadControllerConfig([], { ...BASE, LIVEUPDATE_S3_ACCESS_KEY_ID: 'ak' }))).toEqual([
      expect.stringMatching(/must be set together/),
    ]);
  });

  it('--help returns null and the help lists every flag with its variable', () => {
    expect(loadControllerConfig(['--help'], {})).toBeNull();
    const help = controllerHelp();
    for (const s of [
      '--admin-addr',
      'LIVEUPDATE_ADMIN_ADDR',
      '--s3-endpoint',
      '--leader-elect',
      'LIVEUPDATE_LEASE_NAMESPACE',
      '--pod-name',
      'POD_NAME',
      '--kubeconfig',
      'KUBECONFIG',
      '--artifact-max-bytes',
      'default: 256Mi',
    ]) {
      expect(help).toContain(s);
    }
  });
});
