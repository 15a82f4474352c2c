// S3ObjectStore against real S3 servers — the environment's (versitygw) and a SeaweedFS of its own, so that no
// behaviour depends on one server's quirks: the same contract tests the in-memory fake passes, plus (on the
// environment's server) the error mapping (missing key, server down, timeouts) and presigned URLs.
import { jest } from '@jest/globals';
import { createServer, type Server, type Socket } from 'node:net';
import { ObjectNotFoundError, StoreUnavailableError } from '../../../src/storage/object-store.js';
import { describeObjectStoreContract } from '../../../src/storage/testing/object-store-contract.js';
import { minioClientFor, startS3Server, type S3Server } from '../../env/environment.js';
import {
  cleanupTestResources,
  newBucket,
  s3Client,
  s3Store,
  testEnvironment,
  uniqueName,
} from '../../env/fixtures.js';
import { freePort } from '../../env/process-utils.js';
import { alteringProxy } from '../controller/altering-s3-proxy.js';

jest.setTimeout(60_000);

const storeFor = s3Store;

let bucket: string;
let seaweedfs: S3Server | undefined;
const seaweedfsBucket = uniqueName('s3store');
beforeAll(async () => {
  bucket = await newBucket('s3store');
  seaweedfs = await startS3Server('seaweedfs');
  await minioClientFor(seaweedfs).makeBucket(seaweedfsBucket, seaweedfs.region);
}, 120_000);
afterAll(async () => {
  await seaweedfs?.stop();
  await cleanupTestResources();
}, 60_000);

let run = 0;
describeObjectStoreContract('S3ObjectStore on versitygw', () =>
  Promise.resolve({ store: storeFor(bucket), prefix: `t${run++}/` }),
);
// The same contract with every GET on the large-body fast path (own connection, reused read buffers).
describeObjectStoreContract('S3ObjectStore on versitygw, large-GET fast path', () =>
  Promise.resolve({ store: storeFor(bucket, { largeGetMinBytes: 0 }), prefix: `t${run++}/` }),
);

describeObjectStoreContract('S3ObjectStore on SeaweedFS', () =>
  Promise.resolve({
    store: storeFor(seaweedfsBucket, {
      endpoint: seaweedfs!.endpoint,
      accessKeyId: seaweedfs!.accessKey,
      secretAccessKey: seaweedfs!.secretKey,
    }),
    prefix: `t${run++}/`,
  }),
);

describe('S3ObjectStore errors and extras', () => {
  it('maps a missing bucket entry to ObjectNotFoundError and keeps other errors distinct', async () => {
    const store = storeFor(bucket);
    await expect(store.stat('nope/missing')).rejects.toBeInstanceOf(ObjectNotFoundError);
    const wrongCreds = storeFor(bucket, { secretAccessKey: 'wrong-secret' });
    const err = await wrongCreds.stat('nope').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(ObjectNotFoundError);
    expect(err).not.toBeInstanceOf(StoreUnavailableError);
  });

  it('creates a missing bucket once and reports an existing one as not created', async () => {
    const name = `ensure-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    const store = storeFor(name);
    await expect(store.put('k', 'v')).rejects.toThrow();
    try {
      await expect(store.ensureBucket()).resolves.toBe(true);
      await expect(store.ensureBucket()).resolves.toBe(false);
      await store.put('k', 'v');
      expect((await store.getBuffer('k')).data.toString()).toBe('v');
    } finally {
      await store.remove('k').catch(() => undefined);
      await s3Client()
        .removeBucket(name)
        .catch(() => undefined);
    }
  });

  it('maps a closed port to StoreUnavailableError', async () => {
    const port = await freePort();
    const store = storeFor(bucket, { endpoint: `http://127.0.0.1:${port}` });
    await expect(store.get('k')).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(store.put('k', 'v')).rejects.toBeInstanceOf(StoreUnavailableError);
  });

  it('times out on a server that accepts but never answers', async () => {
    const sockets: Socket[] = [];
    const silent: Server = createServer((s) => sockets.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as { port: number }).port;
    try {
      const store = storeFor(bucket, { endpoint: `http://127.0.0.1:${port}`, timeoutMs: 300 });
      await expect(store.stat('k')).rejects.toBeInstanceOf(StoreUnavailableError);
      const ac = new AbortController();
      const p = store.stat('k', ac.signal);
      ac.abort(new Error('caller gave up'));
      await expect(p).rejects.toThrow('caller gave up');
    } finally {
      for (const s of sockets) s.destroy();
      silent.close();
    }
  });

  it('presigns GET URLs that fetch the object without credentials', async () => {
    const store = storeFor(bucket);
    await store.put('presign/a.txt', 'presigned body');
    const url = await store.presignGet('presign/a.txt', 300);
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('presigned body');
  });
});

// The bundle reconciler stores small artifacts with one PUT and does not read them back (ADR 0042): that is sound
// only because the server itself refuses a body that is not the one the client hashed. Checked on both servers.
describe.each([
  {
    server: 'versitygw',
    target: () => testEnvironment().s3.endpoint,
    store: (endpoint: string) => storeFor(bucket, { endpoint, timeoutMs: 5_000 }),
  },
  {
    server: 'SeaweedFS',
    target: () => seaweedfs!.endpoint,
    store: (endpoint: string) =>
      storeFor(seaweedfsBucket, {
        endpoint,
        accessKeyId: seaweedfs!.accessKey,
        secretAccessKey: seaweedfs!.secretKey,
        timeoutMs: 5_000,
      }),
  },
])('a Buffer PUT altered on the way to $server', ({ target, store }) => {
  it.each(['flip', 'cut'] as const)('(%s) is refused and stores nothing', async (alter) => {
    const proxy = await alteringProxy(target(), alter);
    const key = `altered/${alter}-${uniqueName('k')}`;
    const body = Buffer.from('PK\u0003\u0004 a small sealed bundle '.repeat(64));
    try {
      const put = store(proxy.endpoint).put(key, body, { contentType: 'application/zip' });
      // A changed byte: the server answers that the body is not the one signed (not a timeout, not a 5xx).
      if (alter === 'flip') await expect(put).rejects.toThrow(/XAmzContentSHA256Mismatch|BadDigest/);
      else await expect(put).rejects.toThrow();
      expect(proxy.altered()).toBe(1);
    } finally {
      proxy.close();
    }
    await expect(store(target()).stat(key)).rejects.toBeInstanceOf(ObjectNotFoundError);
  });
});
