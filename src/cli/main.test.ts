import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { encryptBundle, readSigningKeyFile } from '../bundle/index.js';
import { INDEX_HTML, craftZip } from '../bundle/testing/zip-craft.js';
import { runCli } from './main.js';
import type { CliIo } from './io.js';

const FIXTURE = fileURLToPath(new URL('../../test/fixtures/webapp', import.meta.url));
const REPO = fileURLToPath(new URL('../..', import.meta.url));
let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'cli-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  json: Record<string, unknown>;
}

async function cli(args: string[], options: { tty?: boolean } = {}): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    stdout: (t) => (stdout += t),
    stderr: (t) => (stderr += t),
    stderrIsTTY: options.tty ?? false,
    cwd: work,
  };
  const code = await runCli(args, io);
  let json: Record<string, unknown> = {};
  if (args.includes('--json') && code === 0) json = JSON.parse(stdout) as Record<string, unknown>;
  return { code, stdout, stderr, json };
}

describe('liveupdate CLI (in-process)', () => {
  it('creates keys, packs, encrypts, verifies, validates and builds a manifest', async () => {
    const keys = await cli(['keys', 'create', '--dir', 'keys', '--json']);
    expect(keys.code).toBe(0);
    expect(keys.json).toEqual({
      keyId: expect.stringMatching(/^MIIBCgKCAQEA.{8}$/) as unknown,
      privateKeyPath: join(work, 'keys/.capgo_key_v2'),
      publicKeyPath: join(work, 'keys/.capgo_key_v2.pub'),
    });
    expect((await cli(['keys', 'create', '--dir', 'keys'])).code).toBe(1);

    const imported = await cli(['keys', 'import', '--private', 'keys/.capgo_key_v2', '--json']);
    expect(imported.json['keyId']).toBe(keys.json['keyId']);

    const pack = await cli(['bundle', 'pack', FIXTURE, '--out', 'app.zip', '--json']);
    expect(pack.code).toBe(0);
    expect(pack.json).toMatchObject({ sha256: expect.stringMatching(/^[0-9a-f]{64}$/) as unknown, files: 4 });
    expect(pack.stdout.trim().split('\n')).toHaveLength(1);

    const validate = await cli(['bundle', 'validate', 'app.zip', '--json']);
    expect(validate.json).toMatchObject({ ok: true, root: '', files: 4 });

    const enc = await cli([
      'bundle',
      'encrypt',
      'app.zip',
      '--key',
      'keys/.capgo_key_v2',
      '--out',
      'app.enc',
      '--json',
    ]);
    expect(enc.code).toBe(0);
    expect(Object.keys(enc.json).sort()).toEqual([
      'checksum',
      'checksumV2',
      'encryptedSize',
      'keyId',
      'sessionKey',
      'sha256',
      'size',
    ]);
    expect(enc.json['sha256']).toBe(pack.json['sha256']);

    const base = [
      'bundle',
      'verify',
      'app.enc',
      '--public-key',
      'keys/.capgo_key_v2.pub',
      '--session-key',
      String(enc.json['sessionKey']),
    ];
    const ok = await cli([...base, '--checksum', String(enc.json['checksum']), '--json']);
    expect(ok.json).toMatchObject({ ok: true, sha256: pack.json['sha256'] });
    const bad = await cli([...base, '--checksum', String(enc.json['checksumV2']), '--json']);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toBe('');
    expect(bad.stderr).toMatch(/^liveupdate: error: \[ChecksumMismatch\] .*\n$/);

    const plain = await cli(['bundle', 'verify', 'app.zip', '--checksum', String(pack.json['sha256'])]);
    expect(plain.code).toBe(0);
    expect(plain.stdout).toContain('ok: true');

    const manifest = await cli([
      'bundle',
      'manifest',
      FIXTURE,
      '--key',
      'keys/.capgo_key_v2',
      '--session-key',
      String(enc.json['sessionKey']),
      '--out',
      'delta',
      '--json',
    ]);
    expect(manifest.json).toMatchObject({
      files: 4,
      brotliFiles: 1,
      manifest: join(work, 'delta/manifest.json'),
    });
    const written = JSON.parse(await readFile(join(work, 'delta/manifest.json'), 'utf8')) as {
      entries: unknown[];
    };
    expect(written.entries).toHaveLength(4);
  });

  it('reports validation reasons and usage errors with the right exit codes', async () => {
    await writeFile(join(work, 'junk.zip'), 'not a zip');
    const junk = await cli(['bundle', 'validate', 'junk.zip']);
    expect(junk.code).toBe(1);
    expect(junk.stderr).toMatch(/^liveupdate: error: \[CorruptZip\]/);
    expect((await cli(['bundle', 'encrypt', 'x.zip'])).code).toBe(2);
    expect((await cli(['bundle', 'encrypt', 'x.zip', '--nope'])).stderr).toMatch(/Unknown option '--nope'/);
    expect((await cli(['bundle', 'frobnicate'])).code).toBe(2);
    expect((await cli(['bundle', 'pack', FIXTURE, '--out', join(FIXTURE, 'app.zip')])).stderr).toMatch(
      /inside/,
    );
    expect((await cli([])).code).toBe(2);
    expect((await cli(['bundle', 'validate'])).code).toBe(2);
    expect((await cli(['bundle', 'verify', 'x', '--checksum', 'c', '--session-key', 'a:b'])).code).toBe(2);
    const missingFile = await cli([
      'bundle',
      'encrypt',
      'missing.zip',
      '--key',
      'keys/.capgo_key_v2',
      '--out',
      'x.enc',
    ]);
    expect(missingFile.code).toBe(1);
    expect(missingFile.stderr).toContain('ENOENT');
  });

  it('encrypt refuses what the controller refuses; verify never says ok for a bundle devices cannot install', async () => {
    const key = await readSigningKeyFile(join(work, 'keys/.capgo_key_v2'));
    const hostile = {
      'junk.zip': Buffer.from('not a zip'),
      'slip.zip': craftZip([INDEX_HTML, { name: '../../evil.js', data: Buffer.from('x') }]),
      'hidden.zip': craftZip([INDEX_HTML, { name: 'index.html', data: Buffer.from('evil'), hidden: true }]),
    };
    const expected = {
      'junk.zip': 'CorruptZip',
      'slip.zip': 'PathTraversal',
      'hidden.zip': 'UnexpectedBytes',
    };
    for (const [file, bytes] of Object.entries(hostile)) {
      await writeFile(join(work, file), bytes);
      const reason = expected[file as keyof typeof expected];
      const enc = await cli([
        'bundle',
        'encrypt',
        file,
        '--key',
        'keys/.capgo_key_v2',
        '--out',
        `${file}.enc`,
      ]);
      expect({ file, code: enc.code, stderr: enc.stderr }).toEqual({
        file,
        code: 1,
        stderr: expect.stringContaining(`[${reason}]`) as unknown,
      });
      // Signed and encrypted anyway (as a careless pipeline could): the checksum is right, the zip is not.
      const sealed = await encryptBundle({
        input: join(work, file),
        output: join(work, `${file}.sealed`),
        key,
      });
      const verify = await cli([
        'bundle',
        'verify',
        `${file}.sealed`,
        '--public-key',
        'keys/.capgo_key_v2.pub',
        '--session-key',
        sealed.sessionKey,
        '--checksum',
        sealed.checksum,
      ]);
      expect({ file, code: verify.code, stdout: verify.stdout, stderr: verify.stderr }).toEqual({
        file,
        code: 1,
        stdout: '',
        stderr: expect.stringContaining(`[${reason}]`) as unknown,
      });
      const plain = await cli(['bundle', 'verify', file, '--checksum', sealed.sha256]);
      expect({ file, code: plain.code, stderr: plain.stderr }).toEqual({
        file,
        code: 1,
        stderr: expect.stringContaining(`[${reason}]`) as unknown,
      });
    }
  });

  it('prints help for every command', async () => {
    for (const [group, command] of [
      ['keys', 'create'],
      ['keys', 'import'],
      ['bundle', 'pack'],
      ['bundle', 'encrypt'],
      ['bundle', 'verify'],
      ['bundle', 'manifest'],
      ['bundle', 'validate'],
    ] as const) {
      const help = await cli([group, command, '--help']);
      expect(help.code).toBe(0);
      expect(help.stdout).toContain(`Usage: liveupdate ${group} ${command}`);
      expect(help.stdout).toContain('--json');
    }
  });

  it('shows progress on a terminal or with --progress, never on stdout', async () => {
    const tty = await cli(['bundle', 'pack', FIXTURE, '--out', 'p.zip'], { tty: true });
    expect(tty.stderr).toMatch(/^\rpack: 0\.0 MiB\n$/);
    const forced = await cli(['bundle', 'pack', FIXTURE, '--out', 'p.zip', '--progress', '--json']);
    expect(forced.stderr).toBe('pack: 0.0 MiB\n');
    expect(JSON.parse(forced.stdout)).toMatchObject({ files: 4 });
    expect((await cli(['bundle', 'pack', FIXTURE, '--out', 'p.zip'])).stderr).toBe('');
  });
});

