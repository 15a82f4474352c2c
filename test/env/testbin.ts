// Builds and caches the Go test tools (TEST-INFRA.md). The cache lives outside the checkout so that CI clones and
// work trees share it, like Go's own build cache; a cached binary is reused only when it reports the pinned version.
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isProcessAlive, repoRoot } from './process-utils.js';

export type ToolName =
  | 'kube-apiserver'
  | 'etcd'
  | 'versitygw'
  | 'helm'
  | 'kubeconform'
  | 'registry'
  | 'oras'
  | 'cosign'
  | 'syft'
  | 'kubelet'
  | 'kube-scheduler'
  | 'kube-controller-manager'
  | 'promtool'
  | 'vegeta'
  | 'argocd-lua'
  | 'seaweedfs';

export interface ToolSpec {
  readonly name: ToolName;
  readonly version: string;
  /** Go module holding the `tool` directive, relative to the repository root. */
  readonly moduleDir: string;
  /** Go package of the main function. */
  readonly goPackage: string;
  readonly ldflags: readonly string[];
  /** Arguments that make the binary print its version, and what that output must contain. */
  readonly versionArgs: readonly string[];
  readonly versionPattern: RegExp;
  /**
   * Built only by the test that needs it (`npm run test:cluster`), not by `npm run testbin` or the integration
   * setup: minutes of compiling that `npm test` does not use.
   */
  readonly onDemand?: boolean;
}

const KUBERNETES_VERSION = 'v1.34.4';

/** `hack/lib/version.sh` sets these in both packages; without them `/version` says v0.0.0-master. */
function kubernetesVersionLdflags(gitVersion: string): string[] {
  const match = /^v(\d+)\.(\d+)\./.exec(gitVersion);
  if (!match) throw new Error(`not a Kubernetes version: ${gitVersion}`);
  const buildDate = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const values: Record<string, string> = {
    gitVersion,
    gitMajor: match[1] ?? '',
    gitMinor: match[2] ?? '',
    gitTreeState: 'clean',
    gitCommit: '0'.repeat(40),
    buildDate,
  };
  return ['k8s.io/component-base/version', 'k8s.io/client-go/pkg/version'].flatMap((pkg) =>
    Object.entries(values).map(([key, value]) => `-X ${pkg}.${key}=${value}`),
  );
}

