import { createHash } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import type { Readable, TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import yazl from 'yazl';
import { BundleValidationError } from './errors.js';
import { compareBytes, discardSink, openSink, pipelineOptions, progressReporter } from './io.js';
import type { ByteSink } from './io.js';
import { entryNameProblem, isSkippedPath } from './paths.js';
import { DEFAULT_LIMITS } from './validate.js';

/** DOS timestamps are local time; building the date from local fields makes the bytes the same in every timezone. */
const FIXED_MTIME = new Date(1980, 0, 1, 0, 0, 0);
const FILE_MODE = 0o100644;

export interface PackOptions {
  /** Refuse directories with more files than this (default {@link DEFAULT_LIMITS}.maxEntries). */
  readonly maxEntries?: number;
  readonly signal?: AbortSignal;
  /** Called with the number of zip bytes written so far. */
  readonly onProgress?: (bytes: number) => void;
}

export interface PackResult {
  /** Lowercase hex SHA-256 of the zip: the unencrypted `checksum`. */
  readonly sha256: string;
  /** Zip size in bytes. */
  readonly size: number;
  /** Number of files in the zip. */
  readonly files: number;
}

/**
 * Zip a web build directory the way devices need it (CAPGO-PROTOCOL.md §7): `index.html` at the zip root, file
 * entries only, `/` separators. Deterministic: paths sorted, fixed timestamp and mode, deflate — the same tree
 * gives the same bytes and digest. Symbolic links are refused rather than followed (a link could pull files from
 * outside the build), as are sockets and devices; {@link SKIPPED_SEGMENTS} are left out.
 */
export async function packDirectory(
  dir: string,
  output: ByteSink,
  options: PackOptions = {},
): Promise<PackResult> {
  const files = await listFiles(dir, options.maxEntries ?? DEFAULT_LIMITS.maxEntries);
  if (!files.includes('index.html')) {
    throw new BundleValidationError(
      'MissingIndexHtml',
      `${dir} has no index.html at its root; point at the web build output (e.g. dist/ or www/)`,
    );
  }
  const zip = new yazl.ZipFile();
  for (const file of files) {
    zip.addFile(join(dir, ...file.split('/')), file, {
      mtime: FIXED_MTIME,
      mode: FILE_MODE,
      compress: true,
      forceDosTimestamp: true,
    });
  }
  zip.end();
  const hash = createHash('sha256');
  const progress = progressReporter(options.onProgress);
  const tap = new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      hash.update(chunk);
      progress.add(chunk.length);
      callback(null, chunk);
    },
  });
  try {
    // yazl reports file read errors on the ZipFile, not on its output stream.
    const zipError = new Promise<never>((_, reject) => zip.once('error', reject));
    await Promise.race([
      pipeline(zip.outputStream, tap, openSink(output), pipelineOptions(options.signal)),
      zipError,
    ]);
  } catch (err) {
    (zip.outputStream as Readable).destroy();
    await discardSink(output);
    throw err;
  }
  return { sha256: hash.digest('hex'), size: progress.done(), files: files.length };
}

/** Relative `/`-separated paths of the regular files under `dir`, sorted, skipped names removed. */
export async function listFiles(dir: string, maxEntries: number): Promise<string[]> {
  const files: string[] = [];
  const walk = async (absolute: string, relative: string): Promise<void> => {
    const entries: Dirent[] = await readdir(absolute, { withFileTypes: true });
    for (const entry of entries) {
      const path = relative ? `${relative}/${entry.name}` : entry.name;
      if (isSkippedPath(entry.name)) continue;
      const problem = entryNameProblem(path);
      if (problem) throw problem;
      if (entry.isSymbolicLink()) {
        throw new BundleValidationError(
          'Symlink',
          `${path} is a symbolic link; bundles carry regular files only — copy the target into the build instead`,
          path,
        );
      }
      if (entry.isDirectory()) {
        await walk(join(absolute, entry.name), path);
      } else if (entry.isFile()) {
        files.push(path);
        if (files.length > maxEntries) {
          throw new BundleValidationError('TooManyEntries', `${dir} has more than ${maxEntries} files`);
        }
      } else {
        throw new BundleValidationError('SpecialFile', `${path} is not a regular file or directory`, path);
      }
    }
  };
  await walk(dir, '');
  return files.sort(compareBytes);
}
