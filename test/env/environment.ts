// A real control plane (etcd + kube-apiserver) and a real S3 server (versitygw, or SeaweedFS with
// LIVEUPDATE_TEST_S3_ENGINE=seaweedfs; startS3Server() starts either beside it) on random 127.0.0.1 ports, as
// controller-runtime's envtest does it (TEST-INFRA.md). Used by Jest's global setup, `npm run env:up` and the demo.
//
// No orphans, on every path:
// - stop() terminates the apiserver first, then etcd and versitygw, and removes the temp dir;
// - 'exit' and SIGINT/SIGTERM/SIGHUP handlers stop everything when the owning process ends;
// - each server runs under `setpriv --pdeathsig KILL`, so the kernel kills it when its parent dies, even by SIGKILL;
// - a detached watchdog (sh + `tail --pid`) removes the temp dir once the owner is gone, and kills what is left;
// - every environment leaves state.json and a pid list in its temp dir, and the next start reaps environments whose
//   owner died (killing only pids whose executable is still the recorded binary).
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { closeSync, openSync, realpathSync, rmSync } from 'node:fs';
import { appendFile, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  fileTail,
  freePort,
  isProcessAlive,
  processArgv0,
  processStartTicks,
  readJsonFile,
  spawnOwned,
} from './process-utils.js';
import { ensureTool, type Progress } from './testbin.js';
import { Client as MinioClient, type ClientOptions } from 'minio';

/**
 * The S3 servers the tests run on (TEST-INFRA.md): versitygw (the environment's default) and SeaweedFS, so that no
 * behaviour depends on one server's quirks. Neither is MinIO (AGPL).
 */
export type S3Engine = 'versitygw' | 'seaweedfs';
export const S3_ENGINES: readonly S3Engine[] = ['versitygw', 'seaweedfs'];

/** The environment's S3 server: `LIVEUPDATE_TEST_S3_ENGINE` (versitygw when unset). */
export function s3EngineFromEnv(env: NodeJS.ProcessEnv = process.env): S3Engine {
  const value = env['LIVEUPDATE_TEST_S3_ENGINE'] || 'versitygw';
  if (!(S3_ENGINES as readonly string[]).includes(value))
    throw new Error(`LIVEUPDATE_TEST_S3_ENGINE must be one of ${S3_ENGINES.join(', ')}, not ${value}`);
  return value as S3Engine;
}

export interface S3Connection {
  readonly engine: S3Engine;
  /** `http://127.0.0.1:<port>` (`https://` when started with {@link S3ServerOptions.tls}) */
  readonly endpoint: string;
  readonly host: string;
  readonly port: number;
  readonly useSSL: boolean;
  readonly accessKey: string;
  readonly secretKey: string;
  readonly region: string;
}

/** A `minio` client for a test S3 server (path-style, as versitygw needs), from its endpoint and credentials. */
export function minioClientFor(
  s3: Pick<S3Connection, 'endpoint' | 'accessKey' | 'secretKey' | 'region'>,
  options: Partial<ClientOptions> = {},
): MinioClient {
  const url = new URL(s3.endpoint);
  return new MinioClient({
    ...options,
    endPoint: url.hostname,
    port: Number(url.port),
    useSSL: url.protocol === 'https:',
    accessKey: s3.accessKey,
    secretKey: s3.secretKey,
    region: s3.region,
    pathStyle: true,
  });
}

/** Everything a client needs to connect; plain data, written to JSON for Jest workers. */
export interface EnvironmentInfo {
  readonly kubeconfigPath: string;
  readonly apiServerUrl: string;
  readonly token: string;
  /** PEM file that verifies the apiserver's self-signed serving certificate. */
  readonly caFile: string;
  readonly s3: S3Connection;
  readonly tmpDir: string;
  /** Milliseconds from startEnvironment() to all servers ready. */
  readonly startupMs: number;
}

