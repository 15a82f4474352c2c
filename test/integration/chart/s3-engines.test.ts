// s3.inCluster.engine (docs/adr/0033-storage-neutrality.md): what the chart renders for each engine is run against
// the real server binaries of the tool cache — versitygw with the rendered command (bound to 127.0.0.1, its data
// under a temp dir) until the rendered probe path answers and a signed S3 round trip works; SeaweedFS's rendered
// flags checked against `weed server -h` (its internal ports are fixed inside the Pod and would collide here). The
// default (minio) render is unchanged, and an engine without built-in provisioning refuses to render unless told.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { minioClientFor } from '../../env/environment.js';
import { toolBinary } from '../../env/fixtures.js';
import { freePort, spawnOwned } from '../../env/process-utils.js';
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

describe('s3.inCluster.engine', () => {
  it('minio (the default) renders the s3.inCluster settings as before', async () => {
    const c = await storeContainer([]);
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

  it('refuses an engine without built-in provisioning unless a script is given or provisioning is off', async () => {
    await expect(helmTemplate([], ['s3.inCluster.engine=versitygw'])).rejects.toThrow(
      /s3.inCluster.engine=versitygw has no built-in provisioning/,
    );
    await expect(
      helmTemplate([], ['s3.inCluster.engine=seaweedfs', 's3.inCluster.provision.script=echo custom']),
    ).resolves.toContain('echo custom');
  });

  it('versitygw: the rendered command serves S3 and the rendered probe path on the rendered port', async () => {
    const port = await freePort();
    const c = await storeContainer(engineSets('versitygw', port));
    expect(c.image).toBe('ghcr.io/versity/versitygw:v1.7.0');
    const dir = await mkdtemp(join(tmpdir(), 'vgw-engine-'));
    // Only two changes: the volume mount becomes a temp dir, and the listener is loopback only.
    const script = c
      .args![0]!.replaceAll('/data', dir)
      .replace(`--port ":${port}"`, `--port "127.0.0.1:${port}"`);
    expect(script).toContain(`--port "127.0.0.1:${port}"`);
    const [accessEnv, secretEnv] = [c.env[1]!.name, c.env[2]!.name];
    const accessKey = `eng${randomBytes(6).toString('hex')}`;
    const secretKey = randomBytes(18).toString('base64url');
    const child = spawnOwned(c.command![0]!, [...c.command!.slice(1), script], {
      env: {
        ...process.env,
        PATH: `${dirname(toolBinary('versitygw'))}:${process.env['PATH'] ?? ''}`,
        [accessEnv]: accessKey,
        [secretEnv]: secretKey,
      },
      stdio: 'ignore',
    });
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
      expect(c.livenessProbe.httpGet.path).toBe(c.readinessProbe.httpGet.path);
      const client = minioClientFor({
        endpoint: `http://127.0.0.1:${port}`,
        accessKey,
        secretKey,
        region: 'us-east-1',
      });
      await client.makeBucket('engine-check', 'us-east-1');
      await client.putObject('engine-check', 'k', Buffer.from('v'));
      const stat = await client.statObject('engine-check', 'k');
      expect(stat.size).toBe(1);
    } finally {
      child.kill('SIGKILL');
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
