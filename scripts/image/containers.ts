// Where the container tools keep their state, and the flags every buildah/podman/skopeo call of this project needs
// (docs/adr/0020-building-and-running-the-image-without-docker.md). Everything lives in one cache folder outside the
// checkout, like the Go test tools: CI clones and work trees share the Node download, the stand-in base and the
// image layers, and removing the folder removes every trace.
import { execFile, type ExecFileOptions } from 'node:child_process';
import { join } from 'node:path';
import { testbinRoot } from '../../test/env/testbin.js';

/** `~/.cache/liveupdate-operator/containers` (beside the Go tools' `testbin`), or `$LIVEUPDATE_CONTAINERS`. */
export function containersRoot(env: NodeJS.ProcessEnv = process.env): string {
  return env['LIVEUPDATE_CONTAINERS'] || join(testbinRoot(env), '..', 'containers');
}

/**
 * Transient state (locks, mounts): podman refuses a runroot path longer than 50 characters, so it cannot sit in the
 * cache folder. `$LIVEUPDATE_CONTAINERS_RUNROOT` overrides it.
 */
export function runRoot(env: NodeJS.ProcessEnv = process.env): string {
  return env['LIVEUPDATE_CONTAINERS_RUNROOT'] || '/run/liveupdate-operator/containers';
}

/** containers/storage location shared by buildah and podman, so podman runs what buildah built without a load. */
export function storageFlags(root = containersRoot(), runroot = runRoot()): string[] {
  return ['--root', join(root, 'storage'), '--runroot', runroot, '--storage-driver', 'overlay'];
}

/**
 * podman's global flags for these machines: no systemd (cgroupfs, file events), and runc because Debian's crun 1.8
 * refuses the hybrid cgroup layout even with cgroups disabled.
 */
export function podmanFlags(root = containersRoot(), runroot = runRoot()): string[] {
  return [
    ...storageFlags(root, runroot),
    '--cgroup-manager',
    'cgroupfs',
    '--events-backend',
    'file',
    '--runtime',
    'runc',
    '--tmpdir',
    join(root, 'podman-tmp'),
  ];
}

/**
 * `podman run` limits the sandbox forces: root lacks CAP_SYS_RESOURCE, so podman's default nofile of 1048576 (above
 * the 20000 hard limit) cannot be set. Real nodes need none of this.
 */
export const SANDBOX_RUN_FLAGS: readonly string[] = [
  '--ulimit',
  'nofile=20000:20000',
  '--ulimit',
  'nproc=16384:16384',
];

export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly output: string,
    cause?: unknown,
  ) {
    super(`${command} failed:\n${output.trimEnd().split('\n').slice(-30).join('\n')}`, { cause });
    this.name = 'CommandError';
  }
}

/** Runs a command to completion; resolves with stdout, rejects with the command line and the output's tail. */
export function run(
  command: string,
  args: readonly string[],
  options: ExecFileOptions & { input?: string } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      command,
      [...args],
      { maxBuffer: 64 << 20, encoding: 'utf8', ...options },
      (error, stdout, stderr) => {
        if (error)
          reject(
            new CommandError(`${command} ${args.join(' ')}`, `${String(stdout)}${String(stderr)}`, error),
          );
        else resolve(String(stdout));
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

export const buildah = (args: readonly string[], options?: ExecFileOptions) =>
  run('buildah', [...storageFlags(), ...args], options);
export const podman = (args: readonly string[], options?: ExecFileOptions) =>
  run('podman', [...podmanFlags(), ...args], options);
