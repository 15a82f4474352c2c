/**
 * The object-store interface the product depends on. The S3 implementation (minio client) lives in s3-store.ts;
 * unit tests use an in-memory fake behind this interface. Only the plain S3 API is needed.
 */
import type { Readable } from 'node:stream';

export interface ObjectInfo {
  key: string;
  size: number;
  /** Entity tag without quotes. */
  etag: string;
  lastModified: Date;
  contentType?: string;
}

export interface GetResult {
  info: ObjectInfo;
  body: Readable;
}

export interface RangeSpec {
  /** First byte, inclusive. */
  start: number;
  /** Last byte, inclusive; undefined = to the end. */
  end?: number;
}

/** Largest Buffer/string body {@link ObjectStore.put} sends in one checked request (the S3 client's part size). */
export const CHECKED_BODY_MAX_BYTES = 64 * 1024 * 1024;

export interface PutOptions {
  contentType?: string;
  /** Known length, required for streams by some S3 servers; omitted = the implementation buffers or multiparts. */
  size?: number;
  signal?: AbortSignal;
  /**
   * Conditional write (`If-Match`): store the body only if the key's current ETag equals this one. Throws
   * {@link PreconditionFailedError} when it differs or the key does not exist. Buffers and strings only (documents);
   * see docs/adr/0007-conditional-writes.md for what each S3 server guarantees.
   */
  ifMatch?: string;
  /**
   * Create-only write (`If-None-Match: *`): store the body only if no object exists under the key. Throws
   * {@link PreconditionFailedError} when one does. Cannot be combined with `ifMatch`.
   */
  ifNoneMatch?: '*';
}

export interface ObjectStore {
  readonly bucket: string;
  /** Throws {@link ObjectNotFoundError} when the key does not exist. */
  stat(key: string, signal?: AbortSignal): Promise<ObjectInfo>;
  /** Returns null for 304 when `ifNoneMatch` equals the current ETag. Throws {@link ObjectNotFoundError}. */
  /** `expectedSize` (e.g. from the release index) lets an implementation pick a path suited to large bodies. */
  get(
    key: string,
    opts?: { range?: RangeSpec; ifNoneMatch?: string; signal?: AbortSignal; expectedSize?: number },
  ): Promise<GetResult | null>;
  getBuffer(
    key: string,
    opts?: { maxBytes?: number; signal?: AbortSignal },
  ): Promise<{ info: ObjectInfo; data: Buffer }>;
  /**
   * Unconditional unless `opts.ifMatch` / `opts.ifNoneMatch` is set; throws {@link PreconditionFailedError}.
   * A Buffer or string body of up to {@link CHECKED_BODY_MAX_BYTES} goes up in one request whose body the store
   * checks on arrival against a digest computed here from the same bytes (S3: the SigV4 payload SHA-256 over HTTP,
   * Content-MD5 over HTTPS); a body changed or cut short on the way is refused, so a put that resolves stored
   * exactly those bytes (docs/adr/0042-one-checked-put-per-small-artifact.md).
   */
  put(key: string, body: Readable | Buffer | string, opts?: PutOptions): Promise<{ etag: string }>;
  remove(key: string, signal?: AbortSignal): Promise<void>;
  list(prefix: string, signal?: AbortSignal): AsyncIterable<ObjectInfo>;
  /** A presigned GET URL for devices, when the store's endpoint is reachable by them. */
  presignGet?(key: string, expirySeconds: number): Promise<string>;
}

export class ObjectNotFoundError extends Error {
  constructor(readonly key: string) {
    super(`object not found: ${key}`);
    this.name = 'ObjectNotFoundError';
  }
}

/** The store could not be reached or answered 5xx: callers retry with backoff, devices get 503 + Retry-After. */
export class StoreUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreUnavailableError';
  }
}

/**
 * A conditional write's precondition did not hold (HTTP 412 `PreconditionFailed`, S3's 409
 * `ConditionalRequestConflict` for a concurrent conditional write, or `If-Match` on a key that does not exist):
 * someone else wrote the key since it was read. Callers read it again and retry their change on the fresh copy.
 */
export class PreconditionFailedError extends Error {
  constructor(
    readonly key: string,
    readonly condition: 'if-match' | 'if-none-match',
  ) {
    super(
      condition === 'if-match'
        ? `object ${key} changed since it was read (If-Match failed)`
        : `object ${key} already exists (If-None-Match: * failed)`,
    );
    this.name = 'PreconditionFailedError';
  }
}

/** The condition a {@link PutOptions} asks for, validated (both at once is a programming error). */
export function putCondition(
  key: string,
  opts: Pick<PutOptions, 'ifMatch' | 'ifNoneMatch'>,
): 'if-match' | 'if-none-match' | undefined {
  if (opts.ifMatch !== undefined && opts.ifNoneMatch !== undefined)
    throw new TypeError(`put ${key}: ifMatch and ifNoneMatch cannot be combined`);
  if (opts.ifMatch !== undefined) return 'if-match';
  return opts.ifNoneMatch !== undefined ? 'if-none-match' : undefined;
}
