/**
 * The `liveupdate-operator controller` process itself: configuration from the environment, admin endpoints,
 * leader election between two processes, graceful exit 0 on SIGTERM with the lease released.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { LEASE_TYPE } from '../../../src/kube/leader-election.js';
import type { KubeObject } from '../../../src/kube/types.js';
import { cleanupTestResources, newBucket, newNamespace, testEnvironment } from '../../env/fixtures.js';
import { spawnOwned } from '../../env/process-utils.js';
import { installCrds } from '../api/crds.js';
import { newClient, waitFor } from './helpers.js';

const MAIN = fileURLToPath(new URL('../../../src/main.ts', import.meta.url));

interface Controller {
  child: ChildProcess;
  logs: string[];
  admin?: string;
  exit: Promise<number | null>;
}

function startController(identity: string, ns: string, bucket: string): Controller {
  const env = testEnvironment();
  const child = spawnOwned(process.execPath, ['--import', 'tsx', MAIN, 'controller'], {
    env: {
      PATH: process.env['PATH'],
      KUBECONFIG: env.kubeconfigPath,
      POD_NAME: identity,
      LIVEUPDATE_LEASE_NAMESPACE: ns,
      LIVEUPDATE_WATCH_NAMESPACE: ns,
      LIVEUPDATE_ADMIN_ADDR: '127.0.0.1:0',
      LIVEUPDATE_S3_ENDPOINT: env.s3.endpoint,
      LIVEUPDATE_S3_REGION: env.s3.region,
      LIVEUPDATE_S3_BUCKET: bucket,
      LIVEUPDATE_S3_ACCESS_KEY_ID: env.s3.accessKey,
      LIVEUPDATE_S3_SECRET_ACCESS_KEY: env.s3.secretKey,
      LIVEUPDATE_SHUTDOWN_GRACE_SECONDS: '5',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const c: Controller = {
    child,
    logs: [],
    exit: new Promise((resolve) => child.on('exit', (code) => resolve(code))),
  };
  let buffered = '';
  child.stdout?.on('data', (d: Buffer) => {
    buffered += d.toString();
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) {
      c.logs.push(line);
      const m = /"address":"([^"]+)".*admin server listening/.exec(line);
      if (m) c.admin = `http://${m[1]}`;
    }
  });
  child.stderr?.on('data', (d: Buffer) => c.logs.push(d.toString()));
  return c;
}

async function get(c: Controller, path: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`${c.admin}${path}`);
  return { status: res.status, text: await res.text() };
}

const masterStatus = async (c: Controller): Promise<string | undefined> =>
  /leader_election_master_status\{name="liveupdate-controller"\} (\d)/.exec(
    (await get(c, '/metrics')).text,
  )?.[1];

describe('controller process', () => {
  const started: Controller[] = [];
  afterAll(async () => {
    for (const c of started) c.child.kill('SIGKILL');
    await cleanupTestResources();
  });

  it('--help lists the flags and exits 0', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'controller', '--help'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise((resolve) => child.on('exit', resolve));
    expect(code).toBe(0);
    expect(out).toContain('--leader-elect');
    expect(out).toContain('LIVEUPDATE_S3_ENDPOINT');
  }, 60_000);

  it('rejects invalid configuration with exit code 2 and names the variable', async () => {
    const child = spawnOwned(process.execPath, ['--import', 'tsx', MAIN, 'controller'], {
      env: { PATH: process.env['PATH'], LIVEUPDATE_S3_ENDPOINT: 'not a url' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise((resolve) => child.on('exit', resolve));
    expect(code).toBe(2);
    expect(err).toContain('LIVEUPDATE_S3_ENDPOINT: "not a url" is not a URL');
    expect(err).toContain('LIVEUPDATE_S3_BUCKET (--s3-bucket) is required');
  }, 60_000);

  it('two processes: one leads, the other stands by ready; SIGTERM exits 0, releases the lease, the other takes over', async () => {
    await installCrds();
    const ns = await newNamespace('controller-proc');
    const bucket = await newBucket('controller-proc');
    const first = startController('first', ns, bucket);
    started.push(first);
    await waitFor('first admin server', () => first.admin, 60_000);
    await waitFor(
      'first ready as leader',
      async () => (await get(first, '/readyz')).status === 200 && (await masterStatus(first)) === '1',
      60_000,
    );
    expect((await get(first, '/healthz')).status).toBe(200);
    const metrics = (await get(first, '/metrics')).text;
    expect(metrics).toContain(
      'controller_runtime_max_concurrent_reconciles{controller="liveupdatebundle"} 4',
    );
    expect(metrics).toContain('workqueue_depth');

    const second = startController('second', ns, bucket);
    started.push(second);
    await waitFor('second admin server', () => second.admin, 60_000);
    await waitFor(
      'second ready as standby',
      async () => (await get(second, '/readyz?verbose')).text.includes('standby (leader: first)'),
      60_000,
    );
    expect(await masterStatus(second)).toBe('0');

    first.child.kill('SIGTERM');
    expect(await first.exit).toBe(0);
    const reader = newClient('reader');
    const lease = await reader.get<KubeObject & { spec?: { holderIdentity?: string } }>(LEASE_TYPE, {
      namespace: ns,
      name: 'liveupdate-controller',
    });
    expect(['', 'second']).toContain(lease.spec?.holderIdentity ?? '');
    await waitFor('second to lead', async () => (await masterStatus(second)) === '1', 30_000);
    second.child.kill('SIGTERM');
    expect(await second.exit).toBe(0);
    reader.rest.close();
    expect(first.logs.join('\n')).toMatch(/"msg":"released leader lease"/);
    expect([...first.logs, ...second.logs].filter((l) => /"level":"(error|fatal)"/.test(l))).toEqual([]);
  }, 120_000);
});
