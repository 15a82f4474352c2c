import { deflateRawSync, crc32 } from 'node:zlib';

/** One entry of a hand-made zip; every field a hostile zip could lie about can be overridden. */
export interface CraftEntry {
  name: string | Buffer;
  data?: Buffer;
  /** 0 stored, 8 deflate (default). */
  method?: number;
  flags?: number;
  /** Unix mode for the external attributes (host = Unix); default regular file 0644. */
  mode?: number;
  /** Declared uncompressed size (default: real). */
  declaredSize?: number;
  crc?: number;
  /** Leave out the UTF-8 name flag (bit 11), which is set by default. */
  noUtf8Flag?: boolean;
  /** Name in the local header when it should differ from the central directory's. */
  localName?: string | Buffer;
  /** General purpose flags of the local header when they should differ (UTF-8 bit not added). */
  localFlags?: number;
  /** Declared compressed size in the central directory (default: real). */
  declaredCompressedSize?: number;
  /** Extra field of the central header (e.g. {@link unicodePathExtra}). */
  extra?: Buffer;
  /** Extra field of the local header. */
  localExtra?: Buffer;
  /** Write the data with a data descriptor (bit 3, zero sizes in the local header) as streaming zippers do. */
  dataDescriptor?: boolean;
  /** Only a local entry: left out of the central directory, as in the hidden second index.html attack. */
  hidden?: boolean;
  /** Bytes appended after the entry's data (and descriptor), before the next local header. */
  after?: Buffer;
}

export interface CraftOptions {
  /** Bytes before the first local header (a self-extractor stub, or a hidden entry). */
  prefix?: Buffer;
  /** Entry count written in the end of central directory record (default: the central entries). */
  eocdEntries?: number;
  /** Bytes after the end of central directory record that the comment length does not cover. */
  trailing?: Buffer;
  /** Comment of the end of central directory record. */
  comment?: Buffer;
}

/**
 * Build a zip byte by byte (test helper): yazl refuses the malformed names and lying headers validation must
 * catch, so hostile archives are written here instead.
 */
export function craftZip(entries: CraftEntry[], options: CraftOptions = {}): Buffer {
  const prefix = options.prefix ?? Buffer.alloc(0);
  const locals: Buffer[] = [prefix];
  const centrals: Buffer[] = [];
  let offset = prefix.length;
  let centralCount = 0;
  for (const entry of entries) {
    const name = bytes(entry.name);
    const localName = entry.localName === undefined ? name : bytes(entry.localName);
    const data = entry.data ?? Buffer.alloc(0);
    const method = entry.method ?? 8;
    const body = method === 8 ? deflateRawSync(data) : data;
    const crc = entry.crc ?? crc32(data);
    const size = entry.declaredSize ?? data.length;
    const compressedSize = entry.declaredCompressedSize ?? body.length;
    const flags = (entry.flags ?? 0) | (entry.noUtf8Flag ? 0 : 0x800) | (entry.dataDescriptor ? 0x8 : 0);
    const localFlags = entry.localFlags ?? flags;
    const localExtra = entry.localExtra ?? Buffer.alloc(0);
    const extra = entry.extra ?? Buffer.alloc(0);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(localFlags, 6);
    local.writeUInt16LE(method, 8);
    local.writeUInt16LE(0, 10);
    local.writeUInt16LE(0x21, 12);
    if (!entry.dataDescriptor) {
      local.writeUInt32LE(crc >>> 0, 14);
      local.writeUInt32LE(compressedSize, 18);
      local.writeUInt32LE(size, 22);
    }
    local.writeUInt16LE(localName.length, 26);
    local.writeUInt16LE(localExtra.length, 28);
    // The descriptor carries the real compressed size, which a lying central directory may not.
    const descriptor = Buffer.alloc(entry.dataDescriptor ? 16 : 0);
    if (entry.dataDescriptor) {
      descriptor.writeUInt32LE(0x08074b50, 0);
      descriptor.writeUInt32LE(crc >>> 0, 4);
      descriptor.writeUInt32LE(body.length, 8);
      descriptor.writeUInt32LE(size, 12);
    }
    const after = entry.after ?? Buffer.alloc(0);
    if (!entry.hidden) {
      const central = Buffer.alloc(46);
      central.writeUInt32LE(0x02014b50, 0);
      central.writeUInt16LE((3 << 8) | 20, 4);
      central.writeUInt16LE(20, 6);
      central.writeUInt16LE(flags, 8);
      central.writeUInt16LE(method, 10);
      central.writeUInt16LE(0, 12);
      central.writeUInt16LE(0x21, 14);
      central.writeUInt32LE(crc >>> 0, 16);
      central.writeUInt32LE(compressedSize, 20);
      central.writeUInt32LE(size, 24);
      central.writeUInt16LE(name.length, 28);
      central.writeUInt16LE(extra.length, 30);
      central.writeUInt32LE(((entry.mode ?? 0o100644) << 16) >>> 0, 38);
      central.writeUInt32LE(offset, 42);
      centrals.push(central, name, extra);
      centralCount++;
    }
    locals.push(local, localName, localExtra, body, descriptor, after);
    offset +=
      local.length + localName.length + localExtra.length + body.length + descriptor.length + after.length;
  }
  const cd = Buffer.concat(centrals);
  const comment = options.comment ?? Buffer.alloc(0);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(options.eocdEntries ?? centralCount, 8);
  eocd.writeUInt16LE(options.eocdEntries ?? centralCount, 10);
  eocd.writeUInt32LE(cd.length, 12);
  eocd.writeUInt32LE(offset, 16);
  eocd.writeUInt16LE(comment.length, 20);
  return Buffer.concat([...locals, cd, eocd, comment, options.trailing ?? Buffer.alloc(0)]);
}

/** Only the local part (header, name, data) of one entry: what a zip hides between or inside other entries. */
export function craftLocalEntry(entry: CraftEntry): Buffer {
  const zip = craftZip([{ ...entry, hidden: true }]);
  return zip.subarray(0, zip.length - 22);
}

/** An Info-ZIP Unicode Path extra field (0x7075): a UTF-8 name that readers like yauzl prefer to the header's. */
export function unicodePathExtra(headerName: string | Buffer, unicodeName: string): Buffer {
  const name = Buffer.from(unicodeName, 'utf8');
  const field = Buffer.alloc(9);
  field.writeUInt16LE(0x7075, 0);
  field.writeUInt16LE(5 + name.length, 2);
  field.writeUInt8(1, 4);
  field.writeUInt32LE(crc32(bytes(headerName)) >>> 0, 5);
  return Buffer.concat([field, name]);
}

function bytes(name: string | Buffer): Buffer {
  return typeof name === 'string' ? Buffer.from(name, 'utf8') : name;
}

export const INDEX_HTML = { name: 'index.html', data: Buffer.from('<html><body>hi</body></html>') };
