// The running product on top of a test environment (real kube-apiserver + etcd + versitygw): the CRDs, a bucket,
// the controller and the update service, and a local HTTP server playing the artifact source. Each component runs
// either as a child process (`node --import tsx src/main.ts <command>`, configured only through the environment
// variables the Helm chart sets) or as a container of the built image configured from the rendered chart
// (scripts/demo/pods.ts). Shared by `npm run demo` and the end-to-end tests (test/integration/e2e/).
import { execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { Client as MinioClient } from 'minio';
import { parse as parseYaml } from 'yaml';
import { APP_RESOURCE, SECRET_RESOURCE } from '../../src/api/v1alpha1/index.js';
import { KubeClient } from '../../src/kube/client.js';
import { loadKubeConfig } from '../../src/kube/config.js';
import type { KubeObject, ResourceType } from '../../src/kube/types.js';
import { minioClientFor, type EnvironmentInfo } from '../../test/env/environment.js';
import { fileTail, freePort, spawnOwned } from '../../test/env/process-utils.js';
import {
  ownerLabel,
  parseRendered,
  podmanCommand,
  podmanRunArgs,
  reapOrphanContainers,
  removeContainer,
  writeServiceAccountFiles,
  type ComponentName,
  type RenderedDeployment,
} from './pods.js';

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

/** The container mode's Helm release name and the S3 credentials Secret it references. */
const DEMO_RELEASE = 'lu';
const DEMO_S3_SECRET = 'liveupdate-demo-s3';

/** Every simulated device comes from 127.0.0.1: no per-address (NAT) or per-device limit, and quick shutdowns. */
const UPDATE_SERVER_DEMO_ENV = {
  LIVEUPDATE_RATE_LIMIT_PER_ADDRESS: '0',
  LIVEUPDATE_RATE_LIMIT_PER_DEVICE: '0',
  LIVEUPDATE_SHUTDOWN_DELAY_SECONDS: '0',
  LIVEUPDATE_SHUTDOWN_TIMEOUT_SECONDS: '5',
};

function execText(command: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, [...args], { maxBuffer: 32 << 20, encoding: 'utf8' }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} ${args.join(' ')} failed: ${stderr || error.message}`));
      else resolve(stdout);
    });
  });
}

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

/** Runs a step; a failure carries the end of the logs of the component that explains it (or of both). */
export async function withComponentLogs<T>(stack: Stack | undefined, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    const name = error instanceof StepError ? error.component : undefined;
    const components = [stack?.controller, stack?.updateServer].filter(
      (c): c is Component => c !== undefined && (!name || c.name === name),
    );
    const tails = await Promise.all(
      components.map(async (c) => `--- ${c.name} log ---\n${await c.tail(2500)}`),
    );
    if (error instanceof Error) error.message = `${error.message}\n${tails.join('\n')}`;
    throw error;
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
    /** The container's name when the child is `podman run`. */
    readonly container?: string,
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
      if (this.container) await removeContainer(this.container);
      return `killed after ${graceMs} ms`;
    }
    // `podman run` forwards SIGTERM to the container's node process and exits with its exit code.
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

/** How a component runs: a `node` child process of the sources, or a container of the built image. */
export type RunMode = 'process' | 'container';

export interface ContainerOptions {
  /** The image to run (an image id), built by `npm run image` (scripts/image/build.ts). */
  readonly image: string;
  /** The helm binary that renders the chart. */
  readonly helm: string;
  /** kubectl, for applying the rendered objects and requesting ServiceAccount tokens. */
  readonly kubectl: string;
}

export interface StackOptions {
  readonly env: EnvironmentInfo;
  /** Per component, default 'process'. Container mode needs `containers`. */
  readonly run?: Partial<Record<ComponentName, RunMode>>;
  readonly containers?: ContainerOptions;
  /** Where component logs go (created). */
  readonly logDir: string;
  /** Only reconcile this namespace ('' = all); also holds the leader-election Lease. */
  readonly namespace: string;
  readonly bucket?: string;
  readonly logLevel?: string;
  /**
   * Process mode: run the components from this compiled entry point (e.g. `dist/main.js` from `npm run build`, as the
   * image runs them) instead of `src/main.ts` under tsx (whose transform costs CPU and memory production does not have).
   */
  readonly compiledMain?: string;
}

export interface ControllerOptions {
  /** Leader-election identity (default `demo-controller-0`); a custom one also names the log file. */
  readonly podName?: string;
  /** The controller's LIVEUPDATE_S3_ENDPOINT, when not the environment's S3 (e.g. a fault-injecting proxy). */
  readonly s3Endpoint?: string;
  /** More environment over the defaults, in process mode (e.g. a ServiceAccount's KUBECONFIG, the chart's lease and namespaces). */
  readonly env?: NodeJS.ProcessEnv;
}

export interface UpdateServerOptions {
  /** More environment over the defaults, in process mode (e.g. the update server's own S3 credentials). */
  readonly env?: NodeJS.ProcessEnv;
}

/** An update-service replica started beside `Stack.updateServer` (process mode), with its own ports. */
export interface UpdateServerReplica {
  readonly name: string;
  readonly component: Component;
  /** `http://127.0.0.1:<port>`: where devices reach this replica. */
  readonly publicUrl: string;
  /** `http://127.0.0.1:<port>`: its admin server (/readyz, /metrics). */
  readonly adminUrl: string;
}

