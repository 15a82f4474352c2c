import { crc32 } from 'node:zlib';
import type { Readable } from 'node:stream';
import yauzl from 'yauzl';
import type { Entry, ZipFile } from 'yauzl';
import { BundleValidationError } from './errors.js';
import { entryNameProblem } from './paths.js';
import { nextEntry, openEntry } from './zip-read.js';

export interface ZipLimits {
  /** Most entries (files and directories) a bundle may have. */
  readonly maxEntries: number;
  /** Most bytes all entries may decompress to. */
  readonly maxUncompressedBytes: number;
  /**
   * Highest uncompressed/compressed ratio, checked for the whole archive and for each entry of at least
   * {@link RATIO_MIN_ENTRY_BYTES} (small, very repetitive files legitimately compress far better).
   */
  readonly maxCompressionRatio: number;
}

export const DEFAULT_LIMITS: ZipLimits = {
  maxEntries: 20_000,
  maxUncompressedBytes: 1024 * 1024 * 1024,
  maxCompressionRatio: 200,
};

export const RATIO_MIN_ENTRY_BYTES = 1024 * 1024;

export interface ValidateOptions {
  readonly limits?: Partial<ZipLimits>;
  /**
   * Decompress every entry to enforce the limits on real bytes and check CRC-32 (default true). Headers can
   * lie; only turn this off for zips we produced ourselves.
   */
  readonly decompress?: boolean;
  readonly signal?: AbortSignal;
}

export interface ZipSummary {
  /** Entries in the central directory (files and directories). */
  readonly entries: number;
  /** File entries. */
  readonly files: number;
  readonly uncompressedBytes: number;
  readonly compressedBytes: number;
  /** `''` when index.html is at the zip root, else the single top folder holding it, e.g. `'dist/'`. */
  readonly root: string;
}

const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;

/**
 * Check an incoming zip against what devices accept (CAPGO-PROTOCOL.md §4, §7) and against zip bombs.
 * Throws {@link BundleValidationError} with a distinct `reason` on the first problem.
 */
export async function validateZip(path: string, options: ValidateOptions = {}): Promise<ZipSummary> {
  const limits: ZipLimits = { ...DEFAULT_LIMITS, ...options.limits };
  const decompress = options.decompress ?? true;
  let zip: ZipFile;
  try {
    zip = await yauzl.openPromise(path, {
      lazyEntries: true,
      decodeStrings: false,
      validateEntrySizes: true,
      autoClose: false,
    });
  } catch (err) {
    throw corrupt(err);
  }
  try {
    if (zip.entryCount > limits.maxEntries) {
      throw new BundleValidationError(
        'TooManyEntries',
        `the zip has ${zip.entryCount} entries, more than the limit of ${limits.maxEntries}`,
      );
    }
    const names = new Set<string>();
    const fileNames: string[] = [];
    const topLevel = new Map<string, boolean>(); // name → is a directory
    let declaredBytes = 0;
    let actualBytes = 0;
    let compressedBytes = 0;
    let entries = 0;
    for (;;) {
      options.signal?.throwIfAborted();
      const entry = await nextEntry(zip).catch((err: unknown) => {
        throw corrupt(err);
      });
      if (!entry) break;
      entries++;
      if (entries > limits.maxEntries) {
        throw new BundleValidationError(
          'TooManyEntries',
          `the zip has more than ${limits.maxEntries} entries`,
        );
      }
      const name = entryName(entry);
      const problem = entryNameProblem(name);
      if (problem) throw problem;
      const isDirectory = name.endsWith('/');
      const mode = unixMode(entry);
      if ((mode & S_IFMT) === S_IFLNK) {
        throw new BundleValidationError(
          'Symlink',
          `${name} is a symbolic link; devices expect regular files only`,
          name,
        );
      }
      if (mode !== 0 && (mode & S_IFMT) !== 0 && (mode & S_IFMT) !== S_IFREG && (mode & S_IFMT) !== S_IFDIR) {
        throw new BundleValidationError('SpecialFile', `${name} is not a regular file or directory`, name);
      }
      if ((entry.generalPurposeBitFlag & 0x1) !== 0) {
        throw new BundleValidationError(
          'EncryptedEntry',
          `${name} is password-protected; devices cannot read encrypted zip entries`,
          name,
        );
      }
      if (entry.compressionMethod !== 0 && entry.compressionMethod !== 8) {
        throw new BundleValidationError(
          'UnsupportedCompression',
          `${name} uses compression method ${entry.compressionMethod}; only stored and deflate are supported`,
          name,
        );
      }
      const key = isDirectory ? name.slice(0, -1) : name;
      if (names.has(key))
        throw new BundleValidationError('DuplicateEntry', `${key} appears more than once in the zip`, name);
      names.add(key);
      const top = key.split('/')[0] ?? key;
      topLevel.set(top, (topLevel.get(top) ?? false) || isDirectory || key.includes('/'));

      declaredBytes += entry.uncompressedSize;
      compressedBytes += entry.compressedSize;
      if (declaredBytes > limits.maxUncompressedBytes) {
        throw new BundleValidationError(
          'TooLarge',
          `the zip declares more than ${limits.maxUncompressedBytes} uncompressed bytes`,
        );
      }
      checkRatio(entry.uncompressedSize, entry.compressedSize, limits, name);
      if (!isDirectory) {
        fileNames.push(name);
        if (decompress) {
          actualBytes += await readEntry(
            zip,
            entry,
            name,
            limits.maxUncompressedBytes - actualBytes,
            options.signal,
          );
        }
      }
    }
    if (compressedBytes > 0 && declaredBytes / compressedBytes > limits.maxCompressionRatio) {
      throw new BundleValidationError(
        'CompressionRatio',
        `the zip expands ${Math.round(declaredBytes / compressedBytes)}× (limit ${limits.maxCompressionRatio}×)`,
      );
    }
    return {
      entries,
      files: fileNames.length,
      uncompressedBytes: decompress ? actualBytes : declaredBytes,
      compressedBytes,
      root: bundleRoot(names, topLevel),
    };
  } finally {
    zip.close();
  }
}

