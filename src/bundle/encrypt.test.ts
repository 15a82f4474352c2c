import {
  constants,
  createCipheriv,
  createDecipheriv,
  createHash,
  publicDecrypt,
  randomBytes,
} from 'node:crypto';
import { access, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { encryptBundle, hashBundle } from './encrypt.js';
import { OFFTHREAD_HASH_MIN_BYTES } from './offthread-hash.js';
import { generateSigningKey, loadPublicKey } from './keys.js';
import { sessionFromMaterial } from './session.js';
import { verifyBundle } from './verify.js';
import type { VerifyBundleOptions } from './verify.js';

const key = generateSigningKey();
const publicKey = loadPublicKey(key.publicKeyPem);
const plain = randomBytes(300_000 + 7);
const digest = createHash('sha256').update(plain).digest();
let work: string;
let plainPath: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'encrypt-'));
  plainPath = join(work, 'plain.zip');
  await writeFile(plainPath, plain);
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const rsaRecover = (blob: Buffer): Buffer =>
  publicDecrypt({ key: key.publicKey, padding: constants.RSA_PKCS1_PADDING }, blob);

describe('encryptBundle', () => {
  it('produces AES-128-CBC/PKCS#7 ciphertext, a Capgo session key and V3/V2 checksums', async () => {
    const out = join(work, 'a.enc');
    const result = await encryptBundle({ input: plainPath, output: out, key });
    const cipherText = await readFile(out);
    expect(result).toMatchObject({
      keyId: key.keyId,
      sha256: digest.toString('hex'),
      size: plain.length,
      encryptedSize: cipherText.length,
    });
    expect(cipherText.length).toBe(Math.ceil((plain.length + 1) / 16) * 16);

    expect(result.sessionKey).toMatch(/^[A-Za-z0-9+/]{22}==:[A-Za-z0-9+/]{342}==$/);
    const [ivB64, wrappedB64] = result.sessionKey.split(':') as [string, string];
    const aesKey = rsaRecover(Buffer.from(wrappedB64, 'base64'));
    expect(aesKey).toHaveLength(16);
    const decipher = createDecipheriv('aes-128-cbc', aesKey, Buffer.from(ivB64, 'base64'));
    expect(Buffer.concat([decipher.update(cipherText), decipher.final()])).toEqual(plain);

    expect(result.checksum).toMatch(/^[0-9a-f]{512}$/);
    expect(rsaRecover(Buffer.from(result.checksum, 'hex'))).toEqual(digest);
    expect(result.checksumV2).toHaveLength(344);
    expect(rsaRecover(Buffer.from(result.checksumV2, 'base64'))).toEqual(
      Buffer.from(digest.toString('hex'), 'base64'),
    );
  });

  it('hashes large files on a worker thread with the same bytes and digest as inline', async () => {
    // Above OFFTHREAD_HASH_MIN_BYTES, with a tail that does not fill the ring's last slot.
    const big = randomBytes(OFFTHREAD_HASH_MIN_BYTES + 3 * 256 * 1024 + 12_345);
    const bigPath = join(work, 'big.zip');
    await writeFile(bigPath, big);
    const session = sessionFromMaterial(key, randomBytes(16), randomBytes(16));
    const out = join(work, 'big.enc');
    const result = await encryptBundle({ input: bigPath, output: out, key, session });
    const expectedDigest = createHash('sha256').update(big).digest();
    expect(result.sha256).toBe(expectedDigest.toString('hex'));
    expect(rsaRecover(Buffer.from(result.checksum, 'hex'))).toEqual(expectedDigest);
    const cipher = createCipheriv('aes-128-cbc', session.aesKey, session.iv);
    expect((await readFile(out)).equals(Buffer.concat([cipher.update(big), cipher.final()]))).toBe(true);
    // Inline (a stream input) gives the same answer for the same session.
    const inline = await encryptBundle({
      input: Readable.from([big]),
      output: join(work, 'big2.enc'),
      key,
      session,
    });
    expect(inline).toEqual(result);
  });

  it('uses a fresh key and IV per bundle', async () => {
    const a = await encryptBundle({ input: plainPath, output: join(work, 'a1.enc'), key });
    const b = await encryptBundle({ input: plainPath, output: join(work, 'b1.enc'), key });
    expect(a.sessionKey.split(':')[0]).not.toBe(b.sessionKey.split(':')[0]);
    expect(await readFile(join(work, 'a1.enc'))).not.toEqual(await readFile(join(work, 'b1.enc')));
    expect(a.checksum).toBe(b.checksum);
  });

  it('streams from and to caller streams, and reports progress', async () => {
    const sink = new PassThrough();
    const collected = buffer(sink);
    const seen: number[] = [];
    const session = sessionFromMaterial(key, Buffer.alloc(16, 1), Buffer.alloc(16, 2));
    const result = await encryptBundle({
      input: Readable.from([plain.subarray(0, 1000), plain.subarray(1000)]),
      output: sink,
      key,
      session,
      onProgress: (n) => seen.push(n),
    });
    const cipher = await collected;
    expect(result.sessionKey).toBe(session.sessionKey);
    const decipher = createDecipheriv('aes-128-cbc', Buffer.alloc(16, 1), Buffer.alloc(16, 2));
    expect(Buffer.concat([decipher.update(cipher), decipher.final()])).toEqual(plain);
    expect(seen.at(-1)).toBe(plain.length);
  });

  it('removes a partial output file when the input fails', async () => {
    const failing = new Readable({
      read() {
        this.destroy(new Error('network reset'));
      },
    });
    const out = join(work, 'partial.enc');
    await expect(encryptBundle({ input: failing, output: out, key })).rejects.toThrow('network reset');
    await expect(access(out)).rejects.toThrow();
  });
});

