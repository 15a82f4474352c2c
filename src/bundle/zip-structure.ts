/**
 * Both views of a zip, read strictly and compared (docs/adr/0011-zip-two-views.md). A central-directory reader
 * (yauzl, `unzip -l`, iOS' ZIPFoundation, our delta manifest) and Android's `java.util.zip.ZipInputStream`, which
 * walks the local headers from byte 0 and never reads the directory, must see the same entries, or the bundle a
 * reviewer and the validator saw is not the one a device installs. So every byte of the file must belong to exactly
 * one entry (local header, data, data descriptor), the central directory or the end record and its comment; every
 * local header must repeat its central entry; names must decode the same way everywhere.
 */
import { BundleValidationError } from './errors.js';

/**
 * Positioned reads of a zip's bytes: an open file (`FileHandle` is one), or a zip already in memory
 * ({@link bufferZipBytes}). The rules read through it are the same either way.
 */
export interface ZipBytes {
  read(
    buffer: Buffer,
    offset: number,
    length: number,
    position: number,
  ): Promise<{ bytesRead: number; buffer: Buffer }>;
}

/** A zip in memory read as a file would be: a read past the end returns what is left, then 0 bytes. */
export function bufferZipBytes(data: Uint8Array): ZipBytes {
  return {
    read(buffer, offset, length, position) {
      if (!Number.isSafeInteger(position) || position < 0) {
        return Promise.reject(new RangeError(`cannot read at position ${position}`));
      }
      const bytesRead = Math.max(0, Math.min(length, data.length - position));
      buffer.set(data.subarray(position, position + bytesRead), offset);
      return Promise.resolve({ bytesRead, buffer });
    },
  };
}

const LOCAL_SIGNATURE = 0x04034b50;
const CENTRAL_SIGNATURE = 0x02014b50;
const END_SIGNATURE = 0x06054b50;
const ZIP64_LOCATOR_SIGNATURE = 0x07064b50;
const DESCRIPTOR_SIGNATURE = 0x08074b50;
const END_SIZE = 22;
const CENTRAL_SIZE = 46;
const LOCAL_SIZE = 30;
const MAX_COMMENT = 0xffff;
const UNICODE_PATH_FIELD = 0x7075;

const FLAG_ENCRYPTED = 0x1;
const FLAG_DATA_DESCRIPTOR = 0x8;
const FLAG_STRONG_ENCRYPTION = 0x40;
const FLAG_UTF8 = 0x800;
const FLAG_MASKED_HEADERS = 0x2000;
const ENCRYPTION_FLAGS = FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION | FLAG_MASKED_HEADERS;
/** Flags that change how an entry is read; the others (deflate level hints) may differ between the headers. */
const READING_FLAGS = FLAG_DATA_DESCRIPTOR | FLAG_UTF8;

/** One entry as both views agree on it. */
export interface ZipEntryRecord {
  /** The name, decoded as UTF-8 (the same string on every reader once the structure is accepted). */
  readonly name: string;
  readonly flags: number;
  readonly method: number;
  readonly crc32: number;
  readonly compressedSize: number;
  readonly uncompressedSize: number;
  /** Offset of the entry's (compressed) data in the file. */
  readonly dataOffset: number;
  readonly versionMadeBy: number;
  readonly externalAttributes: number;
}

export interface ZipStructure {
  readonly entries: readonly ZipEntryRecord[];
}

/**
 * Reads the end record, the central directory and every local header, and refuses the zip (with a
 * {@link BundleValidationError}) wherever the two views could differ. `maxEntries` bounds the work before anything
 * is parsed.
 */