/** Where index.html sits: at the root, or in the single top-level folder; anything else breaks some device. */
function bundleRoot(names: Set<string>, topLevel: Map<string, boolean>): string {
  if (names.has('index.html')) return '';
  const folders = [...topLevel].filter(([, isDir]) => isDir).map(([name]) => name);
  const withIndex = folders.filter((folder) => names.has(`${folder}/index.html`));
  if (withIndex.length !== 1 || !withIndex[0]) {
    throw new BundleValidationError(
      'MissingIndexHtml',
      'index.html must be at the zip root or inside a single top-level folder',
    );
  }
  const folder = withIndex[0];
  for (const other of topLevel.keys()) {
    if (other === folder) continue;
    if (other.startsWith('__MACOSX')) {
      throw new BundleValidationError(
        'MacosxBesideTopFolder',
        `__MACOSX next to the top folder ${folder}/ breaks iOS; zip the folder without Finder metadata (e.g. \`liveupdate bundle pack\`)`,
        other,
      );
    }
    if (other.startsWith('.')) {
      throw new BundleValidationError(
        'DotEntryBesideTopFolder',
        `${other} next to the top folder ${folder}/ breaks iOS (it no longer sees a single top folder)`,
        other,
      );
    }
    throw new BundleValidationError(
      'MissingIndexHtml',
      `index.html is inside ${folder}/ but ${other} sits beside it; devices need a single top-level folder`,
      other,
    );
  }
  return `${folder}/`;
}

function checkRatio(uncompressed: number, compressed: number, limits: ZipLimits, name: string): void {
  if (uncompressed < RATIO_MIN_ENTRY_BYTES) return;
  if (uncompressed / Math.max(compressed, 1) > limits.maxCompressionRatio) {
    throw new BundleValidationError(
      'CompressionRatio',
      `${name} expands ${Math.round(uncompressed / Math.max(compressed, 1))}× (limit ${limits.maxCompressionRatio}×)`,
      name,
    );
  }
}

/** Decompress one entry, counting real bytes (stopping at `budget`) and checking its CRC-32. */
async function readEntry(
  zip: ZipFile,
  entry: Entry,
  name: string,
  budget: number,
  signal: AbortSignal | undefined,
): Promise<number> {
  let stream: Readable;
  try {
    stream = await openEntry(zip, entry);
  } catch (err) {
    throw corrupt(err, name);
  }
  let bytes = 0;
  let crc = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      signal?.throwIfAborted();
      bytes += chunk.length;
      if (bytes > budget) {
        throw new BundleValidationError(
          'TooLarge',
          `entries decompress to more than the limit of uncompressed bytes (at ${name})`,
          name,
        );
      }
      crc = crc32(chunk, crc);
    }
  } catch (err) {
    stream.destroy();
    throw err instanceof BundleValidationError || (err instanceof Error && err.name === 'AbortError')
      ? err
      : corrupt(err, name);
  }
  if (crc !== entry.crc32) {
    throw new BundleValidationError('CorruptZip', `${name} is damaged (CRC-32 mismatch)`, name);
  }
  return bytes;
}

/** Decode the name ourselves (UTF-8 flag, Info-ZIP unicode path, else CP437) so backslashes stay visible. */
function entryName(entry: Entry): string {
  const raw = entry.fileName as unknown as Buffer;
  return yauzl.getFileNameLowLevel(entry.generalPurposeBitFlag, raw, entry.extraFields, true);
}

/** Unix mode from the external attributes when the entry was made on Unix (host 3) or OS X (19); 0 otherwise. */
function unixMode(entry: Entry): number {
  const host = entry.versionMadeBy >> 8;
  return host === 3 || host === 19 ? (entry.externalFileAttributes >>> 16) & 0xffff : 0;
}

function corrupt(err: unknown, name?: string): BundleValidationError {
  const message = err instanceof Error ? err.message : String(err);
  return new BundleValidationError(
    'CorruptZip',
    `the zip cannot be read${name ? ` at ${name}` : ''}: ${message}`,
    name,
  );
}
