import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import type { TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';
import type { Header } from 'tar-stream';
import { BundleValidationError } from './errors.js';
import { openSource, pipelineOptions } from './io.js';
import type { ByteSink, ByteSource } from './io.js';
import { packDirectory } from './pack.js';
import type { PackResult } from './pack.js';
import { entryNameProblem, isSkippedPath } from './paths.js';
import { DEFAULT_LIMITS } from './validate.js';
import type { ZipLimits } from './validate.js';

export interface PackTarballOptions {
  /** Bounds on the tarball's content (entry count and total bytes; the ratio does not apply). */
  readonly limits?: Partial<Pick<ZipLimits, 'maxEntries' | 'maxUncompressedBytes'>>;
  /** Where to unpack temporarily (default: the OS temp dir); removed afterwards on every path. */
  readonly tmpDir?: string;
  readonly signal?: AbortSignal;
  readonly onProgress?: (bytes: number) => void;
}

/**
 * Turn a `.tar` or `.tar.gz` of a web build into the same deterministic zip {@link packDirectory} makes.
 * The archive is unpacked into a private temp dir with the zip entry rules applied (no `..`, absolute paths,
 * links or devices; bounded entry count and bytes). `index.html` may be at the root or in a single top folder
 * (`dist/index.html`, `./www/index.html`); that folder becomes the zip root.
 */
export async function packTarball(
  input: ByteSource,
  output: ByteSink,
  options: PackTarballOptions = {},
): Promise<PackResult> {
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const work = await mkdtemp(join(options.tmpDir ?? tmpdir(), 'liveupdate-tar-'));
  try {
    const root = join(work, 'root');
    await mkdir(root);
    await unpack(openSource(input), root, limits, options.signal);
    return await packDirectory(await webRoot(root), output, {
      maxEntries: limits.maxEntries,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function unpack(
  source: Readable,
  root: string,
  limits: ZipLimits,
  signal: AbortSignal | undefined,
): Promise<void> {
  const extract = tar.extract();
  const seen = new Set<string>();
  let entries = 0;
  let bytes = 0;
  extract.on('entry', (header: Header, entryStream: unknown, next: (err?: Error | null) => void) => {
    const body = entryStream as Readable; // a streamx stream, compatible with node:stream at runtime
    // next(err) destroys the entry stream with err; the failure is reported once, by the extract pipeline.
    body.on('error', () => undefined);
    const fail = (err: Error): void => {
      body.resume();
      next(err);
    };
    entries++;
    if (entries > limits.maxEntries)
      return fail(
        new BundleValidationError('TooManyEntries', `the tarball has more than ${limits.maxEntries} entries`),
      );
    const name = header.name.replace(/^(\.\/)+/, '').replace(/\/+$/, '');
    if (name === '' || name === '.') return drain(body, next);
    const problem = entryNameProblem(name);
    if (problem) return fail(problem);
    if (seen.has(name))
      return fail(
        new BundleValidationError('DuplicateEntry', `${name} appears more than once in the tarball`, name),
      );
    seen.add(name);
    if (header.type === 'symlink' || header.type === 'link') {
      return fail(
        new BundleValidationError('Symlink', `${name} is a link; bundles carry regular files only`, name),
      );
    }
    if (isSkippedPath(name)) return drain(body, next);
    const target = join(root, ...name.split('/'));
    // Directories need no entry of their own: files create their parents, and zips carry files only.
    if (header.type === 'directory') return drain(body, next);
    if (header.type !== 'file' && header.type !== 'contiguous-file') {
      return fail(
        new BundleValidationError(
          'SpecialFile',
          `${name} is a ${header.type ?? 'special'} entry, not a regular file`,
          name,
        ),
      );
    }
    const counter = new Transform({
      transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
        bytes += chunk.length;
        if (bytes > limits.maxUncompressedBytes) {
          return callback(
            new BundleValidationError(
              'TooLarge',
              `the tarball holds more than ${limits.maxUncompressedBytes} bytes`,
              name,
            ),
          );
        }
        callback(null, chunk);
      },
    });
    mkdir(dirname(target), { recursive: true })
      .then(() => pipeline(body, counter, createWriteStream(target, { flags: 'wx' })))
      .then(
        () => next(),
        (err: unknown) => fail(err instanceof Error ? err : new Error(String(err))),
      );
  });
  try {
    const { first, rest } = await peek(source);
    if (first[0] === 0x1f && first[1] === 0x8b) {
      await pipeline(rest, createGunzip(), extract, pipelineOptions(signal));
    } else {
      await pipeline(rest, extract, pipelineOptions(signal));
    }
  } catch (err) {
    if (err instanceof BundleValidationError || (err instanceof Error && err.name === 'AbortError'))
      throw err;
    throw new BundleValidationError(
      'CorruptTarball',
      `the tarball cannot be read: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}

function drain(body: Readable, next: () => void): void {
  body.on('end', () => next());
  body.resume();
}

/** The unpacked root, or its single top folder when index.html sits there. */
async function webRoot(root: string): Promise<string> {
  const entries = await readdir(root, { withFileTypes: true });
  if (entries.some((e) => e.name === 'index.html')) return root;
  const dirs = entries.filter((e) => e.isDirectory());
  if (entries.length === 1 && dirs.length === 1 && dirs[0]) return join(root, dirs[0].name);
  throw new BundleValidationError(
    'MissingIndexHtml',
    'index.html must be at the tarball root or inside a single top-level folder',
  );
}

/** The first chunk (gzip is detected by its magic bytes) and a stream replaying everything. */
async function peek(source: Readable): Promise<{ first: Buffer; rest: Readable }> {
  const iterator = (source as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  const head = await iterator.next();
  if (head.done || head.value.length === 0)
    throw new BundleValidationError('CorruptTarball', 'the tarball is empty');
  const first = head.value;
  const replay = async function* (): AsyncGenerator<Buffer> {
    yield first;
    for (;;) {
      const next = await iterator.next();
      if (next.done) return;
      yield next.value;
    }
  };
  return { first, rest: Readable.from(replay(), { objectMode: false }) };
}