export interface TestEnvironment extends EnvironmentInfo {
  /** Idempotent: stops the servers (apiserver first) and removes the temp dir. */
  stop(): Promise<void>;
}

export interface EnvironmentOptions {
  readonly progress?: Progress;
  /** Per server readiness budget (default 90 s: the apiserver on 2 busy cores). */
  readonly readyTimeoutMs?: number;
  /** Stop on SIGINT/SIGTERM/SIGHUP and re-raise the signal afterwards (default true). */
  readonly handleSignals?: boolean;
  /** Parent of the per-environment temp dirs (default `<os tmpdir>/liveupdate-operator-env`). */
  readonly tmpRoot?: string;
  /**
   * Keep the ServiceAccount admission plugin on, as a cluster with a kubelet needs it (Pods get their token volume).
   * Off by default: without a kubelet nothing would project the tokens it adds.
   */
  readonly serviceAccountAdmission?: boolean;
  /** The S3 server (default: {@link s3EngineFromEnv}). */
  readonly s3Engine?: S3Engine;
}

const S3_REGION = 'us-east-1';
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

export function defaultTmpRoot(): string {
  return join(tmpdir(), 'liveupdate-operator-env');
}

export async function startEnvironment(options: EnvironmentOptions = {}): Promise<TestEnvironment> {
  const started = Date.now();
  const progress = options.progress ?? (() => undefined);
  const readyTimeoutMs = options.readyTimeoutMs ?? 90_000;
  const tmpRoot = options.tmpRoot ?? defaultTmpRoot();

  await reapLeftoverEnvironments(tmpRoot, progress);
  // One after another: a cold build saturates the machine's cores on its own.
  const etcdBin = await ensureTool('etcd', { progress });
  const apiserverBin = await ensureTool('kube-apiserver', { progress });
  const s3Engine = options.s3Engine ?? s3EngineFromEnv();
  const s3Bin = await ensureTool(s3Engine, { progress });

  const supervisor = await Supervisor.create(tmpRoot, options.handleSignals ?? true);
  const tmpDir = supervisor.tmpDir;

  try {
    const etcd = await startEtcd(supervisor, etcdBin, readyTimeoutMs);
    progress(`etcd ready on ${etcd.url}`);
    const [apiserver, s3] = await Promise.all([
      startApiServer(
        supervisor,
        apiserverBin,
        etcd.url,
        readyTimeoutMs,
        options.serviceAccountAdmission ?? false,
      ),
      startS3(s3Engine, supervisor, s3Bin, readyTimeoutMs),
    ]);
    progress(`kube-apiserver ready on ${apiserver.url}; ${s3Engine} ready on ${s3.endpoint}`);

    const kubeconfigPath = join(tmpDir, 'kubeconfig');
    await writeFile(kubeconfigPath, kubeconfigYaml(apiserver.url, apiserver.caPem, apiserver.token), {
      mode: 0o600,
    });
    const info: EnvironmentInfo = {
      kubeconfigPath,
      apiServerUrl: apiserver.url,
      token: apiserver.token,
      caFile: apiserver.caFile,
      s3,
      tmpDir,
      startupMs: Date.now() - started,
    };
    await writeFile(join(tmpDir, 'environment.json'), JSON.stringify(info, null, 2), { mode: 0o600 });
    return { ...info, stop: () => supervisor.stop() };
  } catch (error) {
    await supervisor.stop();
    throw error;
  }
}

export interface S3Server extends S3Connection {
  /** Milliseconds from start to the first successful S3 request. */
  readonly startupMs: number;
  /** Idempotent: stops the server and removes its temp dir. */
  stop(): Promise<void>;
}

/**
 * One S3 server of its own (temp dir, supervisor, reaper records) beside the environment, e.g. to run the object-store
 * contract or the device journey on a second engine in the same test run.
 */
export interface S3ServerOptions extends Pick<EnvironmentOptions, 'progress' | 'readyTimeoutMs' | 'tmpRoot'> {
  /** Serve https with this certificate (PEM); `ca` is what the readiness probe trusts. versitygw only. */
  tls?: { cert: string; key: string; ca: string };
}

