import { AdminServer } from './admin-server.js';
import { silentLogger } from './logger.js';
import { createRegistry, createRuntimeMetrics } from './metrics.js';

describe('AdminServer', () => {
  let server: AdminServer;
  let base: string;
  let ready = { ok: false, reason: 'caches not synced' };

  beforeAll(async () => {
    const metrics = createRuntimeMetrics(createRegistry({ defaultMetrics: false }));
    metrics.leaderElection.masterStatus.set({ name: 'x' }, 1);
    server = new AdminServer({
      host: '127.0.0.1',
      port: 0,
      registry: metrics.registry,
      log: silentLogger(),
      liveness: [{ name: 'ping', check: () => ({ ok: true }) }],
      readiness: [{ name: 'manager', check: () => ready }],
    });
    const addr = await server.start();
    base = `http://127.0.0.1:${addr.port}`;
  });
  afterAll(() => server.close());

  it('serves metrics in Prometheus text format', async () => {
    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await res.text()).toContain('leader_election_master_status{name="x"} 1');
  });

  it('answers liveness and readiness with the failing reasons', async () => {
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    let res = await fetch(`${base}/readyz`);
    expect(res.status).toBe(503);
    expect(await res.text()).toContain('[-]manager failed: caches not synced');
    ready = { ok: true, reason: 'leader' };
    res = await fetch(`${base}/readyz?verbose`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('[+]manager ok (leader)\nok\n');
    server.markShuttingDown();
    res = await fetch(`${base}/readyz`);
    expect(res.status).toBe(503);
    expect(await res.text()).toContain('shutting down');
    expect((await fetch(`${base}/nope`)).status).toBe(404);
  });
});
