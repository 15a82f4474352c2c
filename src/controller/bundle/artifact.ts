/**
 * From a fetched artifact to what gets stored: detect the format (zip, or tar/tar.gz of a build directory), validate
 * or pack, encrypt and sign (or only hash), and optionally build the delta manifest. Then upload content-addressed
 * so that the stored copy is provably the prepared one: a checked PUT for small artifacts, a re-read compared byte
 * for byte for large ones. A small zip fetched into memory is validated, encrypted and stored from memory (no file);
 * everything else happens in files in a temp dir the caller removes.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Reason } from '../../api/v1alpha1/index.js';
import {
  BundleError,
  buildDeltaManifest,
  deriveSession,
  encryptBundle,
  encryptBundleBytes,
  hashBundle,
  hashBundleBytes,
  packTarball,
  validateZip,
  type EncryptBundleResult,
  type HashBundleResult,
  type SigningKey,
} from '../../bundle/index.js';
import type { AppRef, StorageLayout } from '../../storage/layout.js';
import { CHECKED_BODY_MAX_BYTES, ObjectNotFoundError, type ObjectStore } from '../../storage/object-store.js';
import type { IndexManifestEntry } from '../../storage/release-index.js';
import { StallingError, TransientError } from '../common/errors.js';

export type ArtifactFormat = 'zip' | 'tarball';

/**
 * Where the bytes to store are (ciphertext when encrypted): a file, or a Buffer when the artifact was built in memory
 * (see {@link IN_MEMORY_BUILD_MAX_BYTES}). Always exactly one of the two.
 */
export type StoredBytes =
  { storedPath: string; storedBytes?: undefined } | { storedBytes: Buffer; storedPath?: undefined };

export type PreparedArtifact = StoredBytes & {
  storedSize: number;
  storedSha256: string;
  /** sha256 hex of the plain zip. */
  sha256: string;
  checksum: string;
  checksumV2?: string;
  sessionKey?: string;
  keyId?: string;
  encrypted: boolean;
  format: ArtifactFormat;
  delta?: {
    dir: string;
    entries: Array<{ fileName: string; fileHash: string; objectName: string; size: number }>;
  };
};

/** Reads the magic bytes: zip local header / end of central directory, gzip, or a ustar header. */
export async function detectFormat(path: string): Promise<ArtifactFormat> {
  const handle = await open(path, 'r');
  try {
    const head = Buffer.alloc(512);
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    return formatOf(head.subarray(0, bytesRead));
  } finally {
    await handle.close();
  }
}

/** {@link detectFormat} of the first bytes (512 are enough) of an artifact. */
export function formatOf(bytes: Buffer): ArtifactFormat {
  if (bytes.length >= 4 && bytes.readUInt32LE(0) === 0x04034b50) return 'zip';
  if (bytes.length >= 4 && bytes.readUInt32LE(0) === 0x06054b50) return 'zip';
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) return 'tarball';
  if (bytes.length >= 262 && bytes.subarray(257, 262).toString('latin1') === 'ustar') return 'tarball';
  throw new StallingError(
    Reason.UnsupportedArtifact,
    'the artifact is neither a zip nor a tar/tar.gz archive',
  );
}

/** Bundle library refusals (invalid zip, bad tarball, manifest problems) stall with the library's reason. */
function asStalling(error: unknown): unknown {
  if (error instanceof BundleError) return new StallingError(error.reason, error.message);
  return error;
}