export async function startS3Server(engine: S3Engine, options: S3ServerOptions = {}): Promise<S3Server> {
  if (options.tls && engine !== 'versitygw')
    throw new Error(`startS3Server: tls is only wired for versitygw`);
  const started = Date.now();
  const progress = options.progress ?? (() => undefined);
  const tmpRoot = options.tmpRoot ?? defaultTmpRoot();
  const binary = await ensureTool(engine, { progress });
  const supervisor = await Supervisor.create(tmpRoot, false);
  try {
    const s3 = await startS3(engine, supervisor, binary, options.readyTimeoutMs ?? 90_000, options.tls);
    return { ...s3, startupMs: Date.now() - started, stop: () => supervisor.stop() };
  } catch (error) {
    await supervisor.stop();
    throw error;
  }
}

function startS3(
  engine: S3Engine,
  supervisor: Supervisor,
  binary: string,
  timeoutMs: number,
  tls?: S3ServerOptions['tls'],
) {
  return engine === 'seaweedfs'
    ? startSeaweedfs(supervisor, binary, timeoutMs)
    : startVersitygw(supervisor, binary, timeoutMs, tls);
}

interface EnvironmentState {
  ownerPid: number;
  ownerStartTicks: string;
  createdAt: string;
}

/**
 * Removes environments whose owning process is gone (a SIGKILLed test run whose watchdog was killed too): kills
 * their servers, identified by pid *and* executable so a reused pid is never hit, and deletes their temp dirs.
 */
export async function reapLeftoverEnvironments(
  tmpRoot = defaultTmpRoot(),
  progress: Progress = () => undefined,
) {
  let entries: string[];
  try {
    entries = (await readdir(tmpRoot)).filter((name) => name.startsWith('env-'));
  } catch {
    return;
  }
  for (const entry of entries) {
    const dir = join(tmpRoot, entry);
    let state: EnvironmentState | undefined;
    try {
      state = await readJsonFile<EnvironmentState>(join(dir, 'state.json'));
    } catch {
      state = undefined;
    }
    if (state) {
      const ownerAlive =
        isProcessAlive(state.ownerPid) && processStartTicks(state.ownerPid) === state.ownerStartTicks;
      if (ownerAlive) continue;
    } else {
      // state.json is written right after mkdtemp; a dir without it is either being created now or broken.
      const age = await stat(dir).then(
        (s) => Date.now() - s.mtimeMs,
        () => 0,
      );
      if (age < 10 * 60_000) continue;
    }
    const killed = killRecordedProcesses(await readPidFile(dir));
    await rm(dir, { recursive: true, force: true });
    progress(
      `reaped a leftover test environment ${dir}${killed.length ? ` (killed pids ${killed.join(', ')})` : ''}`,
    );
  }
}

interface RecordedProcess {
  pid: number;
  exe: string;
}

async function readPidFile(dir: string): Promise<RecordedProcess[]> {
  const text = await readFile(join(dir, 'pids'), 'utf8').catch(() => '');
  // "<pid> <executable>" per line; the path may contain spaces.
  return text
    .split('\n')
    .filter((line) => line.includes(' '))
    .map((line) => ({
      pid: Number(line.slice(0, line.indexOf(' '))),
      exe: line.slice(line.indexOf(' ') + 1),
    }));
}

function killRecordedProcesses(recorded: readonly RecordedProcess[]): number[] {
  const killed: number[] = [];
  for (const { pid, exe } of recorded) {
    if (Number.isInteger(pid) && pid > 1 && processArgv0(pid) === exe) {
      try {
        process.kill(pid, 'SIGKILL');
        killed.push(pid);
      } catch {
        // already gone
      }
    }
  }
  return killed;
}

