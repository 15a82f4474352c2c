// s3.inCluster.engine (docs/adr/0033-storage-neutrality.md): what the chart renders for each engine is run against
// the real server binaries of the tool cache — versitygw with the rendered command (bound to 127.0.0.1, its data
// under a temp dir) until the rendered probe path answers and a signed S3 round trip works; SeaweedFS's rendered
// flags checked against `weed server -h` (its internal ports are fixed inside the Pod and would collide here).
// versitygw is the default; its provisioning container (`liveupdate-operator s3-provision`) runs as rendered against
// the real server and must leave two least-privilege users. The minio render is unchanged, and seaweedfs (no
// built-in provisioning) refuses to render unless told.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { minioClientFor } from '../../env/environment.js';
import { toolBinary } from '../../env/fixtures.js';
import { freePort, repoRoot, spawnOwned } from '../../env/process-utils.js';
import { findObject, helmTemplate, parseManifests, run } from './chart-helpers.js';

type Probe = { httpGet: { path: string } };
type StoreContainer = {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env: { name: string }[];
  livenessProbe: Probe;
  readinessProbe: Probe;
};

async function storeContainer(sets: readonly string[]): Promise<StoreContainer> {
  const objects = parseManifests(await helmTemplate([], sets));
  const sts = findObject(objects, 'StatefulSet', 'liveupdate-operator-s3') as unknown as {
    spec: { template: { spec: { containers: StoreContainer[] } } };
  };
  return sts.spec.template.spec.containers.find((c) => c.name === 's3')!;
}

const engineSets = (engine: string, port: number) => [
  `s3.inCluster.engine=${engine}`,
  's3.inCluster.provision.enabled=false',
  `s3.inCluster.port=${port}`,
];

type ProvisionEnv = {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string } };
};

/**
 * Runs the rendered versitygw container command with the real binary. Only two changes: the volume mount becomes a
 * temp dir, and the listener is loopback only. Resolves once the rendered readiness path answers 200.
 */
