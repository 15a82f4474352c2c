import { createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { cp, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliDecompressSync } from 'node:zlib';
import { createSession } from './session.js';
import { generateSigningKey } from './keys.js';
import { MANIFEST_FILE, buildDeltaManifest } from './manifest.js';
import type { DeltaManifest } from './manifest.js';
import { openSession, recoverChecksum } from './session.js';
import { packDirectory } from './pack.js';

const FIXTURE = fileURLToPath(new URL('../../test/fixtures/webapp', import.meta.url));
const key = generateSigningKey();
let work: string;
beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'manifest-'));
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

/** What a device does with each manifest file (CAPGO-PROTOCOL.md §5): decrypt, un-Brotli, hash, compare. */
async function installLikeDevice(
  manifest: DeltaManifest,
  dir: string,
  sessionKey?: string,
): Promise<Map<string, Buffer>> {
  const aes = sessionKey ? openSession(sessionKey, key.publicKey) : undefined;
  const files = new Map<string, Buffer>();
  for (const entry of manifest.entries) {
    let body = await readFile(join(dir, entry.objectName));
    expect(createHash('sha256').update(body).digest('hex')).toBe(entry.objectName);
    if (aes) {
      const decipher = createDecipheriv('aes-128-cbc', aes.aesKey, aes.iv);
      body = Buffer.concat([decipher.update(body), decipher.final()]);
    }
    let name = entry.file_name;
    if (name.endsWith('.br')) {
      body = brotliDecompressSync(body);
      name = name.slice(0, -3);
    }
    const expected = sessionKey ? recoverChecksum(entry.file_hash, key.publicKey) : entry.file_hash;
    expect(createHash('sha256').update(body).digest('hex')).toBe(expected.toLowerCase());
    files.set(name, body);
  }
  return files;
}

describe('buildDeltaManifest', () => {
  it('builds an encrypted, signed manifest a device can install byte for byte', async () => {
    const session = createSession(key);
    const out = join(work, 'delta');
    const manifest = await buildDeltaManifest({
      source: { dir: FIXTURE },
      outDir: out,
      key,
      sessionKey: session.sessionKey,
    });
    expect(manifest.entries.map((e) => e.file_name)).toEqual([
      'assets/app.css',
      'assets/app.js.br',
      'assets/img/logo.png',
      'index.html',
    ]);
    expect(manifest.brotliFiles).toBe(1);
    for (const entry of manifest.entries) expect(entry.file_hash).toMatch(/^[0-9a-f]{512}$/);
    const installed = await installLikeDevice(manifest, out, session.sessionKey);
    for (const [name, content] of installed) expect(content).toEqual(await readFile(join(FIXTURE, name)));
    expect(JSON.parse(await readFile(join(out, MANIFEST_FILE), 'utf8'))).toEqual(manifest);
    expect((await readdir(out)).sort()).toEqual(
      [MANIFEST_FILE, ...manifest.entries.map((e) => e.objectName)].sort(),
    );
  });

  it('builds a plain manifest from a zip with a top folder; content-addressed objects', async () => {
    const zip = join(work, 'a.zip');
    await packDirectory(FIXTURE, zip);
    const manifest = await buildDeltaManifest({ source: { zip }, outDir: join(work, 'delta') });
    const fromDir = await buildDeltaManifest({ source: { dir: FIXTURE }, outDir: join(work, 'delta2') });
    expect(manifest).toEqual(fromDir);
    const plainCss = manifest.entries.find((e) => e.file_name === 'assets/app.css');
    expect(plainCss?.objectName).toBe(plainCss?.file_hash);
    await installLikeDevice(manifest, join(work, 'delta'));
  });

  it('follows Capgo rules: Brotli only from 8 KiB and when it saves > 10 bytes, empty files skipped, .br names always compressed', async () => {
    const dir = join(work, 'web');
    await cp(FIXTURE, dir, { recursive: true });
    await writeFile(join(dir, 'random.bin'), randomBytes(20_000));
    await writeFile(join(dir, 'small.txt'), 'a'.repeat(8191));
    await writeFile(join(dir, 'big.txt'), 'a'.repeat(8192));
    await writeFile(join(dir, 'empty.css'), '');
    await writeFile(join(dir, 'pre.js.br'), randomBytes(100));
    const manifest = await buildDeltaManifest({ source: { dir }, outDir: join(work, 'delta') });
    const names = manifest.entries.map((e) => e.file_name);
    expect(names).toEqual(expect.arrayContaining(['random.bin', 'small.txt', 'big.txt.br', 'pre.js.br.br']));
    expect(names).not.toContain('empty.css');
    const installed = await installLikeDevice(manifest, join(work, 'delta'));
    expect(installed.get('pre.js.br')).toEqual(await readFile(join(dir, 'pre.js.br')));
  });

  it('refuses names with spaces, too many files and half-given crypto material', async () => {
    const dir = join(work, 'web');
    await cp(FIXTURE, dir, { recursive: true });
    await writeFile(join(dir, 'my file.js'), 'x');
    await expect(buildDeltaManifest({ source: { dir }, outDir: join(work, 'delta') })).rejects.toMatchObject({
      reason: 'SpaceInFileName',
    });
    await expect(
      buildDeltaManifest({ source: { dir: FIXTURE }, outDir: join(work, 'delta'), key }),
    ).rejects.toThrow(TypeError);
    await expect(
      buildDeltaManifest({ source: { dir: FIXTURE }, outDir: join(work, 'delta'), maxFiles: 3 }),
    ).rejects.toMatchObject({ reason: 'TooManyFiles' });
  });
});
