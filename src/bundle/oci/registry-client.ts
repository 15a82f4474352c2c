/**
 * A small OCI Distribution client (pull and push of one artifact and its cosign signature), on node:http(s):
 * basic auth and the bearer-token challenge (Docker token spec), TLS with a custom CA and client certificates,
 * HTTPS_PROXY/NO_PROXY through Node's `proxyEnv` agents, redirects for blob downloads (credentials stay on the
 * registry's origin), bounded reads of manifests and every call under an AbortSignal.
 */
import { createHash } from 'node:crypto';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';
import type { RegistryCredentials } from './docker-config.js';
import { OciError, RegistryHttpError } from './errors.js';
import { DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST } from './media-types.js';
import { DIGEST } from './reference.js';

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  artifactType?: string;
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

export interface FetchedManifest {
  /** sha256:<hex> of the manifest bytes as served. */
  digest: string;
  mediaType: string;
  bytes: Buffer;
  manifest: ImageManifest;
}

export interface RegistryClientOptions {
  /** host[:port] */
  registry: string;
  /** Talk plain HTTP (only when the source explicitly allows it). */
  plainHttp?: boolean;
  credentials?: RegistryCredentials;
  /** PEM CA bundle trusted in addition to nothing else (replaces the system CAs, like Node's `ca`). */
  ca?: string;
  /** PEM client certificate and key (mTLS). */
  cert?: string;
  key?: string;
  /** Environment whose HTTPS_PROXY/HTTP_PROXY/NO_PROXY apply (default: none, no proxy). */
  proxyEnv?: NodeJS.ProcessEnv;
  userAgent?: string;
}

const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const MAX_REDIRECTS = 5;
export const MANIFEST_ACCEPT = [OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_MANIFEST_LIST].join(', ');

type Scope = 'pull' | 'pull,push';

interface SendOptions {
  method: 'GET' | 'HEAD' | 'PUT' | 'POST';
  /** Path below the registry root, or an absolute URL (upload locations, redirects). */
  target: string;
  repository: string;
  scope: Scope;
  headers?: Record<string, string>;
  body?: Buffer | (() => Readable);
  signal: AbortSignal;
}

export class RegistryClient {
  readonly base: string;
  private readonly agent: HttpAgent;
  /** Authorization header per repository scope, learned from the registry's challenges. */
  private readonly authorizations = new Map<string, string>();

  constructor(private readonly opts: RegistryClientOptions) {
    this.base = `${opts.plainHttp ? 'http' : 'https'}://${opts.registry}`;
    const common = { keepAlive: false, ...(opts.proxyEnv ? { proxyEnv: opts.proxyEnv } : {}) };
    this.agent = opts.plainHttp
      ? new HttpAgent(common)
      : new HttpsAgent({
          ...common,
          ...(opts.ca ? { ca: opts.ca } : {}),
          ...(opts.cert && opts.key ? { cert: opts.cert, key: opts.key } : {}),
        });
  }

  /** Fetches a manifest by tag or digest; checks its digest when the reference is one. Indexes are refused. */
  async manifest(repository: string, reference: string, signal: AbortSignal): Promise<FetchedManifest> {
    const res = await this.send({
      method: 'GET',
      target: `/v2/${repository}/manifests/${reference}`,
      repository,
      scope: 'pull',
      headers: { accept: MANIFEST_ACCEPT },
      signal,
    });
    if (res.statusCode === 404) {
      res.resume();
      throw new OciError('OciManifestNotFound', `${this.opts.registry}/${repository}:${reference} not found`);
    }
    await this.expectOk(res, `${this.opts.registry}/${repository} manifest ${reference}`);
    const bytes = await readBounded(res, MAX_MANIFEST_BYTES, 'manifest');
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    if (DIGEST.test(reference) && reference !== digest) {
      throw new OciError(
        'OciDigestMismatch',
        `the registry served a manifest with digest ${digest} for ${reference}`,
      );
    }
    const mediaType = (res.headers['content-type'] ?? '').split(';')[0]?.trim() ?? '';
    let manifest: ImageManifest;
    try {
      manifest = JSON.parse(bytes.toString('utf8')) as ImageManifest;
    } catch {
      throw new OciError('OciUnsupportedManifest', `the manifest of ${reference} is not JSON`);
    }
    const type = manifest.mediaType ?? mediaType;
    if (type === OCI_INDEX || type === DOCKER_MANIFEST_LIST || !Array.isArray(manifest.layers)) {
      throw new OciError(
        'OciUnsupportedManifest',
        `${reference} is ${type || 'not an image manifest'}; a bundle is a single-manifest artifact`,
      );
    }
    return { digest, mediaType: type, bytes, manifest };
  }