interface StopOptions {
  /** Longest wait for SIGTERM before SIGKILL, below the supervisor's (for servers known to linger). */
  readonly stopGraceMs?: number;
  /** Synchronous cleanup once the process is gone (files it leaves outside the temp dir). */
  readonly afterStop?: () => void;
}

class ServerProcess {
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
    readonly logPath: string,
    readonly stopOptions: StopOptions = {},
  ) {
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
      });
      // A process that could not be spawned never emits 'exit'.
      child.once('error', () => {
        if (child.pid === undefined) {
          this.exitInfo = { code: null, signal: null };
          resolve(this.exitInfo);
        }
      });
    });
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  async terminate(graceMs: number): Promise<void> {
    if (this.running) {
      this.child.kill('SIGTERM');
      const exitedInTime = await Promise.race([
        this.exited.then(() => true),
        sleep(Math.min(graceMs, this.stopOptions.stopGraceMs ?? graceMs), false, { ref: false }),
      ]);
      if (!exitedInTime) {
        this.child.kill('SIGKILL');
        await this.exited;
      }
    }
    this.stopOptions.afterStop?.();
  }

  /** An error that says what happened and shows the end of the server's log. */
  async failure(what: string): Promise<Error> {
    const status = this.exitInfo
      ? ` (exited with ${this.exitInfo.signal ?? `code ${this.exitInfo.code}`})`
      : '';
    return new Error(
      `${this.name} ${what}${status}; log ${this.logPath} ends with:\n${await fileTail(this.logPath)}`,
    );
  }
}

const WATCHDOG_SCRIPT = `
owner=$1 dir=$2
tail --pid="$owner" -f /dev/null 2>/dev/null || while kill -0 "$owner" 2>/dev/null; do sleep 1; done
if [ -f "$dir/pids" ]; then
  while read -r pid exe; do
    [ "$(tr '\\0' '\\n' < "/proc/$pid/cmdline" 2>/dev/null | head -n 1)" = "$exe" ] && kill -KILL "$pid" 2>/dev/null
  done < "$dir/pids"
fi
sleep 1
rm -rf "$dir"
`;

/** Owns the child processes of one environment and every path that ends them. */
class Supervisor {
  private readonly servers: ServerProcess[] = [];
  private watchdog: ChildProcess | undefined;
  private stopping: Promise<void> | undefined;
  private readonly onExit = () => this.killNow();
  private readonly onSignal = (signal: NodeJS.Signals) => {
    // The owner is being interrupted: no graceful shutdown of a throwaway environment, just a quick and sure one.
    this.stopping ??= this.stopInOrder(1000);
    void this.stopping.finally(() => {
      // Let the default action (or other handlers) run now that the servers are down.
      process.kill(process.pid, signal);
    });
  };

  constructor(
    readonly tmpDir: string,
    private readonly handleSignals: boolean,
  ) {
    process.on('exit', this.onExit);
    if (handleSignals) for (const signal of SIGNALS) process.on(signal, this.onSignal);
  }

  /** A fresh temp dir under `tmpRoot` with its owner recorded (for the reaper) and a watchdog on it. */
  static async create(tmpRoot: string, handleSignals: boolean): Promise<Supervisor> {
    await mkdir(tmpRoot, { recursive: true });
    const tmpDir = await mkdtemp(join(tmpRoot, 'env-'));
    const state: EnvironmentState = {
      ownerPid: process.pid,
      ownerStartTicks: processStartTicks(process.pid) ?? '',
      createdAt: new Date().toISOString(),
    };
    await writeFile(join(tmpDir, 'state.json'), JSON.stringify(state));
    const supervisor = new Supervisor(tmpDir, handleSignals);
    supervisor.startWatchdog();
    return supervisor;
  }

  startWatchdog(): void {
    const watchdog = spawn(
      '/bin/sh',
      ['-c', WATCHDOG_SCRIPT, 'liveupdate-env-watchdog', String(process.pid), this.tmpDir],
      {
        detached: true,
        stdio: 'ignore',
      },
    );
    watchdog.on('error', () => undefined);
    watchdog.unref();
    this.watchdog = watchdog;
  }