/** Everything that runs: the two components, the artifact server, and the addresses devices use. */
export class Stack {
  readonly kube: KubeClient;
  readonly artifacts = new ArtifactServer();
  readonly bucket: string;
  controller: Component | undefined;
  updateServer: Component | undefined;
  /** Further update-service replicas (startUpdateServerReplica), stopped with the stack. */
  readonly updateServerReplicas: UpdateServerReplica[] = [];
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
    const main = this.options.compiledMain;
    const args = main === undefined ? ['--import', 'tsx', MAIN, name] : [main, name];
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

  private mode(name: ComponentName): RunMode {
    return this.options.run?.[name] ?? 'process';
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
    const logName = options.podName === undefined ? 'controller' : `controller-${podName}`;
    const s3Endpoint = options.s3Endpoint !== undefined ? { LIVEUPDATE_S3_ENDPOINT: options.s3Endpoint } : {};
    const controller =
      this.mode('controller') === 'container'
        ? await this.runPod('controller', podName, logName, {
            LIVEUPDATE_ADMIN_ADDR: `127.0.0.1:${adminPort}`,
            ...s3Endpoint,
          })
        : await this.spawnComponent(
            'controller',
            {
              KUBECONFIG: this.options.env.kubeconfigPath,
              LIVEUPDATE_ADMIN_ADDR: `127.0.0.1:${adminPort}`,
              LIVEUPDATE_LEADER_ELECT: 'true',
              LIVEUPDATE_LEASE_NAMESPACE: namespace,
              LIVEUPDATE_POD_NAME: podName,
              LIVEUPDATE_WATCH_NAMESPACE: this.options.namespace,
              LIVEUPDATE_SHUTDOWN_GRACE_SECONDS: '5',
              ...s3Endpoint,
              ...options.env,
            },
            logName,
          );
    this.controller = controller;
    await this.waitReady(controller, `${this.controllerAdminUrl}/readyz`);
    return controller;
  }

  private updatePorts: Promise<{ port: number; adminPort: number }> | undefined;

  /** The update service's ports, picked once: the container mode renders its public URL into the chart. */
  private async updateServerPorts(): Promise<{ port: number; adminPort: number }> {
    this.updatePorts ??= Promise.all([freePort(), freePort()]).then(([port, adminPort]) => ({
      port,
      adminPort,
    }));
    const ports = await this.updatePorts;
    this.publicUrl = `http://127.0.0.1:${ports.port}`;
    this.updateAdminUrl = `http://127.0.0.1:${ports.adminPort}`;
    return ports;
  }

  /** Starts the update service (polling the release root every second) and waits until it listens. */
  async startUpdateServer(options: UpdateServerOptions = {}): Promise<void> {
    const { port, adminPort } = await this.updateServerPorts();
    const addresses = {
      LIVEUPDATE_LISTEN_ADDR: `127.0.0.1:${port}`,
      LIVEUPDATE_ADMIN_ADDR: `127.0.0.1:${adminPort}`,
    };
    this.updateServer =
      this.mode('update-server') === 'container'
        ? await this.runPod('update-server', 'demo-update-server-0', 'update-server', addresses)
        : await this.spawnComponent(
            'update-server',
            this.updateServerEnv(addresses, this.publicUrl, 'demo-update-server-0', options),
          );
    // /readyz needs a loaded root; before the controller published anything, /healthz says it listens.
    await this.waitReady(this.updateServer, `${this.publicUrl}/healthz`);
  }

