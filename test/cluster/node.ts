// A real single-node cluster on top of the test environment (etcd + kube-apiserver, with the ServiceAccount admission
// plugin on): containerd (Debian's, own root/state/socket, runc), kubelet, kube-scheduler and kube-controller-manager
// v1.34.4 (built from the kube-apiserver's Kubernetes version into the tool cache), a loopback-only CNI config (no
// bridge, no address, no iptables rule), a self-built pause image. Everything listens on 127.0.0.1 and lives in one
// temp dir; stop() undoes every trace in order (docs/adr/0020-building-and-running-the-image-without-docker.md).
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, readlink, rm, rmdir, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildah, containersRoot, run } from '../../scripts/image/containers.js';
import type { TestEnvironment } from '../env/environment.js';
import { KUBECTL } from '../env/fixtures.js';
import { fileTail, freePort, isProcessAlive, repoRoot, spawnOwned } from '../env/process-utils.js';
import { ensureTool, type Progress } from '../env/testbin.js';

/**
 * The node's name, which is also its address. The node must publish an address the kubelet gives its host-network
 * Pods as `status.podIP` and the EndpointSlice controller writes into the Service's slices. It cannot be the loopback
 * the Pods listen on: the API server rejects a slice with a loopback address, and the kubelet a loopback `--node-ip`.
 * Left to itself the kubelet picks the default-route interface's address when the machine has one, and none when it
 * has not; the test then set 127.0.0.1, and a Pod started before the kubelet replaced it kept 127.0.0.1 and never
 * reached its Service. A `--hostname-override` that is an IP is published as it is, on any machine: one from
 * TEST-NET-3 (RFC 5737), which no network routes. Nothing dials it: probes and the Service proxy go to 127.0.0.1,
 * and container logs are read from the kubelet's log dir ({@link SingleNodeCluster.podLogTails}), not through the
 * API server.
 */
export const NODE_NAME = '203.0.113.1';
const PAUSE_IMAGE = 'localhost/liveupdate-pause:1';
/** Debian's containernetworking-plugins. */
const CNI_BIN_DIR = '/usr/lib/cni';

interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly log: string;
}

export class SingleNodeCluster {
  private readonly procs: Proc[] = [];
  private constructor(
    readonly env: TestEnvironment,
    readonly dir: string,
    private readonly progress: Progress,
  ) {}

  get socket(): string {
    return join(this.dir, 'containerd', 'containerd.sock');
  }

  /** kubectl against the environment's API server; resolves with stdout, rejects with the output. */
  kubectl(args: readonly string[], input?: string): Promise<string> {
    return run(
      KUBECTL,
      ['--kubeconfig', this.env.kubeconfigPath, ...args],
      input !== undefined ? { input } : {},
    );
  }

  /** The last `bytes` of a node process's log (kubelet, kube-controller-manager, ...), for diagnostics. */
  logTail(name: string, bytes: number): Promise<string> {
    const proc = this.procs.find((p) => p.name === name);
    return proc ? fileTail(proc.log, bytes) : Promise.resolve(`(no ${name} here)`);
  }

  /**
   * The end of every container log of the Pods in `namespace` whose name starts with `podPrefix`, read from the
   * kubelet's log dir (`<namespace>_<pod>_<uid>/<container>/<n>.log`): `kubectl logs` would have the API server dial
   * the node's address, which nothing listens on here.
   */
  async podLogTails(namespace: string, podPrefix: string, bytes: number): Promise<string> {
    const root = join(this.dir, 'kubelet', 'pod-logs');
    const tails: string[] = [];
    for (const podDir of (await readdir(root).catch(() => [] as string[])).sort()) {
      const [podNamespace, pod] = podDir.split('_');
      if (podNamespace !== namespace || !pod?.startsWith(podPrefix)) continue;
      for (const container of await readdir(join(root, podDir)).catch(() => [] as string[])) {
        for (const file of (await readdir(join(root, podDir, container)).catch(() => [] as string[])).sort())
          tails.push(
            `--- ${pod}/${container}/${file} ---\n${await fileTail(join(root, podDir, container, file), bytes)}`,
          );
      }
    }
    return tails.length > 0 ? tails.join('\n') : `(no container logs of ${namespace}/${podPrefix}*)`;
  }

