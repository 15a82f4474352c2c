/**
 * The admin HTTP server every command runs beside its main work: /healthz (liveness), /readyz (readiness) and
 * /metrics (Prometheus text). Checks answer in Kubernetes' style: 200 "ok", or 503 with one "[-]name failed: reason"
 * line per failing check (all lines with ?verbose).
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';

export interface CheckResult {
  ok: boolean;
  reason?: string;
}

export interface HealthCheck {
  name: string;
  check(): CheckResult | Promise<CheckResult>;
}

export interface AdminServerOptions {
  host: string;
  port: number;
  registry: Registry;
  log: Logger;
  liveness?: HealthCheck[];
  readiness?: HealthCheck[];
}

const CHECK_TIMEOUT_MS = 5_000;

export class AdminServer {
  private server: http.Server | undefined;
  private shuttingDown = false;
  private readonly liveness: HealthCheck[];
  private readonly readiness: HealthCheck[];

  constructor(private readonly opts: AdminServerOptions) {
    this.liveness = [...(opts.liveness ?? [])];
    this.readiness = [...(opts.readiness ?? [])];
  }

  addLiveness(c: HealthCheck): void {
    this.liveness.push(c);
  }

  addReadiness(c: HealthCheck): void {
    this.readiness.push(c);
  }

  /** From now on /readyz fails, so endpoints stop routing to this replica while it drains. */
  markShuttingDown(): void {
    this.shuttingDown = true;
  }

  async start(): Promise<AddressInfo> {
    const server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        this.opts.log.error({ err }, 'admin request failed');
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('internal error\n');
      });
    });
    server.requestTimeout = 10_000;
    server.headersTimeout = 5_000;
    server.keepAliveTimeout = 5_000;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const addr = server.address() as AddressInfo;
    this.opts.log.info({ address: `${addr.address}:${addr.port}` }, 'admin server listening');
    return addr;
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    switch (url.pathname) {
      case '/metrics': {
        const body = await this.opts.registry.metrics();
        res
          .writeHead(200, { 'content-type': this.opts.registry.contentType })
          .end(req.method === 'HEAD' ? undefined : body);
        return;
      }
      case '/healthz':
      case '/livez':
        await this.respond(res, this.liveness, url.searchParams.has('verbose'));
        return;
      case '/readyz': {
        const checks = this.shuttingDown
          ? [
              { name: 'shutdown', check: (): CheckResult => ({ ok: false, reason: 'shutting down' }) },
              ...this.readiness,
            ]
          : this.readiness;
        await this.respond(res, checks, url.searchParams.has('verbose'));
        return;
      }
      default:
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  }

  private async respond(res: http.ServerResponse, checks: HealthCheck[], verbose: boolean): Promise<void> {
    const results = await Promise.all(checks.map(async (c) => ({ name: c.name, ...(await runCheck(c)) })));
    const ok = results.every((r) => r.ok);
    const lines = results
      // A passing check with a reason (degraded but serving) is always shown, so operators see it without ?verbose.
      .filter((r) => verbose || !r.ok || r.reason !== undefined)
      .map((r) =>
        r.ok
          ? `[+]${r.name} ok${r.reason ? ` (${r.reason})` : ''}`
          : `[-]${r.name} failed: ${r.reason ?? 'not ok'}`,
      );
    lines.push(ok ? 'ok' : 'not ok');
    res
      .writeHead(ok ? 200 : 503, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' })
      .end(lines.join('\n') + '\n');
  }
}

async function runCheck(c: HealthCheck): Promise<CheckResult> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      Promise.resolve(c.check()),
      new Promise<CheckResult>((resolve) => {
        timer = setTimeout(() => resolve({ ok: false, reason: 'check timed out' }), CHECK_TIMEOUT_MS);
      }),
    ]);
  } catch (err) {
    return { ok: false, reason: err instanceof Error ? err.message : String(err) };
  } finally {
    clearTimeout(timer);
  }
}
