// The container mode of the demo stack: the chart's own Pods, as a kubelet would run them, with podman. The chart is
// rendered with `helm template`; each Deployment's Pod spec becomes one `podman run` (env incl. fieldRefs and Secret
// references read from the API server, args, user and group, read-only root, dropped capabilities, no privilege
// escalation, memory and CPU limits, the emptyDir volumes, the ServiceAccount token when the Pod mounts one). Nothing
// here restates what the chart says: a change to the chart changes the containers. The only deviations are forced by
// a node without a Pod network (docs/adr/0020-building-and-running-the-image-without-docker.md): host network, the
// listen addresses moved to free loopback ports, the API server reached at its loopback address.
import { execFile } from 'node:child_process';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { podman, podmanFlags, SANDBOX_RUN_FLAGS } from '../image/containers.js';
import { isProcessAlive } from '../../test/env/process-utils.js';

/** What a rendered Deployment carries that the containers need (the subset of the Pod API the chart uses). */
export interface RenderedDeployment {
  readonly kind: 'Deployment';
  readonly metadata: { readonly name: string; readonly namespace?: string };
  readonly spec: {
    readonly template: {
      readonly metadata: { readonly labels: Record<string, string> };
      readonly spec: PodSpec;
    };
  };
}

interface SecurityContext {
  readonly runAsUser?: number;
  readonly runAsGroup?: number;
  readonly runAsNonRoot?: boolean;
  readonly fsGroup?: number;
  readonly readOnlyRootFilesystem?: boolean;
  readonly allowPrivilegeEscalation?: boolean;
  readonly capabilities?: { readonly drop?: readonly string[]; readonly add?: readonly string[] };
  readonly seccompProfile?: { readonly type: string };
}

interface EnvVar {
  readonly name: string;
  readonly value?: string;
  readonly valueFrom?: {
    readonly fieldRef?: { readonly fieldPath: string };
    readonly secretKeyRef?: { readonly name: string; readonly key: string };
  };
}

interface Container {
  readonly name: string;
  readonly image: string;
  readonly command?: readonly string[];
  readonly args?: readonly string[];
  readonly env?: readonly EnvVar[];
  readonly ports?: readonly { readonly name: string; readonly containerPort: number }[];
  readonly readinessProbe?: { readonly httpGet?: { readonly path: string; readonly port: string | number } };
  readonly resources?: { readonly limits?: { readonly memory?: string; readonly cpu?: string | number } };
  readonly securityContext?: SecurityContext;
  readonly volumeMounts?: readonly {
    readonly name: string;
    readonly mountPath: string;
    readonly readOnly?: boolean;
  }[];
}

interface PodSpec {
  readonly serviceAccountName?: string;
  readonly automountServiceAccountToken?: boolean;
  readonly securityContext?: SecurityContext;
  readonly terminationGracePeriodSeconds?: number;
  readonly containers: readonly Container[];
  readonly volumes?: readonly { readonly name: string; readonly emptyDir?: object }[];
}

export type ComponentName = 'controller' | 'update-server';

/** Parses `helm template` output; returns every object and the Deployment of each component. */
export function parseRendered(yaml: string): {
  objects: { kind: string; metadata: { name: string } }[];
  deployments: Map<ComponentName, RenderedDeployment>;
} {
  const objects = parseAllDocuments(yaml)
    .map((document) => document.toJS() as { kind: string; metadata: { name: string } } | null)
    .filter((object): object is { kind: string; metadata: { name: string } } => object !== null);
  const deployments = new Map<ComponentName, RenderedDeployment>();
  for (const object of objects) {
    if (object.kind !== 'Deployment') continue;
    const deployment = object as unknown as RenderedDeployment;
    const component = deployment.spec.template.metadata.labels['app.kubernetes.io/component'];
    if (component === 'controller' || component === 'update-server') deployments.set(component, deployment);
  }
  return { objects, deployments };
}

/** Kubernetes quantities as podman wants them: memory in bytes, CPUs as a decimal. */
export function memoryBytes(quantity: string): number {
  const match = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(quantity);
  if (!match) throw new Error(`unsupported memory quantity "${quantity}"`);
  const factors: Record<string, number> = {
    Ki: 1024,
    Mi: 1024 ** 2,
    Gi: 1024 ** 3,
    Ti: 1024 ** 4,
    k: 1e3,
    M: 1e6,
    G: 1e9,
    T: 1e12,
  };
  return Math.round(Number(match[1]) * (match[2] ? (factors[match[2]] ?? 1) : 1));
}

