// The admin's path with the offline release (`npm run release`), end to end with the real tools: the tarball is
// unpacked elsewhere, INSTALL.md's own shell blocks run (verify the folder with cosign and sha256sum, push the OCI
// archive into a real registry on 127.0.0.1 with skopeo, attach the image signature, `cosign verify` it offline),
// then podman pulls the image from the registry into empty storage and runs it, and the packaged chart renders with
// the mirror and the digest. Refusals are proven too: another key does not verify, a changed file fails its checksum.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { buildRelease, type Release } from '../../../scripts/release/build.js';
import { podmanFlags, SANDBOX_RUN_FLAGS } from '../../../scripts/image/containers.js';
import { INTEGRATION_TEST_TIMEOUT_MS, toolBinary } from '../../env/fixtures.js';
import { startTestRegistry, type TestRegistry } from '../../env/oci-registry.js';
import { repoRoot } from '../../env/process-utils.js';

const RELEASE_TIMEOUT_MS = 20 * 60_000;

let work: string;
let release: Release;
let unpacked: string;
let registry: TestRegistry;
let adminEnv: NodeJS.ProcessEnv;
let podmanRoot: string;
let podmanRunRoot: string;

interface Result {
  readonly code: number;
  readonly output: string;
}

function sh(command: string, args: readonly string[], env: NodeJS.ProcessEnv, cwd?: string): Promise<Result> {
  return new Promise((resolve) => {
    execFile(
      command,
      [...args],
      { env, cwd, encoding: 'utf8', maxBuffer: 32 << 20, timeout: 10 * 60_000 },
      (error, stdout, stderr) =>
        resolve({
          code: error ? (typeof error.code === 'number' ? error.code : 1) : 0,
          output: `${stdout}${stderr}`,
        }),
    );
  });
}

async function ok(command: string, args: readonly string[], cwd?: string): Promise<string> {
  const result = await sh(command, args, adminEnv, cwd);
  if (result.code !== 0)
    throw new Error(`${command} ${args.join(' ')} exited ${result.code}:\n${result.output}`);
  return result.output;
}

/** The ```sh blocks under a `## <n>.` heading of INSTALL.md. */
function shellBlocks(guide: string, section: string): string {
  const start = guide.indexOf(`## ${section}`);
  if (start < 0) throw new Error(`INSTALL.md has no section ${section}`);
  const end = guide.indexOf('\n## ', start + 1);
  const text = guide.slice(start, end < 0 ? undefined : end);
  return [...text.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]).join('\n');
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'liveupdate-release-'));
  release = await buildRelease({
    repo: repoRoot(),
    outDir: join(work, 'out'),
    tools: { helm: toolBinary('helm'), cosign: toolBinary('cosign'), syft: toolBinary('syft') },
    log: () => undefined,
  });
  // The admin's side: only the tarball crosses the gap.
  const transfer = join(work, 'air-gapped');
  await mkdir(transfer);
  await ok('tar', ['-xf', release.tarball, '-C', transfer]);
  unpacked = join(transfer, `liveupdate-operator-${release.version}`);
  registry = await startTestRegistry();
  // A separate podman storage, so the image really comes from the registry (runroot: podman wants < 50 chars).
  podmanRoot = join(work, 'podman');
  podmanRunRoot = `/run/liveupdate-operator/release-${randomBytes(3).toString('hex')}`;
  adminEnv = {
    ...registry.toolEnv,
    PATH: `${dirname(toolBinary('cosign'))}:${process.env['PATH'] ?? ''}`,
    COSIGN_PASSWORD: '',
    // skopeo and podman read the same docker-config credentials; Go honours SSL_CERT_FILE for the registry's CA.
    REGISTRY_AUTH_FILE: join(registry.toolEnv['DOCKER_CONFIG']!, 'config.json'),
  };
}, RELEASE_TIMEOUT_MS);

afterAll(async () => {
  await sh('podman', [...podmanFlags(podmanRoot, podmanRunRoot), 'rmi', '--all', '--force'], process.env);
  await registry?.stop();
  await rm(podmanRunRoot, { recursive: true, force: true });
  await rm(work, { recursive: true, force: true });
}, INTEGRATION_TEST_TIMEOUT_MS);

