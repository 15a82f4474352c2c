import { createCipheriv, createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { promisify } from 'node:util';
import { brotliCompress } from 'node:zlib';
import yauzl from 'yauzl';
import { ManifestError } from './errors.js';
import { compareBytes, exists } from './io.js';
import type { SigningKey } from './keys.js';
import { listFiles } from './pack.js';
import { isSkippedPath } from './paths.js';
import { AES_ALGORITHM, openSession, signDigest } from './session.js';
import { DEFAULT_LIMITS, validateZip } from './validate.js';
import { nextEntry, openEntry } from './zip-read.js';

const brotli = promisify(brotliCompress);

/** Capgo's thresholds: Brotli only for files of at least 8 KiB, and only when it saves more than 10 bytes. */
export const BROTLI_MIN_BYTES = 8192;
export const BROTLI_MIN_SAVING = 10;
/** `@capgo/cli` refuses delta uploads with more files than this. */
export const MAX_MANIFEST_FILES = 10_000;
export const MANIFEST_FILE = 'manifest.json';

/** One row of the `manifest` array of an update answer, minus `download_url`, plus where its body is stored. */
export interface DeltaManifestEntry {
  /** Path relative to the bundle root; ends with `.br` when the body is Brotli-compressed. */
  readonly file_name: string;
  /** SHA-256 hex of the final file content; signed (V3 hex) when the bundle is encrypted. */
  readonly file_hash: string;
  /** Content-addressed object name: SHA-256 hex of the stored body (compressed, then encrypted). */
  readonly objectName: string;
  /** Stored body size in bytes. */
  readonly size: number;
}

export interface DeltaManifest {
  readonly entries: DeltaManifestEntry[];
  /** Files compressed with Brotli. */
  readonly brotliFiles: number;
  /** Sum of stored body sizes. */
  readonly storedBytes: number;
}

export interface DeltaManifestOptions {
  /** The web build: a directory, or a bundle zip (validated first; a single top folder is stripped). */
  readonly source: { readonly dir: string } | { readonly zip: string };
  /** Objects are written here as `<objectName>`, plus {@link MANIFEST_FILE}. */
  readonly outDir: string;
  /** With a key, hashes are signed and bodies encrypted with the bundle's session key (both or neither). */
  readonly key?: SigningKey;
  /** The `session_key` of the bundle these files belong to: devices decrypt every file with its AES key and IV. */
  readonly sessionKey?: string;
  /** Refuse more files than this (default and maximum: {@link MAX_MANIFEST_FILES}, Capgo's limit). */
  readonly maxFiles?: number;
  readonly signal?: AbortSignal;
}

/**
 * Build the delta ("partial") manifest of a bundle as `@capgo/cli bundle upload --delta` does
 * (CAPGO-PROTOCOL.md §5): skip {@link SKIPPED_SEGMENTS} and empty files, refuse names with spaces and more than
 * {@link MAX_MANIFEST_FILES} files, Brotli where it pays, AES-128-CBC with the bundle's key and IV, signed hashes.
 * A file whose own name ends in `.br` is always compressed (stored as `x.br.br`), because devices strip one `.br`
 * and Brotli-decode the body: sent raw, it would be decoded by mistake.
 */
export async function buildDeltaManifest(options: DeltaManifestOptions): Promise<DeltaManifest> {
  if (!!options.key !== !!options.sessionKey) {
    throw new TypeError('an encrypted delta manifest needs both the signing key and the bundle session key');
  }
  const aes =
    options.key && options.sessionKey ? openSession(options.sessionKey, options.key.privateKey) : undefined;
  const maxFiles = Math.min(options.maxFiles ?? MAX_MANIFEST_FILES, MAX_MANIFEST_FILES);
  await mkdir(options.outDir, { recursive: true });
  const entries: DeltaManifestEntry[] = [];
  const names = new Set<string>();
  let brotliFiles = 0;
  let storedBytes = 0;
  await forEachFile(options.source, async (name, content) => {
    options.signal?.throwIfAborted();
    if (name.includes(' ')) {
      throw new ManifestError(
        'SpaceInFileName',
        `${name} has a space in its name; Capgo devices cannot fetch it as a delta file — rename it`,
      );
    }
    if (entries.length >= maxFiles) {
      throw new ManifestError(
        'TooManyFiles',
        `more than ${maxFiles} files; ship this bundle without a delta manifest`,
      );
    }
    const digest = createHash('sha256').update(content).digest();
    let body = content;
    let fileName = name;
    if (content.length >= BROTLI_MIN_BYTES || name.endsWith('.br')) {
      const compressed = await brotli(content);
      if (name.endsWith('.br') || compressed.length < content.length - BROTLI_MIN_SAVING) {
        body = compressed;
        fileName = `${name}.br`;
        brotliFiles++;
      }
    }
    if (names.has(name)) throw new ManifestError('DuplicateFileName', `${name} appears twice`);
    names.add(name);
    if (aes) {
      const cipher = createCipheriv(AES_ALGORITHM, aes.aesKey, aes.iv);
      body = Buffer.concat([cipher.update(body), cipher.final()]);
    }
    const objectName = createHash('sha256').update(body).digest('hex');
    const objectPath = join(options.outDir, objectName);
    if (!(await exists(objectPath))) await writeFile(objectPath, body);
    storedBytes += body.length;
    entries.push({
      file_name: fileName,
      file_hash: options.key ? signDigest(options.key, digest).checksum : digest.toString('hex'),
      objectName,
      size: body.length,
    });
  });
  if (entries.length === 0) throw new ManifestError('NoFiles', 'the bundle has no non-empty files');
  entries.sort((a, b) => compareBytes(a.file_name, b.file_name));
  const manifest: DeltaManifest = { entries, brotliFiles, storedBytes };
  await writeFile(join(options.outDir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

type FileVisitor = (name: string, content: Buffer) => Promise<void>;

async function forEachFile(source: DeltaManifestOptions['source'], visit: FileVisitor): Promise<void> {
  if ('dir' in source) {
    for (const name of await listFiles(source.dir, DEFAULT_LIMITS.maxEntries)) {
      const content = await readFile(join(source.dir, ...name.split('/')));
      if (content.length > 0) await visit(name, content);
    }
    return;
  }
  const { root } = await validateZip(source.zip);
  const zip = await yauzl.openPromise(source.zip, { lazyEntries: true, autoClose: false });
  try {
    for (;;) {
      const entry = await nextEntry(zip);
      if (!entry) break;
      if (entry.fileName.endsWith('/') || !entry.fileName.startsWith(root)) continue;
      const name = entry.fileName.slice(root.length);
      if (isSkippedPath(name) || entry.uncompressedSize === 0) continue;
      await visit(name, await buffer(await openEntry(zip, entry)));
    }
  } finally {
    zip.close();
  }
}
