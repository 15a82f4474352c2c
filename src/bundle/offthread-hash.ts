/**
 * Encrypting a large file on two workers, like `openssl enc | openssl dgst` on two processes: one worker reads the
 * file into a ring of shared memory and hashes it (SHA-256), the other encrypts the same slots (AES-128-CBC, serial)
 * and hands each ciphertext buffer back, transferred, for this thread to write. The plain bytes are read once and
 * never copied, and this thread only writes. Bounded memory: the ring (16 slots of 256 KiB) plus at most
 * {@link MAX_UNWRITTEN} ciphertext chunks not yet written.
 *
 * Starting the two workers costs 50–100 ms (a third of openssl's time for 256 MiB), so they are kept: a pair is
 * started on the first large file, reused by the next encryption, terminated after {@link configureEncryptionWorkers}'
 * idle period, and replaced whenever an encryption using it fails or is aborted. Concurrent encryptions each get a
 * pair of their own. Idle workers are `unref()`'d: they never keep the process alive. {@link encryptBundle} still
 * encrypts small bundles (under {@link OFFTHREAD_HASH_MIN_BYTES}) and streams inline.
 */
import { Worker } from 'node:worker_threads';
import type { ChunkWriter } from './io.js';
import { AES_ALGORITHM } from './session.js';

/** From this plain size on, AES and the hash run on their own threads. */
export const OFFTHREAD_HASH_MIN_BYTES = 32 * 1024 * 1024;

const SLOTS = 16;
const SLOT_BYTES = 256 * 1024;
/** Ciphertext chunks the AES worker may be ahead of the writes (bounds memory when the output is slow). */
const MAX_UNWRITTEN = 16;
/** The reader reports progress every this many bytes. */
const PROGRESS_BYTES = 16 * 1024 * 1024;
/**
 * Int32 control words: slots published by the reader, slots encrypted, ciphertext chunks written; then one length
 * per slot (-1: end of input).
 */
const PUBLISHED = 0;
const ENCRYPTED = 1;
const WRITTEN = 2;
const LENGTHS = 3;
const CONTROL_BYTES = (LENGTHS + SLOTS) * 4;

/** Releases an ArrayBuffer's memory at once (ES2024 `ArrayBuffer.prototype.transfer`; the project targets ES2023). */
function detach(buffer: ArrayBuffer): void {
  (buffer as ArrayBuffer & { transfer(length: number): ArrayBuffer }).transfer(0);
}

// Plain JavaScript evaluated by the workers (no module resolution: runs the same under tsx, jest and the image).
// Each message is one job; the main thread zeroes the control words before it posts one. The `read` worker fills
// slot after slot (once the AES worker released what it held a ring ago), publishes it, hashes it, posts { read }
// every PROGRESS_BYTES and { read, digest } at the end. The `aes` worker posts every ciphertext chunk (its buffer
// transferred), the last one from \`final()\`, then 'end'.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createCipheriv, createHash } = require('node:crypto');
const { closeSync, openSync, readSync } = require('node:fs');
const { sab, slots, slotBytes, controlBytes, role } = workerData;
const control = new Int32Array(sab, 0, controlBytes / 4);
const data = new Uint8Array(sab, controlBytes);

function readAndHash({ path, progressBytes }) {
  const hash = createHash('sha256');
  const fd = openSync(path, 'r');
  let unreported = 0;
  try {
    for (let n = 0, position = 0; ; n++) {
      for (let encrypted; n - (encrypted = Atomics.load(control, ${ENCRYPTED})) >= slots; )
        Atomics.wait(control, ${ENCRYPTED}, encrypted);
      const offset = (n % slots) * slotBytes;
      let length = 0;
      for (let r; length < slotBytes && (r = readSync(fd, data, offset + length, slotBytes - length, position + length)) > 0; )
        length += r;
      Atomics.store(control, ${LENGTHS} + (n % slots), length > 0 ? length : -1);
      Atomics.store(control, ${PUBLISHED}, n + 1);
      Atomics.notify(control, ${PUBLISHED});
      if (length === 0) break;
      position += length;
      hash.update(data.subarray(offset, offset + length));
      unreported += length;
      if (unreported >= progressBytes) {
        parentPort.postMessage({ read: unreported });
        unreported = 0;
      }
    }
  } finally {
    closeSync(fd);
  }
  parentPort.postMessage({ read: unreported, digest: hash.digest() });
}

