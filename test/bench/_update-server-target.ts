/**
 * Child process of the update-server benchmark (files starting with "_" are not benchmarks themselves).
 *   bare                 node:http answering a fixed JSON (the baseline)
 *   express              diagnostic: express with the body reader and a fixed answer (framework cost alone)
 *   service              the update service (createUpdateServer + IndexCache) on a memory store with the sample index
 *   download <endpoint> <bucket> <key> <size> <accessKey> <secretKey>
 *                        the update service on a real S3 store, whose index references one object
 *   rss <apps> <channels> RSS after loading that many apps × channels (prints JSON, exits)
 * Prints "READY <port>" once listening, on 127.0.0.1 and a random port.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { silentLogger } from '../../src/observability/logger.js';
import { createRegistry } from '../../src/observability/metrics.js';
import type { StorageLayout } from '../../src/storage/layout.js';
import { MemoryObjectStore } from '../../src/storage/memory-store.js';
import type { ObjectInfo, ObjectStore } from '../../src/storage/object-store.js';
import { channelNumericId, type IndexBundle, type ReleaseIndex } from '../../src/storage/release-index.js';
import { S3ObjectStore } from '../../src/storage/s3-store.js';
import { createUpdateServer } from '../../src/updateserver/app.js';
import { IndexCache } from '../../src/updateserver/index-cache.js';
import { UpdateServerMetrics } from '../../src/updateserver/metrics.js';
import { StatsAggregator } from '../../src/updateserver/stats-rollup.js';
import {
  bundle,
  layout,
  policy,
  publish,
  rootFor,
  sampleIndex,
} from '../../src/updateserver/testing/fixtures.js';

const [mode = 'bare', ...args] = process.argv.slice(2);

function listen(server: http.Server): void {
  server.keepAliveTimeout = 65_000;
  server.listen(0, '127.0.0.1', () => {
    const u = process.cpuUsage();
    process.stdout.write(`READY ${(server.address() as AddressInfo).port} ${u.user + u.system}\n`);
  });
  // CPU time this process used, so the parent can report CPU per request (robust on a shared, loaded machine).
  process.on('SIGUSR2', () => {
    const u = process.cpuUsage();
    process.stdout.write(`MARK ${u.user + u.system}\n`);
  });
  process.on('SIGTERM', () => {
    const u = process.cpuUsage();
    process.stdout.write(`CPU ${u.user + u.system}\n`, () => process.exit(0));
  });
}

async function service(store: ObjectStore, storeLayout: StorageLayout): Promise<http.Server> {
  const registry = createRegistry({ defaultMetrics: process.env['BENCH_DEFAULT_METRICS'] !== '0' });
  const metrics = new UpdateServerMetrics(registry);
  const cache = new IndexCache({ store, layout: storeLayout, logger: silentLogger(), metrics });
  await cache.poll();
  if (!cache.ready) throw new Error(`index not loaded: ${cache.reason ?? ''}`);
  const app = createUpdateServer({
    indexes: cache,
    store,
    stats: new StatsAggregator({ replica: 'bench', metrics }),
    metrics,
    logger: silentLogger(),
    // Per-device limiting stays on (its cost is part of the figure); every request comes from 127.0.0.1.
    options: { publicUrl: 'https://updates.example.com', rateLimitPerAddress: 0 },
  });
  return http.createServer(app.requestListener);
}

function appIndex(i: number, channels: number): ReleaseIndex {
  const ns = `ns-${i % 50}`;
  const name = `app-${i}`;
  const ref = { namespace: ns, name };
  const bundles: Record<string, IndexBundle> = {};
  const chans: ReleaseIndex['channels'] = [];
  for (let c = 0; c < channels; c++) {
    const b = bundle(`b-${c}`, `1.${c}.0`, {
      objectKey: layout.bundleKey(ref, (i * 1000 + c).toString(16).padStart(64, '0')),
    });
    bundles[b.name] = b;
    chans.push({
      name: `channel-${c}`,
      id: channelNumericId(ns, name, `channel-${c}`),
      bundle: b.name,
      policy: policy({ allowDeviceSelfSet: c > 0 }),
      pinnedIdHashes: [],
    });
  }
  return {
    ...sampleIndex(1),
    app: { namespace: ns, name, appId: `com.example.app${i}`, defaultChannel: 'channel-0' },
    bundles,
    channels: chans,
  };
}

/** A memory store whose app indexes are rendered on each read (`render` gives the JSON of a key, or undefined). */
class GeneratedIndexStore extends MemoryObjectStore {
  constructor(private readonly render: (key: string) => string | undefined) {
    super('bench');
  }

