// The minio client against versitygw: a real multipart upload (its ETag proves the part layout), byte-exact ranged
// reads, HTTP conditional GET semantics and deletion.
import { createCipheriv, createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  cleanupTestResources,
  newBucket,
  s3Client,
  INTEGRATION_TEST_TIMEOUT_MS,
} from '../../env/fixtures.js';

afterAll(cleanupTestResources);

const MiB = 1024 * 1024;
const OBJECT_SIZE = 64 * MiB;
const PART_SIZE = 16 * MiB;
const KEY = Buffer.from('liveupdate-test-data-key'.slice(0, 16));

/** Deterministic pseudo-random bytes at any offset: AES-128-CTR keystream, seekable by block counter. */
function bytesAt(offset: number, length: number): Buffer {
  const block = Math.floor(offset / 16);
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64BE(BigInt(block), 8);
  const skip = offset - block * 16;
  const cipher = createCipheriv('aes-128-ctr', KEY, iv);
  return cipher.update(Buffer.alloc(skip + length)).subarray(skip);
}

function generatedStream(size: number, chunk = MiB): Readable {
  return Readable.from(
    (function* () {
      for (let offset = 0; offset < size; offset += chunk)
        yield bytesAt(offset, Math.min(chunk, size - offset));
    })(),
  );
}

/** The ETag S3 gives a multipart object: md5 of the concatenated part md5s, then `-<part count>`. */
function multipartEtag(size: number, partSize: number): string {
  const partDigests: Buffer[] = [];
  for (let offset = 0; offset < size; offset += partSize) {
    const part = createHash('md5');
    const end = Math.min(size, offset + partSize);
    for (let at = offset; at < end; at += MiB) part.update(bytesAt(at, Math.min(MiB, end - at)));
    partDigests.push(part.digest());
  }
  return `${createHash('md5').update(Buffer.concat(partDigests)).digest('hex')}-${partDigests.length}`;
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks);
}

test(
  'multipart upload of 64 MiB, byte-exact ranged GETs, full read back, delete',
  async () => {
    const client = s3Client({ partSize: PART_SIZE });
    const bucket = await newBucket('multipart');
    const name = 'bundles/large.bin';

    const uploaded = await client.putObject(bucket, name, generatedStream(OBJECT_SIZE), OBJECT_SIZE);
    // Four 16 MiB parts: a single PUT or a different split would give another ETag.
    expect(uploaded.etag).toBe(multipartEtag(OBJECT_SIZE, PART_SIZE));
    const stat = await client.statObject(bucket, name);
    expect(stat.size).toBe(OBJECT_SIZE);
    expect(stat.etag).toBe(uploaded.etag);

    // Ranges across the first part boundary and at the very end.
    for (const [offset, length] of [
      [PART_SIZE - 1000, 5000],
      [OBJECT_SIZE - 100, 100],
      [12_345, 1],
    ] as const) {
      const range = await readAll(await client.getPartialObject(bucket, name, offset, length));
      expect(range.length).toBe(length);
      expect(range.equals(bytesAt(offset, length))).toBe(true);
    }

    const expected = createHash('sha256');
    for (let offset = 0; offset < OBJECT_SIZE; offset += MiB) expected.update(bytesAt(offset, MiB));
    const actual = createHash('sha256');
    for await (const chunk of await client.getObject(bucket, name)) actual.update(chunk as Buffer);
    expect(actual.digest('hex')).toBe(expected.digest('hex'));

    await client.removeObject(bucket, name);
    await expect(client.statObject(bucket, name)).rejects.toMatchObject({ code: 'NotFound' });
    await client.removeBucket(bucket);
    expect(await client.bucketExists(bucket)).toBe(false);
  },
  INTEGRATION_TEST_TIMEOUT_MS,
);

test(
  'conditional GET with the ETag: If-None-Match gives 304, If-Match a mismatch gives 412',
  async () => {
    const client = s3Client();
    const bucket = await newBucket('conditional');
    const body = bytesAt(0, 4096);
    const { etag } = await client.putObject(bucket, 'manifest.json', body, body.length);
    expect(etag).toBe(createHash('md5').update(body).digest('hex'));
    // The minio client has no conditional-read options, so send the headers on a presigned URL.
    const url = await client.presignedGetObject(bucket, 'manifest.json', 300);
    const get = async (headers: Record<string, string>) => {
      const response = await fetch(url, { headers });
      return {
        status: response.status,
        body: Buffer.from(await response.arrayBuffer()),
        etag: response.headers.get('etag'),
      };
    };

    const plain = await get({});
    expect(plain.status).toBe(200);
    expect(plain.etag).toBe(`"${etag}"`);
    expect(plain.body.equals(body)).toBe(true);

    const notModified = await get({ 'If-None-Match': `"${etag}"` });
    expect(notModified.status).toBe(304);
    expect(notModified.body.length).toBe(0);

    const changed = await get({ 'If-None-Match': '"0123456789abcdef0123456789abcdef"' });
    expect(changed.status).toBe(200);
    expect(changed.body.equals(body)).toBe(true);

    expect((await get({ 'If-Match': `"${etag}"` })).status).toBe(200);
    expect((await get({ 'If-Match': '"0123456789abcdef0123456789abcdef"' })).status).toBe(412);

    // After an overwrite the old ETag no longer matches: the cache validator really tracks the content.
    const replacement = bytesAt(4096, 4096);
    await client.putObject(bucket, 'manifest.json', replacement, replacement.length);
    const afterOverwrite = await get({ 'If-None-Match': `"${etag}"` });
    expect(afterOverwrite.status).toBe(200);
    expect(afterOverwrite.body.equals(replacement)).toBe(true);

    await client.removeObject(bucket, 'manifest.json');
    expect((await get({})).status).toBe(404);
  },
  INTEGRATION_TEST_TIMEOUT_MS,
);