function encrypt({ algorithm, key, iv, maxUnwritten }) {
  const cipher = createCipheriv(algorithm, key, iv);
  let posted = 0;
  const post = (chunk) => {
    const own = chunk.byteOffset === 0 && chunk.buffer.byteLength === chunk.length;
    parentPort.postMessage(chunk, own ? [chunk.buffer] : []);
    posted++;
  };
  for (let n = 0; ; n++) {
    while (Atomics.load(control, ${PUBLISHED}) === n) Atomics.wait(control, ${PUBLISHED}, n);
    const slot = n % slots;
    const length = Atomics.load(control, ${LENGTHS} + slot);
    if (length < 0) break;
    // Counted in chunks posted, not slots: a slot shorter than a block posts nothing.
    for (let written; posted - (written = Atomics.load(control, ${WRITTEN})) >= maxUnwritten; )
      Atomics.wait(control, ${WRITTEN}, written);
    const out = cipher.update(data.subarray(slot * slotBytes, slot * slotBytes + length));
    // The slot is free again for the reader.
    Atomics.store(control, ${ENCRYPTED}, n + 1);
    Atomics.notify(control, ${ENCRYPTED});
    if (out.length > 0) post(out);
  }
  post(cipher.final());
  parentPort.postMessage('end');
}

// One job per message, for as long as the pool keeps this worker.
parentPort.on('message', (job) => (role === 'read' ? readAndHash(job) : encrypt(job)));
`;

let live = 0;
let started = 0;
/** Worker threads of this module alive now, idle ones in the pool included (for tests). */
export function liveWorkers(): number {
  return live;
}
/** Worker threads this module has started since it was loaded (for tests: reuse starts none). */
export function startedWorkers(): number {
  return started;
}

/** What one encryption needs from the pair's two workers while it owns them. */
interface PairJob {
  onMessage(role: Role, message: unknown): void;
  onFailure(err: Error): void;
}
type Role = 'read' | 'aes';

/**
 * A reader worker and an AES worker sharing one ring, started once and reused by one encryption after another.
 * Either worker failing, exiting, or the encryption using it being aborted stops both: a pair whose workers may be
 * mid-job never goes back to the pool.
 */
class WorkerPair {
  readonly control: Int32Array;
  private readonly workers: Record<Role, Worker>;
  private job: PairJob | undefined;
  private stopped = false;
  private idleTimer: NodeJS.Timeout | undefined;

  constructor() {
    const sab = new SharedArrayBuffer(CONTROL_BYTES + SLOTS * SLOT_BYTES);
    this.control = new Int32Array(sab, 0, CONTROL_BYTES / 4);
    const ring = { sab, slots: SLOTS, slotBytes: SLOT_BYTES, controlBytes: CONTROL_BYTES };
    this.workers = { read: this.start('read', ring), aes: this.start('aes', ring) };
  }

  private start(role: Role, ring: Record<string, unknown>): Worker {
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { ...ring, role } });
    live++;
    started++;
    worker.on('message', (message: unknown) => this.job?.onMessage(role, message));
    worker.once('error', (err: Error) => this.lost(err));
    worker.once('exit', (code) => {
      live--;
      this.lost(new Error(`${role} worker exited with ${code}`));
    });
    return worker;
  }

  /** Hands both workers their part of one encryption; the caller owns the pair until {@link release} or {@link stop}. */
  run(job: PairJob, read: Record<string, unknown>, aes: Record<string, unknown>): void {
    clearTimeout(this.idleTimer);
    for (const word of [PUBLISHED, ENCRYPTED, WRITTEN]) Atomics.store(this.control, word, 0);
    this.job = job;
    // Referenced while working, so an encryption in progress keeps the process alive like any other I/O.
    this.workers.read.ref();
    this.workers.aes.ref();
    this.workers.read.postMessage(read);
    this.workers.aes.postMessage(aes);
  }

  /** Both workers finished their part: back to the pool, idle. */
  release(): void {
    this.job = undefined;
    if (this.stopped) return;
    this.workers.read.unref();
    this.workers.aes.unref();
    this.idleTimer = setTimeout(() => void this.stop(), pool.idleMs);
    this.idleTimer.unref();
    idlePairs.push(this);
    while (idlePairs.length > pool.maxIdlePairs) void idlePairs[0]?.stop();
  }

  /** Terminates both workers (idempotent); the pair is never used again. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.job = undefined;
    clearTimeout(this.idleTimer);
    const at = idlePairs.indexOf(this);
    if (at >= 0) idlePairs.splice(at, 1);
    await Promise.all([this.workers.read.terminate(), this.workers.aes.terminate()]);
  }

  private lost(err: Error): void {
    if (this.stopped) return;
    const job = this.job;
    void this.stop();
    job?.onFailure(err);
  }
}

const pool = { idleMs: 30_000, maxIdlePairs: 2 };
const idlePairs: WorkerPair[] = [];

/**
 * How long an idle pair of workers is kept, and how many idle pairs at most (a pair: two threads, ~20 MiB). Tests
 * shorten these; the defaults suit a controller sealing bundle after bundle.
 */
export function configureEncryptionWorkers(options: { idleMs?: number; maxIdlePairs?: number }): void {
  pool.idleMs = options.idleMs ?? pool.idleMs;
  pool.maxIdlePairs = options.maxIdlePairs ?? pool.maxIdlePairs;
}

/** Terminates the idle workers now (pairs in use stop when their encryption ends). */
export async function stopIdleEncryptionWorkers(): Promise<void> {
  await Promise.all([...idlePairs].map((pair) => pair.stop()));
}

/** An idle pair, or a new one: an encryption never shares a pair another one is using. */
function acquirePair(): WorkerPair {
  return idlePairs.pop() ?? new WorkerPair();
}

export interface OffThreadEncryptOptions {
  /** The plain file. */
  readonly path: string;
  /** Where the ciphertext goes, in order; the caller closes or aborts it. */
  readonly writer: ChunkWriter;
  readonly aesKey: Buffer;
  readonly iv: Buffer;
  readonly signal?: AbortSignal | undefined;
  /** Called with the plain bytes read since the last call, every 16 MiB and at the end (they sum to the size). */
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

  let failure: Error | undefined;
  let wakeWriter: (() => void) | undefined;
  let failed: (err: Error) => void = () => undefined;
  const failedPromise = new Promise<never>((_, reject) => (failed = reject));
  failedPromise.catch(() => undefined);
  const fail = (err: unknown): void => {
    failure ??= err instanceof Error ? err : new Error(String(err));
    failed(failure);
    wakeWriter?.();
  };
  const onAbort = (): void => fail(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });

  let resolveDigest: (digest: Buffer) => void = () => undefined;
  const digest = new Promise<Buffer>((resolve) => (resolveDigest = resolve));
  const chunks: Uint8Array[] = [];
  let ended = false;
  const pair = acquirePair();
  const { control } = pair;
  pair.run(
    {
      onMessage(role, message) {
        if (role === 'read') {
          const { read, digest } = message as { read: number; digest?: Uint8Array };
          options.onRead?.(read);
          if (digest) resolveDigest(Buffer.from(digest));
          return;
        }
        if (message === 'end') ended = true;
        else chunks.push(message as Uint8Array);
        wakeWriter?.();
      },
      onFailure: fail,
    },
    { path: options.path, progressBytes: PROGRESS_BYTES },
    { algorithm: AES_ALGORITHM, key: options.aesKey, iv: options.iv, maxUnwritten: MAX_UNWRITTEN },
  );

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

  let done = false;
  try {
    await write();
    const result = { digest: await Promise.race([digest, failedPromise]), encryptedSize };
    done = true;
    return result;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    // Both workers are idle again only after a complete run; otherwise one may still be reading, encrypting or
    // waiting on the ring, so the pair is replaced rather than reused.
    if (done) pair.release();
    else await pair.stop();
  }
}