export function cpus(quantity: string | number): string {
  const text = String(quantity);
  const match = /^(\d+(?:\.\d+)?)(m)?$/.exec(text);
  if (!match) throw new Error(`unsupported cpu quantity "${text}"`);
  return String(match[2] ? Number(match[1]) / 1000 : Number(match[1]));
}

export interface PodContext {
  readonly podName: string;
  readonly namespace: string;
  /** Image to run instead of the rendered reference (an image id: tags move when other checkouts build). */
  readonly image?: string;
  /** Environment values that replace the rendered ones (listen addresses on free loopback ports). */
  readonly envOverrides: Readonly<Record<string, string>>;
  /** `secretKeyRef` → value, read from the real Secret. */
  readonly secretValue: (name: string, key: string) => Promise<string>;
  /** Folder holding token, ca.crt and namespace, when the Pod mounts its ServiceAccount token. */
  readonly serviceAccountDir?: string;
  /** Where the Pod's emptyDir volumes are created. */
  readonly volumeDir: string;
  readonly apiServer: { readonly host: string; readonly port: string };
  /** Label value that names the owning process, for reaping containers a killed test left behind. */
  readonly owner: string;
}

export const OWNER_LABEL = 'liveupdate.dev/test-owner';
export const SERVICE_ACCOUNT_PATH = '/var/run/secrets/kubernetes.io/serviceaccount';

/** `podman run` arguments for the first container of a rendered Deployment, as a kubelet would start it. */
export async function podmanRunArgs(deployment: RenderedDeployment, pod: PodContext): Promise<string[]> {
  const spec = deployment.spec.template.spec;
  const container = spec.containers[0];
  if (!container || spec.containers.length !== 1)
    throw new Error(`${deployment.metadata.name}: expected exactly one container`);
  const security: SecurityContext = { ...spec.securityContext, ...container.securityContext };
  const args = ['run', '--rm', '--name', pod.podName, '--hostname', pod.podName, '--network', 'host'];
  args.push('--pull', 'never', '--label', `${OWNER_LABEL}=${pod.owner}`, ...SANDBOX_RUN_FLAGS);
  if (security.runAsUser !== undefined)
    args.push('--user', `${security.runAsUser}:${security.runAsGroup ?? security.runAsUser}`);
  // The kubelet refuses to start a container that would run as root under runAsNonRoot.
  if (security.runAsNonRoot && (security.runAsUser === undefined || security.runAsUser === 0))
    throw new Error(`${deployment.metadata.name}: runAsNonRoot needs a non-zero runAsUser`);
  if (spec.securityContext?.fsGroup !== undefined)
    args.push('--group-add', String(spec.securityContext.fsGroup));
  // podman's --read-only adds writable tmpfs mounts (/tmp, /run, /var/tmp) by default; a Pod gets none.
  if (security.readOnlyRootFilesystem) args.push('--read-only', '--read-only-tmpfs=false');
  for (const capability of security.capabilities?.drop ?? []) args.push('--cap-drop', capability);
  for (const capability of security.capabilities?.add ?? []) args.push('--cap-add', capability);
  if (security.allowPrivilegeEscalation === false) args.push('--security-opt', 'no-new-privileges');
  const seccomp = security.seccompProfile?.type;
  // RuntimeDefault is podman's default profile; anything else would need a mapping.
  if (seccomp !== undefined && seccomp !== 'RuntimeDefault')
    throw new Error(`${deployment.metadata.name}: unsupported seccompProfile ${seccomp}`);
  const limits = container.resources?.limits;
  if (limits?.memory) args.push('--memory', String(memoryBytes(limits.memory)));
  if (limits?.cpu !== undefined) args.push('--cpus', cpus(limits.cpu));
  if (spec.terminationGracePeriodSeconds !== undefined)
    args.push('--stop-timeout', String(spec.terminationGracePeriodSeconds));
  for (const mount of container.volumeMounts ?? []) {
    const volume = spec.volumes?.find((v) => v.name === mount.name);
    if (!volume?.emptyDir) throw new Error(`${deployment.metadata.name}: unsupported volume ${mount.name}`);
    // An emptyDir is a fresh directory, world-writable like the kubelet makes it.
    const dir = join(pod.volumeDir, `${pod.podName}-${mount.name}`);
    await mkdir(dir, { recursive: true });
    await chmod(dir, 0o777);
    args.push('-v', `${dir}:${mount.mountPath}:${mount.readOnly ? 'ro' : 'rw'}`);
  }
  if (spec.automountServiceAccountToken !== false) {
    if (!pod.serviceAccountDir)
      throw new Error(`${deployment.metadata.name} mounts its ServiceAccount token: pass serviceAccountDir`);
    args.push('-v', `${pod.serviceAccountDir}:${SERVICE_ACCOUNT_PATH}:ro`);
  }
  // The kubelet always sets the kubernetes Service's variables; on this node they name the loopback API server.
  args.push('-e', `KUBERNETES_SERVICE_HOST=${pod.apiServer.host}`);
  args.push('-e', `KUBERNETES_SERVICE_PORT=${pod.apiServer.port}`);
  for (const variable of container.env ?? []) {
    let value: string;
    const from = variable.valueFrom;
    if (variable.value !== undefined) value = variable.value;
    else if (from?.fieldRef?.fieldPath === 'metadata.name') value = pod.podName;
    else if (from?.fieldRef?.fieldPath === 'metadata.namespace') value = pod.namespace;
    else if (from?.secretKeyRef) value = await pod.secretValue(from.secretKeyRef.name, from.secretKeyRef.key);
    else throw new Error(`${deployment.metadata.name}: unsupported env ${JSON.stringify(variable)}`);
    args.push('-e', `${variable.name}=${pod.envOverrides[variable.name] ?? value}`);
  }
  for (const name of Object.keys(pod.envOverrides)) {
    if (!container.env?.some((variable) => variable.name === name))
      throw new Error(`${deployment.metadata.name} sets no ${name}: the override would not replace anything`);
  }
  args.push(pod.image ?? container.image);
  if (container.command) args.splice(args.length - 1, 0, '--entrypoint', JSON.stringify(container.command));
  args.push(...(container.args ?? []));
  return args;
}

