/**
 * Reading the JSON documents several writers or versions share (release indexes, the root) with the ETag a
 * conditional write needs. A document that exists but cannot be understood is reported, never treated as absent:
 * writers stop rather than rebuild it from nothing (docs/adr/0007-conditional-writes.md).
 */
import { ObjectNotFoundError, type ObjectStore } from '../../storage/object-store.js';
import { ReleaseIndexValidationError } from '../../storage/release-index-schema.js';

/** Largest index or root document read back from the store. */
export const MAX_DOCUMENT_BYTES = 64 * 1024 * 1024;

/** A stored document that is not JSON, does not match its schema, or comes from a newer schema version. */
export class DocumentUnreadableError extends Error {
  constructor(
    readonly key: string,
    readonly problem: string,
  ) {
    super(`${key} is unreadable: ${problem}`);
    this.name = 'DocumentUnreadableError';
  }
}

export interface StoredDocument<T> {
  doc: T;
  /** ETag to write the next version with `ifMatch`. */
  etag: string;
}

/**
 * The document under `key` validated by `validate`, with its ETag; undefined when absent. Throws
 * {@link DocumentUnreadableError} when it exists but is not usable, and store errors as they are.
 */
export async function readDocument<T>(
  store: ObjectStore,
  key: string,
  validate: (doc: unknown) => T,
  signal?: AbortSignal,
): Promise<StoredDocument<T> | undefined> {
  let data: Buffer;
  let etag: string;
  try {
    ({
      data,
      info: { etag },
    } = await store.getBuffer(key, { maxBytes: MAX_DOCUMENT_BYTES, ...(signal ? { signal } : {}) }));
  } catch (error) {
    if (error instanceof ObjectNotFoundError) return undefined;
    throw error;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(data.toString('utf8'));
  } catch (error) {
    throw new DocumentUnreadableError(key, `not JSON (${(error as Error).message})`);
  }
  try {
    return { doc: validate(parsed), etag };
  } catch (error) {
    if (error instanceof ReleaseIndexValidationError) throw new DocumentUnreadableError(key, error.message);
    throw error;
  }
}
