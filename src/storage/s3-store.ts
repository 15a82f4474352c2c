/**
 * {@link ObjectStore} over any S3 API with the `minio` client (plain S3 calls only, no MinIO admin API).
 *
 * The minio client has no per-call timeout or AbortSignal, so every call runs inside an AsyncLocalStorage context
 * that a custom transport reads: it adds the caller's signal and an idle-socket timeout to the underlying
 * `http(s).request`, and records the HTTP status so that errors can be classified (the client's S3Error keeps only
 * the XML code). The client's own retry is off: callers decide (the index cache polls again, devices retry
 * downloads on 503).
 *
 * Object GETs on a plain-HTTP endpoint with credentials take a leaner path ({@link rawGet}): a presigned URL fetched
 * over a socket of its own that reads into large buffers (net's `onread`), so a 100 MiB bundle streams in a few
 * hundred reads of up to 1 MiB instead of 1,600 reads of 64 KiB through the http client and its parser (the
 * per-read cost, not the bytes, is what the service paid for; see test/bench/update-server.ts).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { Readable } from 'node:stream';
import { Client, S3Error } from 'minio';
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
  /**
   * GETs whose caller expects at least this many bytes (`expectedSize`) take the streaming fast path (plain-HTTP
   * endpoints with credentials only); smaller and unsized GETs (index polls, delta files) keep the pooled client.
   * Default 1 MiB; 0 sends every GET down the fast path (tests).
   */
  largeGetMinBytes?: number;
}

interface CallContext {
  signal: AbortSignal | undefined;
  status?: number;
}

/** The S3 codes that mean "the key (or bucket entry) is not there". */
const NOT_FOUND_CODES = new Set(['NoSuchKey', 'NotFound', 'NoSuchVersion']);
/**
 * A conditional request lost: 412, or AWS S3's 409 for a conditional write racing another one on the same key.
 * (`put` rewrites the condition to the one it asked for.)
 */
