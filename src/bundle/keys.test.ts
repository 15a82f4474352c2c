import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KeyError } from './errors.js';
import {
  PRIVATE_KEY_FILE,
  PUBLIC_KEY_FILE,
  generateSigningKey,
  keyIdFromPublicKeyPem,
  loadPublicKey,
  loadSigningKey,
  publicKeyPemFromPrivateKeyPem,
  readSigningKeyFile,
  writeKeyFiles,
} from './keys.js';

const key = generateSigningKey();

function reasonOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof KeyError) return err.reason;
    throw err;
  }
  throw new Error('expected a KeyError');
}

describe('generateSigningKey', () => {
  it('creates RSA-2048 keys in the exact PKCS#1 formats Capgo uses', () => {
    expect(key.privateKeyPem.startsWith('-----BEGIN RSA PRIVATE KEY-----\n')).toBe(true);
    expect(key.publicKeyPem.startsWith('-----BEGIN RSA PUBLIC KEY-----\n')).toBe(true);
    expect(key.publicKeyPem.trimEnd().endsWith('-----END RSA PUBLIC KEY-----')).toBe(true);
    expect(key.privateKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
    expect(key.keyId).toHaveLength(20);
    expect(key.keyId.startsWith('MIIBCgKCAQEA')).toBe(true);
  });
});

describe('keyIdFromPublicKeyPem', () => {
  it('takes the first 20 characters of the body without header and whitespace', () => {
    const body = key.publicKeyPem
      .split('\n')
      .filter((l) => l && !l.startsWith('-----'))
      .join('');
    expect(keyIdFromPublicKeyPem(key.publicKeyPem)).toBe(body.slice(0, 20));
    expect(keyIdFromPublicKeyPem(key.publicKeyPem.replace(/\n/g, '\r\n'))).toBe(body.slice(0, 20));
  });
});

describe('loadSigningKey', () => {
  it('round-trips and derives the public key', () => {
    const loaded = loadSigningKey(key.privateKeyPem);
    expect(loaded.publicKeyPem).toBe(key.publicKeyPem);
    expect(publicKeyPemFromPrivateKeyPem(key.privateKeyPem)).toBe(key.publicKeyPem);
  });

  it('refuses PKCS#8, encrypted, public, leading-whitespace, non-RSA, wrong-size and garbage keys', () => {
    const pkcs8 = key.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    expect(reasonOf(() => loadSigningKey(pkcs8))).toBe('KeyPkcs8PrivateKey');
    const encrypted = key.privateKey.export({
      type: 'pkcs1',
      format: 'pem',
      cipher: 'aes-128-cbc',
      passphrase: 'x',
    }) as string;
    expect(reasonOf(() => loadSigningKey(encrypted))).toBe('KeyEncrypted');
    const encryptedPkcs8 = key.privateKey.export({
      type: 'pkcs8',
      format: 'pem',
      cipher: 'aes-128-cbc',
      passphrase: 'x',
    }) as string;
    expect(reasonOf(() => loadSigningKey(encryptedPkcs8))).toBe('KeyEncrypted');
    expect(reasonOf(() => loadSigningKey(key.publicKeyPem))).toBe('KeyNotPrivate');
    expect(reasonOf(() => loadSigningKey(`\n${key.privateKeyPem}`))).toBe('KeyLeadingWhitespace');
    expect(reasonOf(() => loadSigningKey(` ${key.privateKeyPem}`))).toBe('KeyLeadingWhitespace');
    expect(reasonOf(() => loadSigningKey('hello'))).toBe('KeyNotPem');
    expect(reasonOf(() => loadSigningKey(''))).toBe('KeyNotPem');
    expect(
      reasonOf(() =>
        loadSigningKey('-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n'),
      ),
    ).toBe('KeyUnreadable');
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({
      type: 'pkcs1',
      format: 'pem',
    }) as string;
    expect(reasonOf(() => loadSigningKey(small))).toBe('KeyWrongSize');
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
      type: 'sec1',
      format: 'pem',
    }) as string;
    expect(reasonOf(() => loadSigningKey(ec))).toBe('KeyNotRsa');
  });

  it('tells how to convert a PKCS#8 key, and the command works', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'keys-'));
    try {
      const pkcs8Path = join(dir, 'key.pem');
      await writeFile(pkcs8Path, key.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
      let message = '';
      try {
        loadSigningKey(await readFile(pkcs8Path, 'utf8'));
      } catch (err) {
        message = (err as Error).message;
      }
      const command = /`(openssl [^`]+)`/.exec(message)?.[1];
      expect(command).toBeDefined();
      const args = command!
        .replace('<key.pem>', pkcs8Path)
        .replace('.capgo_key_v2', join(dir, PRIVATE_KEY_FILE))
        .split(' ');
      execFileSync(args[0]!, args.slice(1), { stdio: 'ignore' });
      expect((await readSigningKeyFile(join(dir, PRIVATE_KEY_FILE))).keyId).toBe(key.keyId);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('loadPublicKey', () => {
  it('accepts PKCS#1 and refuses SPKI with a working conversion command', async () => {
    expect(loadPublicKey(key.publicKeyPem).keyId).toBe(key.keyId);
    const spki = key.publicKey.export({ type: 'spki', format: 'pem' }) as string;
    expect(reasonOf(() => loadPublicKey(spki))).toBe('KeySpkiPublicKey');
    const dir = await mkdtemp(join(tmpdir(), 'keys-'));
    try {
      await writeFile(join(dir, 'pub.pem'), spki);
      execFileSync(
        'openssl',
        [
          'rsa',
          '-pubin',
          '-in',
          join(dir, 'pub.pem'),
          '-RSAPublicKey_out',
          '-out',
          join(dir, PUBLIC_KEY_FILE),
        ],
        { stdio: 'ignore' },
      );
      expect(loadPublicKey(await readFile(join(dir, PUBLIC_KEY_FILE), 'utf8')).publicKeyPem).toBe(
        key.publicKeyPem,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses a leading newline, a private key and garbage', () => {
    expect(reasonOf(() => loadPublicKey(`\n${key.publicKeyPem}`))).toBe('KeyLeadingWhitespace');
    expect(reasonOf(() => loadPublicKey(key.privateKeyPem))).toBe('KeyNotPublic');
    expect(reasonOf(() => loadPublicKey('MIIBCgKCAQEA'))).toBe('KeyNotPem');
  });
});

describe('writeKeyFiles', () => {
  it('writes Capgo file names, private key 0600, and refuses to overwrite without force', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'keys-'));
    try {
      const files = await writeKeyFiles(key, dir);
      expect(files).toEqual({
        keyId: key.keyId,
        privateKeyPath: join(dir, '.capgo_key_v2'),
        publicKeyPath: join(dir, '.capgo_key_v2.pub'),
      });
      expect(await readFile(files.privateKeyPath, 'utf8')).toBe(key.privateKeyPem);
      expect(await readFile(files.publicKeyPath, 'utf8')).toBe(key.publicKeyPem);
      expect((await stat(files.privateKeyPath)).mode & 0o777).toBe(0o600);
      const other = generateSigningKey();
      await expect(writeKeyFiles(other, dir)).rejects.toMatchObject({ reason: 'KeyFilesExist' });
      expect(await readFile(files.privateKeyPath, 'utf8')).toBe(key.privateKeyPem);
      await writeKeyFiles(other, dir, { force: true });
      expect(await readFile(files.privateKeyPath, 'utf8')).toBe(other.privateKeyPem);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
