/**
 * Fetching a bundle's artifact from its declared source into a local file, hashing while streaming, with a timeout
 * and a size limit. Failures are classified for the reconciler: permanent ones (404, 401/403, too large) stall,
 * everything the network or a 5xx did is transient.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  Reason,
  type ArtifactProvenance,
  type HttpSource,
  type OciSource,
  type S3Source,
} from '../../api/v1alpha1/index.js';
import { ObjectNotFoundError } from '../../storage/object-store.js';
import { S3ObjectStore } from '../../storage/s3-store.js';
import { StallingError, TransientError } from '../common/errors.js';
import { fetchOci, type OciFetchOptions } from './fetch-oci.js';

export interface HttpCredentials {
  username?: string;
  password?: string;
  token?: string;
}

export interface FetchRequest {
  source: { http?: HttpSource; s3?: S3Source; oci?: OciSource };
  /** Where the artifact is written. */
  destination: string;
  maxBytes: number;
  timeoutMs: number;
  signal: AbortSignal;
  /** ca: PEM CA bundle; cert/key: PEM client certificate for mutual TLS. */
  http?: { credentials?: HttpCredentials; ca?: string; cert?: string; key?: string };
  /** credentials: anonymous when absent; ca: PEM CA bundle of an endpoint signed by a private CA. */
  s3?: { credentials?: { accessKey: string; secretKey: string }; ca?: string };
  oci?: OciFetchOptions;
  /** Environment whose HTTPS_PROXY/HTTP_PROXY/NO_PROXY apply to http and OCI fetches (the controller's own). */
  proxyEnv?: NodeJS.ProcessEnv;
}

export interface FetchedArtifact {
  path: string;
  size: number;
  /** Lowercase hex sha256 of the fetched bytes. */
  sha256: string;
  /** OCI sources: the manifest digest pulled and the signature that verified it. */
  provenance?: ArtifactProvenance;
}

/** A small artifact fetched into memory instead of a file. */
export interface FetchedBytes extends Omit<FetchedArtifact, 'path'> {
  bytes: Buffer;
}

export interface ArtifactFetcher {
  fetch(request: FetchRequest): Promise<FetchedArtifact>;
  /**
   * Like `fetch`, but an artifact known to have at most `inMemoryMaxBytes` before its body is read (HTTP
   * Content-Length, S3 object size) comes back in memory and `request.destination` is not written. Fetchers
   * without it always write the file.
   */
  fetchSmallInMemory?(
    request: FetchRequest,
    inMemoryMaxBytes: number,
  ): Promise<FetchedArtifact | FetchedBytes>;
}

const MAX_REDIRECTS = 5;

class SizeLimitExceeded extends Error {}

/**
 * Streams `body` into `destination`, hashing and counting; removes the partial file on failure. The destination's
 * directory is created (0700) if it does not exist yet: the controller's work dir is made on first use.
 */
export async function writeHashed(
  body: Readable,
  destination: string,
  maxBytes: number,
  signal: AbortSignal,
): Promise<FetchedArtifact> {
  const hash = createHash('sha256');
  let size = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      size += chunk.length;
      if (size > maxBytes) {
        callback(new SizeLimitExceeded());
        return;
      }
      hash.update(chunk);
      callback(null, chunk);
    },
  });
  try {
    await mkdir(dirname(destination), { recursive: true, mode: 0o700 });
    await pipeline(body, meter, createWriteStream(destination, { mode: 0o600 }), { signal });
  } catch (error) {
    body.destroy(); // already done by a failed pipeline; not when the directory could not be made
    await rm(destination, { force: true });
    if (error instanceof SizeLimitExceeded) {
      throw new StallingError(
        Reason.ArtifactTooLarge,
        `the artifact is larger than the limit of ${maxBytes} bytes`,
      );
    }
    throw error;
  }
  return { path: destination, size, sha256: hash.digest('hex') };
}

/**
 * Reads a body whose length is known beforehand into one Buffer of that length, hashing it. A body longer or
 * shorter than announced (the object changed between the size check and the read) is a transient failure.
 */
