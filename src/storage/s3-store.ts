/**
 * {@link ObjectStore} over any S3 API with the `minio` client (plain S3 calls only, no MinIO admin API).
 *
 * The minio client has no per-call timeout or AbortSignal, so every call runs inside an AsyncLocalStorage context
 * that a custom transport reads: it adds the caller's signal and an idle-socket timeout to the underlying
 * `http(s).request`, and records the HTTP status so that errors can be classified (the client's S3Error keeps only
 * the XML code). The client's own retry is off: callers decide (the index cache polls again, devices retry
 * downloads on 503).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import { Client, S3Error } from 'minio';
import {
  ObjectNotFoundError,
  StoreUnavailableError,
  type GetResult,
  type ObjectInfo,
  type ObjectStore,
  type PutOptions,
  type RangeSpec,
} from './object-store.js';

export interface S3StoreOptions {
  /** `http(s)://host[:port]` of the S3 API. */
  endpoint: string;
  bucket: string;
  region?: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Path-style addressing (`host/bucket/key`); the default, and what in-cluster S3 servers need. */
  pathStyle?: boolean;
  /** PEM CA bundle (contents, not a path) for an endpoint with a private CA. */
  ca?: string;
  /** Socket idle timeout for connect and every read/write, ms (default 10 s). */
  timeoutMs?: number;
  /** Endpoint devices reach for presigned URLs, when it differs from `endpoint` (default: same). */
  presignEndpoint?: string;
}

interface CallContext {
  signal: AbortSignal | undefined;
  status?: number;
}

/** The S3 codes that mean "the key (or bucket entry) is not there". */
const NOT_FOUND_CODES = new Set(['NoSuchKey', 'NotFound', 'NoSuchVersion']);
/** S3 codes servers use for overload or internal failure (the client maps a bare 503 to SlowDown). */
const UNAVAILABLE_CODES = new Set([
  'InternalError',
  'ServiceUnavailable',
  'SlowDown',
  'RequestTimeout',
  'RequestTimeTooSkewed',
  'OperationAborted',
]);

const SYSTEM_NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EPIPE',
  'ECONNABORTED',
  'UND_ERR_SOCKET',
]);

export class S3ObjectStore implements ObjectStore {
  readonly bucket: string;
  private readonly region: string;
  private readonly client: Client;
  private readonly presignClient: Client;
  private readonly als = new AsyncLocalStorage<CallContext>();
  private readonly agents: http.Agent[] = [];

  constructor(opts: S3StoreOptions) {
    this.bucket = opts.bucket;
    this.region = opts.region ?? 'us-east-1';
    this.client = this.makeClient(opts.endpoint, opts);
    this.presignClient = opts.presignEndpoint ? this.makeClient(opts.presignEndpoint, opts) : this.client;
  }

  private makeClient(endpoint: string, opts: S3StoreOptions): Client {
    const url = new URL(endpoint);
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw new Error(`S3 endpoint must be http(s): ${endpoint}`);
    const useSSL = url.protocol === 'https:';
    const base = useSSL ? https : http;
    const agent = useSSL
      ? new https.Agent({
          keepAlive: true,
          maxSockets: 256,
          ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
        })
      : new http.Agent({ keepAlive: true, maxSockets: 256 });
    this.agents.push(agent);
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const als = this.als;
    const transport = {
      request(
        options: http.RequestOptions,
        callback?: (res: http.IncomingMessage) => void,
      ): http.ClientRequest {
        const ctx = als.getStore();
        const req = base.request(
          { ...options, agent, timeout: timeoutMs, ...(ctx?.signal ? { signal: ctx.signal } : {}) },
          (res) => {
            if (ctx && res.statusCode !== undefined) ctx.status = res.statusCode;
            // The idle timeout keeps applying while a body streams; a stalled server ends the stream with an error.
            callback?.(res);
          },
        );
        req.on('timeout', () =>
          req.destroy(Object.assign(new Error(`S3 socket idle for ${timeoutMs} ms`), { code: 'ETIMEDOUT' })),
        );
        return req;
      },
    };
    const port = url.port ? Number(url.port) : undefined;
    return new Client({
      endPoint: url.hostname,
      ...(port !== undefined ? { port } : {}),
      useSSL,
      pathStyle: opts.pathStyle ?? true,
      region: opts.region ?? 'us-east-1',
      ...(opts.accessKeyId !== undefined ? { accessKey: opts.accessKeyId } : {}),
      ...(opts.secretAccessKey !== undefined ? { secretKey: opts.secretAccessKey } : {}),
      transport: transport as unknown as typeof http,
      transportAgent: agent,
      retryOptions: { disableRetry: true },
    });
  }