export async function prepareArtifact(opts: {
  /** The fetched artifact: a file, or its bytes (a small artifact fetched into memory). */
  fetched: { path: string } | { bytes: Buffer };
  workDir: string;
  key: SigningKey | undefined;
  delta: boolean;
  /** What identifies this build; the encryption session is derived from it (same build, same bytes). */
  buildId: string;
  /** Most bytes the archive may expand to (what fits the work dir); default: the validator's own limit. */
  maxExpandedBytes?: number;
  signal: AbortSignal;
}): Promise<PreparedArtifact> {
  const { workDir, key, signal, fetched } = opts;
  const limits = opts.maxExpandedBytes !== undefined ? { maxUncompressedBytes: opts.maxExpandedBytes } : {};
  try {
    let fetchedPath: string;
    if ('bytes' in fetched) {
      const format = formatOf(fetched.bytes.subarray(0, 512));
      // A tarball is packed, a delta manifest unpacks: both work on files.
      if (format === 'zip' && !opts.delta) {
        await validateZip(fetched.bytes, { signal, limits });
        return { ...sealInMemory(fetched.bytes, key, opts.buildId), format };
      }
      fetchedPath = join(workDir, 'fetched');
      await mkdir(workDir, { recursive: true, mode: 0o700 }); // made on first use (the reconciler's work dir)
      await writeFile(fetchedPath, fetched.bytes, { mode: 0o600, signal });
    } else {
      fetchedPath = fetched.path;
    }
    const format = await detectFormat(fetchedPath);
    let zip = fetchedPath;
    if (format === 'tarball') {
      zip = join(workDir, 'packed.zip');
      await packTarball(fetchedPath, zip, { tmpDir: workDir, signal, limits });
    }
    await validateZip(zip, { signal, limits });
    const sealed: Sealed = key
      ? await seal(zip, join(workDir, 'sealed.zip'), key, opts.buildId, signal)
      : await plain(zip, signal);
    const delta = opts.delta
      ? await deltaFiles(zip, join(workDir, 'delta'), key, sealed.sessionKey, signal)
      : undefined;
    return { ...sealed, format, ...(delta ? { delta } : {}) };
  } catch (error) {
    throw asStalling(error);
  }
}

type Sealed = StoredBytes & Omit<PreparedArtifact, 'format' | 'delta' | keyof StoredBytes>;

/** {@link seal} or {@link plain} of a zip in memory: the same results, the stored bytes as a Buffer. */
function sealInMemory(zip: Buffer, key: SigningKey | undefined, buildId: string): Sealed {
  if (!key) return plainResult({ storedBytes: zip }, hashBundleBytes(zip));
  const result = encryptBundleBytes(zip, key, deriveSession(key, buildId));
  return sealedResult({ storedBytes: result.ciphertext }, result);
}

async function seal(zip: string, output: string, key: SigningKey, buildId: string, signal: AbortSignal) {
  const session = deriveSession(key, buildId);
  // The ciphertext is hashed as it is written, rather than read back from disk afterwards.
  const result = await encryptBundle({ input: zip, output, key, session, signal, hashCiphertext: true });
  return sealedResult({ storedPath: output }, result);
}

function sealedResult(stored: StoredBytes, result: EncryptBundleResult): Sealed {
  return {
    ...stored,
    storedSize: result.encryptedSize,
    storedSha256: result.encryptedSha256!,
    sha256: result.sha256,
    checksum: result.checksum,
    checksumV2: result.checksumV2,
    sessionKey: result.sessionKey,
    keyId: result.keyId,
    encrypted: true,
  };
}

async function plain(zip: string, signal: AbortSignal): Promise<Sealed> {
  return plainResult({ storedPath: zip }, await hashBundle(zip, { signal }));
}

function plainResult(stored: StoredBytes, result: HashBundleResult): Sealed {
  return {
    ...stored,
    storedSize: result.size,
    storedSha256: result.sha256,
    sha256: result.sha256,
    checksum: result.checksum,
    encrypted: false,
  };
}

async function deltaFiles(
  zip: string,
  dir: string,
  key: SigningKey | undefined,
  sessionKey: string | undefined,
  signal: AbortSignal,
) {
  const manifest = await buildDeltaManifest({
    source: { zip },
    outDir: dir,
    ...(key && sessionKey ? { key, sessionKey } : {}),
    signal,
  });
  return {
    dir,
    entries: manifest.entries.map((e) => ({
      fileName: e.file_name,
      fileHash: e.file_hash,
      objectName: e.objectName,
      size: e.size,
    })),
  };
}

export interface StoredArtifact {
  objectKey: string;
  manifestKey?: string;
  manifestFiles?: number;
}

/**
 * Bundle objects up to this size go up from memory in one PUT whose body the store checks on arrival
 * (docs/adr/0042-one-checked-put-per-small-artifact.md): no HEAD before it, no GET after it. Larger ones stream,
 * are skipped when already stored with their size, and are re-read and compared after the upload.
 */
export const CHECKED_PUT_MAX_BYTES = Math.min(8 * 1024 * 1024, CHECKED_BODY_MAX_BYTES);

/**
 * Fetched artifacts up to this size may be built in memory: read into a Buffer, validated, encrypted and stored from
 * it. The ciphertext (at most 16 bytes longer) still fits the checked PUT. Memory per build: the fetched bytes and
 * the ciphertext, so at most about 2 × this per concurrent reconcile (docs/adr/0042-one-checked-put-per-small-artifact.md).
 */
