// Behind the chart's Ingress, rate limits are per device address: the update server runs with the environment the
// chart renders (Ingress enabled) behind a local reverse proxy on 127.0.0.1 that appends the client's address to
// X-Forwarded-For, as ingress controllers do. Clients connect from distinct loopback addresses (127.0.0.2, .3, ...):
// one noisy client gets 429, the other devices keep getting answers. Without trust in the proxy every device
// shares the proxy's address and the noisy client locks out the fleet.
import { jest } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseUpdateServerConfig } from '../../../src/config/update-server.js';
import { silentLogger } from '../../../src/observability/logger.js';
import { StorageLayout } from '../../../src/storage/layout.js';
import { androidBody, rootFor, sampleIndex } from '../../../src/updateserver/testing/fixtures.js';
import { serve } from '../../../src/updateserver/command.js';
import { cleanupTestResources, newBucket, s3Client, testEnvironment } from '../../env/fixtures.js';
import { freePort } from '../../env/process-utils.js';
import { containerEnv, findObject, helmTemplate, parseManifests } from './chart-helpers.js';

jest.setTimeout(180_000);

const PER_ADDRESS_PER_MINUTE = 20;
let stop: AbortController | undefined;
let served: Promise<number> | undefined;
let proxy: Server | undefined;
let proxyPort = 0;

/** The update server's environment as the chart renders it with these values. */
async function chartEnv(values: string[], extra: string[] = []): Promise<NodeJS.ProcessEnv> {
  const objects = parseManifests(await helmTemplate([], values, extra));
  return containerEnv(findObject(objects, 'Deployment', 'liveupdate-operator-update-server')).env;
}

/** A reverse proxy like an ingress controller: appends the peer's address to X-Forwarded-For. */
async function startProxy(target: number): Promise<number> {
  proxy = createServer((req, res) => {
    const peer = req.socket.remoteAddress ?? '';
    const forwarded = req.headers['x-forwarded-for'];
    const headers: IncomingHttpHeaders = {
      ...req.headers,
      'x-forwarded-for': forwarded ? `${String(forwarded)}, ${peer}` : peer,
    };
    const upstream = request(
      { host: '127.0.0.1', port: target, method: req.method, path: req.url, headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => proxy!.listen(0, '127.0.0.1', resolve));
  return (proxy.address() as AddressInfo).port;
}

/** An update check through the proxy from a given loopback address; returns the HTTP status. */
function check(from: string, deviceId = randomUUID()): Promise<number> {
  const body = JSON.stringify(androidBody({ device_id: deviceId }));
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: proxyPort,
        localAddress: from,
        method: 'POST',
        path: '/updates',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        agent: false,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

afterAll(async () => {
  stop?.abort();
  await served?.catch(() => 1);
  await new Promise((resolve) => (proxy ? proxy.close(resolve) : resolve(undefined)));
  await cleanupTestResources();
});

test('with the Ingress enabled the chart trusts the in-cluster proxy ranges; without it, nobody', async () => {
  const ingress = [
    'updateServer.ingress.enabled=true',
    'updateServer.ingress.hosts[0].host=updates.example.com',
  ];
  expect((await chartEnv(ingress))['LIVEUPDATE_TRUST_PROXY']).toBe('uniquelocal');
  expect((await chartEnv([]))['LIVEUPDATE_TRUST_PROXY']).toBe('false');
  expect(
    (await chartEnv([...ingress, 'updateServer.trustProxy={10.42.0.0/16,loopback}']))[
      'LIVEUPDATE_TRUST_PROXY'
    ],
  ).toBe('10.42.0.0/16,loopback');
});

test('behind a reverse proxy, one noisy client is limited and other devices are not', async () => {
  const env = await chartEnv(
    [
      'updateServer.ingress.enabled=true',
      'updateServer.ingress.hosts[0].host=updates.example.com',
      // The ingress controller of this test is the local proxy on 127.0.0.1.
      'updateServer.trustProxy={127.0.0.1/32}',
      `updateServer.extraEnv[0].name=LIVEUPDATE_RATE_LIMIT_PER_ADDRESS`,
    ],
    ['--set-string', `updateServer.extraEnv[0].value=${PER_ADDRESS_PER_MINUTE}`],
  );
  const s3 = testEnvironment().s3;
  const bucket = await newBucket('trust-proxy');
  const layout = new StorageLayout('lu');
  const index = sampleIndex(1);
  const client = s3Client();
  await client.putObject(
    bucket,
    layout.indexKey({ namespace: 'apps', name: 'example' }),
    JSON.stringify(index),
  );
  await client.putObject(
    bucket,
    layout.rootKey(),
    JSON.stringify({
      ...rootFor([index]),
      apps: rootFor([index]).apps.map((a) => ({ ...a, indexKey: layout.indexKey(a) })),
    }),
  );
  const [port, adminPort] = [await freePort(), await freePort()];
  const config = parseUpdateServerConfig([], {
    ...env,
    LIVEUPDATE_LISTEN_ADDR: `127.0.0.1:${port}`,
    LIVEUPDATE_ADMIN_ADDR: `127.0.0.1:${adminPort}`,
    LIVEUPDATE_S3_ENDPOINT: s3.endpoint,
    LIVEUPDATE_S3_REGION: s3.region,
    LIVEUPDATE_S3_BUCKET: bucket,
    LIVEUPDATE_S3_PREFIX: 'lu',
    LIVEUPDATE_S3_ACCESS_KEY_ID: s3.accessKey,
    LIVEUPDATE_S3_SECRET_ACCESS_KEY: s3.secretKey,
    LIVEUPDATE_INDEX_POLL_SECONDS: '1',
    LIVEUPDATE_SHUTDOWN_DELAY_SECONDS: '0',
  });
  expect(config?.trustProxy).toBe('127.0.0.1/32');
  expect(config?.rateLimitPerAddress).toBe(PER_ADDRESS_PER_MINUTE);
  stop = new AbortController();
  served = serve(config!, silentLogger(), stop.signal);
  for (const deadline = Date.now() + 60_000; ;) {
    const ready = await fetch(`http://127.0.0.1:${adminPort}/readyz`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ready) break;
    if (Date.now() > deadline) throw new Error('update server not ready');
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  proxyPort = await startProxy(port);

  // The noisy client sends twice its per-minute budget, each time as another device id (per-device limits do not
  // stop it); far more than its burst, so it is limited whatever the timing.
  const noisy: number[] = [];
  for (let i = 0; i < PER_ADDRESS_PER_MINUTE * 2; i++) noisy.push(await check('127.0.0.2'));
  expect(noisy.filter((status) => status === 429).length).toBeGreaterThan(0);
  expect(noisy.filter((status) => status !== 200 && status !== 429)).toEqual([]);

  // Every other device, each from its own address, still gets answers.
  const others: number[] = [];
  for (let host = 3; host <= 12; host++) others.push(await check(`127.0.0.${host}`));
  expect(others).toEqual(others.map(() => 200));
});