export const TOOLS: Readonly<Record<ToolName, ToolSpec>> = {
  'kube-apiserver': {
    name: 'kube-apiserver',
    version: KUBERNETES_VERSION,
    moduleDir: 'test/infra/kube-apiserver',
    goPackage: 'k8s.io/kubernetes/cmd/kube-apiserver',
    ldflags: kubernetesVersionLdflags(KUBERNETES_VERSION),
    versionArgs: ['--version'],
    versionPattern: /^Kubernetes v1\.34\.4$/m,
  },
  etcd: {
    name: 'etcd',
    version: 'v3.6.14',
    moduleDir: 'test/infra/etcd',
    // The version is compiled into go.etcd.io/etcd/api/v3/version; no ldflags needed.
    goPackage: 'go.etcd.io/etcd/server/v3',
    ldflags: [],
    versionArgs: ['--version'],
    versionPattern: /^etcd Version: 3\.6\.14$/m,
  },
  versitygw: {
    name: 'versitygw',
    version: 'v1.7.0',
    moduleDir: 'test/infra/versitygw',
    goPackage: 'github.com/versity/versitygw/cmd/versitygw',
    ldflags: ['-X main.Version=v1.7.0'],
    versionArgs: ['--version'],
    versionPattern: /^Version\s*: v1\.7\.0$/m,
  },
  helm: {
    name: 'helm',
    version: 'v3.21.4',
    moduleDir: 'test/infra/helm',
    goPackage: 'helm.sh/helm/v3/cmd/helm',
    ldflags: ['-X helm.sh/helm/v3/internal/version.version=v3.21.4'],
    versionArgs: ['version', '--template', '{{.Version}}'],
    versionPattern: /^v3\.21\.4$/m,
  },
  kubeconform: {
    name: 'kubeconform',
    version: 'v0.7.0',
    moduleDir: 'test/infra/kubeconform',
    goPackage: 'github.com/yannh/kubeconform/cmd/kubeconform',
    ldflags: ['-X main.version=v0.7.0'],
    versionArgs: ['-v'],
    versionPattern: /^v0\.7\.0$/m,
  },
  // OCI source tests: a real registry, artifacts pushed with the real oras and signed with the real cosign.
  registry: {
    name: 'registry',
    version: 'v3.1.2',
    moduleDir: 'test/infra/registry',
    goPackage: 'github.com/distribution/distribution/v3/cmd/registry',
    ldflags: ['-X github.com/distribution/distribution/v3/version.version=v3.1.2'],
    versionArgs: ['--version'],
    versionPattern: /\sv3\.1\.2$/m,
  },
  oras: {
    name: 'oras',
    version: 'v1.3.6',
    moduleDir: 'test/infra/oras',
    goPackage: 'oras.land/oras/cmd/oras',
    ldflags: [],
    versionArgs: ['version'],
    versionPattern: /^Version:\s+1\.3\.6\b/m,
  },
  cosign: {
    name: 'cosign',
    version: 'v2.6.5',
    moduleDir: 'test/infra/cosign',
    goPackage: 'github.com/sigstore/cosign/v2/cmd/cosign',
    ldflags: ['-X sigs.k8s.io/release-utils/version.gitVersion=v2.6.5'],
    versionArgs: ['version'],
    versionPattern: /^GitVersion:\s+v2\.6\.5$/m,
  },
  // SBOMs of the offline release (scripts/release.ts): the image's and the npm dependencies'.
  syft: {
    name: 'syft',
    version: 'v1.57.2',
    moduleDir: 'test/infra/syft',
    goPackage: 'github.com/anchore/syft/cmd/syft',
    ldflags: ['-X main.version=1.57.2'],
    versionArgs: ['version'],
    versionPattern: /^Version:\s+1\.57\.2$/m,
  },
  // The chart's PrometheusRule: `promtool check rules` and `promtool test rules` (alert unit tests).
  promtool: {
    name: 'promtool',
    // Prometheus 3.16.0 is published to the Go proxy as module version v0.316.0.
    version: 'v3.16.0',
    moduleDir: 'test/infra/promtool',
    goPackage: 'github.com/prometheus/prometheus/cmd/promtool',
    ldflags: ['-X github.com/prometheus/common/version.Version=3.16.0'],
    versionArgs: ['--version'],
    versionPattern: /^promtool, version 3\.16\.0\b/m,
  },
  // Open-loop HTTP load generator of `npm run bench -- update-server` (MIT); built when the benchmark runs.
  vegeta: {
    name: 'vegeta',
    version: 'v12.13.0',
    moduleDir: 'test/infra/vegeta',
    goPackage: 'github.com/tsenart/vegeta/v12',
    ldflags: ['-X main.Version=v12.13.0'],
    versionArgs: ['-version'],
    versionPattern: /^Version: v12\.13\.0$/m,
    onDemand: true,
  },
  // deploy/argocd/health.lua in gopher-lua, set up as Argo CD runs health scripts (our harness: test/infra/argocd-lua).
  'argocd-lua': {
    name: 'argocd-lua',
    version: 'v1',
    moduleDir: 'test/infra/argocd-lua',
    goPackage: '.',
    ldflags: [],
    versionArgs: ['--version'],
    versionPattern: /^argocd-lua v1 \(gopher-lua v1\.1\.1\)$/m,
  },
  // The second S3 server (TEST-INFRA.md): the object-store contract and the device journey run on it as well as on
  // versitygw. Published only as a pseudo-version; its release number (4.53) is compiled in, the commit is not.
  seaweedfs: {
    name: 'seaweedfs',
    version: '4.53-7506e5f91cd6',
    moduleDir: 'test/infra/seaweedfs',
    goPackage: 'github.com/seaweedfs/seaweedfs/weed',
    ldflags: ['-X github.com/seaweedfs/seaweedfs/weed/util/version.COMMIT=7506e5f91cd6'],
    versionArgs: ['version'],
    versionPattern: /\b4\.53 7506e5f91cd6\b/m,
  },
  ...nodeTools(),
};