  override getBuffer(
    key: string,
    opts: { maxBytes?: number; signal?: AbortSignal } = {},
  ): Promise<{ info: ObjectInfo; data: Buffer }> {
    const text = this.render(key);
    if (text === undefined) return super.getBuffer(key, opts);
    const data = Buffer.from(text);
    return Promise.resolve({
      info: { key, size: data.length, etag: String(data.length), lastModified: new Date(0) },
      data,
    });
  }
}

async function main(): Promise<void> {
  switch (mode) {
    case 'bare': {
      const body = JSON.stringify({
        version: '1.4.1',
        url: 'https://updates.example.com/bundles/lu/apps/example/bundles/6170702d312d342d310000000000000000000000000000000000000000000000.zip',
        checksum: 'c'.repeat(512),
        session_key: 'aXZpdml2aXZpdml2aXZpdg==:' + 'k'.repeat(344),
      });
      listen(
        http.createServer((req, res) => {
          req.resume();
          req.on('end', () => {
            res.writeHead(200, {
              'Content-Type': 'application/json; charset=utf-8',
              'Content-Length': Buffer.byteLength(body),
            });
            res.end(body);
          });
        }),
      );
      return;
    }
    case 'express': {
      // Diagnostic: express with only the body reader and a fixed answer (framework overhead alone).
      const { default: express } = await import('express');
      const { jsonBody } = await import('../../src/updateserver/body.js');
      const app = express();
      app.set('etag', false);
      const fixed = JSON.stringify({
        version: '1.4.1',
        url: 'https://updates.example.com/x.zip',
        checksum: 'c'.repeat(512),
        session_key: 'k'.repeat(369),
      });
      app.post('/updates', jsonBody(65536, 16), (_req, res) => {
        res.setHeader('Content-Type', 'application/json; charset=utf-8');
        res.end(fixed);
      });
      listen(http.createServer(app));
      return;
    }
    case 'service': {
      const store = new MemoryObjectStore('bench');
      await publish(store, [sampleIndex(1)]);
      listen(await service(store, layout));
      return;
    }
    case 'download': {
      const [endpoint, bucket, key, size, accessKeyId, secretAccessKey] = args as [
        string,
        string,
        string,
        string,
        string,
        string,
      ];
      const s3 = new S3ObjectStore({ endpoint, bucket, accessKeyId, secretAccessKey });
      const idx = sampleIndex(1);
      idx.bundles['app-1-4-1'] = { ...idx.bundles['app-1-4-1']!, objectKey: key, size: Number(size) };
      await s3.put(layout.indexKey({ namespace: 'apps', name: 'example' }), JSON.stringify(idx));
      await s3.put(layout.rootKey(), JSON.stringify(rootFor([idx])));
      listen(await service(s3, layout));
      return;
    }
    case 'rss': {
      const apps = Number(args[0] ?? 0);
      const channels = Number(args[1] ?? 10);
      const gc = (globalThis as { gc?: () => void }).gc;
      // The indexes are rendered when the cache reads them, one at a time, and never staged in this process: what
      // stays resident is what a replica keeps (the compiled indexes), not the benchmark's fixtures.
      const byKey = new Map<string, number>();
      const roots: ReleaseIndex[] = [];
      let indexBytes = 0;
      for (let i = 0; i < apps; i++) {
        const idx = appIndex(i, channels);
        indexBytes += JSON.stringify(idx).length;
        byKey.set(layout.indexKey({ namespace: idx.app.namespace, name: idx.app.name }), i);
        roots.push({ ...idx, bundles: {}, channels: [] });
      }
      const store = new GeneratedIndexStore((key) => {
        const i = byKey.get(key);
        return i === undefined ? undefined : JSON.stringify(appIndex(i, channels));
      });
      await store.put(layout.rootKey(), JSON.stringify(rootFor(roots)));
      roots.length = 0;
      const metrics = new UpdateServerMetrics(createRegistry());
      const cache = new IndexCache({ store, layout, logger: silentLogger(), metrics });
      await cache.poll();
      gc?.();
      gc?.();
      // V8 returns freed pages to the OS on background threads after a GC: read RSS once that has settled, as in a
      // replica that has been serving for a while (a reading right after the GC varied by ±30 MiB between runs).
      await new Promise((resolve) => setTimeout(resolve, Number(process.env['BENCH_RSS_SETTLE_MS'] ?? 2000)));
      const m = process.memoryUsage();
      process.stdout.write(
        JSON.stringify({
          apps: cache.snapshot.apps.size,
          channels,
          rss: m.rss,
          heapUsed: m.heapUsed,
          indexBytes,
          gc: gc !== undefined,
        }) + '\n',
      );
      return;
    }
    default:
      throw new Error(`unknown mode ${mode}`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
