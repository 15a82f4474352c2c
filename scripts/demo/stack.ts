// The running product on top of a test environment (real kube-apiserver + etcd + versitygw): the CRDs, a bucket,
// the controller and the update service as child processes (`node --import tsx src/main.ts <command>`, configured
// only through the environment variables the Helm chart sets), and a local HTTP server playing the artifact source.
// Shared by `npm run demo` and the end-to-end test (test/integration/e2e/).
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { mkdir, readFile, readdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { Client as MinioClient } from 'minio';
import { parse as parseYaml } from 'yaml';
import { APP_RESOURCE } from '../../src/api/v1alpha1/index.js';
import { KubeClient } from '../../src/kube/client.js';
import { loadKubeConfig } from '../../src/kube/config.js';
import type { KubeObject, ResourceType } from '../../src/kube/types.js';
import { minioClientFor, type EnvironmentInfo } from '../../test/env/environment.js';
import { fileTail, freePort, spawnOwned } from '../../test/env/process-utils.js';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
const MAIN = join(REPO, 'src/main.ts');
const CRD_DIR = join(REPO, 'crds');

export const CRD_RESOURCE: ResourceType = {
  group: 'apiextensions.k8s.io',
  version: 'v1',
  kind: 'CustomResourceDefinition',
  plural: 'customresourcedefinitions',
  namespaced: false,
};
export const NAMESPACE_RESOURCE: ResourceType = {
  group: '',
  version: 'v1',
  kind: 'Namespace',
  plural: 'namespaces',
  namespaced: false,
};

/** A step of the journey failed; `component` names the process whose log explains it. */
export class StepError extends Error {
  constructor(
    message: string,
    readonly component?: 'controller' | 'update-server',
  ) {
    super(message);
    this.name = 'StepError';
  }
}

/** One of our commands as a child process, output in `<logDir>/<name>.log`. */
export class Component {
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;

  constructor(
    readonly name: 'controller' | 'update-server',
    readonly child: ChildProcess,
    readonly logPath: string,
  ) {
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
      });
    });
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves with how it ended. */
  async stop(graceMs: number): Promise<string> {
    if (!this.running) return `had exited (${describeExit(this.exitInfo)})`;
    this.child.kill('SIGTERM');
    const inTime = await Promise.race([this.exited.then(() => true), sleep(graceMs, false, { ref: false })]);
    if (!inTime) {
      this.child.kill('SIGKILL');
      await this.exited;
      return `killed after ${graceMs} ms`;
    }
    return describeExit(this.exitInfo);
  }

  tail(bytes = 3000): Promise<string> {
    return fileTail(this.logPath, bytes);
  }
}

function describeExit(info: { code: number | null; signal: NodeJS.Signals | null } | undefined): string {
  if (!info) return 'running';
  return info.signal ? `signal ${info.signal}` : `exit code ${info.code}`;
}

