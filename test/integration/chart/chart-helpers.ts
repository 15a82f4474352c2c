// Shared helpers of the chart, manifest and image tests: run helm/kubectl/kubeconform against the test environment.
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { KUBECTL, testEnvironment, toolBinary } from '../../env/fixtures.js';
import { repoRoot } from '../../env/process-utils.js';

export const chartPath = join(repoRoot(), 'charts', 'liveupdate-operator');
export const ciValues = (name: string): string => join(chartPath, 'ci', `${name}-values.yaml`);
/** Every value set under ci/: lint, render and kubeconform run over all of them. */
export const VALUE_SETS = ['default', 'external-s3', 'airgapped', 'monitoring', 'subchart'] as const;
/** Offline rendering assumes Kubernetes 1.20 unless told otherwise; the chart requires 1.30+. */
export const KUBE_VERSION = ['--kube-version', '1.34.4'] as const;

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  readonly input?: string;
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly timeoutMs?: number;
}

export function run(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd ?? repoRoot(),
      env: options.env ?? process.env,
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      timeout: options.timeoutMs ?? 120_000,
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    if (child.stdin) {
      // A command may exit before reading all of its input; its exit code tells what happened.
      child.stdin.on('error', () => undefined);
      child.stdin.end(options.input);
    }
  });
}

/** Throws with the command's output when it did not exit 0. */
export async function runOk(
  command: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<string> {
  const result = await run(command, args, options);
  if (result.code !== 0) {
    throw new Error(
      `${command} ${args.join(' ')} exited ${result.code}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`,
    );
  }
  return result.stdout;
}

/** Helm with its caches and config inside the test environment's temp dir, talking to the test apiserver. */
export function helmEnv(): NodeJS.ProcessEnv {
  const env = testEnvironment();
  const home = join(env.tmpDir, 'helm-home');
  return {
    ...process.env,
    KUBECONFIG: env.kubeconfigPath,
    HELM_CACHE_HOME: join(home, 'cache'),
    HELM_CONFIG_HOME: join(home, 'config'),
    HELM_DATA_HOME: join(home, 'data'),
  };
}

export function helm(args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return run(toolBinary('helm'), args, { env: helmEnv(), ...options });
}

export function kubectl(args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return run(KUBECTL, ['--kubeconfig', testEnvironment().kubeconfigPath, ...args], options);
}

export async function kubectlOk(args: readonly string[], options: RunOptions = {}): Promise<string> {
  return runOk(KUBECTL, ['--kubeconfig', testEnvironment().kubeconfigPath, ...args], options);
}

/** A kubeconfig for the test apiserver that authenticates with a ServiceAccount's token instead of admin's. */
export async function serviceAccountKubeconfig(
  serviceAccount: string,
  namespace: string,
  dir: string,
): Promise<string> {
  const token = (
    await kubectlOk(['create', 'token', serviceAccount, '-n', namespace, '--duration=2h'])
  ).trim();
  const admin = await readFile(testEnvironment().kubeconfigPath, 'utf8');
  const path = join(dir, `kubeconfig-${serviceAccount}-${namespace}`);
  await writeFile(path, admin.replace(/token: .*/, `token: ${token}`), { mode: 0o600 });
  return path;
}

/** `helm template` of the chart with the given values files and `--set` pairs. */
export async function helmTemplate(
  valueFiles: readonly string[] = [],
  sets: readonly string[] = [],
  extra: readonly string[] = [],
): Promise<string> {
  const args = [
    'template',
    'liveupdate-operator',
    chartPath,
    '--namespace',
    'liveupdate-system',
    ...KUBE_VERSION,
  ];
  for (const file of valueFiles) args.push('--values', file);
  for (const set of sets) args.push('--set', set);
  const result = await helm([...args, ...extra]);
  if (result.code !== 0) throw new Error(`helm template failed:\n${result.stderr}`);
  return result.stdout;
}

export interface K8sObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly namespace?: string; readonly [key: string]: unknown };
  readonly [key: string]: unknown;
}

export function parseManifests(text: string): K8sObject[] {
  return parseAllDocuments(text)
    .map((doc) => doc.toJS() as K8sObject | null)
    .filter((obj): obj is K8sObject => obj !== null && typeof obj === 'object');
}

export function findObject(objects: readonly K8sObject[], kind: string, name: string): K8sObject {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (!found)
    throw new Error(`no ${kind} ${name} in ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')}`);
  return found;
}

interface PodSpecLike {
  containers: { image: string; name: string }[];
  initContainers?: { image: string; name: string }[];
}

/** The Pod spec of a Pod or of a workload's Pod template. */
export function podSpecOf(object: K8sObject): PodSpecLike | undefined {
  if (object.kind === 'Pod') return object['spec'] as PodSpecLike;
  const spec = object['spec'] as { template?: { spec?: PodSpecLike } } | undefined;
  return spec?.template?.spec;
}

export function imagesOf(objects: readonly K8sObject[]): string[] {
  const images = objects.flatMap((o) => {
    const spec = podSpecOf(o);
    return spec ? [...spec.containers, ...(spec.initContainers ?? [])].map((c) => c.image) : [];
  });
  return [...new Set(images)].sort();
}

type EnvVar = {
  name: string;
  value?: string;
  valueFrom?: { fieldRef?: { fieldPath: string }; secretKeyRef?: { name: string; key: string } };
};
type Container = { args: string[]; env: EnvVar[] };

/**
 * What the kubelet would put into the first container's environment: the downward API resolved as for a Pod
 * `<deployment>-7d9f-abcde` in `liveupdate-system`, Secret keys as `secret-<key>`.
 */
export function containerEnv(deployment: K8sObject): { args: string[]; env: NodeJS.ProcessEnv } {
  const container = (deployment['spec'] as { template: { spec: { containers: Container[] } } }).template.spec
    .containers[0]!;
  const fields: Record<string, string> = {
    'metadata.name': `${deployment.metadata.name}-7d9f-abcde`,
    'metadata.namespace': 'liveupdate-system',
  };
  const env: NodeJS.ProcessEnv = {};
  for (const variable of container.env) {
    if (variable.value !== undefined) env[variable.name] = variable.value;
    else if (variable.valueFrom?.fieldRef) env[variable.name] = fields[variable.valueFrom.fieldRef.fieldPath];
    else if (variable.valueFrom?.secretKeyRef)
      env[variable.name] = `secret-${variable.valueFrom.secretKeyRef.key}`;
    else throw new Error(`unsupported env source for ${variable.name}`);
  }
  return { args: container.args, env };
}
