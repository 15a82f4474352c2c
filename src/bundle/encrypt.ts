import { createCipheriv, createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { openWriter, progressReporter, readChunks } from './io.js';
import { OFFTHREAD_HASH_MIN_BYTES, encryptFileOffThread } from './offthread-hash.js';
import type { ByteSink, ByteSource, ChunkWriter } from './io.js';
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
  /**
   * Also hash the ciphertext as it is written (`encryptedSha256`), so a caller that needs the stored object's
   * digest (the controller's content-addressed key) does not read the output again.
   */
  readonly hashCiphertext?: boolean;
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
  /** Lowercase hex SHA-256 of the ciphertext, with {@link EncryptBundleOptions.hashCiphertext}. */
  readonly encryptedSha256?: string;
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
  const progress = progressReporter(options.onProgress);
  const { input, signal } = options;
  const cipherHash = options.hashCiphertext ? createHash('sha256') : undefined;
  const onCiphertext = (chunk: Uint8Array): void => void cipherHash?.update(chunk);
  const onRead = (bytes: number): void => progress.add(bytes);
  let encrypted: { digest: Buffer; encryptedSize: number };
  const writer = await openWriter(options.output);
  try {
    encrypted =
      typeof input === 'string' && (await stat(input)).size >= OFFTHREAD_HASH_MIN_BYTES
        ? await encryptFileOffThread({
            path: input,
            writer,
            aesKey: session.aesKey,
            iv: session.iv,
            signal,
            onRead,
            onCiphertext,
          })
        : await encryptInline(input, writer, session, { onRead, onCiphertext }, signal);
    await writer.close();
  } catch (err) {
    await writer.abort(err);
    throw err;
  }
  return {
    ...encryptionResult(options.key, session, encrypted.digest, progress.done(), encrypted.encryptedSize),
    ...(cipherHash ? { encryptedSha256: cipherHash.digest('hex') } : {}),
  };
}

/** What an encryption reports, from the plain bytes' digest and the two sizes (the file and the in-memory path). */
function encryptionResult(
  key: SigningKey,
  session: BundleSession,
  digest: Buffer,
  size: number,
  encryptedSize: number,
): EncryptBundleResult {
  return {
    ...signDigest(key, digest),
    sessionKey: session.sessionKey,
    keyId: key.keyId,
    sha256: digest.toString('hex'),
    size,
    encryptedSize,
  };
}

/**
 * SHA-256 and AES on this thread, taking turns between reads and writes: small files (a worker costs tens of
 * milliseconds to start) and streams.
 */
async function encryptInline(
  input: ByteSource,
  writer: ChunkWriter,
  session: BundleSession,
  on: { onRead: (bytes: number) => void; onCiphertext: (chunk: Uint8Array) => void },
  signal: AbortSignal | undefined,
): Promise<{ digest: Buffer; encryptedSize: number }> {
  const hash = createHash('sha256');
  const cipher = createCipheriv(AES_ALGORITHM, session.aesKey, session.iv);
  let encryptedSize = 0;
  const write = async (out: Buffer): Promise<void> => {
    encryptedSize += out.length;
    on.onCiphertext(out);
    await writer.write(out);
  };
  for await (const chunk of readChunks(input, signal)) {
    hash.update(chunk);
    on.onRead(chunk.length);
    await write(cipher.update(chunk));
  }
  await write(cipher.final());
  return { digest: hash.digest(), encryptedSize };
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

/**
 * {@link encryptBundle} of a zip already in memory, for small bundles (the controller's in-memory build): the same
 * checksums, session key and ciphertext byte for byte, returned as a Buffer with its SHA-256 (`encryptedSha256`),
 * with no file, stream or worker. Memory: the plain bytes plus the ciphertext (16 bytes more at most).
 */
export function encryptBundleBytes(
  plain: Uint8Array,
  key: SigningKey,
  session: BundleSession = createSession(key),
): EncryptBundleResult & { readonly ciphertext: Buffer; readonly encryptedSha256: string } {
  const digest = createHash('sha256').update(plain).digest();
  const cipher = createCipheriv(AES_ALGORITHM, session.aesKey, session.iv);
  const ciphertext = Buffer.concat([cipher.update(plain), cipher.final()]);
  return {
    ...encryptionResult(key, session, digest, plain.length, ciphertext.length),
    encryptedSha256: createHash('sha256').update(ciphertext).digest('hex'),
    ciphertext,
  };
}

/** {@link hashBundle} of a bundle already in memory. */
export function hashBundleBytes(plain: Uint8Array): HashBundleResult {
  const sha256 = createHash('sha256').update(plain).digest('hex');
  return { checksum: sha256, sha256, size: plain.length };
}
