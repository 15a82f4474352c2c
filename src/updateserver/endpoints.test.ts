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
    expect(res.json).toEqual({ status: 'ok' });
    expect(
      await metricValue(srv, 'liveupdate_device_events_total', {
        app: APP_ID,
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

  it('skips invalid events and unknown apps without failing the batch', async () => {
    const res = await srv.post('/stats', [
      42,
      { action: 'set' },
      statsEvent({ app_id: 'com.unknown.app' }),
      statsEvent({ action: 7 }),
    ]);
    expect(res.status).toBe(200);
    expect(await metricValue(srv, 'liveupdate_device_events_dropped_total', { reason: 'unknown_app' })).toBe(
      1,
    );
    expect(await metricValue(srv, 'liveupdate_device_events_dropped_total', { reason: 'invalid' })).toBe(3);
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

  it.each([
    ['a self-assignable channel', { channel: 'beta' }, { status: 'ok', allowSet: true }],
    ['the default channel', { channel: 'production' }, { status: 'ok', allowSet: true }],
    [
      'a channel without self-assignment',
      { channel: 'qa' },
      { error: 'channel_self_set_not_allowed', kind: 'failed' },
    ],
    ['an unknown channel', { channel: 'nope' }, { error: 'channel_not_found', kind: 'failed' }],
    [
      'a channel not on the platform',
      { channel: 'plain', platform: 'ios' },
      { error: 'channel_self_set_not_allowed' },
    ],
    [
      'a channel for a pinned device',
      { channel: 'beta', device_id: PINNED_DEVICE },
      { error: 'cannot_override' },
    ],
  ])('POST sets %s', async (_n, extra, expected) => {
    const res = await call('POST', { ...androidBody(), ...extra });
    expect(res.status).toBe(200);
    expect(res.json).toEqual(expect.objectContaining(expected));
  });

  it('POST without channel is a 400 missing_channel', async () => {
    const res = await call('POST', androidBody());
    expect(res.status).toBe(400);
    expect(res.json).toMatchObject({ error: 'missing_channel' });
  });

  it.each([
    ['the default channel', androidBody(), { channel: 'production', status: 'default', allowSet: true }],
    [
      'a self-set channel',
      androidBody({ defaultChannel: 'beta' }),
      { channel: 'beta', status: 'override', allowSet: true },
    ],
    [
      'a pinned channel',
      iosBody({ device_id: PINNED_DEVICE }),
      { channel: 'qa', status: 'override', allowSet: false },
    ],
  ])('PUT gets %s', async (_n, body, expected) => {
    const res = await call('PUT', body);
    expect(res.json).toEqual(expected);
  });

  it('GET lists self-assignable channels as a bare array with numeric ids', async () => {
    const res = await call('GET', undefined, { ...androidBody(), key_id: undefined });
    expect(Array.isArray(res.json)).toBe(true);
    const list = res.json as Json[];
    expect(list.map((c) => c['name']).sort()).toEqual(['beta', 'next', 'plain', 'reset']);
    expect(list.find((c) => c['name'] === 'beta')).toEqual({
      id: channelNumericId(NS, APP_NAME, 'beta'),
      name: 'beta',
      public: false,
      allow_self_set: true,
    });
    for (const c of list) expect(Number.isInteger(c['id'])).toBe(true);
    const ios = (await call('GET', undefined, { app_id: APP_ID, device_id: 'abc', platform: 'ios' }))
      .json as Json[];
    expect(ios.map((c) => c['name'])).not.toContain('plain');
  });

  it('GET without app_id is a 400', async () => {
    expect((await call('GET', undefined, { device_id: 'abc' })).json).toMatchObject({
      error: 'missing_app_id',
    });
  });

  it('DELETE answers ok (the override lives on the device), cannot_override when pinned', async () => {
    expect((await call('DELETE', undefined, { app_id: APP_ID, device_id: 'abc' })).json).toEqual({
      status: 'ok',
    });
    expect(
      (await call('DELETE', undefined, { app_id: APP_ID, device_id: PINNED_DEVICE })).json,
    ).toMatchObject({ error: 'cannot_override' });
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
        statuses.push((await srv.post('/updates', androidBody({ device_id: `device-${i}` }))).status);
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
      expect(JSON.stringify(await res.json())).toMatch(/unavailable/);
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
