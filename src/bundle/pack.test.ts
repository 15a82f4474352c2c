import { createReadStream } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rm, symlink, utimes, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import yauzl from 'yauzl';
import { packDirectory } from './pack.js';
import { packTarball } from './tarball.js';
import { validateZip } from './validate.js';
import { nextEntry } from './zip-read.js';

const FIXTURE = fileURLToPath(new URL('../../test/fixtures/webapp', import.meta.url));
let work: string;

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'pack-'));
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

async function entryNames(
  zipPath: string,
): Promise<{ name: string; mode: number; mtime: string; method: number }[]> {
  const zip = await yauzl.openPromise(zipPath, { lazyEntries: true, autoClose: false });
  const out = [];
  for (let e = await nextEntry(zip); e; e = await nextEntry(zip)) {
    out.push({
      name: e.fileName,
      mode: e.externalFileAttributes >>> 16,
      mtime: `${e.lastModFileDate}/${e.lastModFileTime}`,
      method: e.compressionMethod,
    });
  }
  zip.close();
  return out;
}

describe('packDirectory', () => {
  it('zips the fixture with index.html at the root, sorted, fixed time and mode, deflated', async () => {
    const out = join(work, 'a.zip');
    const result = await packDirectory(FIXTURE, out);
    expect(result.files).toBe(4);
    expect(result.size).toBe((await readFile(out)).length);
    const entries = await entryNames(out);
    expect(entries.map((e) => e.name)).toEqual([
      'assets/app.css',
      'assets/app.js',
      'assets/img/logo.png',
      'index.html',
    ]);
    expect(new Set(entries.map((e) => e.mode))).toEqual(new Set([0o100644]));
    expect(new Set(entries.map((e) => e.mtime))).toEqual(new Set([`${(0 << 9) | (1 << 5) | 1}/0`]));
    expect(new Set(entries.map((e) => e.method))).toEqual(new Set([8]));
    expect((await validateZip(out)).root).toBe('');
  });

  it('is deterministic: same tree, other timestamps, modes and location → same bytes', async () => {
    const copy = join(work, 'copy');
    await cp(FIXTURE, copy, { recursive: true });
    await utimes(join(copy, 'index.html'), new Date(2030, 1, 1), new Date(2030, 1, 1));
    await chmod(join(copy, 'assets', 'app.js'), 0o755);
    const a = await packDirectory(FIXTURE, join(work, 'a.zip'));
    const b = await packDirectory(copy, join(work, 'b.zip'));
    expect(b).toEqual(a);
    expect(await readFile(join(work, 'b.zip'))).toEqual(await readFile(join(work, 'a.zip')));
  });

  it('skips what Capgo skips, by whole path segment', async () => {
    const dir = join(work, 'web');
    await cp(FIXTURE, dir, { recursive: true });
    for (const junk of [
      '.DS_Store',
      'assets/.DS_Store',
      '.gitignore',
      '.git/HEAD',
      'node_modules/x/index.js',
      '__MACOSX/._index.html',
      'package-lock.json',
    ]) {
      await mkdir(join(dir, junk, '..'), { recursive: true });
      await writeFile(join(dir, junk), 'junk');
    }
    await writeFile(join(dir, 'my.gitkeep'), 'kept');
    const result = await packDirectory(dir, join(work, 'a.zip'));
    expect((await entryNames(join(work, 'a.zip'))).map((e) => e.name)).toEqual([
      'assets/app.css',
      'assets/app.js',
      'assets/img/logo.png',
      'index.html',
      'my.gitkeep',
    ]);
    expect(result.files).toBe(5);
  });

  it('refuses a directory without index.html at its root, and symbolic links', async () => {
    await expect(packDirectory(join(FIXTURE, 'assets'), join(work, 'a.zip'))).rejects.toMatchObject({
      reason: 'MissingIndexHtml',
    });
    const dir = join(work, 'web');
    await cp(FIXTURE, dir, { recursive: true });
    await symlink('/etc/passwd', join(dir, 'assets', 'passwd'));
    await expect(packDirectory(dir, join(work, 'b.zip'))).rejects.toMatchObject({
      reason: 'Symlink',
      entry: 'assets/passwd',
    });
    await rm(join(dir, 'assets', 'passwd'));
    await writeFile(join(dir, 'a\\b.js'), 'x');
    await expect(packDirectory(dir, join(work, 'c.zip'))).rejects.toMatchObject({ reason: 'Backslash' });
  });

  it('refuses more files than allowed', async () => {
    await expect(packDirectory(FIXTURE, join(work, 'a.zip'), { maxEntries: 3 })).rejects.toMatchObject({
      reason: 'TooManyEntries',
    });
  });
});

describe('packTarball', () => {
  it('gives the same zip as packDirectory for .tar.gz (top folder) and .tar (root) artifacts', async () => {
    const expected = await packDirectory(FIXTURE, join(work, 'dir.zip'));
    execFileSync('tar', ['czf', join(work, 'web.tgz'), '-C', join(FIXTURE, '..'), 'webapp']);
    execFileSync('tar', ['cf', join(work, 'web.tar'), '-C', FIXTURE, '.']);
    expect(await packTarball(createReadStream(join(work, 'web.tgz')), join(work, 'tgz.zip'))).toEqual(
      expected,
    );
    expect(await packTarball(join(work, 'web.tar'), join(work, 'tar.zip'))).toEqual(expected);
  });

  it('refuses links, traversal, oversize content and garbage, and cleans up', async () => {
    const dir = join(work, 'web');
    await cp(FIXTURE, dir, { recursive: true });
    await symlink('index.html', join(dir, 'link.html'));
    execFileSync('tar', ['cf', join(work, 'link.tar'), '-C', dir, '.']);
    const tmp = join(work, 'tmp');
    await mkdir(tmp);
    await expect(
      packTarball(join(work, 'link.tar'), join(work, 'x.zip'), { tmpDir: tmp }),
    ).rejects.toMatchObject({ reason: 'Symlink' });
    execFileSync('tar', [
      'cf',
      join(work, 'up.tar'),
      '-C',
      dir,
      '--transform',
      's,^\\./index,../index,',
      './index.html',
    ]);
    await expect(
      packTarball(join(work, 'up.tar'), join(work, 'x.zip'), { tmpDir: tmp }),
    ).rejects.toMatchObject({ reason: 'PathTraversal' });
    await rm(join(dir, 'link.html'));
    execFileSync('tar', ['cf', join(work, 'ok.tar'), '-C', dir, '.']);
    await expect(
      packTarball(join(work, 'ok.tar'), join(work, 'x.zip'), {
        tmpDir: tmp,
        limits: { maxUncompressedBytes: 1000 },
      }),
    ).rejects.toMatchObject({ reason: 'TooLarge' });
    await writeFile(join(work, 'junk.tar'), Buffer.alloc(5000, 7));
    await expect(
      packTarball(join(work, 'junk.tar'), join(work, 'x.zip'), { tmpDir: tmp }),
    ).rejects.toMatchObject({ reason: 'CorruptTarball' });
    expect(await import('node:fs/promises').then((fs) => fs.readdir(tmp))).toEqual([]);
  });
});