  /** The blob's body as a stream (the caller hashes it), following redirects; 404 is OciManifestNotFound. */
  async blob(repository: string, digest: string, signal: AbortSignal): Promise<IncomingMessage> {
    const res = await this.send({
      method: 'GET',
      target: `/v2/${repository}/blobs/${digest}`,
      repository,
      scope: 'pull',
      signal,
    });
    if (res.statusCode === 404) {
      res.resume();
      throw new OciError(
        'OciManifestNotFound',
        `blob ${digest} not found in ${this.opts.registry}/${repository}`,
      );
    }
    await this.expectOk(res, `${this.opts.registry}/${repository} blob ${digest}`);
    return res;
  }

  /** A small blob (signature payloads) read into memory and checked against its digest. */
  async blobBytes(
    repository: string,
    digest: string,
    maxBytes: number,
    signal: AbortSignal,
  ): Promise<Buffer> {
    const bytes = await readBounded(await this.blob(repository, digest, signal), maxBytes, `blob ${digest}`);
    const actual = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    if (actual !== digest) {
      throw new OciError('OciDigestMismatch', `blob ${digest} has the digest ${actual}`);
    }
    return bytes;
  }

  /** OCI 1.1 referrers of a manifest with the given artifactType; [] when the registry has no referrers API. */
  async referrers(
    repository: string,
    digest: string,
    artifactType: string,
    signal: AbortSignal,
  ): Promise<Descriptor[]> {
    const res = await this.send({
      method: 'GET',
      target: `/v2/${repository}/referrers/${digest}?artifactType=${encodeURIComponent(artifactType)}`,
      repository,
      scope: 'pull',
      headers: { accept: OCI_INDEX },
      signal,
    });
    if (res.statusCode === 404 || res.statusCode === 405) {
      res.resume();
      return [];
    }
    await this.expectOk(res, `${this.opts.registry}/${repository} referrers of ${digest}`);
    const index = JSON.parse((await readBounded(res, MAX_MANIFEST_BYTES, 'referrers')).toString('utf8')) as {
      manifests?: Descriptor[];
    };
    return (index.manifests ?? []).filter((d) => d.artifactType === artifactType);
  }

  async hasBlob(repository: string, digest: string, signal: AbortSignal): Promise<boolean> {
    const res = await this.send({
      method: 'HEAD',
      target: `/v2/${repository}/blobs/${digest}`,
      repository,
      scope: 'pull,push',
      signal,
    });
    res.resume();
    if (res.statusCode === 404) return false;
    await this.expectOk(res, `${this.opts.registry}/${repository} blob ${digest}`);
    return true;
  }

