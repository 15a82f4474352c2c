// One app can never take other apps down (ADR 0008): the update service as the command runs it, against the real
// S3 server, with one good app and one whose index cannot be used. The replica becomes ready, answers the good app,
// answers the broken one with a documented per-app error, and a root.json deleted for a while changes no answer.
import { jest } from '@jest/globals';
import { silentLogger } from '../../../src/observability/logger.js';
import { StorageLayout } from '../../../src/storage/layout.js';
import type { ReleaseIndex } from '../../../src/storage/release-index.js';
import { serve } from '../../../src/updateserver/command.js';
import { androidBody, rootFor, sampleIndex } from '../../../src/updateserver/testing/fixtures.js';
import { cleanupTestResources, newBucket, s3Store, testEnvironment } from '../../env/fixtures.js';
import { waitFor } from '../kube/helpers.js';
import { serviceConfig } from './service-config.js';

jest.setTimeout(120_000);

const layout = new StorageLayout('lu');

function appIndex(name: string, appId: string): ReleaseIndex {
  const index = sampleIndex(1);
  index.app = { ...index.app, name, appId };
  return index;
}

const good = appIndex('good', 'com.example.good');
/** Valid against the schema, but its default channel does not exist: the service's compile step refuses it. */
const broken = {
  ...appIndex('broken', 'com.example.broken'),
  app: { ...appIndex('broken', 'com.example.broken').app, defaultChannel: 'nowhere' },
};

let base: string;
let admin: string;
let stop: AbortController | undefined;
let served: Promise<number> | undefined;
let bucket: string;

async function check(appId: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${base}/updates`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(androidBody({ app_id: appId })),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function metrics(): Promise<string> {
  return (await fetch(`${admin}/metrics`)).text();
}

beforeAll(async () => {
  bucket = await newBucket('readiness');
  const store = s3Store(bucket);
  await store.put(layout.indexKey(good.app), JSON.stringify(good));
  await store.put(layout.indexKey(broken.app), JSON.stringify(broken));
  await store.put(layout.rootKey(), JSON.stringify(rootFor([good, broken])));
  const { s3 } = testEnvironment();
  const service = await serviceConfig(s3, bucket);
  base = service.base;
  admin = service.admin;
  stop = new AbortController();
  served = serve(service.config, silentLogger(), stop.signal);
});

afterAll(async () => {
  stop?.abort();
  await served?.catch(() => 1);
  await cleanupTestResources();
});

test('a replica started with one good and one broken app is ready and answers the good app', async () => {
  await waitFor('readiness', async () => (await fetch(`${admin}/readyz`)).status === 200, 20_000);
  const answer = await check(good.app.appId);
  expect(answer.status).toBe(200);
  expect(answer.body).toMatchObject({ version: '1.4.1' });
});

test('the broken app is answered for that app only, with a documented error, a metric and readiness detail', async () => {
  const answer = await check(broken.app.appId);
  expect(answer.status).toBe(503);
  expect(answer.body).toMatchObject({ error: 'app_unavailable', kind: 'failed' });
  expect(String(answer.body['message'])).not.toMatch(/127\.0\.0\.1|lu\/|index\.json/);
  const text = await metrics();
  expect(text).toMatch(/liveupdate_index_apps\{state="failed"\} 1/);
  expect(text).toMatch(/liveupdate_index_apps\{state="serving"\} 1/);
  const ready = await fetch(`${admin}/readyz?verbose`);
  expect(ready.status).toBe(200);
  expect(await ready.text()).toContain('com.example.broken');
  // An app the root does not list is still app_not_found.
  expect((await check('com.example.unknown')).body).toMatchObject({ error: 'app_not_found' });
});

test('deleting root.json for a while changes no device answer, counts an error and degrades readiness detail', async () => {
  const store = s3Store(bucket);
  const before = await check(good.app.appId);
  const rootBody = (await store.getBuffer(layout.rootKey())).data;
  await store.remove(layout.rootKey());
  try {
    await waitFor(
      'root_missing error',
      async () => /liveupdate_index_load_errors_total\{reason="root_missing"\} [1-9]/.test(await metrics()),
      20_000,
    );
    for (let i = 0; i < 3; i++) expect(await check(good.app.appId)).toEqual(before);
    expect((await check(broken.app.appId)).body).toMatchObject({ error: 'app_unavailable' });
    const ready = await fetch(`${admin}/readyz?verbose`);
    expect(ready.status).toBe(200);
    expect(await ready.text()).toMatch(/root.*(missing|not found)/);
  } finally {
    await store.put(layout.rootKey(), rootBody);
  }
  expect(await check(good.app.appId)).toEqual(before);
});

test('only an explicit, valid root that omits an app removes it', async () => {
  const store = s3Store(bucket);
  await store.put(layout.rootKey(), JSON.stringify(rootFor([good])));
  await waitFor(
    'broken app removed',
    async () => (await check(broken.app.appId)).body['error'] === 'app_not_found',
    20_000,
  );
  expect((await check(good.app.appId)).body).toMatchObject({ version: '1.4.1' });
  expect(await metrics()).toMatch(/liveupdate_index_apps\{state="failed"\} 0/);
});
