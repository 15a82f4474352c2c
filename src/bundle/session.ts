import { constants, createHash, createHmac, privateEncrypt, publicDecrypt, randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { BundleVerificationError } from './errors.js';
import type { SigningKey } from './keys.js';

/** AES-128 only: Android and iOS reject any other key length. */
export const AES_KEY_BYTES = 16;
export const AES_IV_BYTES = 16;
export const AES_ALGORITHM = 'aes-128-cbc';
/** RSA-2048 output length: every wrapped key and signed checksum is exactly this long. */
export const RSA_BLOCK_BYTES = 256;

/** The per-bundle symmetric material; `sessionKey` is what devices receive as `session_key`. */
export interface BundleSession {
  readonly aesKey: Buffer;
  readonly iv: Buffer;
  /** `base64(iv) + ':' + base64(RSA_private_encrypt_PKCS1v1.5(aesKey))` (CAPGO-PROTOCOL.md §6.2). */
  readonly sessionKey: string;
}

/** Signatures of a plain bundle digest, in the encodings plugins accept (CAPGO-PROTOCOL.md §6.4). */
export interface SignedChecksum {
  /** V3: lowercase hex of the signature over the raw 32-byte digest (512 chars); what current plugins need. */
  readonly checksum: string;
  /**
   * V2 (legacy): base64 of the signature over `Buffer.from(hexDigest, 'base64')` — the CLI misreads the hex
   * string as base64, and old plugins expect exactly that. Only for plugins < 5.30.0 / 6.30.0 / 7.30.0.
   */
  readonly checksumV2: string;
}

/** Random AES key and IV, the key wrapped with the private key (RSA PKCS#1 v1.5 type 1). */
export function createSession(key: SigningKey): BundleSession {
  return sessionFromMaterial(key, randomBytes(AES_KEY_BYTES), randomBytes(AES_IV_BYTES));
}

/**
 * The session of one build, derived instead of drawn: HMAC-SHA256 keyed by a secret only the private key's holder
 * can compute, over `context` (what identifies the build: bundle identity, inputs, artifact digest). The same build
 * gets the same AES key and IV, hence the same ciphertext, object key and `session_key`, however often it runs
 * (a retry, a stale cache read, a restarted or deposed controller: docs/adr/0010-idempotent-builds.md). Different
 * contexts get unrelated keys; an IV repeats only with the same key and the same plaintext.
 */
export function deriveSession(key: SigningKey, context: string): BundleSession {
  const secret = createHash('sha256')
    .update('liveupdate-session-secret/v1\0')
    .update(key.privateKey.export({ type: 'pkcs1', format: 'der' }))
    .digest();
  const material = (label: string): Buffer =>
    createHmac('sha256', secret).update(`${label}\0${context}`).digest().subarray(0, AES_KEY_BYTES);
  return sessionFromMaterial(key, material('aes-key'), material('iv'));
}

/** Build a session from given material (tests and re-signing); both parts must be 16 bytes. */
export function sessionFromMaterial(key: SigningKey, aesKey: Buffer, iv: Buffer): BundleSession {
  if (aesKey.length !== AES_KEY_BYTES || iv.length !== AES_IV_BYTES) {
    throw new RangeError('AES-128 key and IV must be 16 bytes each');
  }
  const wrapped = privateEncrypt({ key: key.privateKey, padding: constants.RSA_PKCS1_PADDING }, aesKey);
  return { aesKey, iv, sessionKey: `${iv.toString('base64')}:${wrapped.toString('base64')}` };
}

/** Sign a plain SHA-256 digest (32 raw bytes) in both checksum encodings. */
export function signDigest(key: SigningKey, digest: Buffer): SignedChecksum {
  if (digest.length !== 32) throw new RangeError('a SHA-256 digest is 32 bytes');
  const sign = (data: Buffer): Buffer =>
    privateEncrypt({ key: key.privateKey, padding: constants.RSA_PKCS1_PADDING }, data);
  return {
    checksum: sign(digest).toString('hex'),
    checksumV2: sign(Buffer.from(digest.toString('hex'), 'base64')).toString('base64'),
  };
}

/**
 * Split and unwrap a `session_key` exactly as a device does (CAPGO-PROTOCOL.md §6.3): two non-empty halves, strict
 * base64 with padding (iOS's decoder is strict), IV of 16 bytes, RSA-recovered AES key of 16 bytes.
 * `key` may be a public key or a private key (Node derives the public half).
 */
export function openSession(sessionKey: string | undefined, key: KeyObject): { aesKey: Buffer; iv: Buffer } {
  if (!hasSessionKeyForm(sessionKey)) {
    throw new BundleVerificationError(
      'SessionKeyRequired',
      'a session key of the form "<ivBase64>:<keyBase64>" is required for an encrypted bundle',
    );
  }
  const [ivText = '', wrappedText = ''] = sessionKey.split(':');
  const iv = strictBase64(ivText);
  const wrapped = strictBase64(wrappedText);
  if (!iv || iv.length !== AES_IV_BYTES) {
    throw new BundleVerificationError('SessionKeyInvalid', 'the session key IV is not base64 of 16 bytes');
  }
  if (!wrapped) {
    throw new BundleVerificationError('SessionKeyInvalid', 'the wrapped session key is not valid base64');
  }
  let aesKey: Buffer;
  try {
    aesKey = publicDecrypt({ key, padding: constants.RSA_PKCS1_PADDING }, wrapped);
  } catch {
    throw new BundleVerificationError(
      'SessionKeyInvalid',
      'the session key cannot be unwrapped with this public key (wrong key or corrupted session key)',
    );
  }
  if (aesKey.length !== AES_KEY_BYTES) {
    throw new BundleVerificationError(
      'SessionKeyInvalid',
      `the unwrapped session key is ${aesKey.length} bytes, devices need 16`,
    );
  }
  return { aesKey, iv };
}

/** The plugin's `isValidSessionKey`: exactly two non-empty halves around one `:`. */
export function hasSessionKeyForm(sessionKey: string | undefined): sessionKey is string {
  const parts = (sessionKey ?? '').split(':');
  return parts.length === 2 && !!parts[0] && !!parts[1];
}

/**
 * Recover the digest a device expects from an encrypted `checksum`: hex if only `[0-9a-fA-F]`, else base64;
 * the blob must be 256 bytes. Returns the recovered bytes as lowercase hex (what the device compares).
 */
export function recoverChecksum(checksum: string, key: KeyObject): string {
  // iOS decodes base64 strictly (Data(base64Encoded:)); the strict form is the one every device accepts.
  const blob = /^[0-9a-fA-F]+$/.test(checksum)
    ? Buffer.from(checksum, 'hex')
    : (strictBase64(checksum) ?? Buffer.alloc(0));
  // Buffer.from(hex) silently drops an odd trailing digit; Android would fail on it, so refuse it here.
  if (/^[0-9a-fA-F]+$/.test(checksum) && checksum.length % 2 === 1) {
    throw new BundleVerificationError('ChecksumNotEncrypted', 'the checksum has an odd number of hex digits');
  }
  if (blob.length !== RSA_BLOCK_BYTES) {
    throw new BundleVerificationError(
      'ChecksumNotEncrypted',
      `the checksum decodes to ${blob.length} bytes, not a ${RSA_BLOCK_BYTES}-byte RSA signature: the bundle was not signed for this key`,
    );
  }
  try {
    return publicDecrypt({ key, padding: constants.RSA_PKCS1_PADDING }, blob).toString('hex');
  } catch {
    throw new BundleVerificationError(
      'ChecksumSignatureInvalid',
      'the checksum signature does not verify with this public key',
    );
  }
}

/** Base64 that iOS's strict decoder accepts: standard alphabet, `=` padding, no whitespace; `undefined` otherwise. */
export function strictBase64(text: string): Buffer | undefined {
  if (text.length === 0 || text.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(text)) return undefined;
  const bytes = Buffer.from(text, 'base64');
  return bytes.toString('base64') === text ? bytes : undefined;
}
