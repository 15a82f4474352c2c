/**
 * validateZip of a zip in memory must be exactly as strict as validateZip of the same bytes in a file (the controller
 * validates small artifacts from memory): the same refusal reason and message, or the same summary and the same
 * (name, sha256) of every file it read, over the hostile-zip corpus (the two-views rules Android needs) and the
 * bounds (entries, bytes, ratio, lying sizes, damage, not a zip).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HOSTILE_ZIPS } from './testing/hostile-zips.js';
import { INDEX_HTML, craftZip } from './testing/zip-craft.js';
import { validateZip } from './validate.js';
import type { ValidateOptions } from './validate.js';

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'validate-memory-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

type Outcome =
  { reason: string; message: string; entry?: string } | { summary: object; files: Array<[string, string]> };

async function outcome(zip: string | Buffer, options: ValidateOptions = {}): Promise<Outcome> {
  const files: Array<[string, string]> = [];
  try {
    const summary = await validateZip(zip, {
      ...options,
      onFile: (name, sha256) => files.push([name, sha256]),
    });
    return { summary, files };
  } catch (error) {
    const { reason, message, entry } = error as { reason: string; message: string; entry?: string };
    return { reason, message, ...(entry !== undefined ? { entry } : {}) };
  }
}

let counter = 0;
async function bothWays(zip: Buffer, options?: ValidateOptions): Promise<[Outcome, Outcome]> {
  const path = join(work, `z${counter++}.zip`);
  await writeFile(path, zip);
  return [await outcome(path, options), await outcome(zip, options)];
}

describe('validateZip from memory', () => {
  it.each(HOSTILE_ZIPS.map((zip) => [zip.name, zip] as const))(
    '%s: the same outcome as from a file',
    async (_, { zip, expected }) => {
      const [fromFile, fromMemory] = await bothWays(zip);
      expect(fromMemory).toEqual(fromFile);
      expect('reason' in fromMemory ? fromMemory.reason : 'accepted').toBe(expected);
    },
  );

  const js = { name: 'app.js', data: Buffer.from('console.log(1)') };
  const zeros = { name: 'zeros.bin', data: Buffer.alloc(4 * 1024 * 1024) };
  it.each<[string, Buffer, ValidateOptions | undefined, string]>([
    ['too many entries', craftZip([INDEX_HTML, js]), { limits: { maxEntries: 1 } }, 'TooManyEntries'],
    ['too many bytes', craftZip([INDEX_HTML, js]), { limits: { maxUncompressedBytes: 20 } }, 'TooLarge'],
    ['a bomb-like ratio', craftZip([INDEX_HTML, zeros]), undefined, 'CompressionRatio'],
    [
      'a size header that lies',
      craftZip([INDEX_HTML, { ...zeros, declaredSize: 100 }]),
      undefined,
      'CorruptZip',
    ],
    ['a CRC-32 mismatch', craftZip([INDEX_HTML, { ...js, crc: 1234 }]), undefined, 'CorruptZip'],
    ['bytes that are not a zip', Buffer.alloc(1000, 3), undefined, 'CorruptZip'],
    ['nothing at all', Buffer.alloc(0), undefined, 'CorruptZip'],
    ['a cut zip', craftZip([INDEX_HTML, js]).subarray(0, 60), undefined, 'CorruptZip'],
  ])('%s: the same refusal as from a file', async (_, zip, options, expected) => {
    const [fromFile, fromMemory] = await bothWays(zip, options);
    expect(fromMemory).toEqual(fromFile);
    expect(fromMemory).toMatchObject({ reason: expected });
  });

  it('reads a zip that is a view into a larger buffer only within the view', async () => {
    const zip = craftZip([INDEX_HTML, js]);
    const padded = Buffer.concat([Buffer.alloc(7, 0x50), zip, Buffer.alloc(9, 0x4b)]);
    const [fromFile, fromMemory] = await bothWays(zip);
    expect(await outcome(padded.subarray(7, 7 + zip.length))).toEqual(fromFile);
    expect(fromMemory).toEqual(fromFile);
  });
});