  /** `ctr` in containerd's Kubernetes namespace. */
  ctr(args: readonly string[]): Promise<string> {
    return run('ctr', ['--address', this.socket, '--namespace', 'k8s.io', ...args]);
  }

  static async start(env: TestEnvironment, progress: Progress): Promise<SingleNodeCluster> {
    const [kubelet, scheduler, controllerManager] = [
      await ensureTool('kubelet', { progress }),
      await ensureTool('kube-scheduler', { progress }),
      await ensureTool('kube-controller-manager', { progress }),
    ];
    await reapLeftoverClusters(progress);
    // Short: containerd's socket path must stay under the 108 bytes of a unix socket address.
    const dir = await mkdtemp(join(tmpdir(), NODE_DIR_PREFIX));
    await writeFile(join(dir, 'owner'), String(process.pid));
    const cluster = new SingleNodeCluster(env, dir, progress);
    try {
      await cluster.startContainerd();
      await cluster.importImage(await pauseImageArchive(progress), PAUSE_IMAGE);
      await cluster.startKubelet(kubelet);
      await cluster.startControlPlaneControllers(scheduler, controllerManager);
      await cluster.waitNodeReady();
    } catch (error) {
      const logs = await Promise.all(
        cluster.procs.map(async (p) => `--- ${p.name} ---\n${await fileTail(p.log, 1500)}`),
      );
      await cluster.stop();
      if (error instanceof Error) error.message = `${error.message}\n${logs.join('\n')}`;
      throw error;
    }
    return cluster;
  }

  private async spawn(name: string, command: string, args: readonly string[]): Promise<Proc> {
    await mkdir(join(this.dir, 'logs'), { recursive: true });
    const log = join(this.dir, 'logs', `${name}.log`);
    const out = openSync(log, 'a');
    let child: ChildProcess;
    try {
      // Dies with this process (pdeathsig), own process group.
      child = spawnOwned(command, args, { cwd: this.dir, detached: true, stdio: ['ignore', out, out] });
    } finally {
      closeSync(out);
    }
    child.on('error', () => undefined);
    const proc = { name, child, log };
    this.procs.push(proc);
    return proc;
  }

  private async startContainerd(): Promise<void> {
    const base = join(this.dir, 'containerd');
    const cni = join(this.dir, 'cni');
    await mkdir(base, { recursive: true });
    await mkdir(cni, { recursive: true });
    // Pods get only a loopback interface: containerd reports the network ready, nothing is created on the host.
    await writeFile(
      join(cni, '10-loopback-only.conflist'),
      JSON.stringify({ cniVersion: '1.0.0', name: 'loopback-only', plugins: [{ type: 'loopback' }] }),
    );
    const config = [
      'version = 2',
      `root = "${base}/root"`,
      `state = "${base}/state"`,
      '[grpc]',
      `  address = "${this.socket}"`,
      '[ttrpc]',
      `  address = "${base}/ttrpc.sock"`,
      '[plugins."io.containerd.grpc.v1.cri"]',
      '  disable_apparmor = true',
      // Root here lacks CAP_SYS_RESOURCE: containerd must not lower the sandboxes' oom_score_adj.
      '  restrict_oom_score_adj = true',
      `  sandbox_image = "${PAUSE_IMAGE}"`,
      '  [plugins."io.containerd.grpc.v1.cri".containerd]',
      '    default_runtime_name = "runc"',
      '    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
      '      runtime_type = "io.containerd.runc.v2"',
      '  [plugins."io.containerd.grpc.v1.cri".cni]',
      `    bin_dir = "${CNI_BIN_DIR}"`,
      `    conf_dir = "${cni}"`,
      '',
    ].join('\n');
    await writeFile(join(base, 'config.toml'), config);
    const proc = await this.spawn('containerd', 'containerd', ['--config', join(base, 'config.toml')]);
    await this.until('containerd answers', proc, async () => {
      await this.ctr(['version']);
      return true;
    });
  }

  async importImage(archive: string, reference: string): Promise<void> {
    await this.ctr(['images', 'import', '--no-unpack=false', archive]);
    const listed = await this.ctr(['images', 'list', '-q']);
    if (!listed.split('\n').includes(reference))
      throw new Error(`containerd did not import ${reference} from ${archive}; has:\n${listed}`);
  }