  /** Spawns a server with its output in `<tmpDir>/logs/<name>.log`, recorded for the reaper. */
  async spawn(
    name: string,
    binary: string,
    args: readonly string[],
    env: NodeJS.ProcessEnv = {},
    stopOptions: StopOptions = {},
  ) {
    const logPath = join(this.tmpDir, 'logs', `${name}.log`);
    await mkdir(join(this.tmpDir, 'logs'), { recursive: true });
    const log = openSync(logPath, 'a');
    const exe = realpathSync(binary);
    let child: ChildProcess;
    try {
      child = spawnOwned(exe, args, {
        cwd: this.tmpDir,
        env: { ...process.env, ...env },
        // Own process group: a terminal's Ctrl-C reaches only the owner, which then stops servers in order.
        detached: true,
        stdio: ['ignore', log, log],
      });
    } finally {
      closeSync(log);
    }
    const server = new ServerProcess(name, child, logPath, stopOptions);
    child.on(
      'error',
      (error) => void appendFile(logPath, `\nspawn error: ${String(error)}\n`).catch(() => undefined),
    );
    if (child.pid !== undefined) {
      await appendFile(join(this.tmpDir, 'pids'), `${child.pid} ${exe}\n`);
    }
    this.servers.push(server);
    return server;
  }

  stop(): Promise<void> {
    this.stopping ??= this.stopInOrder(10_000);
    return this.stopping;
  }

  private async stopInOrder(graceMs: number): Promise<void> {
    // The apiserver first, so that it does not log etcd errors while shutting down.
    const apiservers = this.servers.filter((s) => s.name === 'kube-apiserver');
    await Promise.all(apiservers.map((s) => s.terminate(graceMs)));
    await Promise.all(this.servers.filter((s) => !apiservers.includes(s)).map((s) => s.terminate(graceMs)));
    // Synchronous on purpose: when a test run is interrupted, the event loop is busy with tests and module loading,
    // and an asynchronous rm of the S3 data took seconds to get its turns.
    rmSync(this.tmpDir, { recursive: true, force: true });
    // Last: should the owner die while stopping, the watchdog still finishes the job.
    this.killWatchdog();
    process.off('exit', this.onExit);
    if (this.handleSignals) for (const signal of SIGNALS) process.off(signal, this.onSignal);
  }

  /** Synchronous last resort for process 'exit': no time left for graceful shutdown. */
  private killNow(): void {
    for (const server of this.servers) {
      if (server.running) server.child.kill('SIGKILL');
      server.stopOptions.afterStop?.();
    }
    rmSync(this.tmpDir, { recursive: true, force: true });
    this.killWatchdog();
  }

