// `liveupdate-operator update-server` as a process, configured only through the environment contract the Helm
// chart uses: it becomes ready, answers devices, exposes metrics on the admin port and exits 0 on SIGTERM; while it
// drains, keep-alive clients are told to reconnect (to a replica that is still ready).
import { jest } from '@jest/globals';
import type { ChildProcess } from 'node:child_process';
import { Agent, request } from 'node:http';
import { fileURLToPath } from 'node:url';
import { StorageLayout } from '../../../src/storage/layout.js';
import { androidBody, rootFor, sampleIndex } from '../../../src/updateserver/testing/fixtures.js';
import { freePort, spawnOwned } from '../../env/process-utils.js';
import { minioClientFor } from '../../env/environment.js';
import { startPrivateS3, type PrivateS3 } from './private-s3.js';

jest.setTimeout(120_000);

const MAIN = fileURLToPath(new URL('../../../src/main.ts', import.meta.url));
let s3: PrivateS3;
let proc: ChildProcess | undefined;

beforeAll(async () => {
  s3 = await startPrivateS3();
  const client = minioClientFor(s3);
  await client.makeBucket('liveupdate', s3.region);
  const layout = new StorageLayout('prod');
  const index = sampleIndex(1);
  await client.putObject(
    'liveupdate',
    layout.indexKey({ namespace: 'apps', name: 'example' }),
    JSON.stringify(index),
  );
  await client.putObject(
    'liveupdate',
    layout.rootKey(),
    JSON.stringify({
      ...rootFor([index]),
      apps: rootFor([index]).apps.map((a) => ({ ...a, indexKey: layout.indexKey(a) })),
    }),
  );
});

afterEach(() => {
  if (proc && proc.exitCode === null) proc.kill('SIGKILL');
});

afterAll(async () => {
  await s3?.destroy();
});

/** Starts the command with the chart's environment (plus `env`) against the private S3; resolves once ready. */
async function startUpdateServer(env: NodeJS.ProcessEnv): Promise<{ port: number; adminPort: number }> {
  const [port, adminPort] = [await freePort(), await freePort()];
  let stderr = '';
  proc = spawnOwned(process.execPath, ['--import', 'tsx', MAIN, 'update-server'], {
    env: {
      ...process.env,
      LIVEUPDATE_LOG_LEVEL: 'warn',
      LIVEUPDATE_ADMIN_ADDR: `127.0.0.1:${adminPort}`,
      LIVEUPDATE_LISTEN_ADDR: `127.0.0.1:${port}`,
      LIVEUPDATE_S3_ENDPOINT: s3.endpoint,
      LIVEUPDATE_S3_REGION: s3.region,
      LIVEUPDATE_S3_BUCKET: 'liveupdate',
      LIVEUPDATE_S3_PREFIX: 'prod',
      LIVEUPDATE_S3_ACCESS_KEY_ID: s3.accessKey,
      LIVEUPDATE_S3_SECRET_ACCESS_KEY: s3.secretKey,
      LIVEUPDATE_S3_PATH_STYLE: 'true',
      LIVEUPDATE_PUBLIC_URL: 'https://updates.example.com/',
      LIVEUPDATE_INDEX_POLL_SECONDS: '1',
      LIVEUPDATE_REPLICA_NAME: 'cmd-0',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  proc.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const deadline = Date.now() + 60_000;
  for (;;) {
    const ok = await fetch(`http://127.0.0.1:${adminPort}/readyz`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) break;
    if (proc.exitCode !== null || Date.now() > deadline)
      throw new Error(`not ready (exit ${proc.exitCode}): ${stderr}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return { port, adminPort };
}

test('runs from environment variables, serves, and exits 0 on SIGTERM', async () => {
  const { port, adminPort } = await startUpdateServer({ LIVEUPDATE_SHUTDOWN_DELAY_SECONDS: '0' });
  const res = await fetch(`http://127.0.0.1:${port}/updates`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(androidBody()),
  });
  const answer = (await res.json()) as Record<string, unknown>;
  expect(answer['version']).toBe('1.4.1');
  expect(String(answer['url'])).toMatch(
    /^https:\/\/updates\.example\.com\/bundles\/lu\/apps\/example\/bundles\//,
  );
  const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  expect(metrics).toMatch(/liveupdate_index_revision\{app_id="com.example.app"\} 1/);
  expect((await fetch(`http://127.0.0.1:${port}/metrics`)).status).toBe(404);
  const exited = new Promise<number | null>((r) => proc!.once('exit', (code) => r(code)));
  proc!.kill('SIGTERM');
  expect(await exited).toBe(0);
});

test('while draining, answers close keep-alive connections so clients reconnect to a ready replica', async () => {
  // A delay far longer than this test needs: the requests below are sent while it runs.
  const { port, adminPort } = await startUpdateServer({ LIVEUPDATE_SHUTDOWN_DELAY_SECONDS: '120' });
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const check = () =>
    new Promise<{ status: number; connection: string | undefined; version: unknown }>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port,
          path: '/updates',
          method: 'POST',
          agent,
          headers: { 'content-type': 'application/json' },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (text += chunk));
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              connection: res.headers.connection,
              version: (JSON.parse(text) as Record<string, unknown>)['version'],
            }),
          );
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify(androidBody()));
    });
  try {
    expect(await check()).toEqual({ status: 200, connection: 'keep-alive', version: '1.4.1' });
    proc!.kill('SIGTERM');
    // Readiness off: endpoints stop sending new connections here, but this client holds one.
    for (;;) {
      const status = await fetch(`http://127.0.0.1:${adminPort}/readyz`).then((r) => r.status);
      if (status === 503) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    // Still served (it may have been routed here before the endpoint went), and told to reconnect elsewhere.
    expect(await check()).toEqual({ status: 200, connection: 'close', version: '1.4.1' });
  } finally {
    agent.destroy();
  }
});
