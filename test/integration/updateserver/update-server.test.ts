// The update server as the command runs it (serve(): S3 store, index cache, device API, admin port, stats rollups,
// graceful shutdown) against a real S3 server of its own, which the test stops to prove the service keeps answering
// update checks from memory while downloads fail with 503 + Retry-After.
import { jest } from '@jest/globals';
import type { Client } from 'minio';
import { silentLogger } from '../../../src/observability/logger.js';
import { StorageLayout } from '../../../src/storage/layout.js';
import type { ReleaseIndex } from '../../../src/storage/release-index.js';
import { serve } from '../../../src/updateserver/command.js';
import { androidBody, rootFor, sampleIndex } from '../../../src/updateserver/testing/fixtures.js';
import { minioClientFor } from '../../env/environment.js';
import { startPrivateS3, type PrivateS3 } from './private-s3.js';
import { serviceConfig } from './service-config.js';

jest.setTimeout(120_000);

const BUCKET = 'updates';
const layout = new StorageLayout('lu');
const ref = { namespace: 'apps', name: 'example' };
const zip = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7) % 256));

let s3: PrivateS3;
let client: Client;
let base: string;
let admin: string;
let stop: AbortController;
let served: Promise<number>;
let zipUrl: string;

function index(revision: number, defaultBundle = 'app-1-4-1'): ReleaseIndex {
  const i = sampleIndex(revision);
  i.bundles['app-1-4-1']!.size = zip.length;
  i.channels.find((c) => c.name === 'production')!.bundle = defaultBundle;
  return i;
}

async function publish(i: ReleaseIndex, indexBody?: string): Promise<void> {
  await client.putObject(BUCKET, layout.indexKey(ref), indexBody ?? JSON.stringify(i));
  await client.putObject(BUCKET, layout.rootKey(), JSON.stringify(rootFor([i])));
}

async function check(body: Record<string, unknown> = androidBody()): Promise<Record<string, unknown>> {
  const res = await fetch(`${base}/updates`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, unknown>;
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  s3 = await startPrivateS3();
  client = minioClientFor(s3);
  await client.makeBucket(BUCKET, s3.region);
  await client.putObject(BUCKET, index(1).bundles['app-1-4-1']!.objectKey, zip);
  await publish(index(1));
  const service = await serviceConfig(s3, BUCKET);
  base = service.base;
  admin = service.admin;
  const config = service.config;
  stop = new AbortController();
  served = serve(config, silentLogger(), stop.signal);
  await until('readiness', async () => ((await fetch(`${admin}/readyz`)).status === 200 ? true : undefined));
});

afterAll(async () => {
  stop?.abort();
  await served?.catch(() => 1);
  await s3?.destroy();
});

test('answers from the index in the bucket, and its download URL serves the bundle with Range and ETag', async () => {
  const answer = await check();
  expect(answer).toMatchObject({ version: '1.4.1' });
  const url = String(answer['url']);
  zipUrl = url;
  expect(url.startsWith(`${base}/bundles/lu/apps/example/bundles/`)).toBe(true);
  const full = await fetch(url);
  expect(full.status).toBe(200);
  expect(full.headers.get('content-length')).toBe(String(zip.length));
  expect(Buffer.from(await full.arrayBuffer()).equals(zip)).toBe(true);
  const etag = full.headers.get('etag')!;
  expect(etag).toMatch(/^".+"$/);
  const part = await fetch(url, { headers: { range: 'bytes=100000-' } });
  expect(part.status).toBe(206);
  expect(part.headers.get('content-range')).toBe(`bytes 100000-${zip.length - 1}/${zip.length}`);
  expect(Buffer.from(await part.arrayBuffer()).equals(zip.subarray(100000))).toBe(true);
  expect((await fetch(url, { headers: { 'if-none-match': etag } })).status).toBe(304);
});

test('a new index revision changes the answer within seconds', async () => {
  await publish(index(2, 'app-1-5-0'));
  const answer = await until('revision 2', async () => {
    const a = await check();
    return a['version'] === '1.5.0' ? a : undefined;
  });
  expect(answer['manifest']).toHaveLength(2);
});

