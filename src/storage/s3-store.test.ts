// What S3ObjectStore.put sends for a Buffer body, read off the wire by a local server: the digest the S3 server
// checks the body against on arrival. The bundle reconciler relies on it instead of re-reading small artifacts
// (docs/adr/0042-one-checked-put-per-small-artifact.md); a client upgrade that dropped it must fail here.
import { createHash } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { selfSignedCertificate } from '../../test/env/tls.js';
import { S3ObjectStore } from './s3-store.js';

interface Received {
  method: string;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

async function capturePut(
  tls: { cert: string; key: string } | undefined,
  put: (endpoint: string) => Promise<unknown>,
): Promise<Received[]> {
  const received: Received[] = [];
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ method: req.method ?? '', headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(200, { etag: '"e"' }).end();
    });
  };
  const server = tls ? createHttpsServer(tls, handler) : createHttpServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    await put(`${tls ? 'https' : 'http'}://127.0.0.1:${port}`);
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
  return received;
}

const body = Buffer.from('the prepared artifact, byte for byte');
const credentials = { bucket: 'bundles', accessKeyId: 'k', secretAccessKey: 's' };

describe('S3ObjectStore.put of a Buffer', () => {
  it('signs the body SHA-256 over HTTP (SigV4), so the server refuses a body that differs from it', async () => {
    const [put] = await capturePut(undefined, (endpoint) =>
      new S3ObjectStore({ endpoint, ...credentials }).put('a/key', body, { contentType: 'application/zip' }),
    );
    expect(put?.method).toBe('PUT');
    expect(put?.body.equals(body)).toBe(true);
    expect(put?.headers['x-amz-content-sha256']).toBe(createHash('sha256').update(body).digest('hex'));
    expect(String(put?.headers.authorization)).toMatch(/SignedHeaders=[^,]*x-amz-content-sha256/);
  });

  it('sends Content-MD5 of the body over HTTPS, which the server checks', async () => {
    const { cert, key } = selfSignedCertificate();
    const [put] = await capturePut({ cert, key }, (endpoint) =>
      new S3ObjectStore({ endpoint, ca: cert, ...credentials }).put('a/key', body),
    );
    expect(put?.body.equals(body)).toBe(true);
    expect(put?.headers['content-md5']).toBe(createHash('md5').update(body).digest('base64'));
  });
});
