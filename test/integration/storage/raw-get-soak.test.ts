// Soak test of the hand-written HTTP/1.1 GET on the download path (rawGet in src/storage/s3-store.ts), which hands
// out slices of reusable 1 MiB arenas and relies on consumers to `release` each chunk only when done with it.
// 2,000 downloads, 64 at a time, of objects of random sizes (0 B – 2.5 MiB, so reads cross arena and MIN_READ
// boundaries) and random ranges, against the environment's real S3 server (versitygw). Consumers behave as the
// update service does: they hold chunks while more data arrives (hash later, after a random delay) and release each
// one only afterwards; some never release (allowed). Every download's sha256 must equal the expected bytes' sha256:
// an arena reused while a chunk was still held would show up as a mismatch.
// Runtime: about 20–40 s on the shared 2-core machine (~0.8 GB through the loopback).
import { jest } from '@jest/globals';
import { createHash, randomBytes } from 'node:crypto';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { ReleasableBody } from '../../../src/storage/s3-store.js';
import { cleanupTestResources, newBucket, s3Store } from '../../env/fixtures.js';

jest.setTimeout(300_000);

const OBJECTS = 48;
const DOWNLOADS = Number(process.env['SOAK_DOWNLOADS'] ?? 2_000);
const CONCURRENCY = 64;

/** Deterministic pseudo-random numbers (xorshift32), so a failure can be replayed with the printed seed. */
function random(seed: number): (n: number) => number {
  let x = seed || 1;
  return (n) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
}

/** Mostly small objects, some beyond two arenas; a few empty and a few exactly at the boundaries. */
function sizeOf(i: number, rnd: (n: number) => number): number {
  const boundaries = [0, 1, 256 * 1024, 1024 * 1024, 1024 * 1024 + 1, 2 * 1024 * 1024];
  if (i < boundaries.length) return boundaries[i]!;
  return rnd(4) === 0 ? rnd(2_621_440) : rnd(262_144);
}

/** Reads the body like a slow consumer: chunks queue up, each is hashed after a random delay, then released. */
async function consume(body: ReleasableBody, rnd: (n: number) => number, release: boolean): Promise<string> {
  const hash = createHash('sha256');
  const held: Buffer[] = [];
  let ended = false;
  let failed: Error | undefined;
  let wake: (() => void) | undefined;
  body.on('data', (chunk: Buffer) => {
    held.push(chunk);
    wake?.();
  });
  body.on('end', () => {
    ended = true;
    wake?.();
  });
  body.on('error', (error: Error) => {
    failed = error;
    wake?.();
  });
  body.on('close', () => {
    if (!ended) failed ??= new Error('the body closed before its end');
    wake?.();
  });
  for (;;) {
    if (failed) throw failed;
    const chunk = held.shift();
    if (chunk) {
      for (let i = rnd(4); i > 0; i--) await yieldToLoop(); // more data arrives meanwhile
      hash.update(chunk);
      if (release) body.release?.(chunk);
      continue;
    }
    if (ended) return hash.digest('hex');
    await new Promise<void>((resolve) => (wake = resolve));
    wake = undefined;
  }
}

afterAll(cleanupTestResources);

describe('rawGet soak (real S3 server)', () => {
  it(`${DOWNLOADS} downloads, ${CONCURRENCY} at a time, random sizes and ranges: every byte's sha256 matches`, async () => {
    const seed = Number(process.env['SOAK_SEED'] ?? randomBytes(4).readUInt32LE(0));
    const rnd = random(seed);
    const bucket = await newBucket('rawget-soak');
    // largeGetMinBytes 0: every GET with an expected size takes rawGet
    const store = s3Store(bucket, { largeGetMinBytes: 0 });
    try {
      const objects: Buffer[] = [];
      for (let i = 0; i < OBJECTS; i++) objects.push(randomBytes(sizeOf(i, rnd)));
      await Promise.all(objects.map((data, i) => store.put(`soak/${i}`, data)));

      let next = 0;
      let checked = 0;
      let rawBodies = 0;
      const mismatches: string[] = [];
      const worker = async (): Promise<void> => {
        while (next < DOWNLOADS) {
          const n = next++;
          const i = rnd(OBJECTS);
          const data = objects[i]!;
          const ranged = data.length > 0 && rnd(2) === 0;
          const start = ranged ? rnd(data.length) : 0;
          const end = ranged && rnd(3) > 0 ? start + rnd(data.length - start) : undefined;
          const expected = ranged ? data.subarray(start, end === undefined ? undefined : end + 1) : data;
          const got = await store.get(`soak/${i}`, {
            expectedSize: data.length,
            ...(ranged ? { range: { start, ...(end !== undefined ? { end } : {}) } } : {}),
          });
          if (!got) throw new Error(`download ${n}: object ${i} missing`);
          const body = got.body as ReleasableBody;
          if (typeof body.release === 'function') rawBodies++;
          const sha = await consume(body, rnd, rnd(8) !== 0);
          if (sha !== createHash('sha256').update(expected).digest('hex'))
            mismatches.push(`download ${n}: object ${i} (${data.length} B) range ${start}-${end ?? ''}`);
          checked++;
        }
      };
      await Promise.all(Array.from({ length: CONCURRENCY }, worker));
      expect({ seed, mismatches }).toEqual({ seed, mismatches: [] });
      expect(checked).toBe(DOWNLOADS);
      // the downloads really went through rawGet (its bodies carry release)
      expect(rawBodies).toBe(DOWNLOADS);
    } finally {
      store.close();
    }
  });
});
