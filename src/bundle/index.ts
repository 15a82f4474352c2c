/**
 * Capgo-compatible bundle handling, shared by the controller and the `liveupdate` CLI.
 * See CAPGO-PROTOCOL.md §4–§7 and docs/adr/0002-bundle-crypto.md.
 *
 * - keys: {@link loadSigningKey}, {@link loadPublicKey}, {@link keyIdFromPublicKeyPem}, {@link generateSigningKey}
 * - zips: {@link packDirectory}, {@link packTarball}, {@link validateZip}
 * - crypto: {@link encryptBundle}, {@link hashBundle}, {@link verifyBundle}
 * - delta updates: {@link buildDeltaManifest}
 *
 * Every refusal is a {@link BundleError} subclass with a CamelCase `reason`.
 */
export {
  BundleError,
  BundleValidationError,
  BundleVerificationError,
  KeyError,
  ManifestError,
} from './errors.js';
export type {
  BundleValidationReason,
  BundleVerificationReason,
  KeyErrorReason,
  ManifestErrorReason,
} from './errors.js';
export type { ByteSink, ByteSource } from './io.js';
export {
  PRIVATE_KEY_FILE,
  PUBLIC_KEY_FILE,
  generateSigningKey,
  keyIdFromPublicKeyPem,
  loadPublicKey,
  loadSigningKey,
  publicKeyPemFromPrivateKeyPem,
  readPublicKeyFile,
  readSigningKeyFile,
  writeKeyFiles,
} from './keys.js';
export type { KeyFiles, SigningKey, VerifyingKey } from './keys.js';
export { SKIPPED_SEGMENTS } from './paths.js';
export { packDirectory } from './pack.js';
export type { PackOptions, PackResult } from './pack.js';
export { packTarball } from './tarball.js';
export type { PackTarballOptions } from './tarball.js';
export { DEFAULT_LIMITS, validateZip } from './validate.js';
export type { ValidateOptions, ZipLimits, ZipSummary } from './validate.js';
export { createSession, deriveSession, signDigest } from './session.js';
export type { BundleSession, SignedChecksum } from './session.js';
export { encryptBundle, encryptBundleBytes, hashBundle, hashBundleBytes } from './encrypt.js';
export type { EncryptBundleOptions, EncryptBundleResult, HashBundleResult } from './encrypt.js';
export { verifyBundle } from './verify.js';
export type { VerifyBundleOptions, VerifyBundleResult } from './verify.js';
export { MANIFEST_FILE, buildDeltaManifest } from './manifest.js';
export type { DeltaManifest, DeltaManifestEntry, DeltaManifestOptions } from './manifest.js';
