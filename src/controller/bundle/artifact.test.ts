/**
 * The in-memory build of a small artifact (ADR 0042) must give what the file build gives, byte for byte: the same
 * checksums, session key, digests and stored bytes, the same refusals. Inputs: the web app fixture the Capgo interop
 * test packs, zips whose sizes sit around AES block and read-chunk boundaries, a tarball and a delta build (which fall
 * back to files), and hostile zips.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateSigningKey, packDirectory, type SigningKey } from '../../bundle/index.js';
import { HOSTILE_ZIPS } from '../../bundle/testing/hostile-zips.js';
import { INDEX_HTML, craftZip } from '../../bundle/testing/zip-craft.js';
import { StorageLayout } from '../../storage/layout.js';
import { MemoryObjectStore } from '../../storage/memory-store.js';
import {
  IN_MEMORY_BUILD_MAX_BYTES,
  prepareArtifact,
  storeArtifact,
  type PreparedArtifact,
} from './artifact.js';

const FIXTURE = fileURLToPath(new URL('../../../test/fixtures/webapp', import.meta.url));
const key = generateSigningKey();
let work: string;
let webappZip: Buffer;
let webappTarGz: Buffer;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'artifact-test-'));
  await packDirectory(FIXTURE, join(work, 'webapp.zip'));
  webappZip = await readFile(join(work, 'webapp.zip'));
  execFileSync('tar', ['czf', join(work, 'webapp.tgz'), '-C', join(FIXTURE, '..'), 'webapp']);
  webappTarGz = await readFile(join(work, 'webapp.tgz'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

let counter = 0;
async function freshDir(): Promise<string> {
  const dir = join(work, `d${counter++}`);
  await mkdir(dir);
  return dir;
}

interface Built {
  prepared?: Omit<PreparedArtifact, 'storedPath' | 'storedBytes' | 'delta'>;
  stored?: Buffer;
  error?: unknown;
  delta?: unknown;
}

async function build(
  fetched: 'file' | 'memory',
  bytes: Buffer,
  opts: { key: SigningKey | undefined; delta?: boolean },
): Promise<Built & { workDir: string }> {
  const workDir = await freshDir();
  let input: { path: string } | { bytes: Buffer } = { bytes };
  if (fetched === 'file') {
    const path = join(await freshDir(), 'fetched');
    await writeFile(path, bytes);
    input = { path };
  }
  try {
    const { storedPath, storedBytes, delta, ...prepared } = await prepareArtifact({
      fetched: input,
      workDir,
      key: opts.key,
      delta: opts.delta ?? false,
      buildId: 'ns/demo@1.0.0',
      signal: new AbortController().signal,
    });
    const stored = storedPath === undefined ? storedBytes : await readFile(storedPath);
    return {
      workDir,
      prepared,
      stored,
      ...(delta ? { delta: delta.entries } : {}),
    };
  } catch (error) {
    return { workDir, error };
  }
}

/** A valid zip of about `size` bytes (stored entries, so the size is exact-ish). */
function zipOfAbout(size: number): Buffer {
  const base = craftZip([INDEX_HTML]).length;
  const data = Buffer.alloc(Math.max(0, size - base - 100), 0x61);
  const zip = craftZip([INDEX_HTML, { name: 'pad.txt', data, method: 0 }]);
  return zip;
}

describe('prepareArtifact in memory and from a file', () => {
  const inputs: Array<[string, () => Buffer]> = [
    ['the web app fixture (the Capgo interop bundle)', () => webappZip],
    ...[1, 15, 16, 17, 64 * 1024 - 1, 64 * 1024, 64 * 1024 + 1, 300_007].map(
      (pad): [string, () => Buffer] => [`a zip of about ${pad} bytes`, () => zipOfAbout(pad + 200)],
    ),
  ];

  it.each(inputs)('%s: the same results and stored bytes, encrypted and plain', async (_, input) => {
    for (const signing of [key, undefined]) {
      const bytes = input();
      const fromFile = await build('file', bytes, { key: signing });
      const inMemory = await build('memory', bytes, { key: signing });
      expect(fromFile.error).toBeUndefined();
      expect(inMemory.prepared).toEqual(fromFile.prepared);
      expect(inMemory.stored?.equals(fromFile.stored!)).toBe(true);
      expect(inMemory.prepared?.storedSha256).toMatch(/^[0-9a-f]{64}$/);
      // nothing was written for the in-memory build
      expect(await readdir(inMemory.workDir)).toEqual([]);
    }
  });

  it('a tarball and a delta build fall back to files and still match the file build', async () => {
    for (const [bytes, delta] of [
      [webappTarGz, false],
      [webappZip, true],
    ] as const) {
      const fromFile = await build('file', bytes, { key, delta });
      const inMemory = await build('memory', bytes, { key, delta });
      expect(fromFile.error).toBeUndefined();
      expect(inMemory.prepared).toEqual(fromFile.prepared);
      expect(inMemory.delta).toEqual(fromFile.delta);
      expect(inMemory.delta !== undefined).toBe(delta);
      expect(inMemory.stored?.equals(fromFile.stored!)).toBe(true);
    }
  });

  it.each(HOSTILE_ZIPS.filter((z) => z.expected !== 'accepted').map((z) => [z.name, z] as const))(
    '%s: the same refusal',
    async (_, { zip, expected }) => {
      const fromFile = await build('file', zip, { key });
      const inMemory = await build('memory', zip, { key });
      // the validator's reason, or UnsupportedArtifact when the bytes do not even start like a zip
      expect(inMemory.error).toMatchObject({ kind: 'stalling' });
      expect([expected, 'UnsupportedArtifact']).toContain((inMemory.error as { reason: string }).reason);
      expect({ ...(inMemory.error as object), message: (inMemory.error as Error).message }).toEqual({
        ...(fromFile.error as object),
        message: (fromFile.error as Error).message,
      });
    },
  );

  it('stores the in-memory build with one checked PUT of the very bytes the file build stores', async () => {
    const store = new MemoryObjectStore();
    const layout = new StorageLayout();
    const workDir = await freshDir();
    const prepared = await prepareArtifact({
      fetched: { bytes: webappZip },
      workDir,
      key,
      delta: false,
      buildId: 'ns/demo@1.0.0',
      signal: new AbortController().signal,
    });
    expect(prepared.storedPath).toBeUndefined();
    const fromFile = await build('file', webappZip, { key });
    const { objectKey } = await storeArtifact(
      store,
      layout,
      { namespace: 'ns', name: 'demo' },
      prepared,
      new AbortController().signal,
    );
    expect(store.calls).toMatchObject({ stat: 0, get: 0, put: 1 });
    expect((await store.getBuffer(objectKey)).data.equals(fromFile.stored!)).toBe(true);
  });

  it('keeps the ciphertext of the largest in-memory artifact within the checked PUT', () => {
    // AES-CBC with PKCS#7 adds 1 to 16 bytes
    expect(IN_MEMORY_BUILD_MAX_BYTES + 16).toBeLessThanOrEqual(8 * 1024 * 1024);
  });
});