  private killWatchdog(): void {
    const pid = this.watchdog?.pid;
    this.watchdog = undefined;
    if (pid === undefined) return;
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** Polls `probe` until it returns true; fails early when the server exits, or at the deadline. */
async function waitUntilReady(
  server: ServerProcess,
  timeoutMs: number,
  probe: () => Promise<boolean>,
  describe: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = '';
  while (Date.now() < deadline) {
    if (!server.running) throw await server.failure(`exited before it was ready`);
    try {
      if (await probe()) return;
    } catch (error) {
      lastError = String(error);
    }
    await sleep(200);
  }
  throw await server.failure(
    `not ready after ${timeoutMs} ms (${describe}; last probe error: ${lastError || 'none'})`,
  );
}

/** Whether a failed start was a port race with another process, worth retrying on fresh ports. */
async function lostPortRace(server: ServerProcess): Promise<boolean> {
  return !server.running && /address already in use/i.test(await fileTail(server.logPath, 20_000));
}

const PORT_ATTEMPTS = 3;

async function startEtcd(supervisor: Supervisor, binary: string, timeoutMs: number) {
  for (let attempt = 1; ; attempt++) {
    const [clientPort, peerPort] = await Promise.all([freePort(), freePort()]);
    const url = `http://127.0.0.1:${clientPort}`;
    const peerUrl = `http://127.0.0.1:${peerPort}`;
    const server = await supervisor.spawn('etcd', binary, [
      '--name=test',
      `--data-dir=${join(supervisor.tmpDir, `etcd-data-${attempt}`)}`,
      `--listen-client-urls=${url}`,
      `--advertise-client-urls=${url}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=test=${peerUrl}`,
      '--unsafe-no-fsync',
      '--log-level=warn',
    ]);
    try {
      await waitUntilReady(
        server,
        timeoutMs,
        async () => {
          const response = await httpGet(`${url}/health`);
          return response.status === 200 && /"health":\s*"true"/.test(response.body);
        },
        `GET ${url}/health`,
      );
      return { url };
    } catch (error) {
      if (attempt < PORT_ATTEMPTS && (await lostPortRace(server))) continue;
      throw error;
    }
  }
}

async function startApiServer(
  supervisor: Supervisor,
  binary: string,
  etcdUrl: string,
  timeoutMs: number,
  serviceAccountAdmission: boolean,
) {
  const dir = join(supervisor.tmpDir, 'apiserver');
  const certDir = join(dir, 'certs');
  await mkdir(certDir, { recursive: true });
  const token = randomBytes(24).toString('hex');
  const tokenFile = join(dir, 'tokens.csv');
  await writeFile(tokenFile, `${token},admin,admin,"system:masters"\n`, { mode: 0o600 });
  // The service-account signer; EC keys are generated instantly, unlike RSA.
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const keyFile = join(dir, 'sa.key');
  const publicKeyFile = join(dir, 'sa.pub');
  await writeFile(keyFile, privateKey.export({ type: 'sec1', format: 'pem' }), { mode: 0o600 });
  await writeFile(publicKeyFile, publicKey.export({ type: 'spki', format: 'pem' }));
  const caFile = join(certDir, 'apiserver.crt');

  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const url = `https://127.0.0.1:${port}`;
    const server = await supervisor.spawn('kube-apiserver', binary, [
      `--etcd-servers=${etcdUrl}`,
      // A fresh prefix per attempt: a half-initialised earlier attempt must not leave state behind.
      `--etcd-prefix=/registry-${attempt}`,
      `--secure-port=${port}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--cert-dir=${certDir}`,
      '--service-cluster-ip-range=10.0.0.0/24',
      '--allow-privileged=true',
      '--authorization-mode=RBAC',
      ...(serviceAccountAdmission ? [] : ['--disable-admission-plugins=ServiceAccount']),
      `--token-auth-file=${tokenFile}`,
      `--service-account-issuer=${url}/`,
      `--service-account-key-file=${publicKeyFile}`,
      `--service-account-signing-key-file=${keyFile}`,
      '--profiling=false',
    ]);
    try {
      // Anonymous /readyz is allowed only once the RBAC bootstrap roles exist, so "ok" means fully started.
      await waitUntilReady(
        server,
        timeoutMs,
        async () => {
          const response = await httpGet(`${url}/readyz`, { insecure: true });
          return response.status === 200 && response.body.trim() === 'ok';
        },
        `anonymous GET ${url}/readyz`,
      );
      const caPem = await readFile(caFile, 'utf8');
      // As admin, verifying the serving certificate against the CA the kubeconfig will carry.
      await waitUntilReady(
        server,
        timeoutMs,
        async () => {
          const response = await httpGet(`${url}/api/v1/namespaces/default`, { ca: caPem, token });
          return response.status === 200;
        },
        `GET ${url}/api/v1/namespaces/default as admin`,
      );
      return { url, token, caFile, caPem };
    } catch (error) {
      if (attempt < PORT_ATTEMPTS && (await lostPortRace(server))) continue;
      throw error;
    }
  }
}

async function startVersitygw(
  supervisor: Supervisor,
  binary: string,
  timeoutMs: number,
  tls?: S3ServerOptions['tls'],
): Promise<S3Connection> {
  const dir = join(supervisor.tmpDir, 's3');
  const tlsArgs: string[] = [];
  if (tls) {
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'tls.crt'), tls.cert);
    await writeFile(join(dir, 'tls.key'), tls.key, { mode: 0o600 });
    tlsArgs.push(`--cert=${join(dir, 'tls.crt')}`, `--key=${join(dir, 'tls.key')}`);
  }
  const accessKey = `test${randomBytes(8).toString('hex')}`;
  const secretKey = randomBytes(24).toString('base64url');
  let sidecar = false;
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const [iamDir, versioningDir, dataDir, sidecarDir] = ['iam', 'versions', 'data', 'meta'].map((name) =>
      join(dir, `${name}-${attempt}`),
    ) as [string, string, string, string];
    await Promise.all([iamDir, versioningDir, dataDir, sidecarDir].map((d) => mkdir(d, { recursive: true })));
    const server = await supervisor.spawn(
      'versitygw',
      binary,
      [
        `--port=127.0.0.1:${port}`,
        ...tlsArgs,
        `--iam-dir=${iamDir}`,
        `--region=${S3_REGION}`,
        'posix',
        `--versioning-dir=${versioningDir}`,
        ...(sidecar ? [`--sidecar=${sidecarDir}`] : []),
        dataDir,
      ],
      { ROOT_ACCESS_KEY: accessKey, ROOT_SECRET_KEY: secretKey },
    );
    const endpoint = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
    try {
      // Any S3 answer (an unsigned request gets 403 AccessDenied) means it listens and serves.
      await waitUntilReady(
        server,
        timeoutMs,
        async () => {
          const response = await httpGet(`${endpoint}/`, tls ? { ca: tls.ca } : {});
          return response.status > 0;
        },
        `GET ${endpoint}/`,
      );
      return {
        engine: 'versitygw' as const,
        endpoint,
        host: '127.0.0.1',
        port,
        useSSL: tls !== undefined,
        accessKey,
        secretKey,
        region: S3_REGION,
      };
    } catch (error) {
      if (attempt < PORT_ATTEMPTS && !server.running) {
        // Metadata goes to user xattrs unless the file system lacks them; then to a sidecar directory.
        if (!sidecar && /xattr/i.test(await fileTail(server.logPath))) {
          sidecar = true;
          continue;
        }
        if (await lostPortRace(server)) continue;
      }
      throw error;
    }
  }
}

