import { createDecipheriv, createHash } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { BundleVerificationError } from './errors.js';
import { discardSink, openWriter, progressReporter, readChunks } from './io.js';
import type { ByteSink, ByteSource } from './io.js';
import type { VerifyingKey } from './keys.js';
import { AES_ALGORITHM, hasSessionKeyForm, openSession, recoverChecksum } from './session.js';

export interface VerifyBundleOptions {
  /** The bundle as served to devices (ciphertext when `publicKey` is given). */
  readonly input: ByteSource;
  /** The `checksum` of the update answer. */
  readonly checksum: string | undefined;
  /** The app's public key; without it the bundle is checked as an unencrypted one. */
  readonly publicKey?: VerifyingKey | KeyObject;
  /** The `session_key` of the update answer (required with `publicKey`). */
  readonly sessionKey?: string;
  /** Optionally keep the decrypted zip; removed again if verification fails. */
  readonly output?: ByteSink;
  readonly signal?: AbortSignal;
  readonly onProgress?: (bytes: number) => void;
}

export interface VerifyBundleResult {
  readonly ok: true;
  /** Lowercase hex SHA-256 of the plain (decrypted) zip. */
  readonly sha256: string;
  /** Size of the plain zip. */
  readonly size: number;
  readonly encrypted: boolean;
}

/**
 * Check a bundle the way `@capgo/capacitor-updater` 8.x does before unzipping it (Android `finishDownload`,
 * CAPGO-PROTOCOL.md §6.3): session key form, checksum present, unwrap the AES key, decrypt (streaming),
 * recover the expected digest from the signed checksum, compare lowercase hex exactly.
 * Throws {@link BundleVerificationError} with the reason a device would fail with.
 */
export async function verifyBundle(options: VerifyBundleOptions): Promise<VerifyBundleResult> {
  const checksum = options.checksum ?? '';
  const publicKey =
    options.publicKey && 'publicKey' in options.publicKey ? options.publicKey.publicKey : options.publicKey;
  if (!publicKey) {
    if (!checksum) throw new BundleVerificationError('ChecksumRequired', 'a checksum is required');
    const { sha256, size } = await digestStream(options, undefined);
    if (sha256 !== checksum) {
      const hint =
        checksum.length > 64
          ? ' (this looks like a signed checksum: pass the public key and session key)'
          : '';
      await discardSink(options.output);
      throw new BundleVerificationError(
        'ChecksumMismatch',
        `sha256 ${sha256} does not equal the checksum ${checksum}${hint}`,
      );
    }
    return { ok: true, sha256, size, encrypted: false };
  }

  if (!hasSessionKeyForm(options.sessionKey)) {
    throw new BundleVerificationError(
      'SessionKeyRequired',
      'an encrypted bundle needs a session key "<ivBase64>:<keyBase64>"',
    );
  }
  if (!checksum) throw new BundleVerificationError('ChecksumRequired', 'a checksum is required');
  const { aesKey, iv } = openSession(options.sessionKey, publicKey);
  const { sha256, size } = await digestStream(options, { aesKey, iv });
  try {
    if (size === 0) throw new BundleVerificationError('DecryptFailed', 'the bundle decrypts to zero bytes');
    const expected = recoverChecksum(checksum, publicKey);
    if (sha256 !== expected) {
      throw new BundleVerificationError(
        'ChecksumMismatch',
        `sha256 of the decrypted bundle ${sha256} does not equal the signed checksum ${expected}`,
      );
    }
  } catch (err) {
    await discardSink(options.output);
    throw err;
  }
  return { ok: true, sha256, size, encrypted: true };
}

async function digestStream(
  options: VerifyBundleOptions,
  aes: { aesKey: Buffer; iv: Buffer } | undefined,
): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  const progress = progressReporter(options.onProgress);
  const decipher = aes ? createDecipheriv(AES_ALGORITHM, aes.aesKey, aes.iv) : undefined;
  const writer = options.output ? await openWriter(options.output) : undefined;
  const consume = async (plain: Buffer, borrowed: boolean): Promise<void> => {
    hash.update(plain);
    progress.add(plain.length);
    // Chunks read from a file are reused buffers: copy what outlives this call.
    if (writer && plain.length > 0) await writer.write(borrowed ? Buffer.from(plain) : plain);
  };
  let inputBytes = 0;
  try {
    for await (const chunk of readChunks(options.input, options.signal)) {
      inputBytes += chunk.length;
      await (decipher
        ? consume(decipher.update(chunk), false)
        : consume(chunk, typeof options.input === 'string'));
    }
    if (decipher) {
      if (inputBytes === 0)
        throw new BundleVerificationError('DecryptFailed', 'the encrypted bundle is empty');
      let last: Buffer;
      try {
        last = decipher.final();
      } catch {
        throw new BundleVerificationError(
          'DecryptFailed',
          'AES-128-CBC decryption failed (bad padding): wrong session key or damaged file',
        );
      }
      await consume(last, false);
    }
    await writer?.close();
  } catch (err) {
    await writer?.abort(err);
    throw err;
  }
  return { sha256: hash.digest('hex'), size: progress.done() };
}
