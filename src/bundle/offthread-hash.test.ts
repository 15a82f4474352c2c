import { spawn } from 'node:child_process';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { encryptBundle } from './encrypt.js';
import { generateSigningKey } from './keys.js';
import { openWriter } from './io.js';
import {
  OFFTHREAD_HASH_MIN_BYTES,
  configureEncryptionWorkers,
  encryptFileOffThread,
  liveWorkers,
  startedWorkers,
  stopIdleEncryptionWorkers,
} from './offthread-hash.js';
import { type BundleSession, sessionFromMaterial } from './session.js';

const key = generateSigningKey();
const session = sessionFromMaterial(key, randomBytes(16), randomBytes(16));
// Large enough for the worker path, with a tail that does not fill a ring slot.
const big = randomBytes(OFFTHREAD_HASH_MIN_BYTES + 5 * 256 * 1024 + 4_321);
const encrypt = (plain: Buffer, s: BundleSession): Buffer => {
  const cipher = createCipheriv('aes-128-cbc', s.aesKey, s.iv);
  return Buffer.concat([cipher.update(plain), cipher.final()]);
};
const expected = encrypt(big, session);
// A second file and session: exactly whole ring slots, so the last slot is full and the next read finds nothing.
const other = big.subarray(0, OFFTHREAD_HASH_MIN_BYTES);
const otherSession = sessionFromMaterial(key, randomBytes(16), randomBytes(16));
const otherExpected = encrypt(other, otherSession);
const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');
let work: string;
let bigPath: string;
let otherPath: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'offthread-'));
  bigPath = join(work, 'big.zip');
  otherPath = join(work, 'other.zip');
  await writeFile(bigPath, big);
  await writeFile(otherPath, other);
});
beforeEach(async () => {
  // Each test starts with no worker and the production settings.
  await stopIdleEncryptionWorkers();
  configureEncryptionWorkers({ idleMs: 30_000, maxIdlePairs: 2 });
});
afterAll(async () => {
  await stopIdleEncryptionWorkers();
  await rm(work, { recursive: true, force: true });
});

/** Waits (bounded by jest's timeout, not asserted on) until `condition` holds. */
async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5));
}

describe('encryptBundle on worker threads (large files)', () => {
  it('hashes the ciphertext on request, on the worker path and inline alike, and keeps one idle pair', async () => {
    const out = join(work, 'hashed.enc');
    const result = await encryptBundle({ input: bigPath, output: out, key, session, hashCiphertext: true });
    expect(liveWorkers()).toBe(2);
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
    expect(liveWorkers()).toBe(2);
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
    expect(liveWorkers()).toBe(2);
  });

  it('stops both workers and removes the partial file when aborted mid-stream; the next call starts a new pair', async () => {
    // Warm: the aborted call takes the pooled pair.
    await encryptBundle({ input: otherPath, output: join(work, 'warm.enc'), key, session: otherSession });
    expect(liveWorkers()).toBe(2);
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

    const started = startedWorkers();
    const next = join(work, 'after-abort.enc');
    const result = await encryptBundle({ input: bigPath, output: next, key, session, hashCiphertext: true });
    expect((await readFile(next)).equals(expected)).toBe(true);
    expect(result.encryptedSha256).toBe(sha256(expected));
    expect(startedWorkers() - started).toBe(2);
    expect(liveWorkers()).toBe(2);
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
    const next = join(work, 'after-failure.enc');
    await encryptBundle({ input: bigPath, output: next, key, session });
    expect((await readFile(next)).equals(expected)).toBe(true);
  });

  it('replaces the pair when a worker fails (the file cannot be read)', async () => {
    await encryptBundle({ input: otherPath, output: join(work, 'warm.enc'), key, session: otherSession });
    const writer = await openWriter(join(work, 'unreadable.enc'));
    const failure = encryptFileOffThread({
      path: join(work, 'missing.zip'),
      writer,
      aesKey: session.aesKey,
      iv: session.iv,
    });
    await expect(failure).rejects.toThrow(/ENOENT/);
    await writer.abort(new Error('unreadable'));
    expect(liveWorkers()).toBe(0);
    const next = join(work, 'after-worker-failure.enc');
    await encryptBundle({ input: otherPath, output: next, key, session: otherSession });
    expect((await readFile(next)).equals(otherExpected)).toBe(true);
  });
});