/** A local artifact server: path → body. Plays the internal HTTP server CI pushes web builds to. */
export class ArtifactServer {
  readonly routes = new Map<string, Buffer>();
  private server: Server | undefined;
  private base = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const body = this.routes.get(req.url ?? '/');
      if (!body) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/zip', 'content-length': body.length }).end(body);
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.base = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  url(path: string): string {
    return `${this.base}${path}`;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

export interface StackOptions {
  readonly env: EnvironmentInfo;
  /** Where component logs go (created). */
  readonly logDir: string;
  /** Only reconcile this namespace ('' = all); also holds the leader-election Lease. */
  readonly namespace: string;
  readonly bucket?: string;
  readonly logLevel?: string;
}

export interface ControllerOptions {
  /** Leader-election identity (default `demo-controller-0`); a custom one also names the log file. */
  readonly podName?: string;
  /** The controller's LIVEUPDATE_S3_ENDPOINT, when not the environment's S3 (e.g. a fault-injecting proxy). */
  readonly s3Endpoint?: string;
}

/** Everything that runs: the two components, the artifact server, and the addresses devices use. */
export class Stack {
  readonly kube: KubeClient;
  readonly artifacts = new ArtifactServer();
  readonly bucket: string;
  controller: Component | undefined;
  updateServer: Component | undefined;
  /** `http://127.0.0.1:<port>`: where devices reach the update service. */
  publicUrl = '';
  /** `http://127.0.0.1:<port>`: the update service's admin server (/readyz, /metrics). */
  updateAdminUrl = '';
  controllerAdminUrl = '';

  constructor(readonly options: StackOptions) {
    this.kube = new KubeClient(loadKubeConfig(options.env.kubeconfigPath), {
      fieldManager: 'liveupdate-demo',
    });
    this.bucket = options.bucket ?? `liveupdate-${randomBytes(4).toString('hex')}`;
  }

  get updateUrl(): string {
    return `${this.publicUrl}/updates`;
  }
  get statsUrl(): string {
    return `${this.publicUrl}/stats`;
  }
  get channelUrl(): string {
    return `${this.publicUrl}/channel_self`;
  }

  s3Client(): MinioClient {
    return minioClientFor(this.options.env.s3);
  }

  /**
   * Server-side apply of every CRD in crds/ over the REST API (raw JSON keeps the CEL rules and defaults that
   * client-node's typed models would drop), then waits until each is Established and served.
   */
  async installCrds(): Promise<string[]> {
    const files = (await readdir(CRD_DIR)).filter((f) => f.endsWith('.yaml')).sort();
    const names: string[] = [];
    for (const file of files) {
      const crd = parseYaml(await readFile(join(CRD_DIR, file), 'utf8')) as KubeObject;
      await this.kube.apply(CRD_RESOURCE, crd);
      names.push(crd.metadata.name);
    }
    const deadline = Date.now() + 60_000;
    for (const name of names) {
      for (;;) {
        const crd = await this.kube.get<
          KubeObject & { status?: { conditions?: { type: string; status: string }[] } }
        >(CRD_RESOURCE, { namespace: '', name });
        if (crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) break;
        if (Date.now() > deadline) throw new StepError(`CRD ${name} not Established after 60 s`);
        await sleep(200);
      }
    }
    // Discovery and the CRD handler lag a little behind Established: wait until the kind is actually served.
    for (;;) {
      try {
        await this.kube.list(APP_RESOURCE, this.options.namespace || 'default');
        break;
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await sleep(200);
      }
    }
    return names;
  }

  async ensureNamespace(name: string): Promise<void> {
    try {
      await this.kube.get(NAMESPACE_RESOURCE, { namespace: '', name });
    } catch {
      await this.kube.create(NAMESPACE_RESOURCE, {
        apiVersion: 'v1',
        kind: 'Namespace',
        metadata: { name, labels: { 'liveupdate.dev/demo': 'true' } },
      });
    }
  }

  async createBucket(): Promise<void> {
    const client = this.s3Client();
    if (!(await client.bucketExists(this.bucket)))
      await client.makeBucket(this.bucket, this.options.env.s3.region);
  }

  private s3Env(): NodeJS.ProcessEnv {
    const { s3 } = this.options.env;
    return {
      LIVEUPDATE_S3_ENDPOINT: s3.endpoint,
      LIVEUPDATE_S3_REGION: s3.region,
      LIVEUPDATE_S3_BUCKET: this.bucket,
      LIVEUPDATE_S3_ACCESS_KEY_ID: s3.accessKey,
      LIVEUPDATE_S3_SECRET_ACCESS_KEY: s3.secretKey,
      LIVEUPDATE_S3_PATH_STYLE: 'true',
      LIVEUPDATE_LOG_LEVEL: this.options.logLevel ?? 'info',
    };
  }

  private async spawnComponent(
    name: Component['name'],
    env: NodeJS.ProcessEnv,
    logName: string = name,
  ): Promise<Component> {
    await mkdir(this.options.logDir, { recursive: true });
    const logPath = join(this.options.logDir, `${logName}.log`);
    const log = openSync(logPath, 'a');
    const args = ['--import', 'tsx', MAIN, name];
    let child: ChildProcess;
    try {
      // The kernel kills the component should this process die without cleaning up.
      child = spawnOwned(process.execPath, args, {
        cwd: REPO,
        env: { ...process.env, ...this.s3Env(), ...env },
        // Own process group: a terminal's Ctrl-C reaches only the demo, which stops the components in order.
        detached: true,
        stdio: ['ignore', log, log],
      });
    } finally {
      closeSync(log);
    }
    child.on('error', () => undefined);
    return new Component(name, child, logPath);
  }

  /**
   * Starts a controller (leader-elected, as in the chart) and waits until its admin server says ready (a standby
   * is ready too). It becomes `this.controller`; several may run side by side with distinct `podName`s.
   */
  async startController(options: ControllerOptions = {}): Promise<Component> {
    const adminPort = await freePort();
    this.controllerAdminUrl = `http://127.0.0.1:${adminPort}`;
    const namespace = this.options.namespace || 'default';
    const podName = options.podName ?? 'demo-controller-0';
    const controller = await this.spawnComponent(
      'controller',
      {
        KUBECONFIG: this.options.env.kubeconfigPath,
        LIVEUPDATE_ADMIN_ADDR: `127.0.0.1:${adminPort}`,
        LIVEUPDATE_LEADER_ELECT: 'true',
        LIVEUPDATE_LEASE_NAMESPACE: namespace,
        LIVEUPDATE_POD_NAME: podName,
        LIVEUPDATE_WATCH_NAMESPACE: this.options.namespace,
        LIVEUPDATE_SHUTDOWN_GRACE_SECONDS: '5',
        ...(options.s3Endpoint !== undefined ? { LIVEUPDATE_S3_ENDPOINT: options.s3Endpoint } : {}),
      },
      options.podName === undefined ? 'controller' : `controller-${podName}`,
    );
    this.controller = controller;
    await this.waitReady(controller, `${this.controllerAdminUrl}/readyz`);
    return controller;
  }

  /** Starts the update service (polling the release root every second) and waits until it listens. */
  async startUpdateServer(): Promise<void> {
    const [port, adminPort] = [await freePort(), await freePort()];
    this.publicUrl = `http://127.0.0.1:${port}`;
    this.updateAdminUrl = `http://127.0.0.1:${adminPort}`;
    this.updateServer = await this.spawnComponent('update-server', {
      LIVEUPDATE_LISTEN_ADDR: `127.0.0.1:${port}`,
      LIVEUPDATE_ADMIN_ADDR: `127.0.0.1:${adminPort}`,
      LIVEUPDATE_PUBLIC_URL: this.publicUrl,
      LIVEUPDATE_INDEX_POLL_SECONDS: '1',
      LIVEUPDATE_REPLICA_NAME: 'demo-update-server-0',
      LIVEUPDATE_STATS_FLUSH_SECONDS: '5',
      // Every simulated device comes from 127.0.0.1: no per-address (NAT) or per-device limit for the demo.
      LIVEUPDATE_RATE_LIMIT_PER_ADDRESS: '0',
      LIVEUPDATE_RATE_LIMIT_PER_DEVICE: '0',
      LIVEUPDATE_SHUTDOWN_DELAY_SECONDS: '0',
      LIVEUPDATE_SHUTDOWN_TIMEOUT_SECONDS: '5',
    });
    // /readyz needs a loaded root; before the controller published anything, /healthz says it listens.
    await this.waitReady(this.updateServer, `${this.publicUrl}/healthz`);
  }

  private async waitReady(component: Component, url: string, timeoutMs = 90_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!component.running) {
        throw new StepError(
          `${component.name} exited before it was ready (${describeExit(component.exitInfo)})`,
          component.name,
        );
      }
      const ok = await fetch(url).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ok) return;
      if (Date.now() > deadline)
        throw new StepError(`${component.name} not ready after ${timeoutMs} ms (GET ${url})`, component.name);
      await sleep(250);
    }
  }

  /** Throws when a component died while it should be running. */
  assertRunning(): void {
    for (const c of [this.controller, this.updateServer]) {
      if (c && !c.running)
        throw new StepError(`${c.name} exited unexpectedly (${describeExit(c.exitInfo)})`, c.name);
    }
  }

  component(name: Component['name']): Component | undefined {
    return name === 'controller' ? this.controller : this.updateServer;
  }

  /** Stops the update service and the controller (SIGTERM, graceful), then the artifact server. */
  async stop(): Promise<Record<string, string>> {
    const result: Record<string, string> = {};
    const stopping = [this.updateServer, this.controller].filter((c): c is Component => c !== undefined);
    await Promise.all(stopping.map(async (c) => (result[c.name] = await c.stop(15_000))));
    await this.artifacts.stop();
    this.kube.rest.close();
    return result;
  }
}
