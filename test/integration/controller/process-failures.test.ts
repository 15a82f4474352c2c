// The controller as a real process, killed without warning (SIGKILL: no shutdown hook runs):
//  1. in the middle of a bundle upload — a TCP-level HTTP proxy between the controller and the S3 server kills the
//     process once more than half of the bundle's PUT body went through, then breaks the request off. No index
//     entry may point at a missing or partial object; a restarted controller completes the bundle.
//  2. while it leads, with work pending — the standby takes the Lease over once it expires and finishes the work.
// Everything is observed from outside (apiserver, bucket); waits are polls with deadlines, never timing assertions.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BucketItem, Client as MinioClient, IncompleteUploadedBucketItem } from 'minio';
import {
  APP_RESOURCE,
  BUNDLE_RESOURCE,
  CHANNEL_RESOURCE,
  type LiveUpdateBundle,
} from '../../../src/api/v1alpha1/index.js';
import { loadPublicKey, packDirectory, verifyBundle } from '../../../src/bundle/index.js';
import { LEASE_TYPE } from '../../../src/kube/leader-election.js';
import type { KubeObject } from '../../../src/kube/types.js';
import { StorageLayout } from '../../../src/storage/layout.js';
import type { ReleaseIndex } from '../../../src/storage/release-index.js';
import { FIRST_VERSION, Journey, SECOND_VERSION, isReady } from '../../../scripts/demo/journey.js';
import { Stack, type Component } from '../../../scripts/demo/stack.js';
import { cleanupTestResources, newBucket, newNamespace, testEnvironment } from '../../env/fixtures.js';

const TEST_TIMEOUT_MS = 300_000;
/** The chart's (and the controller's default) lease duration. */
const LEASE_DURATION_MS = 15_000;
const LEASE_NAME = 'liveupdate-controller';
const BIG_VERSION = '2.0.0';
const BIG_PAYLOAD_BYTES = 12 * 1024 * 1024;
/** Bundle PUTs smaller than this pass untouched (the small first bundle). */
const WATCH_MIN_BYTES = 4 * 1024 * 1024;

type LeaseObject = KubeObject & { spec?: { holderIdentity?: string } };

interface Cut {
  readonly path: string;
  readonly contentLength: number;
  readonly forwarded: number;
}

/**
 * A forwarding HTTP proxy in front of the S3 server (headers untouched, so SigV4 signatures still hold). Once armed,
 * the first bundle PUT of at least {@link WATCH_MIN_BYTES} is cut off after more than half of its body: `onCut`
 * runs (it kills the controller) before the upstream request is destroyed, so the server never sees a whole body.
 */
class CuttingProxy {
  private server: Server | undefined;
  endpoint = '';
  onCut: ((cut: Cut) => void) | undefined;
  readonly cuts: Cut[] = [];