/** The single-node cluster's components (test/cluster/), from the kube-apiserver's Kubernetes version. */
function nodeTools(): Record<'kubelet' | 'kube-scheduler' | 'kube-controller-manager', ToolSpec> {
  const spec = (name: 'kubelet' | 'kube-scheduler' | 'kube-controller-manager'): ToolSpec => ({
    name,
    version: KUBERNETES_VERSION,
    moduleDir: 'test/infra/kube-node',
    goPackage: `k8s.io/kubernetes/cmd/${name}`,
    ldflags: kubernetesVersionLdflags(KUBERNETES_VERSION),
    versionArgs: ['--version'],
    versionPattern: /^Kubernetes v1\.34\.4$/m,
    onDemand: true,
  });
  return {
    kubelet: spec('kubelet'),
    'kube-scheduler': spec('kube-scheduler'),
    'kube-controller-manager': spec('kube-controller-manager'),
  };
}

/** Every tool `npm run testbin` and the integration setup build (the on-demand ones excepted). */
export const TOOL_NAMES = (Object.keys(TOOLS) as ToolName[]).filter((name) => !TOOLS[name].onDemand);

export function testbinRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env['LIVEUPDATE_TESTBIN']) return env['LIVEUPDATE_TESTBIN'];
  const cacheHome = env['XDG_CACHE_HOME'] || join(homedir(), '.cache');
  return join(cacheHome, 'liveupdate-operator', 'testbin');
}

export function toolPath(tool: ToolSpec, root = testbinRoot()): string {
  return join(root, `${tool.name}-${tool.version}`, tool.name);
}

export type Progress = (message: string) => void;

export interface EnsureOptions {
  readonly root?: string;
  readonly progress?: Progress;
  /** How long to wait for another process that holds the build lock (default 60 minutes). */
  readonly lockTimeoutMs?: number;
}

const defaultProgress: Progress = (message) => process.stderr.write(`[testbin] ${message}\n`);

/** Resolves to the version line when the binary answers with the pinned version, otherwise to undefined. */
export async function cachedVersion(tool: ToolSpec, path: string): Promise<string | undefined> {
  if (!existsSync(path)) return undefined;
  const output = await new Promise<string | undefined>((resolve) => {
    // HOME-independent: helm reads its config dirs but does not need them for `version`.
    execFile(
      path,
      [...tool.versionArgs],
      { timeout: 30_000, maxBuffer: 1 << 20 },
      (error, stdout, stderr) => {
        resolve(error ? undefined : `${stdout}\n${stderr}`);
      },
    );
  });
  if (output === undefined) return undefined;
  const match = tool.versionPattern.exec(output);
  return match ? match[0] : undefined;
}

/** Returns the path of a binary that reports the pinned version, building it first when needed. */
export async function ensureTool(name: ToolName, options: EnsureOptions = {}): Promise<string> {
  const tool = TOOLS[name];
  const root = options.root ?? testbinRoot();
  const progress = options.progress ?? defaultProgress;
  const target = toolPath(tool, root);
  if (await cachedVersion(tool, target)) return target;

  const toolDir = join(root, `${tool.name}-${tool.version}`);
  await mkdir(toolDir, { recursive: true });
  const release = await acquireLock(`${toolDir}.lock`, options.lockTimeoutMs ?? 60 * 60_000, progress, tool);
  try {
    // Another run may have built it while this one waited for the lock.
    if (await cachedVersion(tool, target)) return target;
    await build(tool, target, progress);
    return target;
  } finally {
    await release();
  }
}

/** Ensures every tool, one after another: Go parallelises each build already, and the machines have 2 cores. */
export async function ensureAllTools(options: EnsureOptions = {}): Promise<Record<ToolName, string>> {
  const paths: Partial<Record<ToolName, string>> = {};
  for (const name of TOOL_NAMES) paths[name] = await ensureTool(name, options);
  return paths as Record<ToolName, string>;
}

export class ToolBuildError extends Error {
  constructor(
    readonly tool: ToolName,
    readonly command: string,
    readonly stderrTail: string,
    cause?: unknown,
  ) {
    super(`building ${tool} failed\n  command: ${command}\n  go output (tail):\n${indent(stderrTail)}`, {
      cause,
    });
    this.name = 'ToolBuildError';
  }
}

export function buildCommand(tool: ToolSpec, output: string): string[] {
  const ldflags = ['-s', '-w', ...tool.ldflags].join(' ');
  return ['go', 'build', '-trimpath', '-o', output, '-ldflags', ldflags, tool.goPackage];
}

