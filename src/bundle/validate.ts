import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { crc32, createInflateRaw } from 'node:zlib';
import { BundleValidationError } from './errors.js';
import { entryNameProblem } from './paths.js';
import { bufferZipBytes, readZipStructure } from './zip-structure.js';
import type { ZipBytes, ZipEntryRecord } from './zip-structure.js';

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

const CHUNK_BYTES = 64 * 1024;

export interface ValidateOptions {
  readonly limits?: Partial<ZipLimits>;
  /**
   * Decompress every entry to enforce the limits on real bytes and check CRC-32 (default true). Headers can
   * lie; only turn this off for zips we produced ourselves.
   */
  readonly decompress?: boolean;
  readonly signal?: AbortSignal;
  /** Called with each file's name and the sha256 (hex) of its bytes, e.g. to compare with another reader. */
  readonly onFile?: (name: string, sha256: string) => void;
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
 * Check an incoming zip against what devices accept (CAPGO-PROTOCOL.md §4, §7), against zip bombs, and against
 * zips that readers see differently (docs/adr/0011-zip-rules.md): the central directory and the local headers
 * Android reads must agree, and every name must mean one file on every device.
 * Throws {@link BundleValidationError} with a distinct `reason` on the first problem.
 */
export async function validateZip(
  zip: string | Uint8Array,
  options: ValidateOptions = {},
): Promise<ZipSummary> {
  if (typeof zip !== 'string') return validateBytes(bufferZipBytes(zip), zip.length, options);
  let handle: FileHandle;
  try {
    handle = await open(zip, 'r');
  } catch (err) {
    throw corrupt(err);
  }
  try {
    return await validateBytes(handle, (await handle.stat()).size, options);
  } finally {
    await handle.close();
  }
}

/** The rules of {@link validateZip}, the same for a file and for a zip in memory. */
async function validateBytes(handle: ZipBytes, size: number, options: ValidateOptions): Promise<ZipSummary> {
  const limits: ZipLimits = { ...DEFAULT_LIMITS, ...options.limits };
  const decompress = options.decompress ?? true;
  const { entries } = await readZipStructure(handle, size, limits.maxEntries);
  options.signal?.throwIfAborted();
  const { names, topLevel } = checkNames(entries);
  let declaredBytes = 0;
  let compressedBytes = 0;
  for (const entry of entries) {
    declaredBytes += entry.uncompressedSize;
    compressedBytes += entry.compressedSize;
    if (declaredBytes > limits.maxUncompressedBytes) {
      throw new BundleValidationError(
        'TooLarge',
        `the zip declares more than ${limits.maxUncompressedBytes} uncompressed bytes`,
      );
    }
    checkRatio(entry.uncompressedSize, entry.compressedSize, limits, entry.name);
  }
  if (compressedBytes > 0 && declaredBytes / compressedBytes > limits.maxCompressionRatio) {
    throw new BundleValidationError(
      'CompressionRatio',
      `the zip expands ${Math.round(declaredBytes / compressedBytes)}× (limit ${limits.maxCompressionRatio}×)`,
    );
  }
  const root = bundleRoot(names, topLevel);
  const files = entries.filter((entry) => !entry.name.endsWith('/'));
  let actualBytes = 0;
  if (decompress || options.onFile) {
    for (const entry of files) {
      options.signal?.throwIfAborted();
      const budget = limits.maxUncompressedBytes - actualBytes;
      actualBytes += await readEntry(handle, entry, budget, options.onFile, options.signal);
    }
  }
  return {
    entries: entries.length,
    files: files.length,
    uncompressedBytes: decompress ? actualBytes : declaredBytes,
    compressedBytes,
    root,
  };
}

/**
 * Per-entry rules on names and kinds. Names are compared after dropping `.` and empty segments, ignoring case and
 * Unicode normalisation: `./index.html`, `INDEX.html` and `index.html` are one file on an iOS device, and Android's
 * full-zip install and the delta manifest would otherwise end up with different files.
 */
function checkNames(entries: readonly ZipEntryRecord[]): {
  names: Set<string>;
  topLevel: Map<string, boolean>;
} {
  const names = new Set<string>();
  const topLevel = new Map<string, boolean>(); // name → is a directory
  const seen = new Map<string, string>(); // folded name → the name first seen
  const folders = new Set<string>(); // folded names of every parent folder
  const files: Array<[folded: string, name: string]> = [];
  let nonCanonical: string | undefined;
  for (const entry of entries) {
    const { name } = entry;
    const problem = entryNameProblem(name);
    if (problem) throw problem;
    checkKind(entry);
    const isDirectory = name.endsWith('/');
    const raw = isDirectory ? name.slice(0, -1) : name;
    const segments = raw.split('/').filter((segment) => segment !== '' && segment !== '.');
    const canonical = segments.join('/');
    const folded = fold(canonical);
    const first = seen.get(folded);
    if (first !== undefined) {
      throw new BundleValidationError(
        'DuplicateEntry',
        first === raw
          ? `${raw} appears more than once in the zip`
          : `${first} and ${raw} are the same file on devices (./ and // dropped, case ignored)`,
        name,
      );
    }
    seen.set(folded, raw);
    if (canonical !== raw) nonCanonical ??= name;
    for (let i = 1; i < segments.length; i++) folders.add(fold(segments.slice(0, i).join('/')));
    if (!isDirectory) files.push([folded, name]);
    names.add(raw);
    const top = raw.split('/')[0] ?? raw;
    topLevel.set(top, (topLevel.get(top) ?? false) || isDirectory || raw.includes('/'));
  }
  for (const [folded, name] of files) {
    if (folders.has(folded)) {
      throw new BundleValidationError(
        'PathConflict',
        `${name} is a file but other entries need a folder of that name`,
        name,
      );
    }
  }
  if (nonCanonical !== undefined) {
    throw new BundleValidationError(
      'NonCanonicalName',
      `${nonCanonical} contains "./" or "//"; devices and the delta manifest would name it differently`,
      nonCanonical,
    );
  }
  return { names, topLevel };
}

const fold = (name: string): string => name.normalize('NFC').toLowerCase();

function checkKind(entry: ZipEntryRecord): void {
  const { name } = entry;
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
  if (entry.method !== 0 && entry.method !== 8) {
    throw new BundleValidationError(
      'UnsupportedCompression',
      `${name} uses compression method ${entry.method}; only stored and deflate are supported`,
      name,
    );
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

/**
 * Decompress one entry from its data, counting real bytes (stopping at `budget`) and checking size and CRC-32.
 * Deflate data must end exactly at its compressed size: ZipInputStream stops where the deflate stream ends, so
 * slack after it is where a hidden entry would sit.
 */
async function readEntry(
  handle: ZipBytes,
  entry: ZipEntryRecord,
  budget: number,
  onFile: ValidateOptions['onFile'],
  signal: AbortSignal | undefined,
): Promise<number> {
  const { name } = entry;
  if (entry.method === 0 && entry.compressedSize !== entry.uncompressedSize) {
    throw new BundleValidationError('CorruptZip', `${name} is stored but its two sizes differ`, name);
  }
  const inflater = entry.method === 8 ? createInflateRaw() : undefined;
  const hash = onFile ? createHash('sha256') : undefined;
  let bytes = 0;
  let crc = 0;
  const count = async (source: AsyncIterable<Buffer>): Promise<void> => {
    for await (const chunk of source) {
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
      hash?.update(chunk);
    }
  };
  try {
    const source = compressedChunks(handle, entry.dataOffset, entry.compressedSize);
    await (inflater ? pipeline(source, inflater, count) : count(source));
  } catch (err) {
    throw err instanceof BundleValidationError || (err instanceof Error && err.name === 'AbortError')
      ? err
      : corrupt(err, name);
  }
  if (inflater && inflater.bytesWritten !== entry.compressedSize) {
    throw new BundleValidationError(
      'UnexpectedBytes',
      `the deflate data of ${name} ends ${entry.compressedSize - inflater.bytesWritten} bytes before its declared size (a hidden entry?)`,
      name,
    );
  }
  if (bytes !== entry.uncompressedSize) {
    throw new BundleValidationError(
      'CorruptZip',
      `${name} decompresses to ${bytes} bytes, not the ${entry.uncompressedSize} its headers declare`,
      name,
    );
  }
  if (crc >>> 0 !== entry.crc32) {
    throw new BundleValidationError('CorruptZip', `${name} is damaged (CRC-32 mismatch)`, name);
  }
  onFile?.(name, hash?.digest('hex') ?? '');
  return bytes;
}

async function* compressedChunks(handle: ZipBytes, start: number, length: number): AsyncGenerator<Buffer> {
  for (let done = 0; done < length;) {
    const buffer = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, length - done));
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, start + done);
    if (bytesRead === 0) throw new Error('unexpected end of file');
    done += bytesRead;
    yield buffer.subarray(0, bytesRead);
  }
}

/** Unix mode from the external attributes when the entry was made on Unix (host 3) or OS X (19); 0 otherwise. */
function unixMode(entry: ZipEntryRecord): number {
  const host = entry.versionMadeBy >> 8;
  return host === 3 || host === 19 ? (entry.externalAttributes >>> 16) & 0xffff : 0;
}

function corrupt(err: unknown, name?: string): BundleValidationError {
  const message = err instanceof Error ? err.message : String(err);
  return new BundleValidationError(
    'CorruptZip',
    `the zip cannot be read${name ? ` at ${name}` : ''}: ${message}`,
    name,
  );
}
