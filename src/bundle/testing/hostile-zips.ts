import type { BundleValidationReason } from '../errors.js';
import type { CraftEntry } from './zip-craft.js';
import { crc32, deflateRawSync } from 'node:zlib';
import { INDEX_HTML, craftLocalEntry, craftZip, unicodePathExtra } from './zip-craft.js';

/**
 * Zips that a central-directory reader (yauzl, `unzip -l`, our delta manifest) and a local-header reader (Android's
 * `java.util.zip.ZipInputStream`) see differently, plus well-formed variants both must accept. Each case names the
 * refusal we expect, or `accepted`. Used by the validator's unit tests and by the Java interop test, which checks
 * that for every accepted zip Java extracts exactly what we validated.
 */
export interface HostileZip {
  readonly name: string;
  readonly zip: Buffer;
  readonly expected: BundleValidationReason | 'accepted';
  /** Android (ZipInputStream) extracts other files than a central-directory reader lists, or fails to unzip. */
  readonly misleads?: true;
}

const evil = Buffer.from('<html><script>steal()</script></html>');
const js = { name: 'app.js', data: Buffer.from('console.log(1)') };
const css = { name: 'app.css', data: Buffer.from('body{color:red}'.repeat(20)) };

export const HOSTILE_ZIPS: readonly HostileZip[] = [
  {
    name: 'plain deflate and stored entries',
    zip: craftZip([INDEX_HTML, { ...js, method: 0 }, css]),
    expected: 'accepted',
  },
  {
    name: 'directory entries and a top folder',
    zip: craftZip([
      { name: 'dist/', method: 0, mode: 0o40755 },
      { ...INDEX_HTML, name: 'dist/index.html' },
      { ...js, name: 'dist/js/app.js' },
    ]),
    expected: 'accepted',
  },
  {
    name: 'streaming zipper with data descriptors',
    zip: craftZip([
      { ...INDEX_HTML, dataDescriptor: true },
      { ...css, dataDescriptor: true },
    ]),
    expected: 'accepted',
  },
  {
    name: 'archive comment',
    zip: craftZip([INDEX_HTML, js], { comment: Buffer.from('built by CI') }),
    expected: 'accepted',
  },
  {
    name: 'consistent unicode path field',
    zip: craftZip([INDEX_HTML, { ...js, extra: unicodePathExtra('app.js', 'app.js') }]),
    expected: 'accepted',
  },
  {
    name: 'hidden second index.html after the harmless one',
    zip: craftZip([INDEX_HTML, { name: 'index.html', data: evil, hidden: true }, js]),
    expected: 'UnexpectedBytes',
    misleads: true,
  },
  {
    name: 'hidden index.html before every listed entry',
    zip: craftZip([{ name: 'index.html', data: evil, hidden: true }, INDEX_HTML, js]),
    expected: 'UnexpectedBytes',
  },
  {
    name: 'hidden entry at the end, before the central directory',
    zip: craftZip([INDEX_HTML, js, { name: 'index.html', data: evil, hidden: true }]),
    expected: 'UnexpectedBytes',
    misleads: true,
  },
  {
    name: 'hidden entry in the slack of a data-descriptor entry the central directory stretches over it',
    zip: craftZip([INDEX_HTML, slackEntry(false)]),
    expected: 'LocalHeaderMismatch',
    misleads: true,
  },
  {
    name: 'hidden entry in the slack, with a second descriptor matching the stretched size',
    zip: craftZip([INDEX_HTML, slackEntry(true)]),
    expected: 'UnexpectedBytes',
    misleads: true,
  },
  {
    name: 'self-extractor stub before the first entry',
    zip: craftZip([INDEX_HTML, js], { prefix: Buffer.from('MZ stub bytes') }),
    expected: 'UnexpectedBytes',
  },
  {
    name: 'bytes after the end record',
    zip: craftZip([INDEX_HTML, js], { trailing: Buffer.from('trailer') }),
    expected: 'UnexpectedBytes',
  },
  {
    name: 'local name differs from the central name',
    zip: craftZip([INDEX_HTML, { ...js, localName: 'evil.js' }]),
    expected: 'LocalNameMismatch',
    misleads: true,
  },
  {
    name: 'local name replaces index.html',
    zip: craftZip([
      { ...INDEX_HTML, data: evil, name: 'readme.txt', localName: 'index.html' },
      { ...INDEX_HTML, name: 'i.html' },
    ]),
    expected: 'LocalNameMismatch',
    misleads: true,
  },
  {
    name: 'unicode path field hides ../ in the header name',
    zip: craftZip([
      INDEX_HTML,
      { ...js, name: '../evil.js', extra: unicodePathExtra('../evil.js', 'evil.js') },
    ]),
    expected: 'UnicodePathMismatch',
    misleads: true,
  },
  {
    name: 'unicode path field with ../ behind a harmless header name',
    zip: craftZip([INDEX_HTML, { ...js, name: 'evil.js', extra: unicodePathExtra('evil.js', '../evil.js') }]),
    expected: 'UnicodePathMismatch',
  },
  {
    name: 'unicode path field only in the local header',
    zip: craftZip([INDEX_HTML, { ...js, localExtra: unicodePathExtra('app.js', 'other.js') }]),
    expected: 'UnicodePathMismatch',
  },
  {
    name: 'end record counts fewer entries than the directory holds',
    zip: craftZip([INDEX_HTML, js, { ...css, name: 'index2.html' }], { eocdEntries: 2 }),
    expected: 'EntryCountMismatch',
    misleads: true,
  },
  {
    name: 'end record counts more entries than the directory holds',
    zip: craftZip([INDEX_HTML, js], { eocdEntries: 3 }),
    expected: 'EntryCountMismatch',
  },
  {
    name: 'encryption flag only in the local header',
    zip: craftZip([INDEX_HTML, { ...js, localFlags: 0x801 }]),
    expected: 'EncryptedEntry',
    misleads: true,
  },
  {
    name: 'data-descriptor flag only in the local header',
    zip: craftZip([INDEX_HTML, { ...js, localFlags: 0x808 }]),
    expected: 'LocalHeaderMismatch',
  },
  {
    name: 'stored entry with a data descriptor',
    zip: craftZip([INDEX_HTML, { ...js, method: 0, dataDescriptor: true }]),
    expected: 'LocalHeaderMismatch',
    misleads: true,
  },
  {
    name: './index.html beside index.html',
    zip: craftZip([INDEX_HTML, { name: './index.html', data: evil }]),
    expected: 'DuplicateEntry',
    misleads: true,
  },
  {
    name: 'a//b beside a/b',
    zip: craftZip([INDEX_HTML, { ...js, name: 'js/app.js' }, { name: 'js//app.js', data: evil }]),
    expected: 'DuplicateEntry',
    misleads: true,
  },
  {
    name: 'names that differ only in case (one file on iOS)',
    zip: craftZip([INDEX_HTML, js, { name: 'App.js', data: evil }]),
    expected: 'DuplicateEntry',
  },
  {
    name: 'a lone ./ name',
    zip: craftZip([{ ...INDEX_HTML, name: './index.html' }]),
    expected: 'NonCanonicalName',
  },
  {
    name: 'a file where another entry needs a folder',
    zip: craftZip([INDEX_HTML, { name: 'js', data: evil }, { ...js, name: 'js/app.js' }]),
    expected: 'PathConflict',
  },
  {
    name: 'non-ASCII name without the UTF-8 flag (CP437 on iOS, UTF-8 on Android)',
    zip: craftZip([
      INDEX_HTML,
      { ...js, name: Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x2e, 0x6a, 0x73]), noUtf8Flag: true },
    ]),
    expected: 'NameEncoding',
  },
  {
    name: 'UTF-8 flag on a name that is not UTF-8',
    zip: craftZip([INDEX_HTML, { ...js, name: Buffer.from([0x61, 0xff, 0x2e, 0x6a, 0x73]) }]),
    expected: 'NameEncoding',
  },
  {
    name: 'UTF-8 names with the flag',
    zip: craftZip([INDEX_HTML, { ...js, name: 'café/app.js' }]),
    expected: 'accepted',
  },
];

/**
 * An entry whose deflate data ends early: ZipInputStream reads the real descriptor right after it and then the
 * hidden local entry; a central-directory reader takes the stretched compressed size and never sees it.
 */
function slackEntry(fakeDescriptor: boolean): CraftEntry {
  const hidden = craftLocalEntry({ name: 'index.html', data: evil });
  const realCompressed = deflateRawSync(js.data).length;
  const declared = realCompressed + 16 + hidden.length;
  const descriptor = Buffer.alloc(fakeDescriptor ? 16 : 0);
  if (fakeDescriptor) {
    descriptor.writeUInt32LE(0x08074b50, 0);
    descriptor.writeUInt32LE(crc32(js.data) >>> 0, 4);
    descriptor.writeUInt32LE(declared, 8);
    descriptor.writeUInt32LE(js.data.length, 12);
  }
  return {
    ...js,
    dataDescriptor: true,
    after: Buffer.concat([hidden, descriptor]),
    declaredCompressedSize: declared,
  };
}