async function build(tool: ToolSpec, target: string, progress: Progress): Promise<void> {
  const moduleDir = join(repoRoot(), tool.moduleDir);
  const temp = `${target}.tmp-${process.pid}`;
  const argv = buildCommand(tool, temp);
  // Go settings from the environment change what a build does; name them so a failure can be reproduced.
  const goEnv = ['GOFLAGS', 'GOTOOLCHAIN', 'GOPROXY', 'GOOS', 'GOARCH', 'CGO_ENABLED']
    .filter((key) => process.env[key])
    .map((key) => `${key}=${shellQuote(process.env[key] ?? '')} `)
    .join('');
  const command = `cd ${moduleDir} && ${goEnv}${argv.map(shellQuote).join(' ')}`;
  const started = Date.now();
  progress(
    `building ${tool.name} ${tool.version} (cold: minutes; on 2 cores kube-apiserver and helm take about 7 min each)`,
  );
  const heartbeat = setInterval(
    () => progress(`still building ${tool.name} (${Math.round((Date.now() - started) / 1000)} s)`),
    60_000,
  );
  try {
    const { code, stderrTail, spawnError } = await runCapturingTail(argv, moduleDir);
    if (spawnError || code !== 0) {
      throw new ToolBuildError(
        tool.name,
        command,
        stderrTail || String(spawnError ?? `exit code ${code}`),
        spawnError,
      );
    }
    await chmod(temp, 0o755);
    const reported = await cachedVersion(tool, temp);
    if (!reported) {
      throw new ToolBuildError(
        tool.name,
        command,
        `the built binary does not match ${String(tool.versionPattern)} for \`${tool.versionArgs.join(' ')}\``,
      );
    }
    await rename(temp, target);
    progress(`built ${tool.name} (${reported}) in ${Math.round((Date.now() - started) / 1000)} s: ${target}`);
  } finally {
    clearInterval(heartbeat);
    await rm(temp, { force: true });
  }
}

function runCapturingTail(
  argv: readonly string[],
  cwd: string,
): Promise<{ code: number | null; stderrTail: string; spawnError?: Error }> {
  const [command, ...args] = argv;
  return new Promise((resolve) => {
    const child = spawn(command ?? 'go', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
    let tail = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      tail = (tail + chunk).slice(-8000);
    });
    child.on('error', (spawnError) => resolve({ code: null, stderrTail: tail, spawnError }));
    child.on('close', (code) => resolve({ code, stderrTail: tail }));
  });
}

interface LockOwner {
  pid: number;
  startedAt: string;
}

/**
 * A mkdir lock (atomic on every local file system) with the owner's pid inside, so that a lock left by a killed
 * run is recognised as stale and broken instead of blocking every later run.
 */
async function acquireLock(
  lockDir: string,
  timeoutMs: number,
  progress: Progress,
  tool: ToolSpec,
): Promise<() => Promise<void>> {
  const deadline = Date.now() + timeoutMs;
  let announced = false;
  for (;;) {
    try {
      await mkdir(lockDir);
      const owner: LockOwner = { pid: process.pid, startedAt: new Date().toISOString() };
      await writeFile(join(lockDir, 'owner.json'), JSON.stringify(owner));
      return () => rm(lockDir, { recursive: true, force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const owner = await readLockOwner(lockDir);
    if (owner === undefined) {
      // The owner may be between mkdir and writing owner.json; only a lock without owner for a while is stale.
      const age = await stat(lockDir).then(
        (s) => Date.now() - s.mtimeMs,
        () => 0,
      );
      if (age > 30_000) await rm(lockDir, { recursive: true, force: true });
    } else if (!isProcessAlive(owner.pid)) {
      progress(`removing stale build lock of ${tool.name} left by pid ${owner.pid}`);
      await rm(lockDir, { recursive: true, force: true });
      continue;
    } else if (!announced) {
      progress(`waiting for pid ${owner.pid}, which is building ${tool.name} since ${owner.startedAt}`);
      announced = true;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for the build lock ${lockDir}`);
    await sleep(1000);
  }
}

async function readLockOwner(lockDir: string): Promise<LockOwner | undefined> {
  try {
    const parsed = JSON.parse(await readFile(join(lockDir, 'owner.json'), 'utf8')) as Partial<LockOwner>;
    return typeof parsed.pid === 'number'
      ? { pid: parsed.pid, startedAt: String(parsed.startedAt) }
      : undefined;
  } catch {
    return undefined;
  }
}

function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

function indent(text: string): string {
  return text
    .trimEnd()
    .split('\n')
    .map((line) => `    ${line}`)
    .join('\n');
}
