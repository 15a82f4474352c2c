import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { INDEX_HTML, craftZip } from './testing/zip-craft.js';
import type { CraftEntry } from './testing/zip-craft.js';
import { validateZip } from './validate.js';
import type { ValidateOptions } from './validate.js';

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'validate-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

let counter = 0;
async function zipFile(entries: CraftEntry[]): Promise<string> {
  const path = join(work, `z${counter++}.zip`);
  await writeFile(path, craftZip(entries));
  return path;
}

async function reason(entries: CraftEntry[], options?: ValidateOptions): Promise<string> {
  try {
    await validateZip(await zipFile(entries), options);
  } catch (err) {
    return (err as { reason: string }).reason;
  }
  return 'accepted';
}

const js = { name: 'app.js', data: Buffer.from('console.log(1)') };

describe('validateZip layout', () => {
  it('accepts index.html at the root or in a single top folder and reports the root', async () => {
    expect(await validateZip(await zipFile([INDEX_HTML, js]))).toMatchObject({
      root: '',
      files: 2,
      entries: 2,
    });
    expect(
      await validateZip(
        await zipFile([
          { name: 'dist/', method: 0, mode: 0o40755 },
          { ...INDEX_HTML, name: 'dist/index.html' },
          { ...js, name: 'dist/js/app.js' },
        ]),
      ),
    ).toMatchObject({ root: 'dist/', files: 2, entries: 3 });
    expect(await validateZip(await zipFile([{ ...INDEX_HTML, name: 'www/index.html' }]))).toMatchObject({
      root: 'www/',
    });
  });

  it('refuses a zip without index.html where devices look', async () => {
    expect(await reason([js])).toBe('MissingIndexHtml');
    expect(await reason([{ ...INDEX_HTML, name: 'a/b/index.html' }])).toBe('MissingIndexHtml');
    expect(
      await reason([
        { ...INDEX_HTML, name: 'dist/index.html' },
        { ...js, name: 'other/app.js' },
      ]),
    ).toBe('MissingIndexHtml');
    expect(await reason([{ ...INDEX_HTML, name: 'dist/index.html' }, js])).toBe('MissingIndexHtml');
    expect(await reason([])).toBe('MissingIndexHtml');
  });

  it('refuses __MACOSX and dot entries beside the top folder (iOS breaks on them)', async () => {
    expect(
      await reason([
        { ...INDEX_HTML, name: 'dist/index.html' },
        { name: '__MACOSX/dist/._index.html', data: Buffer.from('x') },
      ]),
    ).toBe('MacosxBesideTopFolder');
    expect(
      await reason([
        { ...INDEX_HTML, name: 'dist/index.html' },
        { name: '.DS_Store', data: Buffer.from('x') },
      ]),
    ).toBe('DotEntryBesideTopFolder');
  });
});

describe('validateZip names and entry kinds', () => {
  it.each([
    ['../evil.js', 'PathTraversal'],
    ['assets/../../evil.js', 'PathTraversal'],
    ['/etc/passwd', 'AbsolutePath'],
    ['C:/evil.js', 'AbsolutePath'],
    ['assets\\evil.js', 'Backslash'],
    ['evil\0.js', 'NulInName'],
  ])('refuses %j with %s', async (name, expected) => {
    expect(await reason([INDEX_HTML, { name, data: Buffer.from('x') }])).toBe(expected);
  });

  it('refuses symlinks, encrypted entries, unknown compression and duplicates', async () => {
    expect(
      await reason([INDEX_HTML, { name: 'link', data: Buffer.from('/etc/passwd'), mode: 0o120777 }]),
    ).toBe('Symlink');
    expect(await reason([INDEX_HTML, { name: 'fifo', mode: 0o010644 }])).toBe('SpecialFile');
    expect(await reason([INDEX_HTML, { ...js, flags: 0x1 }])).toBe('EncryptedEntry');
    expect(
      await reason([
        INDEX_HTML,
        { ...js, method: 0, flags: 0 },
        { name: 'x.bin', data: Buffer.from('x'), method: 12 },
      ]),
    ).toBe('UnsupportedCompression');
    expect(await reason([INDEX_HTML, js, js])).toBe('DuplicateEntry');
    expect(
      await reason([
        INDEX_HTML,
        { name: 'a/', method: 0, mode: 0o40755 },
        { name: 'a', data: Buffer.from('x') },
      ]),
    ).toBe('DuplicateEntry');
  });
});

describe('validateZip bounds', () => {
  const zeros = { name: 'zeros.bin', data: Buffer.alloc(4 * 1024 * 1024) };

  it('refuses too many entries, too many bytes and bomb-like ratios', async () => {
    expect(await reason([INDEX_HTML, js], { limits: { maxEntries: 1 } })).toBe('TooManyEntries');
    expect(await reason([INDEX_HTML, js], { limits: { maxUncompressedBytes: 20 } })).toBe('TooLarge');
    expect(await reason([INDEX_HTML, zeros])).toBe('CompressionRatio');
    expect(await reason([INDEX_HTML, zeros], { limits: { maxCompressionRatio: 5000 } })).toBe('accepted');
  });

  it('refuses entries whose headers lie about their size (checked on the real decompressed bytes)', async () => {
    expect(await reason([INDEX_HTML, { ...zeros, declaredSize: 100 }])).toBe('CorruptZip');
    expect(await reason([INDEX_HTML, { ...zeros, declaredSize: 100 }], { decompress: false })).toBe(
      'accepted',
    );
  });

  it('refuses damaged data and files that are not zips', async () => {
    expect(await reason([INDEX_HTML, { ...js, crc: 1234 }])).toBe('CorruptZip');
    const garbage = join(work, 'garbage.zip');
    await writeFile(garbage, Buffer.alloc(1000, 3));
    await expect(validateZip(garbage)).rejects.toMatchObject({ reason: 'CorruptZip' });
  });
});
