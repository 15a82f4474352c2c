/**
 * An in-memory {@link ObjectStore} for unit tests, with the same observable semantics as the S3 implementation:
 * quoted-less ETags (md5 hex, as S3 gives for single-part uploads), inclusive byte ranges, `ifNoneMatch` → null,
 * {@link ObjectNotFoundError} for missing keys, lexicographic listing, atomic conditional puts
 * ({@link PreconditionFailedError}). `setUnavailable(true)` makes every call fail
 * with {@link StoreUnavailableError}, to exercise outage paths without a network.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  ObjectNotFoundError,
  PreconditionFailedError,
  StoreUnavailableError,
  putCondition,
  type GetResult,
  type ObjectInfo,
  type ObjectStore,
  type PutOptions,
  type RangeSpec,
} from './object-store.js';

interface StoredObject {
  data: Buffer;
  info: ObjectInfo;
}

export class MemoryObjectStore implements ObjectStore {
  readonly bucket: string;
  private readonly objects = new Map<string, StoredObject>();
  private unavailable = false;
  /** Number of calls per operation, so tests can assert that a cache did (not) hit the store. */
  readonly calls = { stat: 0, get: 0, getBuffer: 0, put: 0, remove: 0, list: 0 };

  constructor(bucket = 'memory') {
    this.bucket = bucket;
  }

  setUnavailable(unavailable: boolean): void {
    this.unavailable = unavailable;
  }

  /** Keys currently stored, sorted (test helper). */
  keys(): string[] {
    return [...this.objects.keys()].sort();
  }

  private check(signal?: AbortSignal): void {
    signal?.throwIfAborted();
    if (this.unavailable) throw new StoreUnavailableError('memory store: unavailable (test switch)');
  }

  private lookup(key: string): StoredObject {
    const obj = this.objects.get(key);
    if (!obj) throw new ObjectNotFoundError(key);
    return obj;
  }

  stat(key: string, signal?: AbortSignal): Promise<ObjectInfo> {
    this.calls.stat++;
    try {
      this.check(signal);
      return Promise.resolve({ ...this.lookup(key).info });
    } catch (err) {
      return rejected(err);
    }
  }

  get(
    key: string,
    opts: { range?: RangeSpec; ifNoneMatch?: string; signal?: AbortSignal } = {},
  ): Promise<GetResult | null> {
    this.calls.get++;
    try {
      this.check(opts.signal);
      const obj = this.lookup(key);
      if (opts.ifNoneMatch !== undefined && stripQuotes(opts.ifNoneMatch) === obj.info.etag)
        return Promise.resolve(null);
      let data = obj.data;
      if (opts.range) {
        const { start } = opts.range;
        const end = Math.min(opts.range.end ?? obj.data.length - 1, obj.data.length - 1);
        if (start < 0 || start >= obj.data.length || end < start) {
          throw new RangeError(`invalid range ${start}-${opts.range.end ?? ''} for ${obj.data.length} bytes`);
        }
        data = obj.data.subarray(start, end + 1);
      }
      return Promise.resolve({ info: { ...obj.info }, body: Readable.from([data]) });
    } catch (err) {
      return rejected(err);
    }
  }

  getBuffer(
    key: string,
    opts: { maxBytes?: number; signal?: AbortSignal } = {},
  ): Promise<{ info: ObjectInfo; data: Buffer }> {
    this.calls.getBuffer++;
    try {
      this.check(opts.signal);
      const obj = this.lookup(key);
      if (opts.maxBytes !== undefined && obj.data.length > opts.maxBytes) {
        throw new Error(`object ${key} is ${obj.data.length} bytes, more than the ${opts.maxBytes} allowed`);
      }
      return Promise.resolve({ info: { ...obj.info }, data: Buffer.from(obj.data) });
    } catch (err) {
      return rejected(err);
    }
  }

  async put(key: string, body: Readable | Buffer | string, opts: PutOptions = {}): Promise<{ etag: string }> {
    this.calls.put++;
    this.check(opts.signal);
    const condition = putCondition(key, opts);
    if (condition !== undefined && !(typeof body === 'string' || Buffer.isBuffer(body)))
      throw new TypeError(`put ${key}: a conditional write takes a Buffer or string body`);
    const data =
      typeof body === 'string'
        ? Buffer.from(body)
        : Buffer.isBuffer(body)
          ? Buffer.from(body)
          : await drain(body);
    if (opts.size !== undefined && opts.size !== data.length) {
      throw new Error(`put ${key}: declared size ${opts.size} but body has ${data.length} bytes`);
    }
    // Checked after the body is read and before it is stored, with no await in between: atomic, like AWS S3.
    const current = this.objects.get(key);
    if (condition === 'if-match' && (!current || current.info.etag !== stripQuotes(opts.ifMatch!)))
      throw new PreconditionFailedError(key, condition);
    if (condition === 'if-none-match' && current) throw new PreconditionFailedError(key, condition);
    const etag = createHash('md5').update(data).digest('hex');
    const info: ObjectInfo = { key, size: data.length, etag, lastModified: new Date() };
    if (opts.contentType !== undefined) info.contentType = opts.contentType;
    this.objects.set(key, { data, info });
    return { etag };
  }

  remove(key: string, signal?: AbortSignal): Promise<void> {
    this.calls.remove++;
    try {
      this.check(signal);
      // S3 DELETE is idempotent: removing a missing key succeeds.
      this.objects.delete(key);
      return Promise.resolve();
    } catch (err) {
      return rejected(err);
    }
  }

  async *list(prefix: string, signal?: AbortSignal): AsyncIterable<ObjectInfo> {
    this.calls.list++;
    // Asynchronous like a real listing, so callers cannot depend on synchronous iteration.
    await Promise.resolve();
    this.check(signal);
    const keys = [...this.objects.keys()].filter((k) => k.startsWith(prefix)).sort();
    for (const key of keys) {
      const obj = this.objects.get(key);
      if (obj) yield { ...obj.info };
    }
  }

  presignGet(key: string, expirySeconds: number): Promise<string> {
    return Promise.resolve(
      `https://memory.invalid/${this.bucket}/${key.split('/').map(encodeURIComponent).join('/')}?expires=${expirySeconds}`,
    );
  }
}

function stripQuotes(etag: string): string {
  return etag.replace(/^W\//, '').replace(/^"|"$/g, '');
}

async function drain(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream)
    chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string));
  return Buffer.concat(chunks);
}

function rejected(err: unknown): Promise<never> {
  return Promise.reject(err instanceof Error ? err : new Error(String(err)));
}
