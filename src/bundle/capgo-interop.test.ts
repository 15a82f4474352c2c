/**
 * Interoperability with Capgo's own CLI (`@capgo/cli` 8.68.1, run offline with the Node 24 binary), in V3 mode
 * because `@capgo/capacitor-updater` 8.51.23 is resolvable from the temporary Capacitor project
 * (CAPGO-PROTOCOL.md §6.5 "Running it from a test suite").
 */
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encryptBundle } from './encrypt.js';
import {
  PRIVATE_KEY_FILE,
  PUBLIC_KEY_FILE,
  generateSigningKey,
  loadPublicKey,
  readPublicKeyFile,
  readSigningKeyFile,
  writeKeyFiles,
} from './keys.js';
import { packDirectory } from './pack.js';
import { validateZip } from './validate.js';
import { verifyBundle } from './verify.js';
import { runCli } from '../cli/main.js';
import { capacitorProject, capgo, type CapgoResult } from './testing/capgo-cli.js';

/** Each test spawns the Capgo CLI a few times (about 1.5 s per run on an idle machine). */
const TIMEOUT = 60_000;

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const FIXTURE = join(REPO, 'test/fixtures/webapp');

const sha256 = async (path: string): Promise<string> =>
  createHash('sha256')
    .update(await readFile(path))
    .digest('hex');

let project: string;
beforeAll(async () => {
  project = await capacitorProject();
});
afterAll(async () => {
  await rm(project, { recursive: true, force: true });
});