/**
 * SeaweedFS as one `weed server` process (master, volume, filer and S3 gateway), every port chosen here on
 * 127.0.0.1: the gRPC ports too (by default HTTP port + 10000, which may be taken or out of range), and the extra
 * listeners (Iceberg, Lance) off. Credentials: the admin identity SeaweedFS takes from AWS_ACCESS_KEY_ID and
 * AWS_SECRET_ACCESS_KEY. Buckets are not created on upload (as on AWS). Ready once a signed ListBuckets succeeds
 * (the gateway answers before its filer connection is up). It ignores SIGTERM for a long time: stopped with SIGKILL
 * after a short grace; its gRPC unix sockets (hard-wired under /tmp) are removed then.
 */
async function startSeaweedfs(
  supervisor: Supervisor,
  binary: string,
  timeoutMs: number,
): Promise<S3Connection> {
  const dir = join(supervisor.tmpDir, 's3');
  const accessKey = `test${randomBytes(8).toString('hex')}`;
  const secretKey = randomBytes(24).toString('base64url');
  for (let attempt = 1; ; attempt++) {
    const ports = await Promise.all(Array.from({ length: 8 }, () => freePort()));
    const [master, masterGrpc, volume, volumeGrpc, filer, filerGrpc, s3Port, s3Grpc] = ports as [
      number,
      number,
      number,
      number,
      number,
      number,
      number,
      number,
    ];
    const dataDir = join(dir, `data-${attempt}`);
    await mkdir(dataDir, { recursive: true });
    const server = await supervisor.spawn(
      'seaweedfs',
      binary,
      [
        'server',
        `-dir=${dataDir}`,
        '-ip=127.0.0.1',
        '-ip.bind=127.0.0.1',
        `-master.port=${master}`,
        `-master.port.grpc=${masterGrpc}`,
        '-master.telemetry=false',
        '-master.volumeSizeLimitMB=64',
        `-volume.port=${volume}`,
        `-volume.port.grpc=${volumeGrpc}`,
        '-volume.max=8',
        '-filer',
        `-filer.port=${filer}`,
        `-filer.port.grpc=${filerGrpc}`,
        `-filer.localSocket=${join(dir, `filer-${attempt}.sock`)}`,
        '-s3',
        `-s3.port=${s3Port}`,
        `-s3.port.grpc=${s3Grpc}`,
        '-s3.port.iceberg=0',
        '-s3.port.lance=0',
        `-s3.localSocket=${join(dir, `s3-${attempt}.sock`)}`,
        '-s3.autoCreateBucket=false',
      ],
      { AWS_ACCESS_KEY_ID: accessKey, AWS_SECRET_ACCESS_KEY: secretKey },
      {
        stopGraceMs: 2000,
        afterStop: () =>
          ['master', 'volume', 'filer', 's3'].forEach((name, i) =>
            rmSync(`/tmp/seaweedfs-${name}-grpc-${[masterGrpc, volumeGrpc, filerGrpc, s3Grpc][i]}.sock`, {
              force: true,
            }),
          ),
      },
    );
    const connection: S3Connection = {
      engine: 'seaweedfs',
      endpoint: `http://127.0.0.1:${s3Port}`,
      host: '127.0.0.1',
      port: s3Port,
      useSSL: false,
      accessKey,
      secretKey,
      region: S3_REGION,
    };
    const client = minioClientFor(connection);
    try {
      await waitUntilReady(server, timeoutMs, async () => (await client.listBuckets(), true), 'ListBuckets');
      return connection;
    } catch (error) {
      if (attempt < PORT_ATTEMPTS && (await lostPortRace(server))) continue;
      throw error;
    }
  }
}

