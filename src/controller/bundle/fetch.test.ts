import { createHash } from 'node:crypto';
import { access, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { selfSignedCertificate, testCertificateAuthority } from '../../../test/env/tls.js';
import { StallingError, TransientError } from '../common/errors.js';
import { SourceFetcher, redactUrl, type FetchRequest } from './fetch.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

let server: Server;
let base: string;
let handler: Handler;
let dir: string;
const seen: IncomingMessage[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    seen.push(req);
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));
beforeEach(async () => {
  seen.length = 0;
  dir = await mkdtemp(join(tmpdir(), 'fetch-test-'));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

function request(path: string, extra: Partial<FetchRequest> = {}): FetchRequest {
  return {
    source: { http: { url: `${base}${path}` } },
    destination: join(dir, 'out'),
    maxBytes: 1024,
    timeoutMs: 2000,
    signal: new AbortController().signal,
    ...extra,
  };
}

const fetcher = new SourceFetcher();

async function failure(req: FetchRequest): Promise<StallingError | TransientError> {
  try {
    await fetcher.fetch(req);
  } catch (error) {
    if (error instanceof StallingError || error instanceof TransientError) return error;
    throw error;
  }
  throw new Error('fetch succeeded');
}

describe('SourceFetcher (http) into memory', () => {
  const body = Buffer.from('PK\u0003\u0004 small artifact bytes');
  const sha256 = createHash('sha256').update(body).digest('hex');

  it('reads a body whose Content-Length is within the in-memory limit into a Buffer and writes no file', async () => {
    handler = (_req, res) => res.writeHead(200, { 'content-length': body.length }).end(body);
    const fetched = await fetcher.fetchSmallInMemory(request('/a.zip'), body.length);
    expect(fetched).toEqual({ bytes: body, size: body.length, sha256 });
    await expect(access(join(dir, 'out'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('writes the file when the body is larger than the in-memory limit or its length is not announced', async () => {
    handler = (_req, res) => res.writeHead(200, { 'content-length': body.length }).end(body);
    expect(await fetcher.fetchSmallInMemory(request('/a.zip'), body.length - 1)).toEqual({
      path: join(dir, 'out'),
      size: body.length,
      sha256,
    });
    await rm(join(dir, 'out'));
    handler = (_req, res) => {
      res.write(body.subarray(0, 4)); // chunked: no Content-Length
      res.end(body.subarray(4));
    };
    const chunked = await fetcher.fetchSmallInMemory(request('/a.zip'), 1024);
    expect(chunked).toEqual({ path: join(dir, 'out'), size: body.length, sha256 });
    expect((await readFile(join(dir, 'out'))).equals(body)).toBe(true);
  });

  it('creates the destination directory (0700) when the body goes to a file and the directory is not there yet', async () => {
    handler = (_req, res) => {
      res.write(body.subarray(0, 4)); // chunked: no Content-Length
      res.end(body.subarray(4));
    };
    const destination = join(dir, 'work', 'fetched');
    const fetched = await fetcher.fetchSmallInMemory(request('/a.zip', { destination }), 1024);
    expect(fetched).toEqual({ path: destination, size: body.length, sha256 });
    expect((await stat(join(dir, 'work'))).mode & 0o777).toBe(0o700);
  });

  it('still refuses a body over maxBytes, and a body cut short of its Content-Length is transient', async () => {
    handler = (_req, res) => res.writeHead(200, { 'content-length': 2000 }).end(Buffer.alloc(2000));
    await expect(fetcher.fetchSmallInMemory(request('/big.zip'), 4096)).rejects.toMatchObject({
      kind: 'stalling',
      reason: 'ArtifactTooLarge',
    });
    handler = (_req, res) => {
      res.writeHead(200, { 'content-length': 100 }).write(Buffer.alloc(10));
      setTimeout(() => res.destroy(), 20);
    };
    await expect(fetcher.fetchSmallInMemory(request('/cut.zip'), 1024)).rejects.toMatchObject({
      kind: 'transient',
      reason: 'SourceUnavailable',
    });
  });
});

describe('SourceFetcher (http)', () => {
  it('streams the body to the destination and hashes it', async () => {
    const body = Buffer.from('PK\u0003\u0004 artifact bytes');
    handler = (_req, res) => res.end(body);
    const fetched = await fetcher.fetch(request('/a.zip'));
    expect(fetched).toEqual({
      path: join(dir, 'out'),
      size: body.length,
      sha256: createHash('sha256').update(body).digest('hex'),
    });
    expect((await readFile(fetched.path)).equals(body)).toBe(true);
  });

  it.each([
    [404, 'stalling', 'SourceNotFound'],
    [410, 'stalling', 'SourceNotFound'],
    [401, 'stalling', 'SourceUnauthorized'],
    [403, 'stalling', 'SourceUnauthorized'],
    [500, 'transient', 'SourceUnavailable'],
    [503, 'transient', 'SourceUnavailable'],
    [429, 'transient', 'SourceUnavailable'],
  ])('classifies HTTP %d as %s %s', async (status, kind, reason) => {
    handler = (_req, res) => res.writeHead(status).end('nope');
    const error = await failure(request('/x.zip'));
    expect({ kind: error.kind, reason: error.reason }).toEqual({ kind, reason });
    expect(error.message).toContain(`HTTP ${status}`);
  });

  it('sends basic auth or a bearer token', async () => {
    handler = (_req, res) => res.end('ok');
    await fetcher.fetch(request('/a', { http: { credentials: { username: 'ci', password: 'pw' } } }));
    expect(seen[0]!.headers.authorization).toBe(`Basic ${Buffer.from('ci:pw').toString('base64')}`);
    await fetcher.fetch(request('/b', { http: { credentials: { token: 't0k' } } }));
    expect(seen[1]!.headers.authorization).toBe('Bearer t0k');
  });

  it('follows redirects on the same origin with credentials', async () => {
    handler = (req, res) =>
      req.url === '/old' ? res.writeHead(302, { location: '/new' }).end() : res.end('moved');
    const fetched = await fetcher.fetch(request('/old', { http: { credentials: { token: 't0k' } } }));
    expect(await readFile(fetched.path, 'utf8')).toBe('moved');
    expect(seen.map((r) => [r.url, r.headers.authorization])).toEqual([
      ['/old', 'Bearer t0k'],
      ['/new', 'Bearer t0k'],
    ]);
  });

  it('refuses an artifact over the size limit, by Content-Length or while streaming, and leaves no file', async () => {
    handler = (_req, res) => res.writeHead(200, { 'content-length': 5000 }).end(Buffer.alloc(5000));
    expect((await failure(request('/big'))).reason).toBe('ArtifactTooLarge');
    handler = (_req, res) => {
      res.writeHead(200, { 'transfer-encoding': 'chunked' });
      res.write(Buffer.alloc(800));
      res.end(Buffer.alloc(800));
    };
    expect((await failure(request('/chunked'))).reason).toBe('ArtifactTooLarge');
    await expect(stat(join(dir, 'out'))).rejects.toThrow(/ENOENT/);
  });

  it('turns a timeout and a refused connection into transient errors', async () => {
    handler = () => undefined; // never answers
    const timedOut = await failure(request('/slow', { timeoutMs: 200 }));
    expect({ kind: timedOut.kind, reason: timedOut.reason }).toEqual({
      kind: 'transient',
      reason: 'SourceUnavailable',
    });
    const refused = await failure({
      ...request('/x'),
      source: { http: { url: 'http://127.0.0.1:1/x.zip' } },
    });
    expect(refused.kind).toBe('transient');
  });
});

describe('SourceFetcher error texts', () => {
  it('a timeout reads as a timeout naming spec.source.timeout, not ABORT_ERR', async () => {
    handler = () => undefined; // never answers
    const timedOut = await failure(request('/slow', { timeoutMs: 200 }));
    expect(timedOut.message).not.toContain('ABORT_ERR');
    expect(timedOut.message).toBe(`fetching ${base}/slow: timed out after 0.2 s (spec.source.timeout)`);
    expect(timedOut.reason).toBe('SourceUnavailable');
  });

  it('a redirect loop says so, and so does a chain longer than the redirect limit', async () => {
    handler = (req, res) => res.writeHead(302, { location: req.url === '/a' ? '/b' : '/a' }).end();
    const loop = await failure(request('/a'));
    expect({ reason: loop.reason, message: loop.message }).toEqual({
      reason: 'SourceRedirectLoop',
      message: `fetching ${base}/a: redirect loop (${base}/b redirects back to ${base}/a)`,
    });
    handler = (req, res) =>
      res.writeHead(301, { location: `/hop${Number(req.url?.slice(4) || 0) + 1}` }).end();
    const chain = await failure(request('/hop0'));
    expect({ reason: chain.reason, message: chain.message }).toEqual({
      reason: 'SourceRedirectLoop',
      message: `fetching ${base}/hop0: more than 5 redirects (last: ${base}/hop5 redirects to ${base}/hop6)`,
    });
  });
});

describe('redactUrl', () => {
  it('drops user info and the query string', () => {
    expect(redactUrl('https://user:pw@host.example/a.zip?X-Amz-Signature=abc')).toBe(
      'https://host.example/a.zip',
    );
  });
});

describe('SourceFetcher (https with a private CA)', () => {
  it('refuses an untrusted certificate as stalling, and fetches once the CA is given', async () => {
    const { cert, key } = selfSignedCertificate();
    const secure = createHttpsServer({ cert, key }, (_req, res) => res.end('secure bytes'));
    await new Promise<void>((resolve) => secure.listen(0, '127.0.0.1', resolve));
    const url = `https://127.0.0.1:${(secure.address() as AddressInfo).port}/a.zip`;
    try {
      const untrusted = await failure({ ...request('/'), source: { http: { url } } });
      expect({ kind: untrusted.kind, reason: untrusted.reason }).toEqual({
        kind: 'stalling',
        reason: 'SourceCertificateInvalid',
      });
      const fetched = await fetcher.fetch({ ...request('/'), source: { http: { url } }, http: { ca: cert } });
      expect(await readFile(fetched.path, 'utf8')).toBe('secure bytes');
    } finally {
      secure.closeAllConnections();
      await new Promise<void>((resolve) => secure.close(() => resolve()));
    }
  });
});

describe('SourceFetcher (mutual TLS)', () => {
  it('presents the client certificate to a server that requires one, and fails without it', async () => {
    const authority = testCertificateAuthority();
    const server = authority.issue('server');
    const client = authority.issue('client', 'ci-fetcher');
    const seenClients: string[] = [];
    const secure = createHttpsServer(
      { cert: server.cert, key: server.key, ca: authority.cert, requestCert: true, rejectUnauthorized: true },
      (req, res) => {
        const peer = (req.socket as TLSSocket).getPeerCertificate();
        seenClients.push(String(peer.subject?.CN));
        res.end('for certified clients');
      },
    );
    await new Promise<void>((resolve) => secure.listen(0, '127.0.0.1', resolve));
    const url = `https://127.0.0.1:${(secure.address() as AddressInfo).port}/a.zip`;
    try {
      const refused = await failure({
        ...request('/'),
        source: { http: { url } },
        http: { ca: authority.cert },
      });
      expect({ kind: refused.kind, reason: refused.reason }).toEqual({
        kind: 'stalling',
        reason: 'SourceCertificateInvalid',
      });
      expect(refused.message).toContain('certSecretRef');
      const fetched = await fetcher.fetch({
        ...request('/'),
        source: { http: { url } },
        http: { ca: authority.cert, cert: client.cert, key: client.key },
      });
      expect(await readFile(fetched.path, 'utf8')).toBe('for certified clients');
      expect(seenClients).toEqual(['ci-fetcher']);
    } finally {
      secure.closeAllConnections();
      await new Promise<void>((resolve) => secure.close(() => resolve()));
    }
  });
});

describe('SourceFetcher (proxies from the environment)', () => {
  it('goes through HTTP_PROXY, and straight to the server when NO_PROXY names it', async () => {
    const proxied: string[] = [];
    const proxy = createServer((req, res) => {
      proxied.push(String(req.url));
      res.end('via the proxy');
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    handler = (_req, res) => res.end('direct');
    try {
      const viaProxy = await fetcher.fetch({
        ...request('/ignored'),
        source: { http: { url: 'http://artifacts.example.invalid/app.zip' } },
        proxyEnv: { HTTP_PROXY: proxyUrl },
      });
      expect(await readFile(viaProxy.path, 'utf8')).toBe('via the proxy');
      expect(proxied).toEqual(['http://artifacts.example.invalid/app.zip']);
      const direct = await fetcher.fetch({
        ...request('/a.zip'),
        proxyEnv: { HTTP_PROXY: proxyUrl, NO_PROXY: '127.0.0.1' },
      });
      expect(await readFile(direct.path, 'utf8')).toBe('direct');
      expect(proxied).toHaveLength(1);
    } finally {
      proxy.closeAllConnections();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    }
  });
});