async function startRenderedVersitygw(c: StoreContainer, port: number) {
  const dir = await mkdtemp(join(tmpdir(), 'vgw-engine-'));
  const script = c
    .args![0]!.replaceAll('/data', dir)
    .replace(`--port ":${port}"`, `--port "127.0.0.1:${port}"`);
  expect(script).toContain(`--port "127.0.0.1:${port}"`);
  const [accessEnv, secretEnv] = [c.env[1]!.name, c.env[2]!.name];
  const root = {
    accessKey: `eng${randomBytes(6).toString('hex')}`,
    secretKey: randomBytes(18).toString('base64url'),
  };
  const child = spawnOwned(c.command![0]!, [...c.command!.slice(1), script], {
    env: {
      ...process.env,
      PATH: `${dirname(toolBinary('versitygw'))}:${process.env['PATH'] ?? ''}`,
      [accessEnv]: root.accessKey,
      [secretEnv]: root.secretKey,
    },
    stdio: 'ignore',
  });
  const stop = async () => {
    child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const probe = `http://127.0.0.1:${port}${c.readinessProbe.httpGet.path}`;
    for (const deadline = Date.now() + 60_000; ;) {
      const status = await fetch(probe).then(
        (r) => r.status,
        () => 0,
      );
      if (status === 200) break;
      if (Date.now() > deadline) throw new Error(`${probe} did not answer 200 (last: ${status})`);
      await sleep(250);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { endpoint: `http://127.0.0.1:${port}`, root, stop };
}

/** `versitygw admin <command>` as the given user (the admin API the provisioning uses). */
function versitygwAdmin(endpoint: string, user: { accessKey: string; secretKey: string }, command: string) {
  return run(toolBinary('versitygw'), [
    'admin',
    '--access',
    user.accessKey,
    '--secret',
    user.secretKey,
    '--endpoint-url',
    endpoint,
    command,
  ]);
}

describe('s3.inCluster.engine', () => {
  it('versitygw is the default, with its built-in provisioning', async () => {
    const c = await storeContainer([]);
    expect(c.image).toBe('ghcr.io/versity/versitygw:v1.7.0');
    expect(c.readinessProbe.httpGet.path).toBe('/health');
    expect(await helmTemplate()).toContain('- s3-provision');
  });

  it('minio renders the s3.inCluster settings as before', async () => {
    const c = await storeContainer(['s3.inCluster.engine=minio']);
    expect(c.image).toBe('quay.io/minio/minio:RELEASE.2025-04-22T22-12-26Z');
    expect(c.env.map((e) => e.name)).toEqual([
      'HOME',
      'MINIO_ROOT_USER',
      'MINIO_ROOT_PASSWORD',
      'MINIO_BROWSER',
      'MINIO_UPDATE',
    ]);
    expect(c.livenessProbe.httpGet.path).toBe('/minio/health/live');
  });

  it('refuses seaweedfs (no built-in provisioning) unless a script is given or provisioning is off', async () => {
    await expect(helmTemplate([], ['s3.inCluster.engine=seaweedfs'])).rejects.toThrow(
      /s3.inCluster.engine=seaweedfs has no built-in provisioning/,
    );
    await expect(
      helmTemplate([], ['s3.inCluster.engine=seaweedfs', 's3.inCluster.provision.script=echo custom']),
    ).resolves.toContain('echo custom');
  });

  it('versitygw: the rendered command serves S3 and the rendered probe path on the rendered port', async () => {
    const port = await freePort();
    const c = await storeContainer(engineSets('versitygw', port));
    expect(c.image).toBe('ghcr.io/versity/versitygw:v1.7.0');
    const store = await startRenderedVersitygw(c, port);
    try {
      expect(c.livenessProbe.httpGet.path).toBe(c.readinessProbe.httpGet.path);
      const client = minioClientFor({ endpoint: store.endpoint, ...store.root, region: 'us-east-1' });
      await client.makeBucket('engine-check', 'us-east-1');
      await client.putObject('engine-check', 'k', Buffer.from('v'));
      const stat = await client.statObject('engine-check', 'k');
      expect(stat.size).toBe(1);
    } finally {
      await store.stop();
    }
  });

  it('versitygw: the rendered provisioning container creates the bucket and two least-privilege users, idempotently', async () => {
    const port = await freePort();
    const objects = parseManifests(
      await helmTemplate([], ['s3.inCluster.engine=versitygw', `s3.inCluster.port=${port}`]),
    );
    const containers = (
      findObject(objects, 'StatefulSet', 'liveupdate-operator-s3') as unknown as {
        spec: { template: { spec: { containers: (StoreContainer & { env: ProvisionEnv[] })[] } } };
      }
    ).spec.template.spec.containers;
    const provision = containers.find((c) => c.name === 'provision')!;
    expect(provision.image).toBe('ghcr.io/liveupdate-dev/liveupdate-operator:0.1.0');
    expect(provision.args).toEqual(['s3-provision']);
    expect(provision.command).toBeUndefined();

    const dir = await mkdtemp(join(tmpdir(), 'vgw-provision-'));
    const policies = findObject(objects, 'ConfigMap', 'liveupdate-operator-s3-policies') as unknown as {
      data: Record<string, string>;
    };
    for (const [file, text] of Object.entries(policies.data)) await writeFile(join(dir, file), text);
    const user = (name: string) => ({
      accessKey: `liveupdate-${name}-${randomBytes(6).toString('hex')}`,
      secretKey: randomBytes(20).toString('base64url'),
    });
    // What the kubelet resolves from the three Secrets the s3-credentials hook created.
    const secrets: Record<string, { accessKey: string; secretKey: string }> = {
      'liveupdate-operator-s3-controller': user('controller'),
      'liveupdate-operator-s3-update-server': user('update-server'),
    };
    const store = await startRenderedVersitygw(
      containers.find((c) => c.name === 's3')!,
      port,
    );
    secrets['liveupdate-operator-s3-credentials'] = {
      accessKey: store.root.accessKey,
      secretKey: store.root.secretKey,
    };
    const provisionEnv = (): NodeJS.ProcessEnv => {
      const env: NodeJS.ProcessEnv = {};
      for (const v of provision.env) {
        const ref = v.valueFrom?.secretKeyRef;
        if (ref) {
          const secret = secrets[ref.name]!;
          env[v.name] = ref.key === 'accessKeyId' ? secret.accessKey : secret.secretKey;
        } else env[v.name] = v.value;
      }
      return env;
    };
    const runProvision = () =>
      run(process.execPath, ['--import', 'tsx', join(repoRoot(), 'src', 'main.ts'), ...provision.args!], {
        env: {
          ...process.env,
          ...provisionEnv(),
          LIVEUPDATE_S3_POLICIES_DIR: dir,
          LIVEUPDATE_S3_PROVISION_INTERVAL_SECONDS: '0',
        },
        timeoutMs: 120_000,
      });
    const clientOf = (c: { accessKey: string; secretKey: string }) =>
      minioClientFor({ endpoint: store.endpoint, ...c, region: 'us-east-1' });
    const denied = (p: Promise<unknown>) => expect(p).rejects.toMatchObject({ code: 'AccessDenied' });
    try {
      const first = await runProvision();
      expect(first).toMatchObject({ code: 0 });
      expect(first.stdout).toContain('"bucketOutcome":"created"');
      const second = await runProvision();
      expect(second).toMatchObject({ code: 0 });
      expect(second.stdout).toContain('"bucketOutcome":"kept"');

      const controller = clientOf(secrets['liveupdate-operator-s3-controller']!);
      const updateServer = clientOf(secrets['liveupdate-operator-s3-update-server']!);
      const bucket = 'liveupdate';
      // The controller reads, writes and deletes objects.
      await controller.putObject(bucket, 'ns/app/bundles/b1.zip', Buffer.from('zip'));
      expect((await controller.statObject(bucket, 'ns/app/bundles/b1.zip')).size).toBe(3);
      // The update server reads them but cannot write or delete releases.
      const read = await updateServer.getObject(bucket, 'ns/app/bundles/b1.zip');
      const chunks: Buffer[] = [];
      for await (const chunk of read as AsyncIterable<Buffer>) chunks.push(chunk);
      expect(Buffer.concat(chunks).toString()).toBe('zip');
      await denied(updateServer.putObject(bucket, 'ns/app/bundles/b1.zip', Buffer.from('evil')));
      await denied(updateServer.putObject(bucket, 'ns/app/index.json', Buffer.from('{}')));
      await denied(updateServer.removeObject(bucket, 'ns/app/bundles/b1.zip'));
      // ...except its own stats rollups, which the chart's policy grants it (docs/adr/0012-*).
      await updateServer.putObject(bucket, 'ns/app/stats/2026-12-04.json', Buffer.from('{}'));
      await controller.removeObject(bucket, 'ns/app/bundles/b1.zip');
      // Neither is root: no other bucket, no admin API, no policy changes.
      for (const [name, client] of [
        ['controller', controller],
        ['update-server', updateServer],
      ] as const) {
        await denied(client.makeBucket(`other-${name}`, 'us-east-1'));
        await denied(client.setBucketPolicy(bucket, '{"Version":"2012-10-17","Statement":[]}'));
        const admin = await versitygwAdmin(
          store.endpoint,
          secrets[`liveupdate-operator-s3-${name}`]!,
          'list-users',
        );
        expect(admin.code).not.toBe(0);
      }
      expect((await versitygwAdmin(store.endpoint, store.root, 'list-users')).code).toBe(0);

      // A rotated component Secret is applied by the next round: the old secret stops working.
      const old = secrets['liveupdate-operator-s3-update-server']!;
      secrets['liveupdate-operator-s3-update-server'] = {
        ...old,
        secretKey: randomBytes(20).toString('base64url'),
      };
      expect(await runProvision()).toMatchObject({ code: 0 });
      await expect(updateServer.statObject(bucket, 'ns/app/stats/2026-12-04.json')).rejects.toThrow();
      const rotated = clientOf(secrets['liveupdate-operator-s3-update-server']);
      expect((await rotated.statObject(bucket, 'ns/app/stats/2026-12-04.json')).size).toBe(2);
    } finally {
      await store.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('seaweedfs: every rendered flag is one `weed server` accepts, with the S3 port and health path', async () => {
    const port = await freePort();
    const c = await storeContainer(engineSets('seaweedfs', port));
    expect(c.image).toBe('docker.io/chrislusf/seaweedfs:4.53');
    expect(c.args![0]).toBe('server');
    const help = await run(toolBinary('seaweedfs'), ['server', '-h']);
    const known = new Set([...`${help.stdout}\n${help.stderr}`.matchAll(/^\s+-([\w.]+)/gm)].map((m) => m[1]));
    expect(known.size).toBeGreaterThan(50);
    const flags = c.args!.slice(1).map((a) => /^-([\w.]+)/.exec(a)?.[1]);
    expect(flags.filter((f) => !f || !known.has(f))).toEqual([]);
    expect(c.args).toEqual(expect.arrayContaining([`-s3.port=${port}`, '-master.telemetry=false']));
    expect(c.env.slice(1, 3).map((e) => e.name)).toEqual(['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY']);
    expect(c.readinessProbe.httpGet.path).toBe('/healthz');
  });
});