function kubeconfigYaml(server: string, caPem: string, token: string): string {
  const ca = Buffer.from(caPem).toString('base64');
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '  - name: liveupdate-test',
    '    cluster:',
    `      server: ${server}`,
    `      certificate-authority-data: ${ca}`,
    'users:',
    '  - name: admin',
    '    user:',
    `      token: ${token}`,
    'contexts:',
    '  - name: liveupdate-test',
    '    context:',
    '      cluster: liveupdate-test',
    '      user: admin',
    '      namespace: default',
    'current-context: liveupdate-test',
    '',
  ].join('\n');
}

interface HttpGetOptions {
  readonly ca?: string;
  readonly insecure?: boolean;
  readonly token?: string;
  readonly timeoutMs?: number;
}

/** One GET with a timeout, for readiness probes (fetch cannot take a custom CA without undici). */
export function httpGet(
  url: string,
  options: HttpGetOptions = {},
): Promise<{ status: number; body: string }> {
  const target = new URL(url);
  const request = target.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(
      target,
      {
        method: 'GET',
        headers: options.token ? { authorization: `Bearer ${options.token}` } : {},
        timeout: options.timeoutMs ?? 5000,
        ...(target.protocol === 'https:'
          ? { rejectUnauthorized: !options.insecure, ...(options.ca ? { ca: options.ca } : {}) }
          : {}),
      },
      (response) => {
        let body = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => {
          if (body.length < 1 << 20) body += chunk;
        });
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
        response.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`timeout after ${options.timeoutMs ?? 5000} ms`)));
    req.on('error', reject);
    req.end();
  });
}
