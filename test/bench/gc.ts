/**
 * Garbage collection benchmark (`npm run bench -- gc`) on a versitygw of its own: N objects (default 10,000) under one
 * app's prefix, the delta files of one bundle whose manifest lists them all.
 *   - mark + scan: GC with the bundle served (keepLast keeps it): every object is live, nothing is deleted;
 *   - mark + scan + sweep: GC after the bundle is gone: every object is an orphan and is deleted (8 at a time);
 *   - baseline (same run, same server): a plain listing of the prefix, and plain deletes of N other objects at the
 *     same concurrency, i.e. the least any mark and sweep over N objects can cost.
 * GC's clock is set a day ahead, so the objects just written are past every grace period. Figures only, no
 * assertions. BENCH_GC_OBJECTS overrides N.
 */
import { randomBytes } from 'node:crypto';
import type { LiveUpdateBundle } from '../../src/api/v1alpha1/index.js';
import { collectGarbage } from '../../src/controller/gc/collect.js';
import { StorageLayout } from '../../src/storage/layout.js';
import { S3ObjectStore } from '../../src/storage/s3-store.js';
import { minioClientFor } from '../env/environment.js';
import { startPrivateS3 } from '../integration/updateserver/private-s3.js';

const N = Number(process.env['BENCH_GC_OBJECTS'] ?? 10_000);
const CONCURRENCY = 8;
const DAY = 86_400_000;
const layout = new StorageLayout('lu');
const app = { namespace: 'bench', name: 'demo' };

async function fill(store: S3ObjectStore, keys: readonly string[]): Promise<void> {
  let next = 0;
  const body = randomBytes(512);
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < keys.length) await store.put(keys[next++]!, body);
    }),
  );
}

function servedBundle(objectKey: string, manifestKey: string): LiveUpdateBundle {
  return {
    apiVersion: 'liveupdate.dev/v1alpha1',
    kind: 'LiveUpdateBundle',
    metadata: { name: 'demo-1-0-0', namespace: app.namespace },
    spec: { app: app.name, version: '1.0.0', source: { http: { url: 'http://127.0.0.1/x.zip' } } },
    status: {
      artifact: {
        revision: 'r',
        objectKey,
        manifestKey,
        size: 512,
        sha256: 'a'.repeat(64),
        storedSha256: 'a'.repeat(64),
        checksum: 'a',
        encrypted: false,
        lastUpdateTime: new Date().toISOString(),
      },
    },
  };
}

const hex = (): string => randomBytes(32).toString('hex');
const perTenThousand = (ms: number): string => ((ms * 10_000) / N).toFixed(0);

async function main(): Promise<void> {
  const s3 = await startPrivateS3();
  try {
    await minioClientFor(s3).makeBucket('bench', s3.region);
    const store = new S3ObjectStore({
      endpoint: s3.endpoint,
      bucket: 'bench',
      accessKeyId: s3.accessKey,
      secretAccessKey: s3.secretKey,
    });
    // One bundle: its zip, its manifest, and N - 2 delta files the manifest lists.
    const zip = layout.bundleKey(app, hex());
    const files = Array.from({ length: N - 2 }, () => layout.deltaFileKey(app, hex()));
    const manifestKey = layout.deltaFileKey(app, `${hex()}.json`);
    await fill(store, [zip, ...files]);
    await store.put(
      manifestKey,
      Buffer.from(JSON.stringify(files.map((objectKey, i) => ({ file: `f${i}.js`, hash: 'h', objectKey })))),
    );
    const run = (bundles: LiveUpdateBundle[]) => {
      const t0 = performance.now();
      return collectGarbage({
        store,
        layout,
        app,
        bundles,
        keepLast: 10,
        unreferencedTtlMs: 0,
        statsRetentionMs: DAY,
        now: new Date(Date.now() + DAY),
      }).then((result) => ({ result, ms: performance.now() - t0 }));
    };

    const t0 = performance.now();
    let listed = 0;
    for await (const _ of store.list(layout.appPrefix(app))) listed++;
    const listMs = performance.now() - t0;

    const scan = await run([servedBundle(zip, manifestKey)]);
    const sweep = await run([]);

    // Baseline deletes: N other objects, removed at GC's concurrency.
    const other = Array.from({ length: N }, (_, i) => `baseline/${i}-${hex()}`);
    await fill(store, other);
    const t1 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < other.length) await store.remove(other[next++]!);
      }),
    );
    const deleteMs = performance.now() - t1;
    store.close();

    const rows: [string, string, string, string][] = [
      ['', 'objects scanned', 'objects deleted', 'ms (per 10,000 objects)'],
      ['baseline: list the prefix', String(listed), '0', `${listMs.toFixed(0)} (${perTenThousand(listMs)})`],
      [
        'GC, all live (mark + scan)',
        String(scan.result.scanned),
        String(scan.result.deleted.length),
        `${scan.ms.toFixed(0)} (${perTenThousand(scan.ms)}), ${(scan.ms / listMs).toFixed(2)}× the listing`,
      ],
      [
        `baseline: ${N} deletes, ${CONCURRENCY} at a time`,
        '0',
        String(N),
        `${deleteMs.toFixed(0)} (${perTenThousand(deleteMs)})`,
      ],
      [
        'GC, all orphans (mark + scan + sweep)',
        String(sweep.result.scanned),
        String(sweep.result.deleted.length),
        `${sweep.ms.toFixed(0)} (${perTenThousand(sweep.ms)}), ${(sweep.ms / (listMs + deleteMs)).toFixed(2)}× listing + deletes`,
      ],
    ];
    const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
    for (const row of rows) console.log(row.map((cell, c) => cell.padEnd(widths[c]!)).join('  '));
    console.log(
      `(${N} objects of 512 bytes on versitygw posix; errors: ${scan.result.errors + sweep.result.errors}; ` +
        'figures from this machine, indicative only when others share it)',
    );
  } finally {
    await s3.destroy();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