describe('hashBundle', () => {
  it('gives the lowercase sha256 as the unencrypted checksum', async () => {
    expect(await hashBundle(plainPath)).toEqual({
      checksum: digest.toString('hex'),
      sha256: digest.toString('hex'),
      size: plain.length,
    });
  });
});

describe('verifyBundle', () => {
  let encrypted: Awaited<ReturnType<typeof encryptBundle>>;
  let encPath: string;
  beforeAll(async () => {
    encPath = join(work, 'v.enc');
    encrypted = await encryptBundle({ input: plainPath, output: encPath, key });
  });
  const verifyReason = async (options: Partial<VerifyBundleOptions>): Promise<string> => {
    try {
      await verifyBundle({
        input: encPath,
        checksum: encrypted.checksum,
        publicKey,
        sessionKey: encrypted.sessionKey,
        ...options,
      });
      return 'accepted';
    } catch (err) {
      return (err as { reason?: string }).reason ?? String(err);
    }
  };

  it('accepts a good bundle and can write the decrypted zip', async () => {
    const out = join(work, 'v.plain');
    expect(
      await verifyBundle({
        input: encPath,
        checksum: encrypted.checksum,
        publicKey,
        sessionKey: encrypted.sessionKey,
        output: out,
      }),
    ).toEqual({
      ok: true,
      sha256: digest.toString('hex'),
      size: plain.length,
      encrypted: true,
    });
    expect(await readFile(out)).toEqual(plain);
  });

  it('streams from and to caller streams', async () => {
    const sink = new PassThrough();
    const collected = buffer(sink);
    const result = await verifyBundle({
      input: Readable.from([await readFile(encPath)]),
      checksum: encrypted.checksum,
      publicKey,
      sessionKey: encrypted.sessionKey,
      output: sink,
    });
    expect(result.sha256).toBe(digest.toString('hex'));
    expect(await collected).toEqual(plain);
  });

  it('fails in the device order with the device reasons', async () => {
    expect(await verifyReason({ sessionKey: '' })).toBe('SessionKeyRequired');
    expect(await verifyReason({ sessionKey: 'abc' })).toBe('SessionKeyRequired');
    expect(await verifyReason({ sessionKey: `:${encrypted.sessionKey.split(':')[1]}` })).toBe(
      'SessionKeyRequired',
    );
    expect(await verifyReason({ checksum: '' })).toBe('ChecksumRequired');
    expect(await verifyReason({ sessionKey: encrypted.sessionKey.replace(/=+:/, ':') })).toBe(
      'SessionKeyInvalid',
    );
    expect(
      await verifyReason({
        sessionKey: `${randomBytes(15).toString('base64')}:${encrypted.sessionKey.split(':')[1]}`,
      }),
    ).toBe('SessionKeyInvalid');
    expect(await verifyReason({ publicKey: loadPublicKey(generateSigningKey().publicKeyPem) })).toBe(
      'SessionKeyInvalid',
    );
    expect(await verifyReason({ checksum: digest.toString('hex') })).toBe('ChecksumNotEncrypted');
    expect(await verifyReason({ checksum: `${encrypted.checksum}0` })).toBe('ChecksumNotEncrypted');
    expect(await verifyReason({ checksum: encrypted.checksumV2 })).toBe('ChecksumMismatch');
  });

  it('accepts base64 of the raw-digest signature like plugin 8.51.23 does, but only strict base64', async () => {
    const base64 = Buffer.from(encrypted.checksum, 'hex').toString('base64');
    expect(await verifyReason({ checksum: base64 })).toBe('accepted');
    expect(await verifyReason({ checksum: base64.replace(/=+$/, '') })).toBe('ChecksumNotEncrypted');
  });

  it('rejects a tampered byte, another bundle session key and a foreign signature', async () => {
    const tampered = Buffer.from(await readFile(encPath));
    tampered[1000] = (tampered[1000] ?? 0) ^ 0x01;
    const tamperedPath = join(work, 'tampered.enc');
    await writeFile(tamperedPath, tampered);
    expect(await verifyReason({ input: tamperedPath })).toBe('ChecksumMismatch');

    const other = await encryptBundle({ input: plainPath, output: join(work, 'other.enc'), key });
    expect(['DecryptFailed', 'ChecksumMismatch']).toContain(
      await verifyReason({ sessionKey: other.sessionKey }),
    );

    const foreign = generateSigningKey();
    const foreignEnc = await encryptBundle({
      input: plainPath,
      output: join(work, 'foreign.enc'),
      key: foreign,
    });
    expect(await verifyReason({ checksum: foreignEnc.checksum })).toBe('ChecksumSignatureInvalid');
  });

  it('accepts an uppercase signature like devices (they hex-decode it) but never an uppercase plain checksum', async () => {
    expect(await verifyReason({ checksum: encrypted.checksum.toUpperCase() })).toBe('accepted');
    const hex = digest.toString('hex');
    expect((await verifyBundle({ input: plainPath, checksum: hex })).sha256).toBe(hex);
    await expect(verifyBundle({ input: plainPath, checksum: hex.toUpperCase() })).rejects.toMatchObject({
      reason: 'ChecksumMismatch',
    });
    await expect(verifyBundle({ input: plainPath, checksum: undefined })).rejects.toMatchObject({
      reason: 'ChecksumRequired',
    });
    await expect(verifyBundle({ input: encPath, checksum: encrypted.checksum })).rejects.toMatchObject({
      reason: 'ChecksumMismatch',
    });
  });

  it('removes the decrypted output when verification fails', async () => {
    const out = join(work, 'bad.plain');
    await expect(
      verifyBundle({
        input: encPath,
        checksum: encrypted.checksumV2,
        publicKey,
        sessionKey: encrypted.sessionKey,
        output: out,
      }),
    ).rejects.toMatchObject({ reason: 'ChecksumMismatch' });
    await expect(access(out)).rejects.toThrow();
  });
});
