/**
 * Every refusal of the bundle library carries a stable CamelCase `reason`: the controller copies it into a
 * `Stalled` condition and the CLI prints it, so callers branch on the reason, never on the message text.
 */
export abstract class BundleError extends Error {
  abstract readonly reason: string;
}

/** Why a key PEM cannot be used with Capgo devices (see CAPGO-PROTOCOL.md §6.1). */
export type KeyErrorReason =
  | 'KeyNotPem'
  | 'KeyLeadingWhitespace'
  | 'KeyEncrypted'
  | 'KeySpkiPublicKey'
  | 'KeyPkcs8PrivateKey'
  | 'KeyNotPrivate'
  | 'KeyNotPublic'
  | 'KeyNotRsa'
  | 'KeyWrongSize'
  | 'KeyUnreadable'
  | 'KeyFilesExist';

export class KeyError extends BundleError {
  override readonly name = 'KeyError';
  constructor(
    readonly reason: KeyErrorReason,
    message: string,
  ) {
    super(message);
  }
}

/** Why an incoming zip (or a directory/tarball being packed) is refused. */
export type BundleValidationReason =
  | 'MissingIndexHtml'
  | 'MacosxBesideTopFolder'
  | 'DotEntryBesideTopFolder'
  | 'PathTraversal'
  | 'AbsolutePath'
  | 'Backslash'
  | 'NulInName'
  | 'EmptyName'
  | 'Symlink'
  | 'SpecialFile'
  | 'DuplicateEntry'
  | 'EncryptedEntry'
  | 'UnsupportedCompression'
  | 'TooManyEntries'
  | 'TooLarge'
  | 'CompressionRatio'
  | 'CorruptZip'
  | 'CorruptTarball'
  // The central directory and the local headers Android reads disagree (docs/adr/0011-zip-rules.md).
  | 'UnexpectedBytes'
  | 'OverlappingEntries'
  | 'LocalHeaderMismatch'
  | 'LocalNameMismatch'
  | 'UnicodePathMismatch'
  | 'EntryCountMismatch'
  | 'Zip64NotSupported'
  // Names that are one file, or differently named files, depending on the device.
  | 'NameEncoding'
  | 'NonCanonicalName'
  | 'PathConflict';

export class BundleValidationError extends BundleError {
  override readonly name = 'BundleValidationError';
  constructor(
    readonly reason: BundleValidationReason,
    message: string,
    readonly entry?: string,
  ) {
    super(message);
  }
}

/** Why a bundle fails the device-side checks (CAPGO-PROTOCOL.md §6.3). */
export type BundleVerificationReason =
  | 'SessionKeyRequired'
  | 'SessionKeyInvalid'
  | 'ChecksumRequired'
  | 'ChecksumNotEncrypted'
  | 'ChecksumSignatureInvalid'
  | 'DecryptFailed'
  | 'ChecksumMismatch';

export class BundleVerificationError extends BundleError {
  override readonly name = 'BundleVerificationError';
  constructor(
    readonly reason: BundleVerificationReason,
    message: string,
  ) {
    super(message);
  }
}

/** Why a delta manifest cannot be built (CAPGO-PROTOCOL.md §5). */
export type ManifestErrorReason = 'SpaceInFileName' | 'TooManyFiles' | 'NoFiles' | 'DuplicateFileName';

export class ManifestError extends BundleError {
  override readonly name = 'ManifestError';
  constructor(
    readonly reason: ManifestErrorReason,
    message: string,
  ) {
    super(message);
  }
}