  /** Runs one client call with the caller's signal, mapping errors to the interface's error types. */
  private async call<T>(
    what: string,
    key: string,
    signal: AbortSignal | undefined,
    fn: () => Promise<T>,
  ): Promise<T> {
    const ctx: CallContext = { signal };
    try {
      signal?.throwIfAborted();
      return await this.als.run(ctx, fn);
    } catch (err) {
      throw this.classify(err, what, key, ctx, signal);
    }
  }

  private classify(
    err: unknown,
    what: string,
    key: string,
    ctx: CallContext,
    signal: AbortSignal | undefined,
  ): unknown {
    if (signal?.aborted) return signal.reason ?? err;
    if (err instanceof S3Error) {
      const code = err.code ?? '';
      if (NOT_FOUND_CODES.has(code)) return new ObjectNotFoundError(key);
      if (code === 'InvalidRange') return new RangeError(`${what} ${key}: range not satisfiable`);
      if (UNAVAILABLE_CODES.has(code) || (ctx.status !== undefined && ctx.status >= 500)) {
        return new StoreUnavailableError(
          `S3 ${what} ${key}: ${code || 'server error'} (HTTP ${ctx.status ?? '?'})`,
          {
            cause: err,
          },
        );
      }
      return new Error(`S3 ${what} ${key}: ${code || err.message}`, { cause: err });
    }
    if (isNetworkError(err) || (ctx.status !== undefined && ctx.status >= 500)) {
      return new StoreUnavailableError(`S3 ${what} ${key}: ${errorMessage(err)}`, { cause: err });
    }
    return err;
  }

  stat(key: string, signal?: AbortSignal): Promise<ObjectInfo> {
    return this.call('stat', key, signal, async () => {
      const st = await this.client.statObject(this.bucket, key);
      return toInfo(key, st.size, st.etag, st.lastModified, contentTypeOf(st.metaData));
    });
  }

  get(
    key: string,
    opts: { range?: RangeSpec; ifNoneMatch?: string; signal?: AbortSignal } = {},
  ): Promise<GetResult | null> {
    return this.call('get', key, opts.signal, async () => {
      const headers: Record<string, string> = {};
      if (opts.range) headers['range'] = `bytes=${opts.range.start}-${opts.range.end ?? ''}`;
      if (opts.ifNoneMatch !== undefined) headers['if-none-match'] = `"${stripQuotes(opts.ifNoneMatch)}"`;
      const res = await this.client.makeRequestAsync(
        { method: 'GET', bucketName: this.bucket, objectName: key, headers },
        '',
        [200, 206, 304],
      );
      if (res.statusCode === 304) {
        res.resume();
        return null;
      }
      const h = res.headers;
      // For a range, the object's full size is after the slash of Content-Range; `size` is the object size.
      let size = Number(h['content-length'] ?? 0);
      const cr = h['content-range'];
      if (res.statusCode === 206 && typeof cr === 'string') {
        const total = /\/(\d+)$/.exec(cr)?.[1];
        if (total !== undefined) size = Number(total);
      }
      const lm = h['last-modified'];
      const info = toInfo(
        key,
        size,
        String(h.etag ?? ''),
        lm ? new Date(lm) : new Date(0),
        h['content-type'],
      );
      return { info, body: res };
    });
  }

  getBuffer(
    key: string,
    opts: { maxBytes?: number; signal?: AbortSignal } = {},
  ): Promise<{ info: ObjectInfo; data: Buffer }> {
    const getOpts = opts.signal ? { signal: opts.signal } : {};
    return this.get(key, getOpts).then(async (result) => {
      if (!result) throw new Error(`unexpected 304 for ${key}`);
      const max = opts.maxBytes ?? Number.MAX_SAFE_INTEGER;
      if (result.info.size > max) {
        result.body.destroy();
        throw new Error(`object ${key} is ${result.info.size} bytes, more than the ${max} allowed`);
      }
      const chunks: Buffer[] = [];
      let total = 0;
      try {
        for await (const chunk of result.body) {
          const buf = chunk as Buffer;
          total += buf.length;
          if (total > max) throw new Error(`object ${key} exceeds ${max} bytes`);
          chunks.push(buf);
        }
      } catch (err) {
        result.body.destroy();
        if (err instanceof Error && /exceeds/.test(err.message)) throw err;
        throw new StoreUnavailableError(`S3 get ${key}: body interrupted`, { cause: err });
      }
      return { info: result.info, data: Buffer.concat(chunks) };
    });
  }