  /** Monolithic upload (POST then PUT ?digest=); skipped when the registry has the blob already. */
  async pushBlob(
    repository: string,
    blob: { digest: string; size: number; body: Buffer | (() => Readable) },
    signal: AbortSignal,
  ): Promise<void> {
    if (await this.hasBlob(repository, blob.digest, signal)) return;
    const start = await this.send({
      method: 'POST',
      target: `/v2/${repository}/blobs/uploads/`,
      repository,
      scope: 'pull,push',
      headers: { 'content-length': '0' },
      signal,
    });
    start.resume();
    if (start.statusCode !== 202 || !start.headers.location) {
      await this.expectOk(start, `starting an upload to ${this.opts.registry}/${repository}`);
      throw new RegistryHttpError(start.statusCode ?? 0, this.base, 'no upload location');
    }
    const location = new URL(start.headers.location, this.base);
    location.searchParams.set('digest', blob.digest);
    const put = await this.send({
      method: 'PUT',
      target: location.href,
      repository,
      scope: 'pull,push',
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(blob.size) },
      body: blob.body,
      signal,
    });
    put.resume();
    if (put.statusCode !== 201) await this.expectOk(put, `uploading ${blob.digest}`);
  }

  /** Puts a manifest under a tag (or its digest); returns its digest. */
  async pushManifest(
    repository: string,
    reference: string,
    bytes: Buffer,
    mediaType: string,
    signal: AbortSignal,
  ): Promise<string> {
    const res = await this.send({
      method: 'PUT',
      target: `/v2/${repository}/manifests/${reference}`,
      repository,
      scope: 'pull,push',
      headers: { 'content-type': mediaType, 'content-length': String(bytes.length) },
      body: bytes,
      signal,
    });
    res.resume();
    if (res.statusCode !== 201) await this.expectOk(res, `pushing the manifest ${reference}`);
    return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  }

  private async expectOk(res: IncomingMessage, what: string): Promise<void> {
    const status = res.statusCode ?? 0;
    if (status >= 200 && status < 300) return;
    const detail = (await readBounded(res, 4096, 'error body').catch(() => Buffer.alloc(0)))
      .toString('utf8')
      .replace(/\s+/g, ' ')
      .slice(0, 300);
    if (status === 401 || status === 403) {
      throw new OciError('OciUnauthorized', `${what}: HTTP ${status} (check the pull credentials)`);
    }
    throw new RegistryHttpError(status, `${what}`, detail);
  }

  /** One request with the learned authorization; on a 401 challenge, authorizes and repeats once. */
  private async send(options: SendOptions): Promise<IncomingMessage> {
    const scope = `repository:${options.repository}:${options.scope}`;
    let res = await this.raw(options, this.authorizations.get(scope), MAX_REDIRECTS);
    if (res.statusCode !== 401 || !this.opts.credentials) return res;
    const challenge = String(res.headers['www-authenticate'] ?? '');
    res.resume();
    const authorization = await this.authorize(challenge, scope, options.signal);
    this.authorizations.set(scope, authorization);
    res = await this.raw(options, authorization, MAX_REDIRECTS);
    return res;
  }

  private async authorize(challenge: string, scope: string, signal: AbortSignal): Promise<string> {
    const creds = this.opts.credentials;
    const basic =
      creds && 'username' in creds
        ? `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`
        : undefined;
    if (/^basic\b/i.test(challenge)) {
      if (!basic)
        throw new OciError('OciUnauthorized', `${this.opts.registry} asks for a username and password`);
      return basic;
    }
    if (!/^bearer\b/i.test(challenge)) {
      throw new OciError('OciUnauthorized', `${this.opts.registry} answered 401 without a usable challenge`);
    }
    const params = Object.fromEntries(
      [...challenge.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]?.toLowerCase() ?? '', m[2] ?? '']),
    );
    if (!params['realm'])
      throw new OciError('OciUnauthorized', `${this.opts.registry}: bearer challenge without realm`);
    const realm = new URL(params['realm']);
    if (params['service']) realm.searchParams.set('service', params['service']);
    realm.searchParams.set('scope', scope);
    const headers: Record<string, string> = {};
    if (basic) headers['authorization'] = basic;
    else if (creds && 'token' in creds) headers['authorization'] = `Bearer ${creds.token}`;
    const res = await this.request('GET', realm, headers, undefined, signal);
    if (res.statusCode !== 200) {
      res.resume();
      throw new OciError(
        'OciUnauthorized',
        `the token service of ${this.opts.registry} answered HTTP ${res.statusCode}`,
      );
    }
    const body = JSON.parse((await readBounded(res, 64 * 1024, 'token')).toString('utf8')) as {
      token?: string;
      access_token?: string;
    };
    const token = body.token ?? body.access_token;
    if (!token)
      throw new OciError('OciUnauthorized', `the token service of ${this.opts.registry} returned no token`);
    return `Bearer ${token}`;
  }

  private async raw(
    options: SendOptions,
    authorization: string | undefined,
    redirectsLeft: number,
  ): Promise<IncomingMessage> {
    const url = new URL(options.target, this.base);
    const headers: Record<string, string> = {
      'user-agent': this.opts.userAgent ?? 'liveupdate',
      ...options.headers,
      ...(authorization && url.origin === new URL(this.base).origin ? { authorization } : {}),
    };
    const res = await this.request(options.method, url, headers, options.body, options.signal);
    const status = res.statusCode ?? 0;
    const location = res.headers.location;
    if (
      (options.method === 'GET' || options.method === 'HEAD') &&
      [301, 302, 303, 307, 308].includes(status) &&
      location
    ) {
      res.resume();
      if (redirectsLeft <= 0) throw new RegistryHttpError(status, this.base, 'too many redirects');
      const next = new URL(location, url);
      if (next.protocol !== 'https:' && next.protocol !== 'http:') {
        throw new RegistryHttpError(status, this.base, 'redirect to an unsupported URL');
      }
      return this.raw({ ...options, target: next.href }, authorization, redirectsLeft - 1);
    }
    return res;
  }

  private request(
    method: string,
    url: URL,
    headers: Record<string, string>,
    body: Buffer | (() => Readable) | undefined,
    signal: AbortSignal,
  ): Promise<IncomingMessage> {
    const sameOrigin = url.origin === new URL(this.base).origin;
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    // Redirect targets on another origin (blob storage) use a default agent: no client certificate leaves the registry.
    const agent = sameOrigin ? this.agent : undefined;
    return new Promise<IncomingMessage>((resolve, reject) => {
      const req = send(url, { method, headers, signal, ...(agent ? { agent } : {}) });
      req.on('error', reject);
      req.on('response', resolve);
      if (body === undefined) req.end();
      else if (Buffer.isBuffer(body)) req.end(body);
      else {
        const stream = body();
        stream.on('error', (error) => req.destroy(error));
        stream.pipe(req);
      }
    });
  }
}

/** Reads a response body into memory, refusing more than `maxBytes`. */
export async function readBounded(res: Readable, maxBytes: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res) {
    const buffer = chunk as Buffer;
    size += buffer.length;
    if (size > maxBytes) {
      res.destroy();
      throw new OciError('OciUnsupportedManifest', `the ${what} is larger than ${maxBytes} bytes`);
    }
    chunks.push(buffer);
  }
  return Buffer.concat(chunks);
}
