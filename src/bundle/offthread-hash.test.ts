import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { encryptBundle } from './encrypt.js';
import { generateSigningKey } from './keys.js';
import { OFFTHREAD_HASH_MIN_BYTES, liveWorkers } from './offthread-hash.js';
import { sessionFromMaterial } from './session.js';

const key = generateSigningKey();
const session = sessionFromMaterial(key, randomBytes(16), randomBytes(16));
// Large enough for the worker path, with a tail that does not fill a ring slot.
const big = randomBytes(OFFTHREAD_HASH_MIN_BYTES + 5 * 256 * 1024 + 4_321);
const cipher = createCipheriv('aes-128-cbc', session.aesKey, session.iv);
const expected = Buffer.concat([cipher.update(big), cipher.final()]);
const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');
let work: string;
let bigPath: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'offthread-'));
  bigPath = join(work, 'big.zip');
  await writeFile(bigPath, big);
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('encryptBundle on worker threads (large files)', () => {
  it('hashes the ciphertext on request, on the worker path and inline alike, and leaves no worker', async () => {
    const out = join(work, 'hashed.enc');
    const result = await encryptBundle({ input: bigPath, output: out, key, session, hashCiphertext: true });
    expect(liveWorkers()).toBe(0);
    expect((await readFile(out)).equals(expected)).toBe(true);
    expect(result.encryptedSha256).toBe(sha256(expected));
    expect(result.encryptedSize).toBe(expected.length);

    const inline = await encryptBundle({
      input: Readable.from([big]),
      output: join(work, 'hashed-inline.enc'),
      key,
      session,
      hashCiphertext: true,
    });
    expect(inline).toEqual(result);
    const plainOnly = await encryptBundle({ input: bigPath, output: join(work, 'plain.enc'), key, session });
    expect(plainOnly.encryptedSha256).toBeUndefined();
  });

  it('keeps every chunk intact for a slow caller stream that holds on to them', async () => {
    // Keeps the written chunks (no copy) until the end: freeing them after their write would corrupt the result.
    // Slow, so the AES worker runs ahead and has to wait for the writes.
    const held: Buffer[] = [];
    const sink = new Writable({
      highWaterMark: 1024,
      write(chunk: Buffer, _encoding, callback) {
        held.push(chunk);
        setTimeout(callback, 1);
      },
    });
    const result = await encryptBundle({ input: bigPath, output: sink, key, session });
    expect(Buffer.concat(held).equals(expected)).toBe(true);
    expect(result.sha256).toBe(sha256(big));
    expect(liveWorkers()).toBe(0);
  });

  it('stops both workers and removes the partial file when aborted mid-stream', async () => {
    const controller = new AbortController();
    const out = join(work, 'aborted.enc');
    const before = await readdir(work);
    await expect(
      encryptBundle({
        input: bigPath,
        output: out,
        key,
        session,
        signal: controller.signal,
        // First called after 16 MiB of the file were read.
        onProgress: () => controller.abort(new Error('reconcile cancelled')),
      }),
    ).rejects.toThrow('reconcile cancelled');
    expect(liveWorkers()).toBe(0);
    expect(await readdir(work)).toEqual(before);
  });

  it('stops both workers when the output fails', async () => {
    let written = 0;
    const failing = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        written += chunk.length;
        callback(written > 8 * 1024 * 1024 ? new Error('disk full') : null);
      },
    });
    await expect(encryptBundle({ input: bigPath, output: failing, key, session })).rejects.toThrow(
      'disk full',
    );
    expect(liveWorkers()).toBe(0);
  });
});