export async function readHashed(
  body: Readable,
  expectedBytes: number,
  signal: AbortSignal,
): Promise<FetchedBytes> {
  const bytes = Buffer.allocUnsafe(expectedBytes);
  const hash = createHash('sha256');
  let size = 0;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      signal.throwIfAborted();
      if (size + chunk.length > expectedBytes) {
        throw new TransientError(
          Reason.SourceUnavailable,
          `the artifact has more than the ${expectedBytes} bytes its source announced`,
        );
      }
      bytes.set(chunk, size);
      size += chunk.length;
      hash.update(chunk);
    }
  } catch (error) {
    body.destroy();
    throw error;
  }
  signal.throwIfAborted();
  if (size !== expectedBytes) {
    throw new TransientError(
      Reason.SourceUnavailable,
      `the artifact ended after ${size} of the ${expectedBytes} bytes its source announced`,
    );
  }
  return { bytes, size, sha256: hash.digest('hex') };
}

/** A URL safe to show in status and events: no user info, no query (which may carry a token). */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}${parsed.pathname}`;
  } catch {
    return '<invalid url>';
  }
}

/** TLS verification failures: the server's certificate is not trusted; retrying cannot help, a CA must be configured. */
const CERTIFICATE_ERRORS = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** TLS alerts a server sends when it wants a (different) client certificate: mTLS misconfiguration, not an outage. */
const CLIENT_CERTIFICATE_REFUSED =
  /alert[ _](certificate[ _]required|bad[ _]certificate|certificate[ _]unknown|unknown[ _]ca)/i;

/**
 * The first string `code` in the cause chain (the store wraps the socket's error). Duck-typed: errors from Node's
 * internals are not `instanceof Error` in another realm (a test runner's VM context).
 */
function errnoCode(error: unknown): string | undefined {
  let e: unknown = error;
  for (let depth = 0; typeof e === 'object' && e !== null && depth < 5; depth++) {
    const { code, cause } = e as { code?: unknown; cause?: unknown };
    if (typeof code === 'string') return code;
    e = cause;
  }
  return undefined;
}

function networkError(
  what: string,
  error: unknown,
  signal: AbortSignal,
  sourceType: 'http' | 's3' | 'oci' = 'http',
): Error {
  if (error instanceof StallingError || error instanceof TransientError) return error;
  const code = errnoCode(error);
  if (code && CERTIFICATE_ERRORS.has(code)) {
    return new StallingError(
      Reason.SourceCertificateInvalid,
      `${what}: ${code} (set spec.source.${sourceType}.caSecretRef to trust the server's CA)`,
    );
  }
  const detail = error instanceof Error ? `${code ?? ''} ${error.message}` : String(error);
  if (CLIENT_CERTIFICATE_REFUSED.test(detail)) {
    return new StallingError(
      Reason.SourceCertificateInvalid,
      `${what}: the server requires or refused the client certificate (set spec.source.${sourceType}.certSecretRef)`,
    );
  }
  if (signal.aborted && signal.reason instanceof Error && signal.reason.name !== 'TimeoutError')
    return signal.reason;
  const text =
    error instanceof Error ? ((error as NodeJS.ErrnoException).code ?? error.message) : String(error);
  return new TransientError(Reason.SourceUnavailable, `${what}: ${text}`, { cause: error });
}

export class SourceFetcher implements ArtifactFetcher {
  fetch(request: FetchRequest): Promise<FetchedArtifact> {
    return this.fetchWithTimeout(request, -1) as Promise<FetchedArtifact>;
  }

  fetchSmallInMemory(
    request: FetchRequest,
    inMemoryMaxBytes: number,
  ): Promise<FetchedArtifact | FetchedBytes> {
    return this.fetchWithTimeout(request, Math.min(inMemoryMaxBytes, request.maxBytes));
  }

  private async fetchWithTimeout(
    request: FetchRequest,
    inMemoryMaxBytes: number,
  ): Promise<FetchedArtifact | FetchedBytes> {
    const timeout = AbortSignal.timeout(request.timeoutMs);
    const signal = AbortSignal.any([request.signal, timeout]);
    try {
      return await this.fetchFrom(request, signal, inMemoryMaxBytes);
    } catch (error) {
      // whatever the transport made of the abort (ABORT_ERR, "terminated", a store error): it was the timeout
      if (timeout.aborted && !request.signal.aborted && !(error instanceof StallingError)) {
        throw new TransientError(
          Reason.SourceUnavailable,
          `fetching ${shownSource(request.source)}: timed out after ${request.timeoutMs / 1000} s (spec.source.timeout)`,
          { cause: error },
        );
      }
      throw error;
    }
  }