export async function readZipStructure(
  handle: ZipBytes,
  fileSize: number,
  maxEntries: number,
): Promise<ZipStructure> {
  const end = await readEndRecord(handle, fileSize);
  if (end.entries > maxEntries) {
    throw new BundleValidationError(
      'TooManyEntries',
      `the zip has ${end.entries} entries, more than the limit of ${maxEntries}`,
    );
  }
  const central = await readAt(handle, end.centralOffset, end.centralSize);
  const records: CentralRecord[] = [];
  for (let pos = 0; pos < central.length;) {
    if (records.length >= end.entries) {
      throw new BundleValidationError(
        'EntryCountMismatch',
        `the end record counts ${end.entries} entries but the central directory holds more`,
      );
    }
    const record = parseCentral(central, pos);
    records.push(record);
    pos = record.next;
  }
  if (records.length !== end.entries) {
    throw new BundleValidationError(
      'EntryCountMismatch',
      `the end record counts ${end.entries} entries but the central directory holds ${records.length}`,
    );
  }

  // ZipInputStream reads from byte 0, entry after entry: they must follow each other without a gap, in directory
  // order, and the last one must end where the central directory starts.
  let expected = 0;
  const entries: ZipEntryRecord[] = [];
  for (const record of records) {
    if (record.localOffset !== expected) throw gapOrOverlap(record.name, record.localOffset, expected);
    const local = await readLocal(handle, record, end.centralOffset);
    entries.push(local.entry);
    expected = local.next;
  }
  if (expected !== end.centralOffset) {
    throw new BundleValidationError(
      'UnexpectedBytes',
      `${end.centralOffset - expected} bytes between the last entry and the central directory belong to no entry (a hidden entry?)`,
    );
  }
  return { entries };
}

interface EndRecord {
  entries: number;
  centralSize: number;
  centralOffset: number;
}

async function readEndRecord(handle: ZipBytes, fileSize: number): Promise<EndRecord> {
  if (fileSize < END_SIZE) throw corrupt('the file is too small to be a zip');
  const tailSize = Math.min(fileSize, END_SIZE + MAX_COMMENT);
  const tail = await readAt(handle, fileSize - tailSize, tailSize);
  let found = -1;
  let stray = false;
  for (let i = tail.length - END_SIZE; i >= 0; i--) {
    if (tail.readUInt32LE(i) !== END_SIGNATURE) continue;
    if (i + END_SIZE + tail.readUInt16LE(i + 20) === tail.length) {
      found = i;
      break;
    }
    stray = true;
  }
  if (found < 0) {
    throw stray
      ? new BundleValidationError(
          'UnexpectedBytes',
          'bytes follow the end of central directory record that its comment length does not cover',
        )
      : corrupt('no end of central directory record (not a zip?)');
  }
  const endOffset = fileSize - tailSize + found;
  const record = tail.subarray(found, found + END_SIZE);
  const disk = record.readUInt16LE(4);
  const centralDisk = record.readUInt16LE(6);
  const entriesOnDisk = record.readUInt16LE(8);
  const entries = record.readUInt16LE(10);
  const centralSize = record.readUInt32LE(12);
  const centralOffset = record.readUInt32LE(16);
  if (
    entries === 0xffff ||
    centralSize === 0xffffffff ||
    centralOffset === 0xffffffff ||
    (found >= 20 && tail.readUInt32LE(found - 20) === ZIP64_LOCATOR_SIGNATURE)
  ) {
    throw new BundleValidationError(
      'Zip64NotSupported',
      'the zip uses the Zip64 format; bundles must be plain zips (under 4 GiB and 65535 entries)',
    );
  }
  if (disk !== 0 || centralDisk !== 0) throw corrupt('the zip spans several disks');
  if (entriesOnDisk !== entries) {
    throw new BundleValidationError(
      'EntryCountMismatch',
      `the end record counts ${entries} entries in total but ${entriesOnDisk} on this disk`,
    );
  }
  if (centralOffset + centralSize > endOffset) throw corrupt('the central directory overlaps its end record');
  if (centralOffset + centralSize !== endOffset) {
    throw new BundleValidationError(
      'UnexpectedBytes',
      `${endOffset - centralOffset - centralSize} bytes between the central directory and its end record belong to nothing`,
    );
  }
  return { entries, centralSize, centralOffset };
}

interface CentralRecord {
  name: string;
  nameBytes: Buffer;
  flags: number;
  method: number;
  crc32: number;
  compressedSize: number;
  uncompressedSize: number;
  versionMadeBy: number;
  externalAttributes: number;
  localOffset: number;
  next: number;
}

