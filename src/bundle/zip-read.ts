import type { Readable } from 'node:stream';
import type { Entry, ZipFile } from 'yauzl';

/** The next central-directory entry of a `lazyEntries` zip, or undefined at the end. */
export function nextEntry(zip: ZipFile): Promise<Entry | undefined> {
  return new Promise((resolve, reject) => {
    const done = (entry: Entry | undefined, err?: unknown): void => {
      zip.off('entry', onEntry).off('end', onEnd).off('error', onError);
      if (err) reject(err instanceof Error ? err : new Error('zip read failed'));
      else resolve(entry);
    };
    const onEntry = (entry: Entry): void => done(entry);
    const onEnd = (): void => done(undefined);
    const onError = (err: unknown): void => done(undefined, err);
    zip.on('entry', onEntry).on('end', onEnd).on('error', onError);
    zip.readEntry();
  });
}

export function openEntry(zip: ZipFile, entry: Entry): Promise<Readable> {
  return new Promise((resolve, reject) =>
    zip.openReadStream(entry, (err, stream) => (err ? reject(err) : resolve(stream))),
  );
}