const PRECONDITION_CODES = new Set(['PreconditionFailed', 'ConditionalRequestConflict']);
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
  /** host/port of a plain-HTTP endpoint with credentials, where GETs take {@link rawGet}; else undefined. */
  private readonly raw: { host: string; port: number; timeoutMs: number } | undefined;
  private readonly largeGetMinBytes: number;

  constructor(opts: S3StoreOptions) {
    this.bucket = opts.bucket;
    this.region = opts.region ?? 'us-east-1';
    this.client = this.makeClient(opts.endpoint, opts);
    const url = new URL(opts.endpoint);
    this.raw =
      url.protocol === 'http:' && opts.accessKeyId !== undefined && opts.secretAccessKey !== undefined
        ? {
            host: url.hostname.replace(/^\[|\]$/g, ''),
            port: url.port ? Number(url.port) : 80,
            timeoutMs: opts.timeoutMs ?? 10_000,
          }
        : undefined;
    this.largeGetMinBytes = opts.largeGetMinBytes ?? 1024 * 1024;
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
      if (PRECONDITION_CODES.has(code) || ctx.status === 412)
        return new PreconditionFailedError(key, 'if-match');
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
    opts: { range?: RangeSpec; ifNoneMatch?: string; signal?: AbortSignal; expectedSize?: number } = {},
  ): Promise<GetResult | null> {
    // One connection per GET, so only for bodies large enough that the streaming cost dominates the connect.
    if (this.raw && (opts.expectedSize ?? 0) >= this.largeGetMinBytes) {
      const raw = this.raw;
      const ctx: CallContext = { signal: opts.signal };
      return (async () => {
        try {
          opts.signal?.throwIfAborted();
          const url = await this.client.presignedUrl('GET', this.bucket, key, 600);
          return await rawGet(raw, url, key, opts, ctx);
        } catch (err) {
          throw this.classify(err, 'get', key, ctx, opts.signal);
        }
      })();
    }
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
    const condition = putCondition(key, opts);
    if (condition !== undefined && !(typeof body === 'string' || Buffer.isBuffer(body)))
      return Promise.reject(new TypeError(`put ${key}: a conditional write takes a Buffer or string body`));
    const meta: Record<string, string> = {};
    if (opts.contentType !== undefined) meta['Content-Type'] = opts.contentType;
    // A document (≤ the client's 64 MiB part size) goes up in one PUT, so the header applies to the whole write.
    if (opts.ifMatch !== undefined) meta['If-Match'] = `"${stripQuotes(opts.ifMatch)}"`;
    if (opts.ifNoneMatch !== undefined) meta['If-None-Match'] = '*';
    return this.call('put', key, opts.signal, async () => {
      const res = await this.client.putObject(this.bucket, key, body, opts.size, meta);
      return { etag: stripQuotes(res.etag) };
    }).catch((err: unknown) => {
      // If-Match on a key that is gone: S3 answers 404 NoSuchKey; for the caller it is the same lost race.
      if (
        condition !== undefined &&
        (err instanceof PreconditionFailedError || err instanceof ObjectNotFoundError)
      )
        throw new PreconditionFailedError(key, condition);
      throw err;
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

/**
 * A body whose chunks are slices of reusable buffers: a consumer that calls `release(chunk)` once per chunk it got
 * from a 'data' event, after it is done with it (a socket write's callback), lets the buffer be reused for later
 * reads instead of garbage (100 MiB of short-lived buffers per bundle download cost more in GC than the copying).
 * Calling it is optional; calling it early would corrupt data.
 */
export type ReleasableBody = Readable & { release?: (chunk: Buffer) => void };

/** Largest response head accepted from the store, bytes. */
const MAX_HEAD = 64 * 1024;
/** Reads land in arenas of this size; a read gets the arena's free tail while at least MIN_READ bytes are left. */
const ARENA = 1024 * 1024;
const MIN_READ = 256 * 1024;
/**
 * Arenas no download uses any more, shared by all downloads: without it every download allocated its own (4 MiB of
 * fresh ArrayBuffers per 4 MiB bundle), and that external memory made V8 run full mark-compact GCs every few hundred
 * MiB proxied (ADR 0036). Bounded: arenas beyond it are left to the garbage collector.
 */
const idleArenas: Buffer[] = [];
const IDLE_ARENAS_MAX = 8;

function recycleArena(buf: Buffer): void {
  if (idleArenas.length < IDLE_ARENAS_MAX) idleArenas.push(buf);
}
/** Error bodies kept for their `<Code>`, bytes. */
const MAX_ERROR_BODY = 64 * 1024;

/**
 * GET of a presigned URL on its own connection (`Connection: close`). The socket reads straight into slices of 1 MiB
 * arenas (each slice is handed on as a chunk, never reused, so no copy); the body Readable applies backpressure by
 * pausing the socket. Semantics match the minio path: 200/206 → body, 304 → null, other statuses → an S3Error with
 * the XML `<Code>` (and `ctx.status`) for {@link S3ObjectStore.classify}; a body shorter than its Content-Length ends
 * in an error, an idle socket after `timeoutMs`.
 */
function rawGet(
  target: { host: string; port: number; timeoutMs: number },
  presigned: string,
  key: string,
  opts: { range?: RangeSpec; ifNoneMatch?: string; signal?: AbortSignal },
  ctx: CallContext,
): Promise<GetResult | null> {
  const url = new URL(presigned);
  let head = `GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nUser-Agent: liveupdate-operator\r\nConnection: close\r\n`;
  if (opts.range) head += `Range: bytes=${opts.range.start}-${opts.range.end ?? ''}\r\n`;
  if (opts.ifNoneMatch !== undefined) head += `If-None-Match: "${stripQuotes(opts.ifNoneMatch)}"\r\n`;
  head += '\r\n';

  return new Promise<GetResult | null>((resolve, reject) => {
    // Arenas and how many chunks handed on from each are not released yet (see ReleasableBody). An arena is reused
    // (by this download or another) only once it is no longer read into — retired, or the body was read to its end
    // and the socket closed — and every chunk from it was released; chunks never released (a consumer that does not
    // know about release, an aborted download) just leave their arena to the garbage collector.
    const arenas = new Map<ArrayBufferLike, { buf: Buffer; out: number }>();
    let bodyComplete = false;
    const newArena = (): Buffer => {
      const buf = idleArenas.pop() ?? Buffer.allocUnsafe(ARENA);
      arenas.set(buf.buffer, { buf, out: 0 });
      return buf;
    };
    let arena = newArena();
    let arenaUsed = 0;
    const nextBuffer = (): Buffer => {
      if (ARENA - arenaUsed < MIN_READ) {
        const retired = arenas.get(arena.buffer);
        if (retired && retired.out === 0) {
          arenas.delete(arena.buffer);
          recycleArena(arena);
        }
        arena = newArena();
        arenaUsed = 0;
      }
      return arena.subarray(arenaUsed);
    };
    const handedOn = (chunk: Buffer): void => {
      const a = arenas.get(chunk.buffer);
      if (a) a.out++;
    };
    const release = (chunk: Buffer): void => {
      const a = arenas.get(chunk.buffer);
      if (!a || a.out <= 0) return;
      a.out--;
      if (a.out === 0 && (a.buf !== arena || bodyComplete)) {
        arenas.delete(a.buf.buffer);
        recycleArena(a.buf);
      }
    };
    let settled = false;
    let headBytes: Buffer[] = [];
    let headLength = 0;
    /** Set once the head is parsed: what to do with body bytes. */
    let sink: ((chunk: Buffer) => boolean) | undefined;
    let onEof: (() => void) | undefined;
    let body: Readable | undefined;

    const fail = (err: Error): void => {
      socket.destroy();
      if (!settled) {
        settled = true;
        reject(err);
      } else body?.destroy(err);
    };
    const onAbort = (): void =>
      fail(opts.signal?.reason instanceof Error ? opts.signal.reason : new Error('aborted'));
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const cleanup = (): void => opts.signal?.removeEventListener('abort', onAbort);

    const onHead = (buf: Buffer, end: number): void => {
      const lines = buf.toString('latin1', 0, end).split('\r\n');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? NaN);
      if (!Number.isInteger(status)) return fail(new Error(`S3 get ${key}: malformed response`));
      ctx.status = status;
      const h: Record<string, string> = {};
      for (let i = 1; i < lines.length; i++) {
        const line = lines[i]!;
        const colon = line.indexOf(':');
        if (colon > 0) h[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      const rest = buf.subarray(end + 4);
      if (status === 304) {
        settled = true;
        cleanup();
        socket.destroy();
        resolve(null);
        return;
      }
      if (status !== 200 && status !== 206) {
        // Error answer: keep (a bounded part of) the body until the server closes, for its <Code>.
        const parts: Buffer[] = [Buffer.from(rest)];
        let kept = rest.length;
        sink = (chunk) => {
          if (kept < MAX_ERROR_BODY) {
            parts.push(Buffer.from(chunk));
            kept += chunk.length;
          }
          return true;
        };
        onEof = () => {
          const xml = Buffer.concat(parts).toString('utf8');
          const code =
            /<Code>([^<]*)<\/Code>/.exec(xml)?.[1] ??
            (status === 404 ? 'NotFound' : status === 416 ? 'InvalidRange' : '');
          const err = new S3Error(`S3 answered ${status}${code ? ` ${code}` : ''}`);
          err.code = code;
          fail(err);
        };
        return;
      }
      if (h['transfer-encoding'] !== undefined || h['content-length'] === undefined)
        return fail(new Error(`S3 get ${key}: response without Content-Length`));
      const length = Number(h['content-length']);
      let size = length;
      const cr = h['content-range'];
      if (status === 206 && cr !== undefined) {
        const total = /\/(\d+)$/.exec(cr)?.[1];
        if (total !== undefined) size = Number(total);
      }
      const lm = h['last-modified'];
      const info = toInfo(key, size, h['etag'] ?? '', lm ? new Date(lm) : new Date(0), h['content-type']);
      let received = 0;
      const stream: ReleasableBody = new Readable({
        highWaterMark: ARENA,
        read() {
          socket.resume();
        },
        destroy(err, cb) {
          socket.destroy();
          cb(err);
        },
      });
      stream.release = release;
      body = stream;
      sink = (chunk) => {
        const want = length - received;
        const part = chunk.length > want ? chunk.subarray(0, want) : chunk;
        received += part.length;
        let more = true;
        if (part.length > 0) {
          handedOn(part);
          more = stream.push(part);
        }
        if (received === length) {
          cleanup();
          stream.push(null);
          socket.destroy();
          // Nothing is read into the current arena any more: it is recycled once its chunks are released.
          bodyComplete = true;
          return false;
        }
        return more;
      };
      onEof = () => {
        if (received < length)
          fail(new Error(`S3 get ${key}: body ended after ${received} of ${length} bytes`));
      };
      settled = true;
      resolve({ info, body: stream });
      // also when empty: a zero-length body ends here, no body bytes will ever arrive to end it
      sink(rest);
    };

    const socket = net.connect({
      host: target.host,
      port: target.port,
      noDelay: true,
      onread: {
        buffer: nextBuffer,
        callback: (n: number, buf: Uint8Array): boolean => {
          const chunk = Buffer.from(buf.buffer, buf.byteOffset, n);
          if (buf.buffer === arena.buffer) arenaUsed = buf.byteOffset - arena.byteOffset + n;
          if (sink) return sink(chunk);
          headBytes.push(chunk);
          headLength += n;
          const all = headBytes.length === 1 ? chunk : Buffer.concat(headBytes, headLength);
          const end = all.indexOf('\r\n\r\n', 0, 'latin1');
          if (end < 0) {
            if (headLength > MAX_HEAD) fail(new Error(`S3 get ${key}: response head too large`));
            return true;
          }
          headBytes = [];
          onHead(all, end);
          return true;
        },
      },
    });
    socket.setTimeout(target.timeoutMs, () =>
      fail(Object.assign(new Error(`S3 socket idle for ${target.timeoutMs} ms`), { code: 'ETIMEDOUT' })),
    );
    socket.on('error', (err) => fail(err));
    socket.on('end', () => {
      if (onEof) onEof();
      else fail(Object.assign(new Error(`S3 get ${key}: connection closed`), { code: 'ECONNRESET' }));
    });
    socket.on('close', cleanup);
    // Flowing, so that EOF ('end') is seen; data goes through onread, never through the socket's own buffer.
    socket.resume();
    socket.write(head);
  });
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