/**
 * Writes what the ServiceAccount admission plugin and the kubelet would project into the Pod: a bound token for
 * the Pod's ServiceAccount (TokenRequest API), the API server's CA and the namespace.
 */
export async function writeServiceAccountFiles(
  dir: string,
  files: { token: string; caCert: string; namespace: string },
): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'token'), files.token);
  await writeFile(join(dir, 'ca.crt'), files.caCert);
  await writeFile(join(dir, 'namespace'), files.namespace);
}

/** This process as a container owner label: pid plus start time, so a reused pid does not count as alive. */
export function ownerLabel(): string {
  return String(process.pid);
}

/** Removes containers whose owning test process is gone (killed before it could stop them). */
export async function reapOrphanContainers(): Promise<string[]> {
  const listing = await podman([
    'ps',
    '--all',
    '--filter',
    `label=${OWNER_LABEL}`,
    '--format',
    `{{.ID}} {{index .Labels "${OWNER_LABEL}"}}`,
  ]).catch(() => '');
  const orphans = listing
    .split('\n')
    .map((line) => line.trim().split(' '))
    .filter(([id, owner]) => id && owner && !isProcessAlive(Number(owner)))
    .map(([id]) => id!);
  if (orphans.length > 0) await podman(['rm', '--force', '--time', '5', ...orphans]).catch(() => undefined);
  return orphans;
}

/** `podman` with this project's storage and runtime flags, for spawning `podman run` as a child process. */
export function podmanCommand(args: readonly string[]): [string, string[]] {
  return ['podman', [...podmanFlags(), ...args]];
}

/** `podman rm --force` of a container by name, ignoring one that is already gone. */
export function removeContainer(name: string): Promise<void> {
  return new Promise((resolve) => {
    execFile('podman', [...podmanFlags(), 'rm', '--force', '--ignore', '--time', '10', name], () =>
      resolve(),
    );
  });
}