  /**
   * Starts one more update-service replica (process mode only) on ports of its own, configured like the first one
   * (`options.env` over the defaults, e.g. the chart's index poll interval), logging to `update-server-<name>.log`;
   * waits until it listens. Several replicas poll the same store independently, as the chart's Deployment runs them.
   */
  async startUpdateServerReplica(
    name: string,
    options: UpdateServerOptions = {},
  ): Promise<UpdateServerReplica> {
    if (this.mode('update-server') === 'container')
      throw new Error('startUpdateServerReplica runs the update service as a process only');
    const [port, adminPort] = await Promise.all([freePort(), freePort()]);
    const publicUrl = `http://127.0.0.1:${port}`;
    const addresses = {
      LIVEUPDATE_LISTEN_ADDR: `127.0.0.1:${port}`,
      LIVEUPDATE_ADMIN_ADDR: `127.0.0.1:${adminPort}`,
    };
    const component = await this.spawnComponent(
      'update-server',
      this.updateServerEnv(addresses, publicUrl, name, options),
      `update-server-${name}`,
    );
    const replica = { name, component, publicUrl, adminUrl: `http://127.0.0.1:${adminPort}` };
    this.updateServerReplicas.push(replica);
    await this.waitReady(component, `${publicUrl}/healthz`);
    return replica;
  }

  private updateServerEnv(
    addresses: Record<string, string>,
    publicUrl: string,
    replicaName: string,
    options: UpdateServerOptions,
  ): NodeJS.ProcessEnv {
    return {
      ...addresses,
      LIVEUPDATE_PUBLIC_URL: publicUrl,
      LIVEUPDATE_INDEX_POLL_SECONDS: '1',
      LIVEUPDATE_REPLICA_NAME: replicaName,
      LIVEUPDATE_STATS_FLUSH_SECONDS: '5',
      ...UPDATE_SERVER_DEMO_ENV,
      ...options.env,
    };
  }

  private chart: Promise<Map<ComponentName, RenderedDeployment>> | undefined;