describe('liveupdate CLI (spawned through tsx)', () => {
  const run = (args: string[]) =>
    promisify(execFile)(
      process.execPath,
      [join(REPO, 'node_modules/tsx/dist/cli.mjs'), join(REPO, 'src/cli/main.ts'), ...args],
      { cwd: work },
    ).then(
      (r) => ({ code: 0, ...r }),
      (err: { code: number; stdout: string; stderr: string }) => ({
        code: err.code,
        stdout: err.stdout,
        stderr: err.stderr,
      }),
    );

  it('exits 0 with one JSON object, 1 with one error line, 2 on usage errors', async () => {
    const pack = await run(['bundle', 'pack', FIXTURE, '--out', 'spawned.zip', '--json']);
    expect(pack.code).toBe(0);
    expect(JSON.parse(pack.stdout)).toMatchObject({ files: 4 });
    const bad = await run(['bundle', 'verify', 'spawned.zip', '--checksum', 'ABC', '--json']);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toBe('');
    expect(bad.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/^liveupdate: error: \[ChecksumMismatch\]/),
    ]);
    expect((await run(['bundle'])).code).toBe(2);
  }, 60_000);
});

describe('liveupdate --version and bundle publish usage', () => {
  it('prints the package version', async () => {
    const manifest = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as { version: string };
    expect((await cli(['--version'])).stdout).toBe(`liveupdate ${manifest.version}\n`);
    expect((await cli(['--version', '--json'])).stdout).toBe(`{"version":"${manifest.version}"}\n`);
  });

  it.each([
    [['--app', 'demo', '--version', '1.0.0'], '--to is required'],
    [['--app', 'demo', '--version', '1.0', '--to', 'oci://r/a'], 'not a semantic version'],
    [['--app', 'demo', '--version', '1.0.0', '--to', 'ftp://x/y'], 'must start with oci:// or s3://'],
    [
      ['--app', 'demo', '--version', '1.0.0', '--to', 's3://b/k', '--sign-key', 'k.pem'],
      '--sign-key signs OCI',
    ],
    [
      ['--app', 'demo', '--version', '1.0.0', '--to', 'oci://reg.internal/app:1.0.0'],
      'give the repository only',
    ],
  ])('refuses %j with a usage error', async (args, message) => {
    const result = await cli(['bundle', 'publish', FIXTURE, ...args]);
    expect({ code: result.code, stderr: result.stderr }).toEqual({
      code: 2,
      stderr: expect.stringContaining(message) as unknown,
    });
  });
});
