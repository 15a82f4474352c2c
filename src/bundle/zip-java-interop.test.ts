/**
 * Zips are judged the way Android reads them: the plugin extracts with `java.util.zip.ZipInputStream`, which
 * follows the local headers and never reads the central directory (CAPGO-PROTOCOL.md §4 step 4). A tiny Java
 * extractor (test/fixtures/java/ZipExtract.java, compiled here with the machine's JDK 17) runs over the hostile-zip
 * corpus: for every zip either validateZip refuses it with the expected reason, or the files Java extracts are
 * exactly the (name, bytes) validateZip validated.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import yauzl from 'yauzl';
import { HOSTILE_ZIPS } from './testing/hostile-zips.js';
import { validateZip } from './validate.js';
import { nextEntry, openEntry } from './zip-read.js';

const run = promisify(execFile);
const EXTRACTOR = fileURLToPath(new URL('../../test/fixtures/java/ZipExtract.java', import.meta.url));

type Files = Record<string, string>; // name → sha256 hex
type View = { files: Files } | { error: string };

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

let work: string;
const paths = new Map<string, string>();
const javaViews = new Map<string, View>();

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'zip-java-'));
  await run('javac', ['-d', work, EXTRACTOR]);
  const args: string[] = [];
  for (const [i, { name, zip }] of HOSTILE_ZIPS.entries()) {
    const path = join(work, `${i}.zip`);
    await writeFile(path, zip);
    paths.set(name, path);
    await mkdir(join(work, `out${i}`));
    args.push(path, join(work, `out${i}`));
  }
  const { stdout } = await run('java', ['-cp', work, 'ZipExtract', ...args]);
  const lines = stdout.trim().split('\n');
  expect(lines).toHaveLength(HOSTILE_ZIPS.length);
  for (const [i, { name }] of HOSTILE_ZIPS.entries()) {
    const line = lines[i] ?? '';
    javaViews.set(name, line === 'OK' ? { files: await listTree(join(work, `out${i}`)) } : { error: line });
  }
}, 120_000);

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

async function listTree(dir: string): Promise<Files> {
  const files: Files = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    files[relative(dir, path)] = sha256(await readFile(path));
  }
  return files;
}

/** What a central-directory reader lists (yauzl, as `unzip -l` and the delta manifest read a zip). */
async function centralView(path: string): Promise<View> {
  try {
    const zip = await yauzl.openPromise(path, { lazyEntries: true, autoClose: false });
    const files: Files = {};
    try {
      for (let entry = await nextEntry(zip); entry; entry = await nextEntry(zip)) {
        if (entry.fileName.endsWith('/')) continue;
        const chunks: Buffer[] = [];
        for await (const chunk of (await openEntry(zip, entry)) as AsyncIterable<Buffer>) chunks.push(chunk);
        files[entry.fileName] = sha256(Buffer.concat(chunks));
      }
    } finally {
      zip.close();
    }
    return { files };
  } catch (error) {
    return { error: String(error) };
  }
}

describe.each(HOSTILE_ZIPS.map((zip) => [zip.name, zip] as const))(
  '%s',
  (_, { name, expected, misleads }) => {
    it(
      expected === 'accepted'
        ? 'is accepted and Java extracts exactly what we validated'
        : `is refused: ${expected}`,
      async () => {
        const validated: Files = {};
        let outcome: string = 'accepted';
        try {
          await validateZip(paths.get(name) ?? '', {
            onFile: (file, data) => {
              validated[file] = data;
            },
          });
        } catch (error) {
          outcome = (error as { reason?: string }).reason ?? String(error);
        }
        expect(outcome).toBe(expected);
        if (outcome === 'accepted') expect(javaViews.get(name)).toEqual({ files: validated });
      },
    );

    if (misleads) {
      it('misleads a central-directory reader (Java extracts something else or fails)', async () => {
        expect(javaViews.get(name)).not.toEqual(await centralView(paths.get(name) ?? ''));
      });
    }
  },
);