describe('the pool of encryption workers', () => {
  it('reuses one pair across calls, each with its own file, key and IV', async () => {
    const first = await encryptBundle({
      input: bigPath,
      output: join(work, 'a.enc'),
      key,
      session,
      hashCiphertext: true,
    });
    const started = startedWorkers();
    const second = await encryptBundle({
      input: otherPath,
      output: join(work, 'b.enc'),
      key,
      session: otherSession,
      hashCiphertext: true,
    });
    const third = await encryptBundle({
      input: bigPath,
      output: join(work, 'c.enc'),
      key,
      session,
      hashCiphertext: true,
    });
    expect(startedWorkers()).toBe(started);
    expect(liveWorkers()).toBe(2);
    expect((await readFile(join(work, 'a.enc'))).equals(expected)).toBe(true);
    expect((await readFile(join(work, 'b.enc'))).equals(otherExpected)).toBe(true);
    expect((await readFile(join(work, 'c.enc'))).equals(expected)).toBe(true);
    expect(second.sha256).toBe(sha256(other));
    expect(second.encryptedSha256).toBe(sha256(otherExpected));
    expect(third).toEqual(first);
  });

  it('stops idle workers after the idle period, and starts a pair again on the next call', async () => {
    configureEncryptionWorkers({ idleMs: 20 });
    await encryptBundle({ input: otherPath, output: join(work, 'idle.enc'), key, session: otherSession });
    expect(liveWorkers()).toBe(2);
    await until(() => liveWorkers() === 0);
    const started = startedWorkers();
    await encryptBundle({ input: otherPath, output: join(work, 'idle.enc'), key, session: otherSession });
    expect(startedWorkers() - started).toBe(2);
    expect((await readFile(join(work, 'idle.enc'))).equals(otherExpected)).toBe(true);
  });

  it('gives concurrent calls a pair each, keeps at most maxIdlePairs of them', async () => {
    const both = async (): Promise<void> => {
      const [a, b] = await Promise.all([
        encryptBundle({ input: bigPath, output: join(work, 'p.enc'), key, session, hashCiphertext: true }),
        encryptBundle({
          input: otherPath,
          output: join(work, 'q.enc'),
          key,
          session: otherSession,
          hashCiphertext: true,
        }),
      ]);
      expect(a.encryptedSha256).toBe(sha256(expected));
      expect(b.encryptedSha256).toBe(sha256(otherExpected));
      expect((await readFile(join(work, 'p.enc'))).equals(expected)).toBe(true);
      expect((await readFile(join(work, 'q.enc'))).equals(otherExpected)).toBe(true);
    };
    const started = startedWorkers();
    await both();
    expect(startedWorkers() - started).toBe(4);
    expect(liveWorkers()).toBe(4);
    // Both pairs idle now: the next two concurrent calls take one each.
    await both();
    expect(startedWorkers() - started).toBe(4);
    configureEncryptionWorkers({ maxIdlePairs: 1 });
    await both();
    expect(liveWorkers()).toBe(2);
  });

  it('never keeps a process alive: a script that encrypted a large file exits', async () => {
    // With a 10-minute idle period, a referenced worker would keep the child running until jest's timeout.
    const script = `
      import { encryptBundle } from ${JSON.stringify(join(import.meta.dirname, 'encrypt.ts'))};
      import { configureEncryptionWorkers, liveWorkers } from ${JSON.stringify(join(import.meta.dirname, 'offthread-hash.ts'))};
      import { generateSigningKey } from ${JSON.stringify(join(import.meta.dirname, 'keys.ts'))};
      configureEncryptionWorkers({ idleMs: 600_000 });
      await encryptBundle({ input: ${JSON.stringify(otherPath)}, output: ${JSON.stringify(join(work, 'child.enc'))}, key: generateSigningKey() });
      console.log('live', liveWorkers());
    `;
    // A file, not `-e`: workers inherit `--input-type=module`, which would make their CommonJS source fail.
    const scriptPath = join(work, 'child.mts');
    await writeFile(scriptPath, script);
    const child = spawn(process.execPath, ['--import', 'tsx', scriptPath], {
      stdio: ['ignore', 'pipe', 'inherit'],
      timeout: 15_000, // killed then, and the test fails on its exit code
    });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(stdout.trim()).toBe('live 2');
    expect(code).toBe(0);
  }, 20_000);
});