  private kubeletPort = 0;

  private async startKubelet(binary: string): Promise<void> {
    const kdir = join(this.dir, 'kubelet');
    for (const sub of ['root', 'certs', 'manifests', 'pod-logs', 'volume-plugins'])
      await mkdir(join(kdir, sub), { recursive: true });
    this.kubeletPort = await freePort();
    const config = {
      apiVersion: 'kubelet.config.k8s.io/v1beta1',
      kind: 'KubeletConfiguration',
      address: '127.0.0.1',
      port: this.kubeletPort,
      readOnlyPort: 0,
      healthzBindAddress: '127.0.0.1',
      healthzPort: await freePort(),
      // The API server has no kubelet client certificate here; the kubelet listens on loopback only.
      authentication: { anonymous: { enabled: true }, webhook: { enabled: false } },
      authorization: { mode: 'AlwaysAllow' },
      cgroupDriver: 'cgroupfs',
      cgroupsPerQOS: true,
      enforceNodeAllocatable: [],
      failSwapOn: false,
      failCgroupV1: false,
      containerRuntimeEndpoint: `unix://${this.socket}`,
      imageServiceEndpoint: `unix://${this.socket}`,
      staticPodPath: join(kdir, 'manifests'),
      volumePluginDir: join(kdir, 'volume-plugins'),
      resolvConf: '/etc/resolv.conf',
      clusterDomain: 'cluster.local',
      evictionHard: { 'memory.available': '100Mi', 'nodefs.available': '1%', 'imagefs.available': '1%' },
      imageGCHighThresholdPercent: 100,
      imageGCLowThresholdPercent: 99,
      serializeImagePulls: false,
      registerNode: true,
      podLogsDir: join(kdir, 'pod-logs'),
    };
    await writeFile(join(kdir, 'config.yaml'), JSON.stringify(config, null, 2));
    await this.spawn('kubelet', binary, [
      '--config',
      join(kdir, 'config.yaml'),
      '--kubeconfig',
      this.env.kubeconfigPath,
      '--root-dir',
      join(kdir, 'root'),
      '--cert-dir',
      join(kdir, 'certs'),
      '--hostname-override',
      NODE_NAME,
      '--v=1',
    ]);
    const kubelet = this.procs.at(-1)!;
    await this.until('the node registers', kubelet, async () => {
      await this.kubectl(['get', 'node', NODE_NAME]);
      return true;
    });
  }

  private async startControlPlaneControllers(scheduler: string, controllerManager: string): Promise<void> {
    const kc = this.env.kubeconfigPath;
    const apiserverDir = join(this.env.tmpDir, 'apiserver');
    await this.spawn('kube-controller-manager', controllerManager, [
      `--kubeconfig=${kc}`,
      `--authentication-kubeconfig=${kc}`,
      `--authorization-kubeconfig=${kc}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${await freePort()}`,
      '--leader-elect=false',
      '--controllers=*',
      `--service-account-private-key-file=${join(apiserverDir, 'sa.key')}`,
      `--root-ca-file=${this.env.caFile}`,
      '--allocate-node-cidrs=false',
      `--cert-dir=${join(this.dir, 'kcm-certs')}`,
    ]);
    await this.spawn('kube-scheduler', scheduler, [
      `--kubeconfig=${kc}`,
      `--authentication-kubeconfig=${kc}`,
      `--authorization-kubeconfig=${kc}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${await freePort()}`,
      '--leader-elect=false',
      `--cert-dir=${join(this.dir, 'scheduler-certs')}`,
    ]);
  }

  private async waitNodeReady(): Promise<void> {
    const kubelet = this.procs.find((p) => p.name === 'kubelet')!;
    await this.until(
      'the node is Ready, untainted and publishes its address',
      kubelet,
      async () => {
        const node = JSON.parse(await this.kubectl(['get', 'node', NODE_NAME, '-o', 'json'])) as {
          spec: { taints?: { key: string }[] };
          status: {
            conditions: { type: string; status: string }[];
            addresses?: { type: string; address: string }[];
          };
        };
        const ready = node.status.conditions.some((c) => c.type === 'Ready' && c.status === 'True');
        const addressed = (node.status.addresses ?? []).some(
          (a) => a.type === 'InternalIP' && a.address === NODE_NAME,
        );
        return (
          ready && addressed && !(node.spec.taints ?? []).some((t) => t.key.startsWith('node.kubernetes.io/'))
        );
      },
      180_000,
    );
  }