describe('our bundles in Capgo', () => {
  const key = generateSigningKey();
  let dir: string;
  let pub: string;
  let zip: string;
  let enc: string;
  let packed: Awaited<ReturnType<typeof packDirectory>>;
  let result: Awaited<ReturnType<typeof encryptBundle>>;
  const decrypt = (
    file: string,
    sessionKey: string,
    checksum: string,
    publicKeyPath = pub,
  ): Promise<CapgoResult> =>
    capgo(project, ['bundle', 'decrypt', file, sessionKey, '--checksum', checksum, '--key', publicKeyPath]);

  beforeAll(async () => {
    dir = join(project, 'ours');
    await mkdir(dir);
    await writeKeyFiles(key, dir);
    pub = join(dir, PUBLIC_KEY_FILE);
    zip = join(dir, 'app.zip');
    packed = await packDirectory(FIXTURE, zip);
    enc = join(dir, 'app.enc.zip');
    result = await encryptBundle({ input: zip, output: enc, key });
  });

  it(
    'capgo bundle decrypt --checksum accepts our bundle, session key and V3 checksum; same plain digest',
    async () => {
      const ok = await decrypt(enc, result.sessionKey, result.checksum);
      expect(ok.output).toContain('Decrypting checksum with V3');
      expect(ok.output).toContain('Checksum matches');
      expect(ok.code).toBe(0);
      expect(await sha256(`${enc}_decrypted.zip`)).toBe(packed.sha256);
    },
    TIMEOUT,
  );

  it(
    'both sides refuse a flipped byte',
    async () => {
      const tampered = Buffer.from(await readFile(enc));
      tampered[200] = (tampered[200] ?? 0) ^ 0x80;
      const tamperedPath = join(dir, 'tampered.zip');
      await writeFile(tamperedPath, tampered);
      const theirs = await decrypt(tamperedPath, result.sessionKey, result.checksum);
      expect(theirs.code).not.toBe(0);
      expect(theirs.output).toContain('Checksum does not match');
      await expect(
        verifyBundle({
          input: tamperedPath,
          checksum: result.checksum,
          sessionKey: result.sessionKey,
          publicKey: key,
        }),
      ).rejects.toMatchObject({ reason: 'ChecksumMismatch' });
    },
    TIMEOUT,
  );

  it(
    'both sides refuse another public key',
    async () => {
      const otherDir = join(dir, 'other');
      const other = generateSigningKey();
      await writeKeyFiles(other, otherDir);
      const theirs = await decrypt(enc, result.sessionKey, result.checksum, join(otherDir, PUBLIC_KEY_FILE));
      expect(theirs.code).not.toBe(0);
      expect(theirs.output).not.toContain('Checksum matches');
      await expect(
        verifyBundle({
          input: enc,
          checksum: result.checksum,
          sessionKey: result.sessionKey,
          publicKey: other,
        }),
      ).rejects.toMatchObject({ reason: 'SessionKeyInvalid' });
    },
    TIMEOUT,
  );

  it(
    'both sides refuse the session key of another bundle signed with the same key',
    async () => {
      const second = await encryptBundle({ input: zip, output: join(dir, 'second.enc.zip'), key });
      const theirs = await decrypt(enc, second.sessionKey, result.checksum);
      expect(theirs.code).not.toBe(0);
      expect(theirs.output).not.toContain('Checksum matches');
      await expect(
        verifyBundle({
          input: enc,
          checksum: result.checksum,
          sessionKey: second.sessionKey,
          publicKey: key,
        }),
      ).rejects.toMatchObject({
        reason: expect.stringMatching(/^(DecryptFailed|ChecksumMismatch)$/) as unknown,
      });
    },
    TIMEOUT,
  );

  it(
    'both sides refuse the legacy V2 checksum in V3 mode (current devices recover 48 bytes and fail)',
    async () => {
      const theirs = await decrypt(enc, result.sessionKey, result.checksumV2);
      expect(theirs.code).not.toBe(0);
      expect(theirs.output).not.toContain('Checksum matches');
      await expect(
        verifyBundle({
          input: enc,
          checksum: result.checksumV2,
          sessionKey: result.sessionKey,
          publicKey: key,
        }),
      ).rejects.toMatchObject({ reason: 'ChecksumMismatch' });
    },
    TIMEOUT,
  );

  it(
    'upper case: a signature in upper-case hex decodes to the same bytes (accepted by both, as by Android and iOS); an upper-case plain digest is refused',
    async () => {
      const theirs = await decrypt(enc, result.sessionKey, result.checksum.toUpperCase());
      expect(theirs.output).toContain('Checksum matches');
      await expect(
        verifyBundle({
          input: enc,
          checksum: result.checksum.toUpperCase(),
          sessionKey: result.sessionKey,
          publicKey: key,
        }),
      ).resolves.toMatchObject({ ok: true });
      await expect(verifyBundle({ input: zip, checksum: packed.sha256.toUpperCase() })).rejects.toMatchObject(
        { reason: 'ChecksumMismatch' },
      );
    },
    TIMEOUT,
  );
});

