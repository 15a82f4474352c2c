// A plain-HTTP proxy in front of the test apiserver that delivers watch streams late (every chunk of a
// `watch=true` response is held for `delayMs`, order kept) and everything else at once: the controller's informer
// caches then lag its own writes, as they do on a loaded apiserver. A kubeconfig for it is written beside.
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { EnvironmentInfo } from '../../env/environment.js';

export class SlowWatchProxy {
  private server: Server | undefined;
  url = '';

  constructor(
    private readonly env: EnvironmentInfo,
    private readonly delayMs: number,
  ) {}

  async start(): Promise<void> {
    const target = new URL(this.env.apiServerUrl);
    const ca = readFileSync(this.env.caFile, 'utf8');
    this.server = createServer((req, res) => {
      const upstream = httpsRequest(
        {
          host: target.hostname,
          port: target.port,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, host: target.host },
          ca,
        },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          if (!/[?&]watch=(true|1)/.test(req.url ?? '')) {
            up.pipe(res);
            return;
          }
          let chain = Promise.resolve();
          const hold = () => new Promise<void>((r) => setTimeout(r, this.delayMs));
          up.on('data', (chunk: Buffer) => {
            const sent = hold();
            chain = chain.then(() => sent).then(() => void res.write(chunk));
          });
          up.on('end', () => void chain.then(() => res.end()));
          up.on('error', () => res.destroy());
        },
      );
      upstream.on('error', () => res.destroy());
      res.on('close', () => upstream.destroy());
      req.pipe(upstream);
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** An environment whose kubeconfig goes through this proxy. */
  async environment(dir: string): Promise<EnvironmentInfo> {
    const kubeconfigPath = join(dir, 'kubeconfig-slow-watch.yaml');
    await writeFile(
      kubeconfigPath,
      [
        'apiVersion: v1',
        'kind: Config',
        'clusters:',
        '  - name: slow-watch',
        '    cluster:',
        `      server: ${this.url}`,
        // client-node refuses plain HTTP unless told so; it is loopback only
        '      insecure-skip-tls-verify: true',
        'users:',
        '  - name: admin',
        '    user:',
        `      token: ${this.env.token}`,
        'contexts:',
        '  - name: slow-watch',
        '    context: { cluster: slow-watch, user: admin, namespace: default }',
        'current-context: slow-watch',
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    return { ...this.env, kubeconfigPath, apiServerUrl: this.url };
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
