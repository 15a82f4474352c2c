/**
 * Encrypting a large file on three threads, like `openssl enc | openssl dgst` on two processes: AES-128-CBC (serial)
 * on one worker, SHA-256 of the plain bytes on another, and this thread only moving bytes (reads into a ring of
 * shared memory, writes of the ciphertext the AES worker hands back). Both workers read the same ring slots, so the
 * plain bytes are read once and never copied; the ciphertext buffers are transferred, not copied. Bounded memory:
 * the ring (16 slots of 256 KiB) plus at most {@link MAX_UNWRITTEN} ciphertext chunks not yet written.
 *
 * Starting a worker costs tens of milliseconds, so {@link encryptBundle} uses this only for files of
 * {@link OFFTHREAD_HASH_MIN_BYTES} and more; small bundles and streams are encrypted inline.
 */
import { open } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import type { ChunkWriter } from './io.js';
import { AES_ALGORITHM } from './session.js';

/** From this plain size on, AES and the hash run on their own threads. */
export const OFFTHREAD_HASH_MIN_BYTES = 32 * 1024 * 1024;

const SLOTS = 16;
const SLOT_BYTES = 256 * 1024;
/** Ciphertext chunks the AES worker may be ahead of the writes (bounds memory when the output is slow). */
const MAX_UNWRITTEN = 16;
/**
 * Int32 control words: slots published by the reader, hashed, encrypted, ciphertext chunks written; then one length
 * per slot (-1: end of input).
 */
const PUBLISHED = 0;
const HASHED = 1;
const ENCRYPTED = 2;
const WRITTEN = 3;
const LENGTHS = 4;
const CONTROL_BYTES = (LENGTHS + SLOTS) * 4;
/** How often a waiting reader looks whether a worker died without a message (milliseconds). */
const WAIT_SLICE_MS = 1000;

/** Releases an ArrayBuffer's memory at once (ES2024 `ArrayBuffer.prototype.transfer`; the project targets ES2023). */
function detach(buffer: ArrayBuffer): void {
  (buffer as ArrayBuffer & { transfer(length: number): ArrayBuffer }).transfer(0);
}

/** `Atomics.waitAsync` (Node ≥ 16; typed in TypeScript's ES2024 lib, the project compiles against ES2023). */
const waitAsync = (
  Atomics as unknown as {
    waitAsync(
      this: void,
      array: Int32Array,
      index: number,
      value: number,
      timeoutMs: number,
    ): { async: false; value: string } | { async: true; value: Promise<string> };
  }
).waitAsync;