export const IN_MEMORY_BUILD_MAX_BYTES = CHECKED_PUT_MAX_BYTES - 16;

/**
 * Uploads the prepared artifact (and delta files) under content-addressed keys. A small bundle object is read into
 * memory, checked against storedSha256 and sent in one checked PUT; a large one is skipped when already stored with
 * the right size, else streamed, then re-read and compared (size and sha256).
 */
export async function storeArtifact(
  store: ObjectStore,
  layout: StorageLayout,
  app: AppRef,
  artifact: PreparedArtifact,
  signal: AbortSignal,
): Promise<StoredArtifact> {
  const objectKey = layout.bundleKey(app, artifact.storedSha256);
  if (artifact.storedPath === undefined || artifact.storedSize <= CHECKED_PUT_MAX_BYTES) {
    await checkedPut(store, objectKey, artifact, signal);
  } else {
    await putIfAbsent(store, objectKey, artifact.storedPath, artifact.storedSize, 'application/zip', signal);
    await verifyStored(store, objectKey, artifact.storedSize, artifact.storedSha256, signal);
  }
  if (!artifact.delta) return { objectKey };
  const entries: IndexManifestEntry[] = [];
  for (const entry of artifact.delta.entries) {
    const key = layout.deltaFileKey(app, entry.objectName);
    await putIfAbsent(
      store,
      key,
      join(artifact.delta.dir, entry.objectName),
      entry.size,
      'application/octet-stream',
      signal,
    );
    entries.push({ fileName: entry.fileName, fileHash: entry.fileHash, objectKey: key, size: entry.size });
  }
  const body = Buffer.from(JSON.stringify(entries));
  const manifestKey = layout.deltaFileKey(app, `${createHash('sha256').update(body).digest('hex')}.json`);
  await store.put(manifestKey, body, { contentType: 'application/json', signal });
  return { objectKey, manifestKey, manifestFiles: entries.length };
}

/**
 * One PUT of the bytes whose sha256 names the key. The body is hashed here, from the very buffer that is sent, so
 * the store's own check of that body on arrival (ObjectStore.put of a Buffer) proves the stored object is the
 * prepared artifact; re-reading it would prove nothing more. Rewriting an object already there is harmless (same
 * key, same bytes) and repairs one whose bytes were altered in place.
 */
async function checkedPut(
  store: ObjectStore,
  key: string,
  artifact: PreparedArtifact,
  signal: AbortSignal,
): Promise<void> {
  const body =
    artifact.storedPath === undefined
      ? artifact.storedBytes
      : await readFile(artifact.storedPath, { signal });
  const sha256 = createHash('sha256').update(body).digest('hex');
  if (body.length !== artifact.storedSize || sha256 !== artifact.storedSha256) {
    throw new TransientError(
      Reason.StorageVerificationFailed,
      `${artifact.storedPath ?? 'the artifact built in memory'} has ${body.length} bytes with sha256 ${sha256}, expected ${artifact.storedSize} bytes with ${artifact.storedSha256}`,
    );
  }
  await store.put(key, body, { contentType: 'application/zip', signal });
}

async function putIfAbsent(
  store: ObjectStore,
  key: string,
  path: string,
  size: number,
  contentType: string,
  signal: AbortSignal,
) {
  try {
    const info = await store.stat(key, signal);
    if (info.size === size) return;
  } catch (error) {
    if (!(error instanceof ObjectNotFoundError)) throw error;
  }
  await store.put(key, createReadStream(path), { size, contentType, signal });
}

/** Re-reads a stored object; a mismatch removes it (its key promises content it does not have) and retries later. */
export async function verifyStored(
  store: ObjectStore,
  key: string,
  size: number,
  sha256: string,
  signal: AbortSignal,
): Promise<void> {
  const result = await store.get(key, { signal });
  if (!result)
    throw new TransientError(Reason.StorageVerificationFailed, `${key}: the store returned no body`);
  const counted = await hashBundle(result.body, { signal });
  if (counted.size !== size || counted.sha256 !== sha256) {
    await store.remove(key, signal).catch(() => undefined);
    throw new TransientError(
      Reason.StorageVerificationFailed,
      `stored object ${key} has ${counted.size} bytes with sha256 ${counted.sha256}, expected ${size} bytes with ${sha256}`,
    );
  }
}
