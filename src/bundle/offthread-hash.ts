/**
 * SHA-256 on a worker thread, fed through a ring of shared memory: encrypting a bundle (AES-CBC, serial) and hashing
 * it then use two cores, like `openssl enc | openssl dgst`, instead of taking turns on one. Bounded memory: the ring
 * (16 slots of 256 KiB) is all that is in flight; the producer waits when the hasher is a full ring behind.
 *
 * Starting a worker costs tens of milliseconds, so {@link encryptBundle} uses this only for large files
 * ({@link OFFTHREAD_HASH_MIN_BYTES}); small bundles hash inline.
 */
import { Worker } from 'node:worker_threads';

/** From this plain size on, the hash runs on its own thread. */
export const OFFTHREAD_HASH_MIN_BYTES = 32 * 1024 * 1024;

const SLOTS = 16;
const SLOT_BYTES = 256 * 1024;
/** Int32 control words: [0] slots published, [1] slots hashed, then one length per slot (-1: end of input). */
const PUBLISHED = 0;
const HASHED = 1;
const LENGTHS = 2;
const CONTROL_BYTES = (LENGTHS + SLOTS) * 4;

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

// Plain JavaScript evaluated by the worker (no module resolution: runs the same under tsx, jest and the image).
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { sab, slots, slotBytes, controlBytes } = workerData;
const control = new Int32Array(sab, 0, controlBytes / 4);
const data = new Uint8Array(sab, controlBytes);
const hash = createHash('sha256');
for (let hashed = 0; ; hashed++) {
  while (Atomics.load(control, ${PUBLISHED}) === hashed) Atomics.wait(control, ${PUBLISHED}, hashed);
  const slot = hashed % slots;
  const length = Atomics.load(control, ${LENGTHS} + slot);
  if (length < 0) break;
  hash.update(data.subarray(slot * slotBytes, slot * slotBytes + length));
  Atomics.store(control, ${HASHED}, hashed + 1);
  Atomics.notify(control, ${HASHED});
}
parentPort.postMessage(hash.digest());
`;

export interface OffThreadHash {
  /** Copies the bytes into the ring (the caller may reuse its buffer); waits while the ring is full. */
  update(chunk: Uint8Array): Promise<void>;
  /** The SHA-256 of everything given to {@link update}. */
  digest(): Promise<Buffer>;
  /** Stops the worker (after a failure). */
  destroy(): Promise<void>;
}

export function offThreadSha256(): OffThreadHash {
  const sab = new SharedArrayBuffer(CONTROL_BYTES + SLOTS * SLOT_BYTES);
  const control = new Int32Array(sab, 0, CONTROL_BYTES / 4);
  const data = new Uint8Array(sab, CONTROL_BYTES);
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: { sab, slots: SLOTS, slotBytes: SLOT_BYTES, controlBytes: CONTROL_BYTES },
  });
  let failure: Error | undefined;
  const result = new Promise<Buffer>((resolve, reject) => {
    worker.once('message', (digest: Uint8Array) => resolve(Buffer.from(digest)));
    worker.once('error', (err: Error) => reject((failure = err)));
    worker.once('exit', (code) => reject((failure ??= new Error(`hash worker exited with ${code}`))));
  });
  result.catch(() => undefined);
  let published = 0;
  let fill = 0;

  /** Waits until the slot `published` may be written (the hasher is less than a full ring behind). */
  const slotFree = async (): Promise<void> => {
    for (;;) {
      if (failure) throw failure;
      const hashed = Atomics.load(control, HASHED);
      if (published - hashed < SLOTS) return;
      const w = waitAsync(control, HASHED, hashed, 1000);
      if (w.async) await w.value;
    }
  };
  const publish = (length: number): void => {
    Atomics.store(control, LENGTHS + (published % SLOTS), length);
    published++;
    Atomics.store(control, PUBLISHED, published);
    Atomics.notify(control, PUBLISHED);
    fill = 0;
  };

  return {
    async update(chunk) {
      for (let offset = 0; offset < chunk.length;) {
        if (fill === 0) await slotFree();
        const n = Math.min(SLOT_BYTES - fill, chunk.length - offset);
        data.set(chunk.subarray(offset, offset + n), (published % SLOTS) * SLOT_BYTES + fill);
        fill += n;
        offset += n;
        if (fill === SLOT_BYTES) publish(fill);
      }
    },
    async digest() {
      if (fill > 0) publish(fill);
      await slotFree();
      publish(-1);
      const digest = await result;
      await worker.terminate();
      return digest;
    },
    async destroy() {
      await worker.terminate();
    },
  };
}