// Plain JavaScript evaluated by the workers (no module resolution: runs the same under tsx, jest and the image).
// The `sha256` worker posts the digest at the end; the `aes` worker posts every ciphertext chunk (its buffer
// transferred), the last one from \`final()\`, then 'end'.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createCipheriv, createHash } = require('node:crypto');
const { sab, slots, slotBytes, controlBytes, role, algorithm, key, iv, maxUnwritten } = workerData;
const control = new Int32Array(sab, 0, controlBytes / 4);
const data = new Uint8Array(sab, controlBytes);
const aes = role === 'aes';
const done = aes ? ${ENCRYPTED} : ${HASHED};
const engine = aes ? createCipheriv(algorithm, key, iv) : createHash('sha256');
let posted = 0;
const post = (chunk) => {
  const own = chunk.byteOffset === 0 && chunk.buffer.byteLength === chunk.length;
  parentPort.postMessage(chunk, own ? [chunk.buffer] : []);
  posted++;
};
// Slot n is free again for the reader (as far as this worker is concerned).
const release = (n) => {
  Atomics.store(control, done, n + 1);
  Atomics.notify(control, done);
};
for (let n = 0; ; n++) {
  while (Atomics.load(control, ${PUBLISHED}) === n) Atomics.wait(control, ${PUBLISHED}, n);
  const slot = n % slots;
  const length = Atomics.load(control, ${LENGTHS} + slot);
  if (length < 0) break;
  const bytes = data.subarray(slot * slotBytes, slot * slotBytes + length);
  if (aes) {
    // Counted in chunks posted, not slots: a slot shorter than a block posts nothing.
    for (let written; posted - (written = Atomics.load(control, ${WRITTEN})) >= maxUnwritten; )
      Atomics.wait(control, ${WRITTEN}, written);
    const out = engine.update(bytes);
    release(n);
    if (out.length > 0) post(out);
  } else {
    engine.update(bytes);
    release(n);
  }
}
if (aes) {
  post(engine.final());
  parentPort.postMessage('end');
} else {
  parentPort.postMessage(engine.digest());
}
`;

let live = 0;
/** Workers started by this module and not yet exited (for tests: none may outlive a failed encryption). */
export function liveWorkers(): number {
  return live;
}

interface RingWorker {
  /** Terminates the worker (idempotent). */
  stop(): Promise<void>;
}

function startWorker(
  workerData: Record<string, unknown>,
  onMessage: (message: unknown) => void,
  onFailure: (err: Error) => void,
): RingWorker {
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData });
  live++;
  let exited = false;
  let finished = false;
  worker.on('message', (message: unknown) => {
    if (message === 'end' || (workerData.role === 'sha256' && message instanceof Uint8Array)) finished = true;
    onMessage(message);
  });
  worker.once('error', onFailure);
  worker.once('exit', (code) => {
    exited = true;
    live--;
    if (!finished) onFailure(new Error(`${String(workerData.role)} worker exited with ${code}`));
  });
  return {
    async stop() {
      finished = true;
      if (!exited) await worker.terminate();
    },
  };
}

export interface OffThreadEncryptOptions {
  /** The plain file. */
  readonly path: string;
  /** Where the ciphertext goes, in order; the caller closes or aborts it. */
  readonly writer: ChunkWriter;
  readonly aesKey: Buffer;
  readonly iv: Buffer;
  readonly signal?: AbortSignal | undefined;
  /** Called with the size of every chunk read. */
  readonly onRead?: (bytes: number) => void;
  /** Called with every ciphertext chunk, in order, before it is written (valid only during the call). */
  readonly onCiphertext?: (chunk: Uint8Array) => void;
}

export interface OffThreadEncryptResult {
  /** SHA-256 of the plain bytes. */
  readonly digest: Buffer;
  readonly encryptedSize: number;
}

/**
 * AES-128-CBC/PKCS#7 of a file, with the SHA-256 of its plain bytes, on two workers. The same bytes as
 * `createCipheriv` over the whole file. On any failure (read, write, a worker, `signal`) both workers are terminated
 * before this rejects.
 */
export async function encryptFileOffThread(
  options: OffThreadEncryptOptions,
): Promise<OffThreadEncryptResult> {
  const { signal } = options;
  signal?.throwIfAborted();
  const sab = new SharedArrayBuffer(CONTROL_BYTES + SLOTS * SLOT_BYTES);
  const control = new Int32Array(sab, 0, CONTROL_BYTES / 4);
  const data = new Uint8Array(sab, CONTROL_BYTES);
  const ring = { sab, slots: SLOTS, slotBytes: SLOT_BYTES, controlBytes: CONTROL_BYTES };

  let failure: Error | undefined;
  let wakeWriter: (() => void) | undefined;
  let failed: (err: Error) => void = () => undefined;
  const failedPromise = new Promise<never>((_, reject) => (failed = reject));
  failedPromise.catch(() => undefined);
  const fail = (err: unknown): void => {
    failure ??= err instanceof Error ? err : new Error(String(err));
    failed(failure);
    // Wake whatever waits: the reader (on the consumers' counters) and the writer.
    Atomics.notify(control, HASHED);
    Atomics.notify(control, ENCRYPTED);
    wakeWriter?.();
  };
  const onAbort = (): void => fail(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });

  let resolveDigest: (digest: Buffer) => void = () => undefined;
  const digest = new Promise<Buffer>((resolve) => (resolveDigest = resolve));
  const chunks: Uint8Array[] = [];
  let ended = false;
  const hasher = startWorker(
    { ...ring, role: 'sha256' },
    (message) => resolveDigest(Buffer.from(message as Uint8Array)),
    fail,
  );
  const encrypter = startWorker(
    {
      ...ring,
      role: 'aes',
      algorithm: AES_ALGORITHM,
      key: options.aesKey,
      iv: options.iv,
      maxUnwritten: MAX_UNWRITTEN,
    },
    (message) => {
      if (message === 'end') ended = true;
      else chunks.push(message as Uint8Array);
      wakeWriter?.();
    },
    fail,
  );

  let published = 0;
  /** Waits until slot `published` may be filled: both workers are done with what it held a ring ago. */
  const slotFree = async (): Promise<void> => {
    for (;;) {
      if (failure) throw failure;
      const hashed = Atomics.load(control, HASHED);
      const encrypted = Atomics.load(control, ENCRYPTED);
      if (published - Math.min(hashed, encrypted) < SLOTS) return;
      const w =
        hashed <= encrypted
          ? waitAsync(control, HASHED, hashed, WAIT_SLICE_MS)
          : waitAsync(control, ENCRYPTED, encrypted, WAIT_SLICE_MS);
      if (w.async) await w.value;
    }
  };
  const publish = (length: number): void => {
    Atomics.store(control, LENGTHS + (published % SLOTS), length);
    published++;
    Atomics.store(control, PUBLISHED, published);
    Atomics.notify(control, PUBLISHED);
  };

  const slotOffset = (n: number): number => (n % SLOTS) * SLOT_BYTES;
  const read = async (): Promise<void> => {
    const file = await open(options.path, 'r');
    try {
      for (let position = 0; ;) {
        await slotFree();
        const { bytesRead } = await file.read(data, slotOffset(published), SLOT_BYTES, position);
        if (failure) throw failure;
        if (bytesRead === 0) break;
        position += bytesRead;
        options.onRead?.(bytesRead);
        publish(bytesRead);
      }
      publish(-1);
    } finally {
      await file.close();
    }
  };

  let encryptedSize = 0;
  const write = async (): Promise<void> => {
    let previous: ArrayBuffer | undefined;
    for (;;) {
      if (failure) throw failure;
      const chunk = chunks.shift();
      if (chunk) {
        encryptedSize += chunk.length;
        options.onCiphertext?.(chunk);
        await options.writer.write(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
        // The previous chunk is written: free its memory now rather than at the next GC, which V8 schedules only
        // after tens of MiB of such buffers (RSS grew by ~65 MiB without this).
        if (previous && options.writer.settlesEachWrite) detach(previous);
        previous = chunk.buffer as ArrayBuffer;
        Atomics.add(control, WRITTEN, 1);
        Atomics.notify(control, WRITTEN);
      } else if (ended) {
        return;
      } else {
        await new Promise<void>((resolve) => (wakeWriter = resolve));
        wakeWriter = undefined;
      }
    }
  };

  try {
    // Each loop stops the other through `fail`, so both have finished when this returns.
    await Promise.all([read().catch(fail), write().catch(fail)]);
    if (failure) throw failure;
    return { digest: await Promise.race([digest, failedPromise]), encryptedSize };
  } finally {
    signal?.removeEventListener('abort', onAbort);
    await Promise.all([hasher.stop(), encrypter.stop()]);
  }
}