test('a corrupted index object is refused and the previous one keeps serving', async () => {
  await publish(index(3), '{"apiVersion":"liveupdate.dev/index/v1","kind":"ReleaseIndex","revision":3,');
  await until('load error metric', async () => {
    const text = await (await fetch(`${admin}/metrics`)).text();
    return /liveupdate_index_load_errors_total\{reason="index_invalid"\} [1-9]/.test(text) ? true : undefined;
  });
  expect((await check())['version']).toBe('1.5.0');
  const ready = await fetch(`${admin}/readyz`);
  expect(ready.status).toBe(200);
  expect(await ready.text()).toMatch(/\[\+\]release-index ok \(.*not JSON/);
});

test('stats are rolled up to the bucket under the stats prefix', async () => {
  const res = await fetch(`${base}/stats`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify([
      {
        ...androidBody({ version_name: '1.5.0' }),
        action: 'set',
        old_version_name: 'builtin',
        timestamp: Date.now(),
      },
    ]),
  });
  // Capgo plugins/stats.ts: a batch gets one result per event.
  expect(await res.json()).toEqual({ status: 'ok', results: [{ status: 'ok', index: 0 }] });
  const rollup = await until('stats rollup', async () => {
    const stream = await client.getObject(BUCKET, `${layout.statsPrefix(ref)}it-0.json`);
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    return JSON.parse(Buffer.concat(chunks).toString()) as { counters: unknown[] };
  });
  expect(rollup.counters).toContainEqual({
    channel: 'production',
    version: '1.5.0',
    action: 'set',
    count: 1,
  });
});

test('a legacy plugin keeps its channel in the bucket (hashed device id) and update checks use it', async () => {
  const device = '7e6d3737-0d21-4f04-8a3b-0000000000aa';
  const legacy = (extra: Record<string, unknown> = {}): Record<string, unknown> =>
    androidBody({ device_id: device, plugin_version: '6.33.0', key_id: undefined, is_prod: false, ...extra });
  expect(await check(legacy())).toMatchObject({ error: 'disable_dev_build' });
  const set = await fetch(`${base}/channel_self`, {
    method: 'POST',
    body: JSON.stringify(legacy({ channel: 'beta' })),
  });
  expect(await set.json()).toEqual({ status: 'ok' });
  expect(await check(legacy())).toMatchObject({ version: '1.5.0' });
  const keys: string[] = [];
  for await (const o of client.listObjectsV2(BUCKET, layout.appPrefix(ref) + 'overrides/', true))
    keys.push((o as { name: string }).name);
  expect(keys).toHaveLength(1);
  const stream = await client.getObject(BUCKET, keys[0]!);
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  expect(Buffer.concat(chunks).toString('utf8')).not.toContain(device);
});

test('with S3 stopped, update checks keep working from memory and downloads get 503 + Retry-After', async () => {
  const answer = await check();
  const url = String(
    answer['manifest']
      ? (answer['manifest'] as Array<{ download_url: string }>)[0]!.download_url
      : answer['url'],
  );
  await s3.stop();
  try {
    for (let i = 0; i < 5; i++) expect((await check())['version']).toBe('1.5.0');
    const res = await fetch(url);
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(await res.json()).toMatchObject({ error: 'storage_unavailable', kind: 'failed' });
    // Readiness holds: the replica still serves what it has.
    expect((await fetch(`${admin}/readyz`)).status).toBe(200);
  } finally {
    await s3.start();
  }
  // Back: the bundle downloads again.
  const again = await until('downloads after restart', async () => {
    const r = await fetch(zipUrl);
    return r.status === 200 ? r : undefined;
  });
  expect(Buffer.from(await again.arrayBuffer()).equals(zip)).toBe(true);
});

test('shuts down gracefully when the signal aborts', async () => {
  stop.abort();
  expect(await served).toBe(0);
  await expect(fetch(`${base}/healthz`)).rejects.toThrow();
});