function parseCentral(central: Buffer, pos: number): CentralRecord {
  if (pos + CENTRAL_SIZE > central.length || central.readUInt32LE(pos) !== CENTRAL_SIGNATURE) {
    throw corrupt(`invalid central directory entry at offset ${pos} of the directory`);
  }
  const nameLength = central.readUInt16LE(pos + 28);
  const extraLength = central.readUInt16LE(pos + 30);
  const commentLength = central.readUInt16LE(pos + 32);
  const next = pos + CENTRAL_SIZE + nameLength + extraLength + commentLength;
  if (next > central.length) throw corrupt('a central directory entry runs past the directory');
  const flags = central.readUInt16LE(pos + 8);
  const nameBytes = central.subarray(pos + CENTRAL_SIZE, pos + CENTRAL_SIZE + nameLength);
  const name = decodeName(nameBytes, flags);
  checkUnicodePath(
    name,
    nameBytes,
    central.subarray(pos + CENTRAL_SIZE + nameLength, pos + CENTRAL_SIZE + nameLength + extraLength),
  );
  if ((flags & ENCRYPTION_FLAGS) !== 0) throw encrypted(name);
  const compressedSize = central.readUInt32LE(pos + 20);
  const uncompressedSize = central.readUInt32LE(pos + 24);
  const localOffset = central.readUInt32LE(pos + 42);
  if (compressedSize === 0xffffffff || uncompressedSize === 0xffffffff || localOffset === 0xffffffff) {
    throw new BundleValidationError('Zip64NotSupported', `${name} uses Zip64 sizes or offsets`, name);
  }
  return {
    name,
    nameBytes,
    flags,
    method: central.readUInt16LE(pos + 10),
    crc32: central.readUInt32LE(pos + 16),
    compressedSize,
    uncompressedSize,
    versionMadeBy: central.readUInt16LE(pos + 4),
    externalAttributes: central.readUInt32LE(pos + 38),
    localOffset,
    next,
  };
}

/** The local header of `record` must repeat it; returns where the next entry must start. */
async function readLocal(
  handle: ZipBytes,
  record: CentralRecord,
  centralOffset: number,
): Promise<{ entry: ZipEntryRecord; next: number }> {
  const { name } = record;
  if (record.localOffset + LOCAL_SIZE > centralOffset)
    throw mismatch(name, 'its local header lies past the entries');
  const header = await readAt(handle, record.localOffset, LOCAL_SIZE);
  if (header.readUInt32LE(0) !== LOCAL_SIGNATURE)
    throw mismatch(name, 'no local header where the directory points');
  const flags = header.readUInt16LE(6);
  const method = header.readUInt16LE(8);
  const nameLength = header.readUInt16LE(26);
  const extraLength = header.readUInt16LE(28);
  const dataOffset = record.localOffset + LOCAL_SIZE + nameLength + extraLength;
  if (dataOffset > centralOffset) throw mismatch(name, 'its local name runs past the entries');
  const variable = await readAt(handle, record.localOffset + LOCAL_SIZE, nameLength + extraLength);
  const localNameBytes = variable.subarray(0, nameLength);
  if (!localNameBytes.equals(record.nameBytes)) {
    throw new BundleValidationError(
      'LocalNameMismatch',
      `the local header of ${name} names it ${JSON.stringify(localNameBytes.toString('utf8'))}; Android would extract that name`,
      name,
    );
  }
  checkUnicodePath(name, localNameBytes, variable.subarray(nameLength));
  if ((flags & ENCRYPTION_FLAGS) !== 0) throw encrypted(name);
  if ((flags & READING_FLAGS) !== (record.flags & READING_FLAGS)) {
    throw mismatch(
      name,
      `local flags 0x${flags.toString(16)} differ from the directory's 0x${record.flags.toString(16)}`,
    );
  }
  if (method !== record.method)
    throw mismatch(name, `local compression method ${method} differs from the directory's ${record.method}`);
  const crc = header.readUInt32LE(14);
  const compressedSize = header.readUInt32LE(18);
  const uncompressedSize = header.readUInt32LE(22);
  let next = dataOffset + record.compressedSize;
  if (next > centralOffset) throw mismatch(name, 'its data runs into the central directory');
  if ((flags & FLAG_DATA_DESCRIPTOR) !== 0) {
    // ZipInputStream only supports data descriptors after deflate data, where the stream marks its own end.
    if (method !== 8)
      throw mismatch(name, 'a stored entry cannot use a data descriptor (ZipInputStream refuses it)');
    const zeros = crc === 0 && compressedSize === 0 && uncompressedSize === 0;
    if (!zeros && !sameSizes(record, crc, compressedSize, uncompressedSize)) {
      throw mismatch(name, 'its local header sizes differ from the directory');
    }
    next += await descriptorLength(handle, record, next, centralOffset);
  } else if (!sameSizes(record, crc, compressedSize, uncompressedSize)) {
    throw mismatch(
      name,
      `local header says crc ${crc.toString(16)}, ${compressedSize}/${uncompressedSize} bytes; the directory says crc ${record.crc32.toString(16)}, ${record.compressedSize}/${record.uncompressedSize}`,
    );
  }
  return {
    entry: {
      name,
      flags: record.flags,
      method: record.method,
      crc32: record.crc32,
      compressedSize: record.compressedSize,
      uncompressedSize: record.uncompressedSize,
      dataOffset,
      versionMadeBy: record.versionMadeBy,
      externalAttributes: record.externalAttributes,
    },
    next,
  };
}