  /** Polls `check` until it returns true, while `proc` runs. */
  private async until(
    what: string,
    proc: Proc,
    check: () => Promise<boolean>,
    timeoutMs = 90_000,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (proc.child.exitCode !== null || proc.child.signalCode !== null)
        throw new Error(
          `${proc.name} exited while waiting until ${what}:\n${await fileTail(proc.log, 3000)}`,
        );
      if (await check().catch(() => false)) return;
      if (Date.now() > deadline)
        throw new Error(`timed out waiting until ${what}:\n${await fileTail(proc.log, 3000)}`);
      await sleep(500);
    }
  }

  /**
   * Stops everything this cluster started and removes its traces: the sandboxes and containers (through containerd),
   * the kubelet, scheduler and controller-manager, containerd and its shims, the kubelet's mounts, its
   * /var/log/containers links and the empty `kubepods` cgroups, then the temp dir. Remove workloads first.
   */
  async stop(): Promise<void> {
    const byName = (name: string) => this.procs.filter((p) => p.name === name);
    for (const name of ['kubelet', 'kube-scheduler', 'kube-controller-manager']) await stopAll(byName(name));
    if (byName('containerd').some((p) => p.child.exitCode === null)) {
      const tasks = await this.ctr(['tasks', 'list', '-q']).catch(() => '');
      for (const id of tasks.split('\n').filter(Boolean))
        await this.ctr(['tasks', 'kill', '-s', 'SIGKILL', id]).catch(() => '');
      await sleep(500);
      const containers = await this.ctr(['containers', 'list', '-q']).catch(() => '');
      for (const id of containers.split('\n').filter(Boolean)) {
        await this.ctr(['tasks', 'delete', '--force', id]).catch(() => '');
        await this.ctr(['containers', 'delete', id]).catch(() => '');
      }
    }
    await stopAll(byName('containerd'));
    await removeTraces(this.dir);
  }
}

const NODE_DIR_PREFIX = 'lu-node-';

/** What a node leaves outside its processes: shims, mounts, log links, cgroups, its dir. */
async function removeTraces(dir: string): Promise<void> {
  killShims(join(dir, 'containerd', 'containerd.sock'));
  await unmountUnder(dir);
  await removePodLogLinks(join(dir, 'kubelet', 'pod-logs'));
  await removeCgroups('kubepods');
  await rm(dir, { recursive: true, force: true });
}

/**
 * Clusters whose test process died (killed before stop()): their kubelet, containerd and controllers died with it
 * (pdeathsig), but containerd's shims, the containers, mounts and cgroups remain. Removes them.
 */
export async function reapLeftoverClusters(progress: Progress): Promise<void> {
  for (const name of await readdir(tmpdir()).catch(() => [] as string[])) {
    if (!name.startsWith(NODE_DIR_PREFIX)) continue;
    const dir = join(tmpdir(), name);
    const owner = Number(await readFile(join(dir, 'owner'), 'utf8').catch(() => '0'));
    if (owner && isProcessAlive(owner)) continue;
    progress(`removing the leftovers of a cluster whose owner (pid ${owner}) is gone: ${dir}`);
    // The shims' children (the Pods' processes) go with their shim only if killed: kill each container's init.
    for (const pid of processesMentioning(dir)) process.kill(pid, 'SIGKILL');
    await sleep(500);
    await removeTraces(dir);
  }
}

