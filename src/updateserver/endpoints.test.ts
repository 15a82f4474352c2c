/**
 * Stats, channel self-assignment, downloads, rate limits and ops endpoints of the device API, over HTTP.
 */
import { channelNumericId } from '../storage/release-index.js';
import { StorageLayout } from '../storage/layout.js';
import { Readable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { MemoryObjectStore } from '../storage/memory-store.js';
import type { GetResult, RangeSpec } from '../storage/object-store.js';
import { silentLogger } from '../observability/logger.js';
import { STATS_ROLLUP_API_VERSION, StatsRollupWriter, type StatsRollup } from './stats-rollup.js';
import {
  APP_ID,
  NS,
  APP_NAME,
  PINNED_DEVICE,
  androidBody,
  iosBody,
  layout,
  sampleIndex,
  startServer,
  type RunningServer,
} from './testing/fixtures.js';

type Json = Record<string, unknown>;

function statsEvent(overrides: Json = {}): Json {
  return {
    ...androidBody({ version_name: '1.4.1' }),
    old_version_name: 'builtin',
    action: 'set',
    timestamp: 1764406800000,
    ...overrides,
  };
}

async function metricValue(
  srv: RunningServer,
  name: string,
  labels: Record<string, string>,
): Promise<number | undefined> {
  const m = await srv.registry.getSingleMetric(name)?.get();
  const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return v?.value;
}

describe('POST /stats', () => {
  let srv: RunningServer;
  beforeAll(async () => {
    srv = await startServer();
  });
  afterAll(() => srv.close());

  it('accepts a batch array and counts events per channel, version and action', async () => {
    const res = await srv.post('/stats', [
      statsEvent(),
      statsEvent({ action: 'download_complete' }),
      statsEvent({ action: 'set', defaultChannel: 'beta', version_name: '1.5.0' }),
      statsEvent({ action: 'some_future_action' }),
      statsEvent({ action: 'download_manifest_file_fail', version_name: '1.5.0:assets/app.js' }),
      statsEvent({ action: 'set', version_name: '9.9.9' }),
    ]);
    expect(res.status).toBe(200);
    // Capgo plugins/stats.ts: a batch gets one result per event.
    expect(res.json).toEqual({
      status: 'ok',
      results: [0, 1, 2, 3, 4, 5].map((index) => ({ status: 'ok', index })),
    });
    expect(
      await metricValue(srv, 'liveupdate_device_events_total', {
        app_id: APP_ID,
        channel: 'production',
        version: '1.4.1',
        action: 'set',
      }),
    ).toBe(1);
    expect(
      await metricValue(srv, 'liveupdate_device_events_total', {
        channel: 'beta',
        version: '1.5.0',
        action: 'set',
      }),
    ).toBe(1);
    expect(await metricValue(srv, 'liveupdate_device_events_total', { action: 'some_future_action' })).toBe(
      1,
    );
    expect(
      await metricValue(srv, 'liveupdate_device_events_total', {
        version: '1.5.0',
        action: 'download_manifest_file_fail',
      }),
    ).toBe(1);
    expect(
      await metricValue(srv, 'liveupdate_device_events_total', { version: 'other', action: 'set' }),
    ).toBe(1);
  });

  it('accepts a single event object (download worker, rate_limit_reached)', async () => {
    const ev = statsEvent({ action: 'rate_limit_reached' });
    delete ev['timestamp'];
    delete ev['key_id'];
    const res = await srv.post('/stats', ev);
    expect(res.status).toBe(200);
    expect(await metricValue(srv, 'liveupdate_device_events_total', { action: 'rate_limit_reached' })).toBe(
      1,
    );
  });

  it('never puts device ids in metric labels', async () => {
    const text = await srv.registry.metrics();
    expect(text).not.toContain('5c0e3a2e-8d43-4a63-9c52-1b1f0f2c9e11');
  });

  // Capgo plugins/stats.ts + plugin_validation.ts statsRequestSchema, tests/stats*.test.ts.
  it.each([
    ['an empty batch', [], 200, { status: 'ok', results: [] }],
    [
      'an invalid event, answered at its index',
      [
        statsEvent({ action: 'table_probe' }),
        statsEvent({ version_os: undefined }),
        statsEvent({ action: 7 }),
      ],
      200,
      {
        status: 'ok',
        results: [
          { status: 'ok', index: 0 },
          expect.objectContaining({ status: 'error', error: 'invalid_json_body', index: 1 }),
          expect.objectContaining({ status: 'error', error: 'invalid_json_body', index: 2 }),
        ],
      },
    ],
    [
      'per-event validation: version_build, platform, device_id',
      [
        statsEvent({ version_build: 'not-a-version' }),
        statsEvent({ platform: 7 }),
        statsEvent({ device_id: 'device-1' }),
        statsEvent({ device_id: undefined }),
        statsEvent({ custom_id: 'x'.repeat(37) }),
        statsEvent({ metadata: { a: 1 } }),
      ],
      200,
      {
        status: 'ok',
        results: [
          expect.objectContaining({ status: 'error', error: 'semver_error', index: 0 }),
          expect.objectContaining({ status: 'error', error: 'invalid_json_body', index: 1 }),
          expect.objectContaining({ status: 'error', error: 'invalid_json_body', index: 2 }),
          expect.objectContaining({ status: 'error', error: 'missing_device_id', index: 3 }),
          expect.objectContaining({ status: 'error', error: 'invalid_json_body', index: 4 }),
          expect.objectContaining({ status: 'error', error: 'invalid_json_body', index: 5 }),
        ],
      },
    ],
    [
      'a batch mixing app ids, refused as a whole',
      [statsEvent({ action: 'table_probe' }), statsEvent({ app_id: 'com.stats.other' })],
      200,
      { error: 'mixed_app_ids', message: 'All events in a batch must have the same app_id' },
    ],
    [
      'a batch whose later event has no app_id',
      [statsEvent({ action: 'table_probe' }), { action: 'set' }],
      200,
      { error: 'invalid_app_id' },
    ],
    [
      'a first event without app_id',
      [42, statsEvent({ action: 'table_probe' })],
      400,
      { error: 'invalid_app_id' },
    ],
    ['a single event without app_id', { action: 'set' }, 400, { error: 'invalid_app_id' }],
    ['a single invalid event', statsEvent({ version_os: 14 }), 400, { error: 'invalid_json_body' }],
    [
      'a batch of an unknown app',
      [statsEvent({ app_id: 'com.unknown.app' })],
      200,
      {
        status: 'ok',
        results: [expect.objectContaining({ status: 'error', error: 'app_not_found', index: 0 })],
      },
    ],
  ])('answers %s as Capgo', async (_n, body, status, expected) => {
    const res = await srv.post('/stats', body);
    expect(res.status).toBe(status);
    expect(res.json).toMatchObject(expected);
  });

  it('counts nothing from a refused batch', async () => {
    const before = await metricValue(srv, 'liveupdate_device_events_total', { action: 'mixed_probe' });
    await srv.post('/stats', [
      statsEvent({ action: 'mixed_probe' }),
      statsEvent({ app_id: 'com.other.app' }),
    ]);
    expect(await metricValue(srv, 'liveupdate_device_events_total', { action: 'mixed_probe' })).toBe(before);
  });

  it('refuses batches over the event cap, bodies over the size limit, and non-JSON', async () => {
    expect(
      (
        await srv.post(
          '/stats',
          Array.from({ length: 501 }, () => statsEvent()),
        )
      ).json,
    ).toMatchObject({ error: 'too_many_events' });
    const huge = await srv.post('/stats', [statsEvent({ metadata: { x: 'y'.repeat(1_100_000) } })]);
    expect(huge.status).toBe(413);
    expect((await srv.post('/stats', 'not json')).json).toMatchObject({ error: 'invalid_json_parse_body' });
  });

  it('rolls counters up to S3 as <replica>.json under the stats prefix', async () => {
    const writer = new StatsRollupWriter({
      aggregator: srv.stats,
      store: srv.store,
      layout,
      replica: 'test-0',
      logger: silentLogger(),
      metrics: srv.metrics,
      flushSeconds: 30,
    });
    await writer.flush();
    const key = `${layout.statsPrefix({ namespace: NS, name: APP_NAME })}test-0.json`;
    expect(key).toBe('lu/apps/example/stats/test-0.json');
    const rollup = JSON.parse((await srv.store.getBuffer(key)).data.toString()) as StatsRollup;
    expect(rollup).toMatchObject({
      apiVersion: STATS_ROLLUP_API_VERSION,
      kind: 'StatsRollup',
      replica: 'test-0',
      appId: APP_ID,
    });
    expect(rollup.counters).toContainEqual({
      channel: 'production',
      version: '1.4.1',
      action: 'set',
      count: 1,
    });
    // Nothing changed: no second write.
    const puts = srv.store.calls.put;
    await writer.flush();
    expect(srv.store.calls.put).toBe(puts);
    // A failed write is retried at the next flush.
    await srv.post('/stats', statsEvent());
    srv.store.setUnavailable(true);
    await writer.flush();
    srv.store.setUnavailable(false);
    await writer.flush();
    const again = JSON.parse((await srv.store.getBuffer(key)).data.toString()) as StatsRollup;
    expect(again.counters).toContainEqual({
      channel: 'production',
      version: '1.4.1',
      action: 'set',
      count: 2,
    });
  });
});

describe('stats cardinality', () => {
  it('caps distinct series and counts the rest as _overflow', async () => {
    const { StatsAggregator } = await import('./stats-rollup.js');
    const { UpdateServerMetrics } = await import('./metrics.js');
    const { createRegistry } = await import('../observability/metrics.js');
    const { compileIndex } = await import('./compiled-index.js');
    const metrics = new UpdateServerMetrics(createRegistry({ defaultMetrics: false }));
    const agg = new StatsAggregator({ replica: 'r', metrics, maxSeries: 10 });
    const app = compileIndex(sampleIndex());
    for (let i = 0; i < 100; i++) agg.record(app, 'production', '1.4.1', `action_${i}`);
    expect(agg.seriesCount).toBe(11);
    const [rollup] = agg.takeDirty();
    expect(rollup!.rollup.counters).toContainEqual({
      channel: '_overflow',
      version: '_overflow',
      action: '_overflow',
      count: 90,
    });
  });
});

describe('/channel_self', () => {
  let srv: RunningServer;
  beforeAll(async () => {
    srv = await startServer();
  });
  afterAll(() => srv.close());

  const call = async (
    method: string,
    body?: Json,
    query?: Json,
  ): Promise<{ status: number; json: unknown }> => {
    const qs = query
      ? '?' +
        new URLSearchParams(
          Object.entries(query)
            .filter(([, v]) => v !== undefined)
            .map(([k, v]): [string, string] => [k, String(v)]),
        ).toString()
      : '';
    const res = await fetch(`${srv.url}/channel_self${qs}`, {
      method,
      headers: { 'content-type': 'application/json' },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, json: await res.json() };
  };

  // Capgo plugins/channel_self.ts post(), tests/channel_self.test.ts.
  it.each([
    ['a self-assignable channel', { channel: 'beta' }, { status: 'ok', allowSet: true }],
    [
      'the public channel without self-assignment',
      { channel: 'production' },
      { error: 'public_channel_self_set_not_allowed', channel: 'production', app_id: APP_ID },
    ],
    [
      'a private channel without self-assignment',
      { channel: 'qa' },
      { error: 'channel_self_set_not_allowed', kind: 'failed', channel: 'qa' },
    ],
    [
      'an unknown channel',
      { channel: 'nope' },
      { error: 'channel_not_found', kind: 'failed', channel: 'nope' },
    ],
    ['no channel', {}, { error: 'missing_channel' }],
    ['an empty channel', { channel: '' }, { error: 'missing_channel' }],
    [
      'a channel not on the platform (not checked, as Capgo)',
      { channel: 'plain', platform: 'ios' },
      { status: 'ok' },
    ],
    [
      'a channel for a pinned device (current plugin)',
      { channel: 'beta', device_id: PINNED_DEVICE },
      { status: 'ok' },
    ],
    [
      'a channel for a pinned device (legacy plugin)',
      { channel: 'beta', device_id: PINNED_DEVICE, plugin_version: '6.33.0' },
      { error: 'cannot_override' },
    ],
    ['a channel from a legacy plugin', { channel: 'beta', plugin_version: '5.2.0' }, { status: 'ok' }],
    [
      'a channel without plugin_version (legacy)',
      { channel: 'beta', plugin_version: undefined },
      { status: 'ok' },
    ],
  ])('POST sets %s', async (_n, extra, expected) => {
    const res = await call('POST', { ...androidBody(), ...extra });
    expect(res.status).toBe(200);
    expect(res.json).toEqual(expect.objectContaining(expected));
  });

  it.each([
    ['empty body', {}, 'invalid_json_body'],
    ['no device_id', { ...androidBody({ channel: 'beta' }), device_id: undefined }, 'missing_device_id'],
    [
      'a device_id that is not a UUID',
      androidBody({ device_id: 'abc', channel: 'beta' }),
      'invalid_json_body',
    ],
    [
      'a version_build that is not semver',
      androidBody({ version_build: 'x.y', channel: 'beta' }),
      'semver_error',
    ],
    [
      'a key_id longer than 20',
      androidBody({ key_id: 'k'.repeat(21), channel: 'beta' }),
      'invalid_json_body',
    ],
    [
      'an install_source over 64',
      androidBody({ install_source: 'i'.repeat(65), channel: 'beta' }),
      'invalid_json_body',
    ],
    ['an unsupported platform', androidBody({ platform: 'windows', channel: 'beta' }), 'invalid_json_body'],
  ])('POST refuses %s with 400 %s', async (_n, body, code) => {
    const res = await call('POST', body);
    expect(res.status).toBe(400);
    expect(res.json).toMatchObject({ error: code });
  });

  it.each([
    ['the public channel by default', androidBody(), { channel: 'production', status: 'default' }],
    [
      'defaultChannel as default',
      androidBody({ defaultChannel: 'beta' }),
      { channel: 'beta', status: 'default' },
    ],
    [
      'the channel the body carries as override',
      androidBody({ channel: 'beta' }),
      { channel: 'beta', status: 'override', allowSet: true },
    ],
    [
      'a pinned channel',
      iosBody({ device_id: PINNED_DEVICE }),
      { channel: 'qa', status: 'override', allowSet: false },
    ],
    [
      'the public channel for a legacy plugin without a stored override',
      androidBody({ plugin_version: '7.33.0', device_id: '7e6d3737-0d21-4f04-8a3b-000000000001' }),
      { channel: 'production', status: 'default' },
    ],
  ])('PUT gets %s', async (_n, body, expected) => {
    const res = await call('PUT', body);
    expect(res.json).toEqual(expected);
  });

  it('GET lists public and self-assignable channels compatible with the device as a bare array', async () => {
    // Capgo pg.ts getCompatibleChannelsPg: (public or self-set), platform, emulator/device, prod/dev.
    const res = await call('GET', undefined, {
      ...androidBody(),
      key_id: undefined,
      install_source: undefined,
    });
    expect(Array.isArray(res.json)).toBe(true);
    const list = res.json as Json[];
    expect(list.map((c) => c['name']).sort()).toEqual(['beta', 'next', 'plain', 'production', 'reset']);
    expect(list.find((c) => c['name'] === 'beta')).toEqual({
      id: channelNumericId(NS, APP_NAME, 'beta'),
      name: 'beta',
      public: false,
      allow_self_set: true,
    });
    expect(list.find((c) => c['name'] === 'production')).toMatchObject({
      public: true,
      allow_self_set: false,
    });
    for (const c of list) expect(Number.isInteger(c['id'])).toBe(true);
    // Capgo's minimal query: no device_id.
    const ios = (
      await call('GET', undefined, { app_id: APP_ID, platform: 'ios', is_emulator: false, is_prod: true })
    ).json as Json[];
    expect(ios.map((c) => c['name'])).not.toContain('plain');
    const emulator = (
      await call('GET', undefined, { app_id: APP_ID, platform: 'android', is_emulator: true })
    ).json as Json[];
    expect(emulator.map((c) => c['name'])).toEqual(['beta']);
    const dev = (await call('GET', undefined, { app_id: APP_ID, platform: 'android', is_prod: false }))
      .json as Json[];
    expect(dev.map((c) => c['name'])).toEqual(['beta']);
  });

  it.each([
    ['no query at all', {}, 'invalid_query_parameters'],
    ['no app_id', { platform: 'android' }, 'missing_app_id'],
    ['no platform', { app_id: APP_ID }, 'invalid_query_parameters'],
    [
      'a key_id longer than 20',
      { app_id: APP_ID, platform: 'ios', key_id: 'k'.repeat(21) },
      'invalid_query_parameters',
    ],
  ])('GET refuses %s', async (_n, query, code) => {
    const res = await call('GET', undefined, query);
    expect(res.status).toBe(400);
    expect(res.json).toMatchObject({ error: code });
  });

  it('DELETE answers ok for current plugins, cannot_override for legacy ones without an override', async () => {
    const q = { ...androidBody(), key_id: undefined, install_source: undefined };
    expect((await call('DELETE', undefined, q)).json).toEqual({ status: 'ok' });
    expect(
      (
        await call('DELETE', undefined, {
          ...q,
          plugin_version: '6.0.0',
          device_id: '7e6d3737-0d21-4f04-8a3b-000000000002',
        })
      ).json,
    ).toMatchObject({ error: 'cannot_override' });
  });

  // Capgo plugins/channel_self.ts (plugins < 5.34/6.34/7.34 keep their channel on the server) and update.ts
  // (the override is used by update checks).
  it("keeps a legacy plugin's channel on the server: set, used by update checks, reported, cleared", async () => {
    const device = '7e6d3737-0d21-4f04-8a3b-00000000abcd';
    const legacy = (extra: Json = {}): Json =>
      androidBody({
        device_id: device,
        plugin_version: '6.33.0',
        key_id: undefined,
        is_prod: false,
        ...extra,
      });
    const check = async (): Promise<Json> => (await srv.post('/updates', legacy())).json as Json;
    expect(await check()).toMatchObject({ error: 'disable_dev_build' }); // production: prod builds only
    expect((await call('POST', legacy({ channel: 'beta' }))).json).toEqual({ status: 'ok' });
    expect(await check()).toMatchObject({ version: '1.5.0' });
    expect((await call('PUT', legacy())).json).toEqual({
      channel: 'beta',
      status: 'override',
      allowSet: true,
    });
    // A current plugin on the same device id is not affected (its channel lives on the device).
    expect((await srv.post('/updates', legacy({ plugin_version: '8.51.23' }))).json).toMatchObject({
      error: 'disable_dev_build',
    });
    // The stored value is a salted hash of the device id, never the id.
    const keys: string[] = [];
    for await (const o of srv.store.list('lu/apps/example/overrides/')) keys.push(o.key);
    expect(keys.length).toBeGreaterThan(0);
    for (const key of keys) {
      const doc = (await srv.store.getBuffer(key)).data.toString('utf8');
      expect(doc).not.toContain(device);
      expect(JSON.parse(doc)).toMatchObject({ apiVersion: 'liveupdate.dev/channel-overrides/v1' });
    }
    // DELETE removes it.
    const q = { ...legacy(), is_prod: 'false' };
    expect((await call('DELETE', undefined, q)).json).toEqual({ status: 'ok' });
    expect(await check()).toMatchObject({ error: 'disable_dev_build' });
    expect((await call('DELETE', undefined, q)).json).toMatchObject({ error: 'cannot_override' });
    // Another channel replaces it.
    expect((await call('POST', legacy({ channel: 'next' }))).json).toEqual({ status: 'ok' });
    expect((await call('PUT', legacy())).json).toMatchObject({ channel: 'next', status: 'override' });
  });

  it('removes a legacy override when the device selects the public channel', async () => {
    const index = sampleIndex();
    index.channels.find((c) => c.name === 'production')!.policy.allowDeviceSelfSet = true;
    const own = await startServer({ indexes: [index] });
    try {
      const body = (channel?: string): Json =>
        androidBody({ plugin_version: '5.20.0', key_id: undefined, ...(channel ? { channel } : {}) });
      const put = async (b: Json): Promise<unknown> =>
        (await fetch(`${own.url}/channel_self`, { method: 'PUT', body: JSON.stringify(b) })).json();
      expect((await own.post('/channel_self', body('beta'))).json).toEqual({ status: 'ok' });
      expect(await put(body())).toMatchObject({ channel: 'beta', status: 'override' });
      expect((await own.post('/channel_self', body('production'))).json).toEqual({ status: 'ok' });
      expect(await put(body())).toEqual({ channel: 'production', status: 'default' });
    } finally {
      await own.close();
    }
  });
});

describe('downloads', () => {
  let srv: RunningServer;
  const body = Buffer.from(Array.from({ length: 1011 }, (_, i) => i % 251));
  const index = sampleIndex();
  const zipKey = index.bundles['app-1-4-1']!.objectKey;
  beforeAll(async () => {
    index.bundles['app-1-4-1']!.size = body.length;
    const store = new MemoryObjectStore('b');
    await store.put(zipKey, body);
    await store.put('lu/apps/example/secret.txt', 'not referenced');
    srv = await startServer({ indexes: [index], store });
  });
  afterAll(() => srv.close());

  it('serves the url of an update answer with Content-Length, ETag, Accept-Ranges', async () => {
    const answer = (await srv.post('/updates', androidBody())).json as Json;
    const url = String(answer['url']).replace('https://updates.example.com', srv.url);
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-length')).toBe(String(body.length));
    expect(res.headers.get('accept-ranges')).toBe('bytes');
    expect(res.headers.get('content-type')).toBe('application/zip');
    expect(res.headers.get('etag')).toMatch(/^"[0-9a-f]+"$/);
    expect(Buffer.from(await res.arrayBuffer()).equals(body)).toBe(true);
  });

  it('answers Range with 206 and Content-Range, suffix ranges too', async () => {
    const res = await fetch(`${srv.url}/bundles/${zipKey}`, { headers: { range: 'bytes=1000-' } });
    expect(res.status).toBe(206);
    expect(res.headers.get('content-range')).toBe(`bytes 1000-1010/${body.length}`);
    expect(Buffer.from(await res.arrayBuffer()).equals(body.subarray(1000))).toBe(true);
    const suffix = await fetch(`${srv.url}/bundles/${zipKey}`, { headers: { range: 'bytes=-11' } });
    expect(suffix.status).toBe(206);
    expect(Buffer.from(await suffix.arrayBuffer()).equals(body.subarray(1000))).toBe(true);
  });

  it('answers an unsatisfiable range with 416', async () => {
    const res = await fetch(`${srv.url}/bundles/${zipKey}`, { headers: { range: 'bytes=5000-' } });
    expect(res.status).toBe(416);
    expect(res.headers.get('content-range')).toBe(`bytes */${body.length}`);
  });

  it('answers If-None-Match with 304', async () => {
    const first = await fetch(`${srv.url}/bundles/${zipKey}`);
    await first.arrayBuffer();
    const etag = first.headers.get('etag')!;
    const res = await fetch(`${srv.url}/bundles/${zipKey}`, { headers: { 'if-none-match': etag } });
    expect(res.status).toBe(304);
  });

  it('answers HEAD with the headers only', async () => {
    const res = await fetch(`${srv.url}/bundles/${zipKey}`, { method: 'HEAD' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-length')).toBe(String(body.length));
  });

  it('serves only keys a loaded index references', async () => {
    expect((await fetch(`${srv.url}/bundles/lu/apps/example/secret.txt`)).status).toBe(404);
    expect((await fetch(`${srv.url}/bundles/lu/apps/example/../example/index.json`)).status).toBe(404);
    expect((await fetch(`${srv.url}/bundles/lu%2Fapps%2Fexample%2Findex.json`)).status).toBe(404);
    expect(
      (await fetch(`${srv.url}/bundles/${layout.indexKey({ namespace: NS, name: APP_NAME })}`)).status,
    ).toBe(404);
  });

  it('answers 503 with Retry-After when the store is down, while update checks keep working', async () => {
    srv.store.setUnavailable(true);
    try {
      const res = await fetch(`${srv.url}/bundles/${zipKey}`);
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('5');
      expect(await res.json()).toMatchObject({ error: 'storage_unavailable' });
      expect(((await srv.post('/updates', androidBody())).json as Json)['version']).toBe('1.4.1');
    } finally {
      srv.store.setUnavailable(false);
    }
  });

  it('answers manifest_size with sizes of known files', async () => {
    const res = await srv.post('/updates/manifest_size', {
      ...androidBody({ defaultChannel: 'beta' }),
      version: '1.5.0',
      manifest: [
        { file_name: 'index.html', file_hash: 'd'.repeat(512), download_url: '' },
        { file_name: 'missing.js', file_hash: '00', download_url: '' },
      ],
    });
    expect(res.json).toMatchObject({ totalSize: 120, knownFiles: 1, unknownFiles: 1 });
    expect((res.json as { files: Json[] }).files[1]).toMatchObject({
      file_name: 'missing.js',
      error: 'file_not_found',
    });
  });
});

/** A store whose bodies reuse buffers (like the S3 store's): chunks must be released once each, after use. */
class ReleasingStore extends MemoryObjectStore {
  readonly pushed: Buffer[] = [];
  readonly released: Buffer[] = [];
  override async get(
    key: string,
    opts?: { range?: RangeSpec; ifNoneMatch?: string; signal?: AbortSignal },
  ): Promise<GetResult | null> {
    const r = await super.get(key, opts);
    if (!r || !key.endsWith('.zip')) return r;
    const data = Buffer.concat(await r.body.toArray());
    const chunks: Buffer[] = [];
    for (let i = 0; i < data.length; i += 65536) chunks.push(Buffer.from(data.subarray(i, i + 65536)));
    this.pushed.push(...chunks);
    const body = Object.assign(Readable.from(chunks, { objectMode: false }), {
      release: (chunk: Buffer) => this.released.push(chunk),
    });
    return { info: r.info, body };
  }
}

describe('downloads from a store with releasable buffers', () => {
  it('sends every byte and releases each chunk exactly once', async () => {
    const index = sampleIndex();
    const key = index.bundles['app-1-4-1']!.objectKey;
    const data = randomBytes(3 * 1024 * 1024 + 17);
    index.bundles['app-1-4-1']!.size = data.length;
    const store = new ReleasingStore('b');
    await store.put(key, data);
    const srv = await startServer({ indexes: [index], store });
    try {
      const res = await fetch(`${srv.url}/bundles/${key}`);
      expect(res.status).toBe(200);
      expect(Buffer.from(await res.arrayBuffer()).equals(data)).toBe(true);
      expect(store.pushed.length).toBe(49);
      expect(store.released.length).toBe(store.pushed.length);
      expect(new Set(store.released).size).toBe(store.pushed.length);
      expect(store.released.every((c) => store.pushed.includes(c))).toBe(true);
    } finally {
      await srv.close();
    }
  });
});

describe('rate limiting', () => {
  it('answers 429 with Retry-After and too_many_requests per device', async () => {
    const srv = await startServer({ options: { rateLimitPerDevice: 2 } });
    try {
      expect((await srv.post('/updates', androidBody())).status).toBe(200);
      const limited = await srv.post('/updates', androidBody());
      expect(limited.status).toBe(429);
      expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(limited.json).toMatchObject({ error: 'too_many_requests', kind: 'failed' });
      expect(typeof (limited.json as Json)['message']).toBe('string');
      // Another device is not affected.
      expect((await srv.post('/updates', iosBody())).status).toBe(200);
    } finally {
      await srv.close();
    }
  });

  it('limits per client address', async () => {
    const srv = await startServer({ options: { rateLimitPerAddress: 4 } });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++)
        statuses.push(
          (await srv.post('/updates', androidBody({ device_id: `0000000${i}-1111-4222-8333-444455556666` })))
            .status,
        );
      expect(statuses.slice(0, 2)).toEqual([200, 200]);
      expect(statuses).toContain(429);
    } finally {
      await srv.close();
    }
  });
});

describe('ops endpoints', () => {
  it('serves /healthz, /readyz and the OpenAPI document; unknown paths are JSON 404', async () => {
    const srv = await startServer();
    try {
      expect((await fetch(`${srv.url}/healthz`)).status).toBe(200);
      expect((await fetch(`${srv.url}/readyz`)).status).toBe(200);
      const doc = (await (await fetch(`${srv.url}/openapi.json`)).json()) as Json;
      expect(doc['openapi']).toBe('3.1.0');
      const nf = await fetch(`${srv.url}/nope`);
      expect(nf.status).toBe(404);
      expect(await nf.json()).toMatchObject({ error: 'not_found', kind: 'failed' });
    } finally {
      await srv.close();
    }
  });

  it('is not ready before the first index load', async () => {
    const { createUpdateServer } = await import('./app.js');
    const { IndexCache } = await import('./index-cache.js');
    const { UpdateServerMetrics } = await import('./metrics.js');
    const { StatsAggregator } = await import('./stats-rollup.js');
    const { createRegistry } = await import('../observability/metrics.js');
    const store = new MemoryObjectStore();
    store.setUnavailable(true);
    const metrics = new UpdateServerMetrics(createRegistry({ defaultMetrics: false }));
    const cache = new IndexCache({ store, layout: new StorageLayout('lu'), logger: silentLogger(), metrics });
    await cache.poll();
    const app = createUpdateServer({
      indexes: cache,
      store,
      stats: new StatsAggregator({ replica: 'r', metrics }),
      metrics,
      logger: silentLogger(),
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    try {
      const port = (server.address() as { port: number }).port;
      const res = await fetch(`http://127.0.0.1:${port}/readyz`);
      expect(res.status).toBe(503);
      // The state only: the store's error (which may name its address) stays on the admin port.
      expect(await res.json()).toEqual({ status: 'not_ready', reason: 'release index not loaded yet' });
    } finally {
      server.close();
    }
  });
});

describe('presigned downloads', () => {
  it('hands out store URLs for the zip and every delta file when configured', async () => {
    const srv = await startServer({ options: { presignDownloads: true, presignExpirySeconds: 600 } });
    try {
      const answer = (await srv.post('/updates', androidBody({ defaultChannel: 'beta', is_prod: false })))
        .json as {
        url: string;
        manifest: Array<{ download_url: string }>;
      };
      expect(answer.url).toMatch(
        /^https:\/\/memory\.invalid\/bucket\/lu\/apps\/example\/bundles\/.*expires=600$/,
      );
      for (const f of answer.manifest)
        expect(f.download_url).toMatch(/^https:\/\/memory\.invalid\/bucket\/lu\/apps\/example\/files\//);
    } finally {
      await srv.close();
    }
  });
});
