import { createReadStream, createWriteStream } from 'node:fs';
import { access, open, rm } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';

/** A bundle's bytes: a file path, or a stream (HTTP body, S3 object). */
export type ByteSource = string | Readable;
/** Where bytes go: a file path (written, removed again on failure), or a stream the caller owns. */
export type ByteSink = string | Writable;

/**
 * 64 KiB chunks. Measured on Node 24 encrypting 256 MiB: every chunk of ciphertext is a fresh buffer, and garbage
 * piles up between collections in proportion to the chunk size (1 MiB chunks: ~70 MiB RSS growth; 64 KiB: ~16 MiB)
 * while throughput stays the same.
 */
export const IO_CHUNK_BYTES = 64 * 1024;

export function openSource(source: ByteSource): Readable {
  return typeof source === 'string' ? createReadStream(source, { highWaterMark: IO_CHUNK_BYTES }) : source;
}

export function openSink(sink: ByteSink): Writable {
  return typeof sink === 'string' ? createWriteStream(sink, { highWaterMark: IO_CHUNK_BYTES }) : sink;
}

/** After a failed write, drop the partial file we created (never a caller's stream). */
export async function discardSink(sink: ByteSink | undefined): Promise<void> {
  if (typeof sink === 'string') await rm(sink, { force: true });
}

/**
 * The bytes of a source, chunk by chunk. A file is read into two alternating, reused buffers with the next read
 * already in flight, so a chunk is only valid until the consumer asks for the next one (copy it to keep it).
 */
export async function* readChunks(
  source: ByteSource,
  signal?: AbortSignal,
): AsyncGenerator<Buffer, void, undefined> {
  if (typeof source !== 'string') {
    for await (const chunk of source as AsyncIterable<Buffer | string>) {
      signal?.throwIfAborted();
      yield typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    }
    return;
  }
  const file = await open(source, 'r');
  try {
    const buffers = [Buffer.allocUnsafeSlow(IO_CHUNK_BYTES), Buffer.allocUnsafeSlow(IO_CHUNK_BYTES)] as const;
    let pending = file.read(buffers[0], 0, IO_CHUNK_BYTES, null);
    for (let i = 1; ; i++) {
      const { bytesRead, buffer } = await pending;
      if (bytesRead === 0) return;
      signal?.throwIfAborted();
      pending = file.read(buffers[i % 2]!, 0, IO_CHUNK_BYTES, null);
      yield buffer.subarray(0, bytesRead);
    }
  } finally {
    await file.close();
  }
}

/** Writes chunks in order with at most one write in flight; chunks must not be reused by the caller. */
export interface ChunkWriter {
  write(chunk: Buffer): Promise<void>;
  /**
   * True when a chunk is fully written once the next `write` resolves, so the caller may free it then (a file);
   * a caller's stream may still hold it in its buffer.
   */
  readonly settlesEachWrite: boolean;
  /** Flush and close (ends a caller's stream too). */
  close(): Promise<void>;
  /** Stop after a failure: a file we created is removed, a caller's stream is destroyed with the error. */
  abort(err: unknown): Promise<void>;
}

export async function openWriter(sink: ByteSink): Promise<ChunkWriter> {
  if (typeof sink === 'string') return fileWriter(sink, await open(sink, 'w'));
  return streamWriter(sink);
}

function fileWriter(path: string, file: FileHandle): ChunkWriter {
  let inflight: Promise<void> = Promise.resolve();
  const writeAll = async (chunk: Buffer): Promise<void> => {
    for (let offset = 0; offset < chunk.length;) {
      const { bytesWritten } = await file.write(chunk, offset, chunk.length - offset, null);
      offset += bytesWritten;
    }
  };
  let closed = false;
  return {
    settlesEachWrite: true,
    async write(chunk) {
      await inflight;
      inflight = writeAll(chunk);
    },
    async close() {
      await inflight;
      closed = true;
      await file.close();
    },
    async abort() {
      await inflight.catch(() => undefined);
      if (!closed) await file.close().catch(() => undefined);
      await rm(path, { force: true });
    },
  };
}

function streamWriter(stream: Writable): ChunkWriter {
  let failure: Error | undefined;
  stream.on('error', (err) => (failure ??= err));
  const waitFor = (event: 'drain' | 'finish'): Promise<void> =>
    new Promise((resolve, reject) => {
      const done = (err?: Error): void => {
        stream.off(event, onEvent).off('error', done).off('close', onClose);
        if (err) reject(err);
        else resolve();
      };
      const onEvent = (): void => done();
      const onClose = (): void =>
        done(
          failure ??
            (event === 'finish' && stream.writableFinished
              ? undefined
              : new Error('output stream closed early')),
        );
      stream.on(event, onEvent).on('error', done).on('close', onClose);
    });
  return {
    settlesEachWrite: false,
    async write(chunk) {
      if (failure) throw failure;
      if (!stream.write(chunk)) await waitFor('drain');
    },
    async close() {
      if (failure) throw failure;
      const finished = waitFor('finish');
      stream.end();
      await finished;
    },
    abort(err) {
      stream.destroy(err instanceof Error ? err : new Error(String(err)));
      return Promise.resolve();
    },
  };
}

/** Calls `report` with the running byte count at most every `everyBytes`, plus once at the end. */
export function progressReporter(
  report: ((bytes: number) => void) | undefined,
  everyBytes = 16 * 1024 * 1024,
) {
  let total = 0;
  let last = 0;
  return {
    add(bytes: number): void {
      total += bytes;
      if (report && total - last >= everyBytes) {
        last = total;
        report(total);
      }
    },
    done(): number {
      if (report && total !== last) report(total);
      return total;
    },
  };
}

export function pipelineOptions(signal: AbortSignal | undefined): { signal?: AbortSignal } {
  return signal ? { signal } : {};
}

/** Byte-wise (UTF-8) order, independent of locale: the order of entries in zips and manifests. */
export function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

export async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
