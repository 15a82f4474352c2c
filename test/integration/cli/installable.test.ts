// The CLI outside a checkout: the single executable (`npm run cli:sea`) on a PATH with nothing on it creates keys,
// packs, encrypts, verifies and publishes a signed bundle to a real registry; the `npm pack` tarball installed with
// `npm install -g` gives a `liveupdate` that runs with only Node on the PATH.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  RegistryClient,
  credentialsFromDockerConfig,
  loadTrustedKey,
  verifyCosignSignature,
} from '../../../src/bundle/oci/index.js';
import { INTEGRATION_TEST_TIMEOUT_MS } from '../../env/fixtures.js';
import { startTestRegistry, type TestRegistry } from '../../env/oci-registry.js';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const WEBAPP = join(REPO, 'test/fixtures/webapp');
let work: string;

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

function run(
  command: string,
  args: readonly string[],
  options: { cwd: string; env: NodeJS.ProcessEnv },
): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(
      command,
      [...args],
      { ...options, timeout: 600_000, maxBuffer: 32 << 20 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

async function ok(
  command: string,
  args: readonly string[],
  options: { cwd: string; env: NodeJS.ProcessEnv },
) {
  const result = await run(command, args, options);
  if (result.code !== 0)
    throw new Error(`${command} ${args.join(' ')} exited ${result.code}:\n${result.stderr}`);
  return result.stdout;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'liveupdate-install-'));
});
afterAll(() => rm(work, { recursive: true, force: true }));

describe('the single executable on an empty PATH', () => {
  let registry: TestRegistry | undefined;
  afterAll(async () => {
    await registry?.stop();
  });

  it(
    'creates keys, packs, encrypts, verifies and publishes a signed bundle',
    async () => {
      const binary = join(work, 'sea', 'liveupdate');
      await ok(process.execPath, ['--import', 'tsx', 'scripts/build-sea.ts', '--out', binary], {
        cwd: REPO,
        env: process.env,
      });
      const home = join(work, 'home');
      await mkdir(home, { recursive: true });
      // Nothing on PATH: no node, no shell tools.
      const env = { PATH: join(work, 'empty-path'), HOME: home };
      const cli = async (...args: string[]) =>
        JSON.parse(await ok(binary, [...args, '--json'], { cwd: home, env })) as Record<string, string>;

      expect(await ok(binary, ['--version'], { cwd: home, env })).toMatch(/^liveupdate \d+\.\d+\.\d+/);
      const keys = await cli('keys', 'create', '--dir', 'keys');
      const packed = await cli('bundle', 'pack', WEBAPP, '--out', 'web.zip');
      const sealed = await cli(
        'bundle',
        'encrypt',
        'web.zip',
        '--key',
        'keys/.capgo_key_v2',
        '--out',
        'web.enc.zip',
      );
      const verified = await cli(
        'bundle',
        'verify',
        'web.enc.zip',
        '--checksum',
        sealed['checksum']!,
        '--public-key',
        keys['publicKeyPath']!,
        '--session-key',
        sealed['sessionKey']!,
      );
      expect(verified).toMatchObject({ ok: true, sha256: packed['sha256'], encrypted: true });

      const signer = await cli('keys', 'create-signer', '--dir', 'ci');
      registry = await startTestRegistry();
      const r = registry;
      await mkdir(join(home, 'tls'));
      await writeFile(join(home, 'tls', 'ca.crt'), r.ca!);
      const published = JSON.parse(
        await ok(
          binary,
          [
            'bundle',
            'publish',
            WEBAPP,
            '--app',
            'demo',
            '--version',
            '3.0.0',
            '--to',
            `oci://${r.host}/mobile/demo`,
            '--ca-file',
            'tls/ca.crt',
            '--sign-key',
            'ci/signer.pem',
            '--json',
          ],
          {
            cwd: home,
            env: {
              ...env,
              LIVEUPDATE_REGISTRY_USERNAME: r.username,
              LIVEUPDATE_REGISTRY_PASSWORD: r.password,
            },
          },
        ),
      ) as Record<string, string>;
      expect(published).toMatchObject({ sha256: packed['sha256'], signatureKeyId: signer['keyId'] });

      // What the controller does with it: the signature verifies with the public key the CLI wrote.
      const client = new RegistryClient({
        registry: r.host,
        credentials: credentialsFromDockerConfig(r.dockerConfigJson, r.host)!,
        ca: r.ca!,
      });
      const signal = AbortSignal.timeout(30_000);
      const manifest = await client.manifest('mobile/demo', '3.0.0', signal);
      expect(manifest.digest).toBe(published['manifestDigest']);
      const key = loadTrustedKey('signer.pub', await readFile(signer['publicKeyPath']!, 'utf8'));
      await expect(
        verifyCosignSignature(client, 'mobile/demo', manifest.digest, [key], signal),
      ).resolves.toMatchObject({ keyId: signer['keyId'] });
    },
    INTEGRATION_TEST_TIMEOUT_MS * 3,
  );
});

describe('the npm package', () => {
  it(
    '`npm pack` builds dist, and the installed `liveupdate` bin runs with only Node on the PATH',
    async () => {
      const nodeDir = dirname(process.execPath);
      const env = { ...process.env, PATH: `${nodeDir}:${process.env['PATH'] ?? ''}` };
      const packDir = join(work, 'pack');
      await mkdir(packDir, { recursive: true });
      await ok('npm', ['pack', '--pack-destination', packDir], { cwd: REPO, env });
      const tarball = (await readdir(packDir)).find((f) => f.endsWith('.tgz'));
      expect(tarball).toMatch(/^liveupdate-operator-\d+\.\d+\.\d+\.tgz$/);
      const prefix = join(work, 'prefix');
      await ok(
        'npm',
        [
          'install',
          '-g',
          '--prefix',
          prefix,
          '--prefer-offline',
          '--no-audit',
          '--no-fund',
          join(packDir, tarball!),
        ],
        { cwd: work, env },
      );
      const onlyNode = { PATH: nodeDir, HOME: work };
      const version = await ok(join(prefix, 'bin', 'liveupdate'), ['--version'], {
        cwd: work,
        env: onlyNode,
      });
      const { version: expected } = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as {
        version: string;
      };
      expect(version).toBe(`liveupdate ${expected}\n`);
      const keys = JSON.parse(
        await ok(join(prefix, 'bin', 'liveupdate'), ['keys', 'create', '--dir', 'installed-keys', '--json'], {
          cwd: work,
          env: onlyNode,
        }),
      ) as { keyId: string };
      expect(keys.keyId).toMatch(/^MIIBCgKCAQEA/);
    },
    INTEGRATION_TEST_TIMEOUT_MS * 3,
  );
});