/** Pids whose command line mentions `text` (the shims of a node carry its containerd socket path). */
function processesMentioning(text: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSyncSafe('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(text)) pids.push(pid);
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

async function stopAll(procs: readonly Proc[]): Promise<void> {
  await Promise.all(
    procs.map(async (p) => {
      if (p.child.exitCode !== null || p.child.signalCode !== null) return;
      const exited = new Promise((resolve) => p.child.once('exit', resolve));
      p.child.kill('SIGTERM');
      if (!(await Promise.race([exited.then(() => true), sleep(15_000, false, { ref: false })]))) {
        p.child.kill('SIGKILL');
        await exited;
      }
    }),
  );
}

/** containerd-shim-runc-v2 processes of this containerd (they outlive it by design). */
function killShims(socket: string): void {
  for (const entry of readdirSyncSafe('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (argv[0]?.endsWith('containerd-shim-runc-v2') && argv.includes(socket) && isProcessAlive(pid))
        process.kill(pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
}

function readdirSyncSafe(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}

/** Unmounts every mount below `dir`, deepest first (the kubelet bind-mounts its root dir onto itself). */
async function unmountUnder(dir: string): Promise<void> {
  const mounts = readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[1]?.replace(/\\040/g, ' '))
    .filter(
      (mountPoint): mountPoint is string => mountPoint !== undefined && mountPoint.startsWith(`${dir}/`),
    )
    .sort((a, b) => b.length - a.length);
  for (const mountPoint of mounts) await run('umount', ['-l', mountPoint]).catch(() => '');
}

/** The kubelet always links container logs from /var/log/containers; remove the links into this node's logs. */
async function removePodLogLinks(podLogs: string): Promise<void> {
  const dir = '/var/log/containers';
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const target = await readlink(join(dir, name)).catch(() => '');
    if (target.startsWith(podLogs)) await unlink(join(dir, name)).catch(() => undefined);
  }
}

/**
 * Removes the cgroup tree `name` (depth first) in every hierarchy. Processes still in it (Pods of a node whose
 * kubelet died) are killed first: only this node's kubelet creates `kubepods` on these machines.
 */
async function removeCgroups(name: string): Promise<void> {
  const root = '/sys/fs/cgroup';
  const hierarchies = [root, ...(await readdir(root).catch(() => [] as string[])).map((h) => join(root, h))];
  const trees = hierarchies.map((h) => join(h, name)).filter((tree) => existsSync(tree));
  const pidsIn = async (path: string): Promise<number[]> => {
    const own = (await readFile(join(path, 'cgroup.procs'), 'utf8').catch(() => ''))
      .split('\n')
      .filter(Boolean)
      .map(Number);
    const children = await readdir(path, { withFileTypes: true }).catch(() => []);
    const nested = await Promise.all(
      children.filter((e) => e.isDirectory()).map((e) => pidsIn(join(path, e.name))),
    );
    return [...own, ...nested.flat()];
  };
  for (let attempt = 0; attempt < 10; attempt++) {
    const pids = [...new Set((await Promise.all(trees.map(pidsIn))).flat())];
    if (pids.length === 0) break;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    await sleep(300);
  }
  const removeTree = async (path: string): Promise<void> => {
    for (const entry of await readdir(path, { withFileTypes: true }).catch(() => []))
      if (entry.isDirectory()) await removeTree(join(path, entry.name));
    await rmdir(path).catch(() => undefined);
  };
  for (const tree of trees) await removeTree(tree);
}

/** The pause image as a docker archive, built once into the containers cache (gcc -static + buildah). */
async function pauseImageArchive(progress: Progress): Promise<string> {
  const source = join(repoRoot(), 'test', 'cluster', 'pause.c');
  const dir = join(containersRoot(), 'pause');
  const archive = join(dir, 'pause-1.tar');
  if (existsSync(archive)) return archive;
  progress('building the pause image');
  await mkdir(dir, { recursive: true });
  const binary = join(dir, 'pause');
  await run('gcc', ['-static', '-O2', '-o', binary, source]);
  const container = (await buildah(['from', 'scratch'])).trim();
  try {
    await buildah(['copy', container, binary, '/pause']);
    await buildah(['config', '--entrypoint', '["/pause"]', '--user', '65535:65535', container]);
    await buildah(['commit', '--rm', '-q', container, PAUSE_IMAGE]);
  } catch (error) {
    await buildah(['rm', container]).catch(() => '');
    throw error;
  }
  const temp = `${archive}.tmp-${randomBytes(3).toString('hex')}`;
  await buildah(['push', '-q', PAUSE_IMAGE, `docker-archive:${temp}:${PAUSE_IMAGE}`]);
  await run('mv', [temp, archive]);
  return archive;
}