  constructor(private readonly target: { host: string; port: number }) {}

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const upstream = httpRequest(
        {
          host: this.target.host,
          port: this.target.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
        },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      upstream.on('error', () => res.destroy());
      res.on('error', () => undefined);
      req.on('error', () => upstream.destroy());
      const length = Number(req.headers['content-length'] ?? 0);
      const watched =
        req.method === 'PUT' && (req.url ?? '').includes('/bundles/') && length >= WATCH_MIN_BYTES;
      let forwarded = 0;
      let cut = false;
      req.on('data', (chunk: Buffer) => {
        if (cut) return;
        forwarded += chunk.length;
        if (!upstream.write(chunk)) {
          req.pause();
          upstream.once('drain', () => req.resume());
        }
        const onCut = this.onCut;
        if (watched && onCut && forwarded > length / 2) {
          cut = true;
          this.onCut = undefined;
          const info = { path: req.url ?? '', contentLength: length, forwarded };
          this.cuts.push(info);
          onCut(info);
          upstream.destroy();
          req.destroy();
        }
      });
      req.on('end', () => {
        if (!cut) upstream.end();
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.endpoint = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

async function until<T>(what: string, deadlineMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${deadlineMs / 1000} s`);
    await sleep(250);
  }
}

async function objectBytes(client: MinioClient, bucket: string, key: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of await client.getObject(bucket, key)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function listKeys(client: MinioClient, bucket: string, prefix: string): Promise<BucketItem[]> {
  const items: BucketItem[] = [];
  for await (const item of client.listObjectsV2(bucket, prefix, true) as AsyncIterable<BucketItem>)
    items.push(item);
  return items;
}

async function incompleteUploads(client: MinioClient, bucket: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const upload of client.listIncompleteUploads(
    bucket,
    '',
    true,
  ) as AsyncIterable<IncompleteUploadedBucketItem>) {
    keys.push(upload.key);
  }
  return keys;
}

/** One running product (its own namespace, bucket, Lease) plus the bookkeeping to kill everything it started. */
class Fixture {
  stack!: Stack;
  journey!: Journey;
  namespace = '';
  workDir = '';
  readonly controllers: Component[] = [];
  readonly layout = new StorageLayout();

  async setUp(label: string): Promise<void> {
    this.workDir = await mkdtemp(join(tmpdir(), `liveupdate-${label}-`));
    this.namespace = await newNamespace(label);
    this.stack = new Stack({
      env: testEnvironment(),
      logDir: join(this.workDir, 'logs'),
      namespace: this.namespace,
      bucket: await newBucket(label),
    });
    await this.stack.installCrds();
    await this.stack.artifacts.start();
    this.journey = new Journey({
      stack: this.stack,
      namespace: this.namespace,
      workDir: this.workDir,
      appId: `com.example.${label.replace(/-/g, '')}${randomBytes(3).toString('hex')}`,
      waitMs: 90_000,
    });
  }

  async startController(podName: string, s3Endpoint?: string): Promise<Component> {
    const c = await this.stack.startController({ podName, ...(s3Endpoint ? { s3Endpoint } : {}) });
    this.controllers.push(c);
    return c;
  }

  /** SIGTERM then SIGKILL every controller still running, the artifact server, the workdir. */
  async tearDown(): Promise<void> {
    if (!this.stack) return;
    await Promise.all(this.controllers.map((c) => c.stop(5_000)));
    this.stack.controller = undefined;
    await this.stack.stop();
    if (this.workDir) await rm(this.workDir, { recursive: true, force: true });
  }

  async logs(): Promise<string> {
    const tails = await Promise.all(
      this.controllers.map(async (c) => `--- ${c.logPath} ---\n${await c.tail(2500)}`),
    );
    return tails.join('\n');
  }

  get indexKey(): string {
    return this.layout.indexKey({ namespace: this.namespace, name: this.journey.appName });
  }

  async readIndex(): Promise<ReleaseIndex | undefined> {
    const client = this.stack.s3Client();
    try {
      return JSON.parse(
        (await objectBytes(client, this.stack.bucket, this.indexKey)).toString(),
      ) as ReleaseIndex;
    } catch (error) {
      if ((error as { code?: string }).code === 'NoSuchKey') return undefined;
      throw error;
    }
  }

  async bundle(name: string): Promise<LiveUpdateBundle> {
    return this.stack.kube.get<LiveUpdateBundle>(BUNDLE_RESOURCE, { namespace: this.namespace, name });
  }

  async leaseHolder(): Promise<string> {
    const lease = await this.stack.kube.get<LeaseObject>(LEASE_TYPE, {
      namespace: this.namespace,
      name: LEASE_NAME,
    });
    return lease.spec?.holderIdentity ?? '';
  }

  /**
   * Every bundle the index references is stored whole: its object exists with the recorded size, and decrypts and
   * verifies (as the plugin does) to the recorded plain sha256. Returns bundle name → plain sha256.
   */
  async checkIndexIntegrity(index: ReleaseIndex): Promise<Map<string, string>> {
    const client = this.stack.s3Client();
    const publicKey = loadPublicKey(await readFile(this.journey.publicKeyPath, 'utf8'));
    const verified = new Map<string, string>();
    for (const [name, entry] of Object.entries(index.bundles)) {
      const stat = await client.statObject(this.stack.bucket, entry.objectKey);
      expect({ name, size: stat.size }).toEqual({ name, size: entry.size });
      const file = join(this.workDir, `stored-${name}.zip`);
      await writeFile(file, await objectBytes(client, this.stack.bucket, entry.objectKey));
      const result = await verifyBundle({
        input: file,
        checksum: entry.checksum,
        publicKey,
        ...(entry.sessionKey !== undefined ? { sessionKey: entry.sessionKey } : {}),
      });
      expect({ name, sha256: result.sha256 }).toEqual({ name, sha256: entry.sha256 });
      verified.set(name, result.sha256);
      for (const file of entry.manifest ?? []) {
        expect((await client.statObject(this.stack.bucket, file.objectKey)).size).toBe(file.size);
      }
    }
    for (const channel of index.channels) {
      if (channel.bundle !== 'builtin') expect(Object.keys(index.bundles)).toContain(channel.bundle);
      if (channel.rollout) expect(Object.keys(index.bundles)).toContain(channel.rollout.bundle);
    }
    return verified;
  }

  /**
   * No partial object anywhere under bundles/: the keys are content-addressed (`<sha256 of the stored bytes>.zip`),
   * so every object must hash to its own name. Returns the keys.
   */
  async checkBundleObjects(): Promise<string[]> {
    const client = this.stack.s3Client();
    const prefix = `${this.layout.appPrefix({ namespace: this.namespace, name: this.journey.appName })}bundles/`;
    const keys: string[] = [];
    for (const item of await listKeys(client, this.stack.bucket, prefix)) {
      const key = item.name!;
      const digest = createHash('sha256')
        .update(await objectBytes(client, this.stack.bucket, key))
        .digest('hex');
      expect(key).toBe(`${prefix}${digest}.zip`);
      keys.push(key);
    }
    return keys;
  }
}

/** Runs a step; a failure carries the end of the controller logs. */
async function withLogs<T>(fixture: Fixture, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if (error instanceof Error) error.message = `${error.message}\n${await fixture.logs()}`;
    throw error;
  }
}

afterAll(async () => {
  await cleanupTestResources();
}, TEST_TIMEOUT_MS);

describe('SIGKILL of the controller in the middle of a bundle upload', () => {
  const f = new Fixture();
  let proxy: CuttingProxy | undefined;

  beforeAll(async () => {
    await f.setUp('kill-upload');
    const { s3 } = testEnvironment();
    proxy = new CuttingProxy({ host: s3.host, port: s3.port });
    await proxy.start();
  }, TEST_TIMEOUT_MS);

  afterAll(async () => {
    await f.tearDown();
    await proxy?.stop();
  }, TEST_TIMEOUT_MS);

  it(
    'leaves the index serving only whole objects, and a restarted controller completes the bundle',
    () =>
      withLogs(f, async () => {
        const { stack, journey } = f;
        // A first, small bundle Ready (uploaded through the proxy, untouched), so the app has something served.
        await journey.packBuilds([FIRST_VERSION]);
        const first = journey.build(FIRST_VERSION);
        const dying = await f.startController('upload-a', proxy!.endpoint);
        await journey.createResources(FIRST_VERSION);
        await journey.waitReady([
          { type: APP_RESOURCE, name: journey.appName },
          { type: BUNDLE_RESOURCE, name: first.bundleName },
          { type: CHANNEL_RESOURCE, name: journey.channelName },
        ]);

        // The big bundle: index.html plus incompressible random data, so the encrypted zip is ~12 MiB on the wire.
        const dir = join(f.workDir, 'web-big');
        await mkdir(dir, { recursive: true });
        await writeFile(join(dir, 'index.html'), '<!doctype html><title>big</title><h1>big</h1>\n');
        await writeFile(join(dir, 'payload.bin'), randomBytes(BIG_PAYLOAD_BYTES));
        const zipPath = join(f.workDir, 'web-big.zip');
        const packed = await packDirectory(dir, zipPath);
        const route = `/${journey.appName}/${BIG_VERSION}/web.zip`;
        stack.artifacts.routes.set(route, await readFile(zipPath));
        const big = {
          version: BIG_VERSION,
          bundleName: `${journey.appName}-${BIG_VERSION}`,
          zipPath,
          sha256: packed.sha256,
          size: packed.size,
          files: packed.files,
          url: stack.artifacts.url(route),
        };
        journey.builds.set(BIG_VERSION, big);

        const cut = new Promise<Cut>((resolve) => {
          proxy!.onCut = (info) => {
            dying.child.kill('SIGKILL');
            resolve(info);
          };
        });
        await journey.createBundle(BIG_VERSION);
        await journey.setChannelBundle(BIG_VERSION);
        const timer = new AbortController();
        const info = await Promise.race([
          cut,
          sleep(120_000, undefined, { signal: timer.signal }).then(() => {
            throw new Error('no bundle upload reached the proxy within 120 s');
          }),
        ]).finally(() => timer.abort());
        const exit = await dying.exited;
        expect(exit.signal).toBe('SIGKILL');
        console.log(
          `kill-upload: cut ${info.path} after ${info.forwarded} of ${info.contentLength} bytes (zip ${big.size} bytes)`,
        );

        // After the kill: the big bundle is not Ready, the index (if any) only references whole objects.
        expect(isReady(await f.bundle(big.bundleName))).toBe(false);
        const before = await f.readIndex();
        expect(before).toBeDefined();
        const verifiedBefore = await f.checkIndexIntegrity(before!);
        // The channel's new bundle never became Ready: the index still serves the first one.
        expect(before!.channels.find((c) => c.name === journey.channelName)?.bundle).toBe(first.bundleName);
        expect(verifiedBefore.get(first.bundleName)).toBe(first.sha256);
        expect(Object.keys(before!.bundles)).not.toContain(big.bundleName);
        const objectsBefore = await f.checkBundleObjects();
        const uploadsBefore = await incompleteUploads(stack.s3Client(), stack.bucket);
        console.log(
          `kill-upload: after the kill ${objectsBefore.length} bundle object(s), incomplete multipart uploads: ${JSON.stringify(uploadsBefore)}`,
        );

        // A new controller (another identity: it waits for the dead one's Lease to expire), straight to S3.
        const restartedAt = Date.now();
        await f.startController('upload-b');
        await journey.waitReady([
          { type: BUNDLE_RESOURCE, name: big.bundleName },
          { type: CHANNEL_RESOURCE, name: journey.channelName },
        ]);
        const readyMs = Date.now() - restartedAt;
        const after = await until('the index to serve the big bundle', 60_000, async () => {
          const index = await f.readIndex();
          return index?.channels.find((c) => c.name === journey.channelName)?.bundle === big.bundleName
            ? index
            : undefined;
        });
        const verifiedAfter = await f.checkIndexIntegrity(after);
        expect(verifiedAfter.get(big.bundleName)).toBe(big.sha256);
        expect(after.bundles[big.bundleName]?.sha256).toBe(big.sha256);
        const objectsAfter = await f.checkBundleObjects();
        expect(objectsAfter).toContain(after.bundles[big.bundleName]!.objectKey);
        const uploadsAfter = await incompleteUploads(stack.s3Client(), stack.bucket);
        console.log(
          `kill-upload: restarted controller had the big bundle Ready after ${readyMs} ms; ` +
            `${objectsAfter.length} bundle object(s); incomplete multipart uploads: ${JSON.stringify(uploadsAfter)}`,
        );
      }),
    TEST_TIMEOUT_MS,
  );
});

describe('SIGKILL of the leading controller with work pending', () => {
  const f = new Fixture();

  beforeAll(async () => {
    await f.setUp('kill-leader');
  }, TEST_TIMEOUT_MS);

  afterAll(async () => {
    await f.tearDown();
  }, TEST_TIMEOUT_MS);

  it(
    'the standby takes the Lease over and finishes the pending bundle',
    () =>
      withLogs(f, async () => {
        const { stack, journey } = f;
        const started = await Promise.all([f.startController('leader-a'), f.startController('leader-b')]);
        const byName = new Map(started.map((c, i) => [['leader-a', 'leader-b'][i]!, c]));
        const leaderName = await until('a Lease holder', 60_000, async () => {
          const holder = await f.leaseHolder();
          return byName.has(holder) ? holder : undefined;
        });
        const leader = byName.get(leaderName)!;
        const [survivorName, survivor] = [...byName].find(([name]) => name !== leaderName)!;
        stack.controller = leader;

        await journey.packBuilds([FIRST_VERSION, SECOND_VERSION]);
        await journey.createResources(FIRST_VERSION);
        await journey.waitReady([
          { type: APP_RESOURCE, name: journey.appName },
          { type: BUNDLE_RESOURCE, name: journey.build(FIRST_VERSION).bundleName },
          { type: CHANNEL_RESOURCE, name: journey.channelName },
        ]);
        expect(await f.leaseHolder()).toBe(leaderName);

        leader.child.kill('SIGKILL');
        const killedAt = Date.now();
        // Pending work while nobody leads.
        const second = journey.build(SECOND_VERSION);
        await journey.createBundle(SECOND_VERSION);
        await journey.setChannelBundle(SECOND_VERSION);
        expect((await leader.exited).signal).toBe('SIGKILL');
        stack.controller = survivor;

        const deadlineMs = LEASE_DURATION_MS + 45_000;
        await until('the survivor to hold the Lease', deadlineMs, async () =>
          (await f.leaseHolder()) === survivorName ? true : undefined,
        );
        const takeoverMs = Date.now() - killedAt;
        const index = await until('the index to serve the second bundle', deadlineMs + 30_000, async () => {
          const current = await f.readIndex();
          return current?.channels.find((c) => c.name === journey.channelName)?.bundle === second.bundleName
            ? current
            : undefined;
        });
        const servedMs = Date.now() - killedAt;
        await journey.waitReady([
          { type: BUNDLE_RESOURCE, name: second.bundleName },
          { type: CHANNEL_RESOURCE, name: journey.channelName },
        ]);
        const verified = await f.checkIndexIntegrity(index);
        expect(verified.get(second.bundleName)).toBe(second.sha256);
        expect(survivor.running).toBe(true);
        console.log(
          `kill-leader: ${leaderName} killed; ${survivorName} held the Lease after ${takeoverMs} ms, ` +
            `the index served the pending bundle after ${servedMs} ms (lease duration ${LEASE_DURATION_MS} ms)`,
        );
      }),
    TEST_TIMEOUT_MS,
  );
});

describe('SIGSTOP of the leading controller, resumed after a standby took over', () => {
  const f = new Fixture();

  beforeAll(async () => {
    await f.setUp('stop-leader');
  }, TEST_TIMEOUT_MS);

  afterAll(async () => {
    await f.tearDown();
  }, TEST_TIMEOUT_MS);

  /** Every LiveUpdate object's resourceVersion, the index and the root: what a zombie write would change. */
  async function snapshot(): Promise<string> {
    const { stack, namespace } = f;
    const versions: string[] = [];
    for (const type of [APP_RESOURCE, BUNDLE_RESOURCE, CHANNEL_RESOURCE]) {
      for (const o of await stack.kube.list<KubeObject>(type, namespace))
        versions.push(`${type.kind}/${o.metadata.name}@${o.metadata.resourceVersion}`);
    }
    const client = stack.s3Client();
    const root = (await objectBytes(client, stack.bucket, f.layout.rootKey())).toString();
    const index = (await objectBytes(client, stack.bucket, f.indexKey)).toString();
    return JSON.stringify({ versions: versions.sort(), root, index });
  }

  it(
    'the resumed process writes nothing and exits non-zero; the published index is the new leader’s',
    () =>
      withLogs(f, async () => {
        const { stack, journey } = f;
        const started = await Promise.all([f.startController('stop-a'), f.startController('stop-b')]);
        const byName = new Map(started.map((c, i) => [['stop-a', 'stop-b'][i]!, c]));
        const leaderName = await until('a Lease holder', 60_000, async () => {
          const holder = await f.leaseHolder();
          return byName.has(holder) ? holder : undefined;
        });
        const leader = byName.get(leaderName)!;
        const [survivorName, survivor] = [...byName].find(([name]) => name !== leaderName)!;
        stack.controller = leader;
        await journey.packBuilds([FIRST_VERSION, SECOND_VERSION]);
        await journey.createResources(FIRST_VERSION);
        await journey.waitReady([
          { type: APP_RESOURCE, name: journey.appName },
          { type: BUNDLE_RESOURCE, name: journey.build(FIRST_VERSION).bundleName },
          { type: CHANNEL_RESOURCE, name: journey.channelName },
        ]);

        // Frozen, not dead: its sockets stay open, its timers and in-flight work resume with SIGCONT.
        leader.child.kill('SIGSTOP');
        const second = journey.build(SECOND_VERSION);
        await journey.createBundle(SECOND_VERSION);
        await journey.setChannelBundle(SECOND_VERSION);
        stack.controller = survivor;
        await until('the survivor to hold the Lease', LEASE_DURATION_MS + 45_000, async () =>
          (await f.leaseHolder()) === survivorName ? true : undefined,
        );
        await until('the new leader to publish the second bundle', 90_000, async () => {
          const index = await f.readIndex();
          return index?.channels.find((c) => c.name === journey.channelName)?.bundle === second.bundleName
            ? true
            : undefined;
        });
        await journey.waitReady([
          { type: APP_RESOURCE, name: journey.appName },
          { type: BUNDLE_RESOURCE, name: second.bundleName },
          { type: CHANNEL_RESOURCE, name: journey.channelName },
        ]);
        // Quiet: two snapshots a few seconds apart agree, so any later change is the resumed process's.
        const settled = await until('the new leader to go quiet', 60_000, async () => {
          const a = await snapshot();
          await sleep(3_000);
          return a === (await snapshot()) ? a : undefined;
        });

        leader.child.kill('SIGCONT');
        const exit = await Promise.race([
          leader.exited,
          sleep(60_000).then(() => {
            throw new Error('the resumed leader did not exit within 60 s');
          }),
        ]);
        expect(exit.code).not.toBe(0);
        expect(exit.code).not.toBeNull();
        expect(await leader.tail(20_000)).toContain('leader election lost');
        expect(await snapshot()).toBe(settled);
        expect(await f.leaseHolder()).toBe(survivorName);
        const index = await f.readIndex();
        expect(index?.channels.find((c) => c.name === journey.channelName)?.bundle).toBe(second.bundleName);
        expect((await f.checkIndexIntegrity(index!)).get(second.bundleName)).toBe(second.sha256);
        expect(survivor.running).toBe(true);
      }),
    TEST_TIMEOUT_MS,
  );
});