  private fetchFrom(
    request: FetchRequest,
    signal: AbortSignal,
    inMemoryMaxBytes: number,
  ): Promise<FetchedArtifact | FetchedBytes> {
    if (request.source.http) return this.fetchHttp(request.source.http, request, signal, inMemoryMaxBytes);
    if (request.source.s3) return this.fetchS3(request.source.s3, request, signal, inMemoryMaxBytes);
    if (request.source.oci) {
      return fetchOci(request.source.oci, request, signal, (what, error) =>
        networkError(what, error, signal, 'oci'),
      );
    }
    throw new StallingError(Reason.UnsupportedArtifact, 'spec.source sets no source type');
  }

  private async fetchHttp(
    source: HttpSource,
    request: FetchRequest,
    signal: AbortSignal,
    inMemoryMaxBytes: number,
  ): Promise<FetchedArtifact | FetchedBytes> {
    const shown = redactUrl(source.url);
    try {
      const response = await this.get(new URL(source.url), request, signal, []);
      const declared = Number(response.headers['content-length']);
      if (Number.isFinite(declared) && declared > request.maxBytes) {
        response.destroy();
        throw new StallingError(
          Reason.ArtifactTooLarge,
          `${shown} is ${declared} bytes, more than the limit of ${request.maxBytes}`,
        );
      }
      // Content-Length bounds the body (the HTTP parser stops there); a chunked body has none and goes to a file.
      if (response.headers['content-length'] !== undefined && declared <= inMemoryMaxBytes)
        return await readHashed(response, declared, signal);
      return await writeHashed(response, request.destination, request.maxBytes, signal);
    } catch (error) {
      throw networkError(`fetching ${shown}`, error, signal);
    }
  }

  /** A per-request agent: the CA and client certificate of the source, the proxy of the environment. */
  private agentFor(url: URL, request: FetchRequest): HttpAgent {
    const common = { keepAlive: false, ...(request.proxyEnv ? { proxyEnv: request.proxyEnv } : {}) };
    if (url.protocol !== 'https:') return new HttpAgent(common);
    const { ca, cert, key } = request.http ?? {};
    return new HttpsAgent({ ...common, ...(ca ? { ca } : {}), ...(cert && key ? { cert, key } : {}) });
  }

  /** GET `url`, following redirects; `chain` holds the URLs that redirected here, the source's URL first. */
  private get(
    url: URL,
    request: FetchRequest,
    signal: AbortSignal,
    chain: readonly URL[],
  ): Promise<IncomingMessage> {
    const headers: Record<string, string> = { 'user-agent': 'liveupdate-controller', accept: '*/*' };
    const creds = request.http?.credentials;
    if (creds?.token) headers['authorization'] = `Bearer ${creds.token}`;
    else if (creds?.username !== undefined) {
      headers['authorization'] =
        `Basic ${Buffer.from(`${creds.username}:${creds.password ?? ''}`).toString('base64')}`;
    }
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise<IncomingMessage>((resolve, reject) => {
      const req = send(url, { headers, signal, agent: this.agentFor(url, request) });
      req.on('error', reject);
      req.on('response', (response) => {
        const status = response.statusCode ?? 0;
        if (status >= 200 && status < 300) {
          resolve(response);
          return;
        }
        response.resume();
        const location = response.headers.location;
        if (status >= 300 && status < 400 && location) {
          const next = new URL(location, url);
          const visited = [...chain, url];
          const redirectError = (why: string) =>
            new StallingError(Reason.SourceRedirectLoop, `fetching ${redactUrl(visited[0]!.href)}: ${why}`);
          if (visited.some((u) => u.href === next.href)) {
            reject(
              redirectError(
                `redirect loop (${redactUrl(url.href)} redirects back to ${redactUrl(next.href)})`,
              ),
            );
            return;
          }
          if (chain.length >= MAX_REDIRECTS) {
            reject(
              redirectError(
                `more than ${MAX_REDIRECTS} redirects (last: ${redactUrl(url.href)} redirects to ${redactUrl(next.href)})`,
              ),
            );
            return;
          }
          const sameOrigin = next.origin === url.origin;
          // Credentials and the client certificate only follow redirects that stay on the same origin.
          const nextRequest = sameOrigin
            ? request
            : { ...request, http: request.http?.ca ? { ca: request.http.ca } : {} };
          if (next.protocol !== 'http:' && next.protocol !== 'https:') {
            reject(
              new StallingError(
                Reason.SourceNotFound,
                `${redactUrl(url.href)} redirects to an unsupported URL`,
              ),
            );
            return;
          }
          this.get(next, nextRequest, signal, visited).then(resolve, reject);
          return;
        }
        reject(httpStatusError(redactUrl(url.href), status));
      });
      req.end();
    });
  }