  /**
   * Container mode: renders the chart once for this stack (release `lu` in the stack's namespace, S3 = the
   * environment's versitygw through a Secret, one replica each, the demo's timings as chart values) and applies
   * everything it renders to the API server (CRDs excepted: installCrds() owns them), so the ServiceAccounts and
   * RBAC the containers use are the chart's own. Deployments stay inert: there is no kubelet here.
   */
  private renderedChart(): Promise<Map<ComponentName, RenderedDeployment>> {
    this.chart ??= (async () => {
      const containers = this.containerOptions();
      const namespace = this.options.namespace || 'default';
      await this.updateServerPorts();
      await reapOrphanContainers();
      const { s3 } = this.options.env;
      const secret: KubeObject & { stringData: Record<string, string> } = {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: DEMO_S3_SECRET, namespace },
        stringData: { accessKeyId: s3.accessKey, secretAccessKey: s3.secretKey },
      };
      await this.kube.apply(SECRET_RESOURCE, secret);
      const values = {
        crds: { enabled: false },
        tests: { enabled: false },
        image: { pullPolicy: 'Never' },
        logLevel: this.options.logLevel ?? 'info',
        s3: {
          mode: 'external',
          bucket: this.bucket,
          region: s3.region,
          existingSecret: DEMO_S3_SECRET,
          external: { endpoint: s3.endpoint },
        },
        controller: {
          replicas: 1,
          watchNamespaces: this.options.namespace ? [this.options.namespace] : [],
          shutdownGraceSeconds: 5,
        },
        updateServer: {
          replicas: 1,
          publicUrl: this.publicUrl,
          indexPollSeconds: 1,
          statsFlushSeconds: 5,
          autoscaling: { enabled: false },
          extraEnv: Object.entries(UPDATE_SERVER_DEMO_ENV).map(([name, value]) => ({ name, value })),
        },
      };
      await mkdir(this.options.logDir, { recursive: true });
      const valuesFile = join(this.options.logDir, 'chart-values.json');
      await writeFile(valuesFile, JSON.stringify(values, null, 2));
      const rendered = await execText(containers.helm, [
        'template',
        DEMO_RELEASE,
        join(REPO, 'charts', 'liveupdate-operator'),
        '--namespace',
        namespace,
        '--kube-version',
        '1.34.4',
        '--values',
        valuesFile,
      ]);
      const renderedFile = join(this.options.logDir, 'chart-rendered.yaml');
      await writeFile(renderedFile, rendered);
      await execText(containers.kubectl, [
        '--kubeconfig',
        this.options.env.kubeconfigPath,
        'apply',
        '--server-side',
        '--field-manager',
        'liveupdate-demo',
        '-f',
        renderedFile,
      ]);
      return parseRendered(rendered).deployments;
    })();
    return this.chart;
  }

  private containerOptions(): ContainerOptions {
    if (!this.options.containers) throw new Error('container mode needs StackOptions.containers');
    return this.options.containers;
  }

  /** Runs a component as its rendered Deployment's container (scripts/demo/pods.ts), logs in `<logName>.log`. */
  private async runPod(
    name: ComponentName,
    podName: string,
    logName: string,
    envOverrides: Record<string, string>,
  ): Promise<Component> {
    const containers = this.containerOptions();
    const deployment = (await this.renderedChart()).get(name);
    if (!deployment) throw new StepError(`the rendered chart has no ${name} Deployment`, name);
    const namespace = this.options.namespace || 'default';
    const podDir = join(this.options.logDir, 'pods', podName);
    let serviceAccountDir: string | undefined;
    const spec = deployment.spec.template.spec;
    if (spec.automountServiceAccountToken !== false) {
      serviceAccountDir = join(podDir, 'serviceaccount');
      const token = await execText(containers.kubectl, [
        '--kubeconfig',
        this.options.env.kubeconfigPath,
        '--namespace',
        namespace,
        'create',
        'token',
        spec.serviceAccountName ?? 'default',
        '--duration',
        '2h',
      ]);
      await writeServiceAccountFiles(serviceAccountDir, {
        token: token.trim(),
        caCert: await readFile(this.options.env.caFile, 'utf8'),
        namespace,
      });
    }
    const api = new URL(this.options.env.apiServerUrl);
    // Container names are global on the machine: make them unique per stack.
    const containerName = `${podName}-${randomBytes(3).toString('hex')}`;
    const args = await podmanRunArgs(deployment, {
      podName: containerName,
      namespace,
      image: containers.image,
      envOverrides,
      secretValue: async (secret, key) => {
        const object = await this.kube.get<KubeObject & { data?: Record<string, string> }>(SECRET_RESOURCE, {
          namespace,
          name: secret,
        });
        const value = object.data?.[key];
        if (value === undefined) throw new StepError(`Secret ${secret} has no key ${key}`, name);
        return Buffer.from(value, 'base64').toString('utf8');
      },
      ...(serviceAccountDir !== undefined ? { serviceAccountDir } : {}),
      volumeDir: podDir,
      apiServer: { host: api.hostname, port: api.port },
      owner: ownerLabel(),
    });
    await mkdir(this.options.logDir, { recursive: true });
    await writeFile(join(podDir, 'podman-run.json'), JSON.stringify(args, null, 2));
    const logPath = join(this.options.logDir, `${logName}.log`);
    const log = openSync(logPath, 'a');
    let child: ChildProcess;
    try {
      const [command, argv] = podmanCommand(args);
      child = spawnOwned(command, argv, { detached: true, stdio: ['ignore', log, log] });
    } finally {
      closeSync(log);
    }
    child.on('error', () => undefined);
    return new Component(name, child, logPath, containerName);
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
  /** Runs a step; a failure gets the end of the logs of the component it names (or of both) appended. */
  async explainFailures<T>(fn: () => Promise<T>, bytes = 3000): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      const name = error instanceof StepError ? error.component : undefined;
      const components = [this.controller, this.updateServer].filter(
        (c): c is Component => c !== undefined && (!name || c.name === name),
      );
      const tails = await Promise.all(
        components.map(async (c) => `--- ${c.name} log ---\n${await c.tail(bytes)}`),
      );
      if (error instanceof Error) error.message = `${error.message}\n${tails.join('\n')}`;
      throw error;
    }
  }

  assertRunning(): void {
    for (const c of [
      this.controller,
      this.updateServer,
      ...this.updateServerReplicas.map((r) => r.component),
    ]) {
      if (c && !c.running)
        throw new StepError(`${c.name} exited unexpectedly (${describeExit(c.exitInfo)})`, c.name);
    }
  }

  component(name: Component['name']): Component | undefined {
    return name === 'controller' ? this.controller : this.updateServer;
  }

  /** Stops the update service (every replica) and the controller (SIGTERM, graceful), then the artifact server. */
  async stop(): Promise<Record<string, string>> {
    const result: Record<string, string> = {};
    const stopping = [this.updateServer, this.controller].filter((c): c is Component => c !== undefined);
    await Promise.all([
      ...stopping.map(async (c) => (result[c.name] = await c.stop(15_000))),
      ...this.updateServerReplicas.map(
        async (r) => (result[`update-server ${r.name}`] = await r.component.stop(15_000)),
      ),
    ]);
    await this.artifacts.stop();
    this.kube.rest.close();
    return result;
  }
}