describe('the signed offline release, installed as INSTALL.md says', () => {
  it('the folder holds the image archive, chart, SBOMs, signatures, images.txt and checksums', async () => {
    const sums = await readFile(join(unpacked, 'SHA256SUMS'), 'utf8');
    for (const file of Object.values(release.files).filter((f) => !f.startsWith('SHA256SUMS')))
      expect(sums).toContain(`  ${file}\n`);
    const imagesTxt = await readFile(join(unpacked, 'images.txt'), 'utf8');
    expect(imagesTxt).toContain(`${release.image.reference}@${release.image.digest}\n`);
    const imageSbom = JSON.parse(await readFile(join(unpacked, release.files.imageSbom), 'utf8')) as {
      bomFormat: string;
      components: { purl?: string }[];
    };
    expect(imageSbom.bomFormat).toBe('CycloneDX');
    // The production npm dependencies inside the image and its Debian packages.
    expect(imageSbom.components.some((c) => c.purl?.startsWith('pkg:npm/express@'))).toBe(true);
    expect(imageSbom.components.some((c) => c.purl?.startsWith('pkg:deb/debian/libc6@'))).toBe(true);
    const npmSbom = JSON.parse(await readFile(join(unpacked, release.files.npmSbom), 'utf8')) as {
      components: { purl?: string }[];
    };
    expect(npmSbom.components.some((c) => c.purl?.startsWith('pkg:npm/%40kubernetes/client-node@'))).toBe(
      true,
    );
  });

  it(
    'INSTALL.md step 1 verifies the folder offline; another key or a changed file is refused',
    async () => {
      const guide = await readFile(join(unpacked, 'INSTALL.md'), 'utf8');
      await ok('bash', ['-euo', 'pipefail', '-c', shellBlocks(guide, '1.')], unpacked);

      const other = join(work, 'other-key');
      await mkdir(other);
      await ok(toolBinary('cosign'), ['generate-key-pair'], other);
      const wrongKey = await sh(
        toolBinary('cosign'),
        [
          'verify-blob',
          '--key',
          join(other, 'cosign.pub'),
          '--insecure-ignore-tlog=true',
          '--signature',
          'SHA256SUMS.sig',
          'SHA256SUMS',
        ],
        adminEnv,
        unpacked,
      );
      expect(wrongKey.code).not.toBe(0);
      const tampered = join(work, 'tampered');
      await ok('cp', ['-r', unpacked, tampered]);
      await writeFile(join(tampered, 'images.txt'), 'evil.example/operator:0.1.0\n');
      expect((await sh('sha256sum', ['-c', '--quiet', 'SHA256SUMS'], adminEnv, tampered)).code).not.toBe(0);
    },
    INTEGRATION_TEST_TIMEOUT_MS,
  );

  it(
    'INSTALL.md step 2 pushes the archive into a registry, keeps the digest, attaches and verifies the signature',
    async () => {
      const guide = await readFile(join(unpacked, 'INSTALL.md'), 'utf8');
      const mirror = `${registry.host}/mirror`;
      const script = shellBlocks(guide, '2.').replace('MIRROR=registry.internal/mirror', `MIRROR=${mirror}`);
      expect(script).toContain(`MIRROR=${mirror}`);
      const output = await ok('bash', ['-euo', 'pipefail', '-c', script], unpacked);
      expect(output).toContain('The signatures were verified against the specified public key');
      const repository = `${mirror}/liveupdate-dev/liveupdate-operator`;
      const pushed = await ok('skopeo', [
        'inspect',
        '--format',
        '{{.Digest}}',
        `docker://${repository}:${release.version}`,
      ]);
      expect(pushed.trim()).toBe(release.image.digest);
      // A signature for this digest does not verify another image.
      await ok('skopeo', [
        'copy',
        '--preserve-digests',
        `docker://${repository}:${release.version}`,
        `docker://${mirror}/other:1`,
      ]);
      const unsigned = await sh(
        toolBinary('cosign'),
        ['verify', '--key', 'cosign.pub', '--insecure-ignore-tlog=true', `${mirror}/other:1`],
        adminEnv,
        unpacked,
      );
      expect(unsigned.code).not.toBe(0);
    },
    INTEGRATION_TEST_TIMEOUT_MS,
  );

  it(
    'podman pulls the image from the registry by digest and runs it; the packaged chart renders with mirror and digest',
    async () => {
      const reference = `${registry.host}/mirror/liveupdate-dev/liveupdate-operator@${release.image.digest}`;
      const podman = podmanFlags(podmanRoot, podmanRunRoot);
      await ok('podman', [...podman, 'pull', '-q', reference]);
      const run = await ok('podman', [
        ...podman,
        'run',
        '--rm',
        '--network',
        'none',
        '--read-only',
        '--cap-drop',
        'ALL',
        ...SANDBOX_RUN_FLAGS,
        reference,
        '--help',
      ]);
      expect(run).toMatch(/controller/);
      expect(run).toMatch(/update-server/);

      const rendered = await ok(toolBinary('helm'), [
        'template',
        'liveupdate-operator',
        join(unpacked, release.files.chart),
        '--kube-version',
        '1.34.4',
        '--set',
        `global.imageRegistry=${registry.host}/mirror`,
        '--set',
        `image.digest=${release.image.digest}`,
      ]);
      expect(rendered).toContain(
        `image: ${registry.host}/mirror/liveupdate-dev/liveupdate-operator:${release.version}@${release.image.digest}`,
      );
    },
    INTEGRATION_TEST_TIMEOUT_MS,
  );
});
