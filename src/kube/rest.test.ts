import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { KubeConfig } from '@kubernetes/client-node';
import { RestClientMetrics, createRegistry } from '../observability/metrics.js';
import { RestClient, collectionPath, isRetryable, objectPath, toApiError } from './rest.js';
import { KubeApiError, type ResourceType } from './types.js';

const CM: ResourceType = {
  group: '',
  version: 'v1',
  kind: 'ConfigMap',
  plural: 'configmaps',
  namespaced: true,
};
const BUNDLE: ResourceType = {
  group: 'liveupdate.dev',
  version: 'v1alpha1',
  kind: 'LiveUpdateBundle',
  plural: 'liveupdatebundles',
  namespaced: true,
};
const NS: ResourceType = {
  group: '',
  version: 'v1',
  kind: 'Namespace',
  plural: 'namespaces',
  namespaced: false,
};

describe('paths', () => {
  it('builds core, group, namespaced, cluster-scoped and subresource paths', () => {
    expect(collectionPath(CM, 'a')).toBe('/api/v1/namespaces/a/configmaps');
    expect(collectionPath(CM)).toBe('/api/v1/configmaps');
    expect(objectPath(BUNDLE, { namespace: 'a', name: 'b' }, 'status')).toBe(
      '/apis/liveupdate.dev/v1alpha1/namespaces/a/liveupdatebundles/b/status',
    );
    expect(objectPath(NS, { name: 'x' })).toBe('/api/v1/namespaces/x');
    expect(() => objectPath(CM, { name: 'x' })).toThrow(/namespace required/);
  });
});

describe('toApiError', () => {
  const status = (code: number, reason: string, message: string): string =>
    JSON.stringify({ kind: 'Status', code, reason, message });

  it.each([
    [404, 'NotFound', 'NotFound'],
    [409, 'Conflict', 'Conflict'],
    [409, 'AlreadyExists', 'AlreadyExists'],
    [422, 'Invalid', 'Invalid'],
    [400, 'BadRequest', 'Invalid'],
    [403, 'Forbidden', 'Forbidden'],
    [401, 'Unauthorized', 'Unauthorized'],
    [410, 'Expired', 'Gone'],
    [429, 'TooManyRequests', 'TooManyRequests'],
    [500, 'InternalError', 'ServerError'],
    [500, 'Timeout', 'Timeout'],
    [503, 'ServiceUnavailable', 'Unavailable'],
    [504, 'Timeout', 'Timeout'],
  ])('%i %s → %s', (code, reason, expected) => {
    const e = toApiError(code, status(code, reason, 'the message'), 'GET /x');
    expect(e).toBeInstanceOf(KubeApiError);
    expect(e.reason).toBe(expected);
    expect(e.statusCode).toBe(code);
    expect(e.message).toBe('GET /x: the message');
  });

  it('keeps a bounded raw body when the answer is not a Status', () => {
    const e = toApiError(502, 'x'.repeat(5000), 'GET /x');
    expect(e.reason).toBe('ServerError');
    expect(e.message.length).toBeLessThan(2100);
  });

  it('classifies retryable failures', () => {
    expect(isRetryable(new KubeApiError('Conflict', 409, ''))).toBe(true);
    expect(isRetryable(new KubeApiError('Unavailable', 0, ''))).toBe(true);
    expect(isRetryable(new KubeApiError('Invalid', 422, ''))).toBe(false);
    expect(isRetryable(new Error('x'))).toBe(false);
  });
});

describe('request metrics', () => {
  let server: Server;
  let base = '';

  beforeAll(async () => {
    server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname === '/drop') {
        req.socket.destroy();
        return;
      }
      if (url.searchParams.get('watch') === 'true') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"type":"ADDED","object":{}}\n');
        return;
      }
      const code = url.pathname === '/missing' ? 404 : req.method === 'POST' ? 201 : 200;
      res
        .writeHead(code, { 'content-type': 'application/json' })
        .end(code === 404 ? '{"kind":"Status"}' : '{}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  // RestClient only needs the server address and (here, no) credentials from the kubeconfig
  const kubeConfig = (): KubeConfig =>
    ({
      getCurrentCluster: () => ({ server: base }),
      applyToHTTPSOptions: async () => {},
    }) as unknown as KubeConfig;

  it('counts every request by HTTP method and status code, a watch as GET, a failed connection as <error>', async () => {
    const registry = createRegistry({ defaultMetrics: false });
    const metrics = new RestClientMetrics(registry);
    const client = new RestClient(kubeConfig(), { onRequest: metrics.observe });
    try {
      await client.request('GET', '/ok');
      await client.request('GET', '/ok');
      await client.request('POST', '/ok', { body: {} });
      await expect(client.request('GET', '/missing')).rejects.toMatchObject({ reason: 'NotFound' });
      await expect(client.request('DELETE', '/drop')).rejects.toMatchObject({ reason: 'Unavailable' });
      const lines: string[] = [];
      await client.stream('/w', {}, (l) => lines.push(l), new AbortController().signal);
      expect(lines).toHaveLength(1);
    } finally {
      client.close();
    }
    const values = (await metrics.requests.get()).values.map((v) => [
      v.labels['method'],
      v.labels['code'],
      v.value,
    ]);
    expect(values).toEqual(
      expect.arrayContaining([
        ['GET', '200', 3],
        ['POST', '201', 1],
        ['GET', '404', 1],
        ['DELETE', '<error>', 1],
      ]),
    );
    expect(values).toHaveLength(4);
    expect(client.totalRequests()).toBe(6);
    const text = await registry.metrics();
    expect(text).toContain('rest_client_requests_total{method="GET",code="200"} 3');
  });

  it('never lets a failing hook break a request', async () => {
    const client = new RestClient(kubeConfig(), {
      onRequest: () => {
        throw new Error('broken hook');
      },
    });
    try {
      await expect(client.request('GET', '/ok')).resolves.toEqual({});
    } finally {
      client.close();
    }
  });
});
