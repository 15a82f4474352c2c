import { createCipheriv, createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { openWriter, progressReporter, readChunks } from './io.js';
import { OFFTHREAD_HASH_MIN_BYTES, offThreadSha256 } from './offthread-hash.js';
import type { ByteSink, ByteSource } from './io.js';
import type { SigningKey } from './keys.js';
import { AES_ALGORITHM, createSession, signDigest } from './session.js';
import type { BundleSession } from './session.js';

export interface EncryptBundleOptions {
  /** The plain zip. */
  readonly input: ByteSource;
  /** Where the ciphertext goes. */
  readonly output: ByteSink;
  readonly key: SigningKey;
  /** Reuse a session (e.g. to encrypt delta files with the same key); a fresh random one by default. */
  readonly session?: BundleSession;
  readonly signal?: AbortSignal;
  /** Called with the number of plain bytes processed so far. */
  readonly onProgress?: (bytes: number) => void;
}

export interface EncryptBundleResult {
  /** V3 checksum: what `checksum` must be in update answers to current plugins. */
  readonly checksum: string;
  /** Legacy V2 checksum, for plugins older than 5.30.0 / 6.30.0 / 7.30.0. */
  readonly checksumV2: string;
  /** `session_key` for update answers. */
  readonly sessionKey: string;
  readonly keyId: string;
  /** Lowercase hex SHA-256 of the plain zip. */
  readonly sha256: string;
  /** Plain zip size in bytes. */
  readonly size: number;
  /** Ciphertext size: `size` rounded up to the next multiple of 16 (+16 when already aligned). */
  readonly encryptedSize: number;
}

export interface HashBundleResult {
  /** For unencrypted bundles the checksum is the plain lowercase SHA-256 hex. */
  readonly checksum: string;
  readonly sha256: string;
  readonly size: number;
}

/**
 * Encrypt a plain zip for Capgo devices in one streaming pass (memory does not depend on the bundle size):
 * SHA-256 of the plain bytes and AES-128-CBC/PKCS#7 ciphertext together, then sign the digest.
 * A partially written output file is removed on failure.
 */
export async function encryptBundle(options: EncryptBundleOptions): Promise<EncryptBundleResult> {
  const session = options.session ?? createSession(options.key);
  const hash = await plainHasher(options.input);
  const cipher = createCipheriv(AES_ALGORITHM, session.aesKey, session.iv);
  const progress = progressReporter(options.onProgress);
  let encryptedSize = 0;
  let digest: Buffer;
  const writer = await openWriter(options.output);
  try {
    for await (const chunk of readChunks(options.input, options.signal)) {
      // Copied to the hash thread (when there is one) before the next read reuses the buffer.
      await hash.update(chunk);
      progress.add(chunk.length);
      const out = cipher.update(chunk);
      encryptedSize += out.length;
      await writer.write(out);
    }
    const last = cipher.final();
    encryptedSize += last.length;
    await writer.write(last);
    await writer.close();
    digest = await hash.digest();
  } catch (err) {
    await hash.destroy();
    await writer.abort(err);
    throw err;
  }
  return {
    ...signDigest(options.key, digest),
    sessionKey: session.sessionKey,
    keyId: options.key.keyId,
    sha256: digest.toString('hex'),
    size: progress.done(),
    encryptedSize,
  };
}

interface PlainHasher {
  update(chunk: Uint8Array): void | Promise<void>;
  digest(): Buffer | Promise<Buffer>;
  destroy(): void | Promise<void>;
}

/**
 * The SHA-256 of the plain bytes: on a worker thread for large files, so that hashing overlaps the (serial) AES-CBC
 * on another core; inline for small files and streams (a worker costs tens of milliseconds to start).
 */
async function plainHasher(input: ByteSource): Promise<PlainHasher> {
  if (typeof input === 'string' && (await stat(input)).size >= OFFTHREAD_HASH_MIN_BYTES)
    return offThreadSha256();
  const hash = createHash('sha256');
  return {
    update: (chunk) => void hash.update(chunk),
    digest: () => hash.digest(),
    destroy: () => undefined,
  };
}

/** SHA-256 of a plain bundle, streaming; for unencrypted bundles this is the `checksum`. */
export async function hashBundle(
  input: ByteSource,
  options: { signal?: AbortSignal; onProgress?: (bytes: number) => void } = {},
): Promise<HashBundleResult> {
  const hash = createHash('sha256');
  const progress = progressReporter(options.onProgress);
  for await (const chunk of readChunks(input, options.signal)) {
    hash.update(chunk);
    progress.add(chunk.length);
  }
  const sha256 = hash.digest('hex');
  return { checksum: sha256, sha256, size: progress.done() };
}