  /**
   * Through the same S3 client as the store: every call carries the fetch's signal (abort and timeout) and an idle
   * socket timeout, the body streams into the hashed file under the same signal.
   */
  private async fetchS3(
    source: S3Source,
    request: FetchRequest,
    signal: AbortSignal,
    inMemoryMaxBytes: number,
  ): Promise<FetchedArtifact | FetchedBytes> {
    const store = new S3ObjectStore({
      endpoint: new URL(source.endpoint).origin,
      bucket: source.bucket,
      ...(source.region ? { region: source.region } : {}),
      ...(request.s3?.credentials
        ? { accessKeyId: request.s3.credentials.accessKey, secretAccessKey: request.s3.credentials.secretKey }
        : {}),
      ...(request.s3?.ca ? { ca: request.s3.ca } : {}),
      timeoutMs: Math.min(request.timeoutMs, S3_IDLE_TIMEOUT_MS),
    });
    const shown = `s3://${source.bucket}/${source.key}`;
    try {
      const stat = await store.stat(source.key, signal);
      if (stat.size > request.maxBytes) {
        throw new StallingError(
          Reason.ArtifactTooLarge,
          `${shown} is ${stat.size} bytes, more than the limit of ${request.maxBytes}`,
        );
      }
      const got = await store.get(source.key, { signal });
      if (!got) throw new TransientError(Reason.SourceUnavailable, `${shown}: the server returned no body`);
      if (stat.size <= inMemoryMaxBytes) return await readHashed(got.body, stat.size, signal);
      return await writeHashed(got.body, request.destination, request.maxBytes, signal);
    } catch (error) {
      throw s3Error(shown, error, signal);
    } finally {
      store.close();
    }
  }
}

/** The source as status messages show it: no credentials, no query. */
function shownSource(source: FetchRequest['source']): string {
  if (source.http) return redactUrl(source.http.url);
  if (source.s3) return `s3://${source.s3.bucket}/${source.s3.key}`;
  return source.oci?.url ?? 'the source';
}

export function httpStatusError(url: string, status: number): Error {
  if (status === 404 || status === 410)
    return new StallingError(Reason.SourceNotFound, `${url} answered HTTP ${status}`);
  if (status === 401 || status === 403)
    return new StallingError(Reason.SourceUnauthorized, `${url} answered HTTP ${status}`);
  if (status === 408 || status === 429 || status >= 500) {
    return new TransientError(Reason.SourceUnavailable, `${url} answered HTTP ${status}`);
  }
  return new StallingError(Reason.SourceNotFound, `${url} answered HTTP ${status}`);
}

/** Socket idle timeout of S3 source calls (the fetch's own timeout bounds the whole). */
const S3_IDLE_TIMEOUT_MS = 30_000;
const S3_NOT_FOUND = new Set(['NoSuchKey', 'NotFound', 'NoSuchBucket']);
const S3_DENIED = new Set(['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'Forbidden']);

function s3Error(shown: string, error: unknown, signal: AbortSignal): Error {
  if (error instanceof StallingError || error instanceof TransientError) return error;
  if (error instanceof ObjectNotFoundError)
    return new StallingError(Reason.SourceNotFound, `${shown}: NoSuchKey`);
  // S3ObjectStore keeps the server's code on the cause (S3Error)
  const cause = error instanceof Error ? error.cause : undefined;
  const codeOf = (value: unknown): string | undefined => {
    const code = (value as { code?: unknown } | undefined)?.code;
    return typeof code === 'string' ? code : undefined;
  };
  const code = codeOf(cause) ?? codeOf(error) ?? '';
  if (S3_NOT_FOUND.has(code)) return new StallingError(Reason.SourceNotFound, `${shown}: ${code}`);
  if (S3_DENIED.has(code))
    return new StallingError(Reason.SourceUnauthorized, `${shown}: ${code} (check spec.source.s3.secretRef)`);
  return networkError(`fetching ${shown}`, error, signal, 's3');
}