function sameSizes(record: CentralRecord, crc: number, compressed: number, uncompressed: number): boolean {
  return (
    crc === record.crc32 && compressed === record.compressedSize && uncompressed === record.uncompressedSize
  );
}

/** A data descriptor (with or without its optional signature) repeating the directory; returns its length. */
async function descriptorLength(
  handle: ZipBytes,
  record: CentralRecord,
  at: number,
  centralOffset: number,
): Promise<number> {
  const available = Math.min(16, centralOffset - at);
  const bytes = await readAt(handle, at, available);
  const matches = (offset: number): boolean =>
    bytes.length >= offset + 12 &&
    bytes.readUInt32LE(offset) === record.crc32 &&
    bytes.readUInt32LE(offset + 4) === record.compressedSize &&
    bytes.readUInt32LE(offset + 8) === record.uncompressedSize;
  if (bytes.length >= 16 && bytes.readUInt32LE(0) === DESCRIPTOR_SIGNATURE && matches(4)) return 16;
  if (matches(0)) return 12;
  throw mismatch(record.name, 'no data descriptor repeating the directory follows its data');
}

/**
 * Names are UTF-8 on Android whatever the flag says, CP437 on iOS and in yauzl without the UTF-8 flag: only ASCII
 * names, or UTF-8 names flagged as such, read the same everywhere.
 */
function decodeName(bytes: Buffer, flags: number): string {
  const ascii = bytes.every((byte) => byte < 0x80);
  if (!ascii && (flags & FLAG_UTF8) === 0) {
    throw new BundleValidationError(
      'NameEncoding',
      `the entry name ${JSON.stringify(bytes.toString('latin1'))} is not ASCII and not flagged as UTF-8: Android and iOS would name the file differently`,
    );
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new BundleValidationError(
      'NameEncoding',
      `the entry name ${JSON.stringify(bytes.toString('latin1'))} is flagged as UTF-8 but is not valid UTF-8`,
    );
  }
}

/**
 * An Info-ZIP Unicode Path field (0x7075) replaces the header name in yauzl, `unzip` and others, while Android
 * ignores it: it may only repeat the header name.
 */
function checkUnicodePath(name: string, nameBytes: Buffer, extra: Buffer): void {
  for (let pos = 0; pos + 4 <= extra.length;) {
    const id = extra.readUInt16LE(pos);
    const size = extra.readUInt16LE(pos + 2);
    const data = extra.subarray(pos + 4, pos + 4 + size);
    if (id === UNICODE_PATH_FIELD) {
      const unicode = data.length > 5 ? data.subarray(5) : Buffer.alloc(0);
      if (!unicode.equals(nameBytes)) {
        throw new BundleValidationError(
          'UnicodePathMismatch',
          `${name} carries a Unicode path field naming it ${JSON.stringify(unicode.toString('utf8'))}; readers disagree on its name`,
          name,
        );
      }
    }
    pos += 4 + size;
  }
}

function gapOrOverlap(name: string, offset: number, expected: number): BundleValidationError {
  return offset > expected
    ? new BundleValidationError(
        'UnexpectedBytes',
        `${offset - expected} bytes before ${name} belong to no listed entry (a hidden entry Android would extract?)`,
        name,
      )
    : new BundleValidationError(
        'OverlappingEntries',
        `${name} starts inside the previous entry (entries must not share bytes)`,
        name,
      );
}

function mismatch(name: string, detail: string): BundleValidationError {
  return new BundleValidationError('LocalHeaderMismatch', `${name}: ${detail}`, name);
}

function encrypted(name: string): BundleValidationError {
  return new BundleValidationError(
    'EncryptedEntry',
    `${name} is password-protected; devices cannot read encrypted zip entries`,
    name,
  );
}

function corrupt(message: string): BundleValidationError {
  return new BundleValidationError('CorruptZip', `the zip cannot be read: ${message}`);
}

async function readAt(handle: ZipBytes, position: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) throw corrupt('unexpected end of file');
    done += bytesRead;
  }
  return buffer;
}