describe('Capgo bundles and keys in ours', () => {
  it(
    'a key from `capgo key create` works in our commands, and a bundle from `capgo bundle zip` + `bundle encrypt` passes our verify',
    async () => {
      const dir = await capacitorProject();
      try {
        const created = await capgo(dir, ['key', 'create']);
        expect(created.output).toContain('Private key saved');
        const theirKey = await readSigningKeyFile(join(dir, PRIVATE_KEY_FILE));
        const theirPub = await readPublicKeyFile(join(dir, PUBLIC_KEY_FILE));
        expect(theirPub.publicKeyPem).toBe(await readFile(join(dir, PUBLIC_KEY_FILE), 'utf8'));
        expect(theirKey.publicKeyPem).toBe(theirPub.publicKeyPem);
        const config = JSON.parse(await readFile(join(dir, 'capacitor.config.json'), 'utf8')) as {
          plugins: { CapacitorUpdater: { publicKey: string } };
        };
        expect(loadPublicKey(config.plugins.CapacitorUpdater.publicKey).keyId).toBe(theirKey.keyId);

        await mkdir(join(dir, 'dist'));
        for (const f of ['index.html']) await copyFile(join(FIXTURE, f), join(dir, 'dist', f));
        await mkdir(join(dir, 'dist/assets/img'), { recursive: true });
        for (const f of ['assets/app.js', 'assets/app.css', 'assets/img/logo.png'])
          await copyFile(join(FIXTURE, f), join(dir, 'dist', f));
        const zipped = await capgo(dir, [
          'bundle',
          'zip',
          'com.example.app',
          '--path',
          'dist',
          '--bundle',
          '1.0.0',
          '--json',
        ]);
        expect(zipped.code).toBe(0);
        const zipInfo = JSON.parse(
          zipped.output.slice(zipped.output.indexOf('{'), zipped.output.lastIndexOf('}') + 1),
        ) as { filename: string; checksum: string };
        const theirZip = join(dir, zipInfo.filename);
        expect(await sha256(theirZip)).toBe(zipInfo.checksum);
        expect(await validateZip(theirZip)).toMatchObject({ root: '', files: 4 });

        const encrypted = await capgo(dir, ['bundle', 'encrypt', theirZip, zipInfo.checksum, '--json']);
        expect(encrypted.code).toBe(0);
        const encInfo = JSON.parse(
          encrypted.output.slice(encrypted.output.indexOf('{'), encrypted.output.lastIndexOf('}') + 1),
        ) as { checksum: string; filename: string; ivSessionKey: string };
        expect(encInfo.checksum).toMatch(/^[0-9a-f]{512}$/);
        const verified = await verifyBundle({
          input: resolve(dir, encInfo.filename),
          checksum: encInfo.checksum,
          sessionKey: encInfo.ivSessionKey,
          publicKey: theirPub,
        });
        expect(verified).toMatchObject({ ok: true, sha256: zipInfo.checksum });

        // Their key in our CLI.
        let stdout = '';
        const io = {
          stdout: (t: string) => (stdout += t),
          stderr: () => undefined,
          stderrIsTTY: false,
          cwd: dir,
        };
        expect(await runCli(['keys', 'import', '--private', PRIVATE_KEY_FILE, '--json'], io)).toBe(0);
        expect(JSON.parse(stdout)).toMatchObject({ keyId: theirKey.keyId });

        // Their key signing our bundle: Capgo accepts it too.
        const ourZip = join(dir, 'ours.zip');
        await packDirectory(FIXTURE, ourZip);
        const ours = await encryptBundle({ input: ourZip, output: join(dir, 'ours.enc.zip'), key: theirKey });
        const back = await capgo(dir, [
          'bundle',
          'decrypt',
          join(dir, 'ours.enc.zip'),
          ours.sessionKey,
          '--checksum',
          ours.checksum,
        ]);
        expect(back.output).toContain('Checksum matches');
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
    TIMEOUT,
  );

  it(
    'our key works in `capgo bundle encrypt`, and its output passes our verify',
    async () => {
      const dir = join(project, 'our-key');
      await mkdir(dir);
      const key = generateSigningKey();
      await writeKeyFiles(key, dir);
      const zip = join(dir, 'app.zip');
      const packed = await packDirectory(FIXTURE, zip);
      const encrypted = await capgo(project, [
        'bundle',
        'encrypt',
        zip,
        packed.sha256,
        '--key',
        join(dir, PRIVATE_KEY_FILE),
        '--json',
      ]);
      expect(encrypted.code).toBe(0);
      const info = JSON.parse(
        encrypted.output.slice(encrypted.output.indexOf('{'), encrypted.output.lastIndexOf('}') + 1),
      ) as { checksum: string; filename: string; ivSessionKey: string };
      expect(
        await verifyBundle({
          input: resolve(project, info.filename),
          checksum: info.checksum,
          sessionKey: info.ivSessionKey,
          publicKey: key,
        }),
      ).toMatchObject({ sha256: packed.sha256 });
      // Their checksum is exactly ours: RSA PKCS#1 v1.5 type-1 signatures are deterministic.
      expect(info.checksum).toBe(
        (await encryptBundle({ input: zip, output: join(dir, 'ours.enc'), key })).checksum,
      );
    },
    TIMEOUT,
  );
});