  put(key: string, body: Readable | Buffer | string, opts: PutOptions = {}): Promise<{ etag: string }> {
    return this.call('put', key, opts.signal, async () => {
      const meta = opts.contentType !== undefined ? { 'Content-Type': opts.contentType } : {};
      const res = await this.client.putObject(this.bucket, key, body, opts.size, meta);
      return { etag: stripQuotes(res.etag) };
    });
  }

  remove(key: string, signal?: AbortSignal): Promise<void> {
    return this.call('remove', key, signal, () => this.client.removeObject(this.bucket, key));
  }

  async *list(prefix: string, signal?: AbortSignal): AsyncIterable<ObjectInfo> {
    let token = '';
    // Bounded: S3 pages are ≤ 1000 keys; a million-key prefix is 1000 pages.
    for (let page = 0; page < 100_000; page++) {
      const res = await this.call('list', prefix, signal, () =>
        this.client.listObjectsV2Query(this.bucket, prefix, token, '', 1000, ''),
      );
      for (const item of res.objects) {
        if (item.name !== undefined)
          yield toInfo(item.name, item.size, item.etag, item.lastModified, undefined);
      }
      if (!res.isTruncated || !res.nextContinuationToken) return;
      token = res.nextContinuationToken;
    }
  }

  /**
   * Creates the bucket when it does not exist (the controller calls this at start, so a fresh install needs no manual
   * step). Returns whether it was created. A store whose credentials may not create buckets must have it already.
   */
  async ensureBucket(signal?: AbortSignal): Promise<boolean> {
    if (await this.call('bucket-exists', '', signal, () => this.client.bucketExists(this.bucket)))
      return false;
    try {
      await this.call('make-bucket', '', signal, () => this.client.makeBucket(this.bucket, this.region));
      return true;
    } catch (err) {
      // Another replica (or a human) created it between the two calls.
      const cause = err instanceof Error && err.cause instanceof S3Error ? err.cause : err;
      if (
        cause instanceof S3Error &&
        (cause.code === 'BucketAlreadyOwnedByYou' || cause.code === 'BucketAlreadyExists')
      )
        return false;
      throw err;
    }
  }

  /** Closes idle keep-alive connections (at shutdown). */
  close(): void {
    for (const a of this.agents) a.destroy();
  }

  presignGet(key: string, expirySeconds: number): Promise<string> {
    return this.call('presign', key, undefined, () =>
      this.presignClient.presignedGetObject(this.bucket, key, expirySeconds),
    );
  }
}

/** Reads the CA bundle file named by configuration (kept here so config code stays free of fs). */
export function readCaFile(path: string): string {
  return readFileSync(path, 'utf8');
}

function toInfo(
  key: string,
  size: number,
  etag: string,
  lastModified: Date,
  contentType: string | undefined,
): ObjectInfo {
  const info: ObjectInfo = { key, size, etag: stripQuotes(etag), lastModified };
  if (contentType !== undefined) info.contentType = contentType;
  return info;
}

function contentTypeOf(meta: Record<string, unknown>): string | undefined {
  const v = meta['content-type'] ?? meta['Content-Type'];
  return typeof v === 'string' ? v : undefined;
}

function stripQuotes(etag: string): string {
  return etag.replace(/^W\//, '').replace(/^"|"$/g, '');
}

/** Duck-typed: errors from Node's core may come from another realm (test sandboxes), so no instanceof Error. */
function isNetworkError(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const { code, name } = err as { code?: unknown; name?: unknown };
  return (
    (typeof code === 'string' && SYSTEM_NETWORK_CODES.has(code)) ||
    name === 'AbortError' ||
    name === 'TimeoutError'
  );
}

function errorMessage(err: unknown): string {
  if (typeof err === 'object' && err !== null && typeof (err as { message?: unknown }).message === 'string') {
    return (err as { message: string }).message;
  }
  return String(err);
}
