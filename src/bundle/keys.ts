import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KeyError } from './errors.js';
import { exists } from './io.js';

/** File names `npx @capgo/cli key create` uses; we keep them so keys move freely between both tools. */
export const PRIVATE_KEY_FILE = '.capgo_key_v2';
export const PUBLIC_KEY_FILE = '.capgo_key_v2.pub';

/** The only key size every device accepts: iOS needs a 256-byte modulus, Android 256-byte RSA blocks. */
export const RSA_MODULUS_BITS = 2048;

const PRIVATE_HEADER = '-----BEGIN RSA PRIVATE KEY-----';
const PUBLIC_HEADER = '-----BEGIN RSA PUBLIC KEY-----';

/** A private key able to sign checksums and wrap session keys, with its public half and key id. */
export interface SigningKey {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  /** PKCS#1 `BEGIN RSA PRIVATE KEY` PEM, as written to `.capgo_key_v2`. */
  readonly privateKeyPem: string;
  /** PKCS#1 `BEGIN RSA PUBLIC KEY` PEM, exactly what goes into `capacitor.config` → `publicKey`. */
  readonly publicKeyPem: string;
  /** First 20 characters of the public PEM body: the `key_id` devices send. */
  readonly keyId: string;
}

/** The device's view of a key: public only. */
export interface VerifyingKey {
  readonly publicKey: KeyObject;
  readonly publicKeyPem: string;
  readonly keyId: string;
}

export interface KeyFiles {
  readonly keyId: string;
  readonly privateKeyPath: string;
  readonly publicKeyPath: string;
}

/** The `key_id` of a public key PEM: its base64 body without header, footer and whitespace, cut to 20 chars. */
export function keyIdFromPublicKeyPem(publicKeyPem: string): string {
  return publicKeyPem
    .split(/\r?\n/)
    .filter((line) => !line.startsWith('-----'))
    .join('')
    .replace(/\s+/g, '')
    .slice(0, 20);
}

/** A fresh RSA-2048 pair in Capgo's formats. */
export function generateSigningKey(): SigningKey {
  const { privateKey } = generateKeyPairSync('rsa', {
    modulusLength: RSA_MODULUS_BITS,
    publicKeyEncoding: { type: 'pkcs1', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
  });
  return loadSigningKey(privateKey);
}

/**
 * Parse and check a private key PEM. Only PKCS#1 RSA-2048 keys are accepted, because that is what
 * `@capgo/cli` accepts too (`BEGIN RSA PRIVATE KEY` at the very first byte); everything else is refused with a
 * {@link KeyError} whose message says how to convert the key.
 */
export function loadSigningKey(privateKeyPem: string): SigningKey {
  const label = pemLabel(privateKeyPem, 'private');
  if (label === 'ENCRYPTED PRIVATE KEY' || /Proc-Type:\s*4,ENCRYPTED/.test(privateKeyPem)) {
    throw new KeyError(
      'KeyEncrypted',
      'the private key is protected by a passphrase; write an unencrypted PKCS#1 copy with ' +
        '`openssl rsa -in <key.pem> -traditional -out .capgo_key_v2` and keep that file secret',
    );
  }
  if (label === 'PRIVATE KEY') {
    throw new KeyError(
      'KeyPkcs8PrivateKey',
      'the private key is PKCS#8 (`BEGIN PRIVATE KEY`) but Capgo needs PKCS#1 (`BEGIN RSA PRIVATE KEY`); convert it with ' +
        '`openssl rsa -in <key.pem> -traditional -out .capgo_key_v2`',
    );
  }
  if (label === 'RSA PUBLIC KEY' || label === 'PUBLIC KEY' || label === 'CERTIFICATE') {
    throw new KeyError(
      'KeyNotPrivate',
      `expected the private key (${PRIVATE_HEADER}) but got a ${label}; pass the .capgo_key_v2 file, not the .pub`,
    );
  }
  if (label !== 'RSA PRIVATE KEY') {
    throw new KeyError('KeyNotRsa', `expected an RSA private key (${PRIVATE_HEADER}) but got a ${label}`);
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: privateKeyPem, format: 'pem' });
  } catch (err) {
    throw new KeyError(
      'KeyUnreadable',
      `the private key PEM cannot be parsed (${errorText(err)}); create a new pair with \`liveupdate keys create\``,
    );
  }
  checkRsa2048(privateKey);
  const publicKey = createPublicKey(privateKey);
  const publicKeyPem = exportPublicPem(publicKey);
  return {
    privateKey,
    publicKey,
    privateKeyPem: privateKey.export({ type: 'pkcs1', format: 'pem' }) as string,
    publicKeyPem,
    keyId: keyIdFromPublicKeyPem(publicKeyPem),
  };
}

/**
 * Parse and check a public key PEM as a device would get it from `capacitor.config`: PKCS#1
 * `BEGIN RSA PUBLIC KEY` at the very first byte (devices silently skip decryption otherwise), RSA-2048.
 */
export function loadPublicKey(publicKeyPem: string): VerifyingKey {
  const label = pemLabel(publicKeyPem, 'public');
  if (label === 'PUBLIC KEY') {
    throw new KeyError(
      'KeySpkiPublicKey',
      'the public key is SPKI (`BEGIN PUBLIC KEY`) but Capgo devices need PKCS#1 (`BEGIN RSA PUBLIC KEY`); convert it with ' +
        '`openssl rsa -pubin -in <pub.pem> -RSAPublicKey_out -out .capgo_key_v2.pub`',
    );
  }
  if (label.endsWith('PRIVATE KEY')) {
    throw new KeyError(
      'KeyNotPublic',
      'expected the public key but got a private key; pass the .capgo_key_v2.pub file (or derive it with ' +
        '`openssl rsa -in .capgo_key_v2 -RSAPublicKey_out -out .capgo_key_v2.pub`)',
    );
  }
  if (label !== 'RSA PUBLIC KEY') {
    throw new KeyError('KeyNotPublic', `expected an RSA public key (${PUBLIC_HEADER}) but got a ${label}`);
  }
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: publicKeyPem, format: 'pem', type: 'pkcs1' });
  } catch (err) {
    throw new KeyError('KeyUnreadable', `the public key PEM cannot be parsed (${errorText(err)})`);
  }
  checkRsa2048(publicKey);
  const canonicalPem = exportPublicPem(publicKey);
  return { publicKey, publicKeyPem: canonicalPem, keyId: keyIdFromPublicKeyPem(canonicalPem) };
}

/** The PKCS#1 public PEM belonging to a private key PEM (what `capgo key create` writes to `.capgo_key_v2.pub`). */
export function publicKeyPemFromPrivateKeyPem(privateKeyPem: string): string {
  return loadSigningKey(privateKeyPem).publicKeyPem;
}

export async function readSigningKeyFile(path: string): Promise<SigningKey> {
  return loadSigningKey(await readKeyFile(path));
}

export async function readPublicKeyFile(path: string): Promise<VerifyingKey> {
  return loadPublicKey(await readKeyFile(path));
}

/**
 * Write `.capgo_key_v2` (mode 0600) and `.capgo_key_v2.pub` into `dir`. Existing files are kept unless
 * `force` is set, so a second run cannot silently replace the key every installed app trusts.
 */
export async function writeKeyFiles(
  key: SigningKey,
  dir: string,
  options: { force?: boolean } = {},
): Promise<KeyFiles> {
  const privateKeyPath = join(dir, PRIVATE_KEY_FILE);
  const publicKeyPath = join(dir, PUBLIC_KEY_FILE);
  if (!options.force) {
    for (const path of [privateKeyPath, publicKeyPath]) {
      if (await exists(path)) {
        throw new KeyError(
          'KeyFilesExist',
          `${path} already exists; pass --force to replace the key pair (apps built with the old public key will reject new bundles)`,
        );
      }
    }
  }
  await mkdir(dir, { recursive: true });
  await writeAtomically(privateKeyPath, key.privateKeyPem, 0o600);
  await writeAtomically(publicKeyPath, key.publicKeyPem, 0o644);
  return { keyId: key.keyId, privateKeyPath, publicKeyPath };
}

function pemLabel(pem: unknown, kind: 'private' | 'public'): string {
  if (typeof pem !== 'string' || pem.length === 0) {
    throw new KeyError('KeyNotPem', `the ${kind} key is empty`);
  }
  if (/^[\s\uFEFF]/.test(pem)) {
    throw new KeyError(
      'KeyLeadingWhitespace',
      `the ${kind} key PEM starts with whitespace; devices only accept a PEM whose first byte is the \`-----BEGIN\` line — remove the leading blank characters`,
    );
  }
  const match = /^-----BEGIN ([A-Z0-9 ]+)-----\r?\n/.exec(pem);
  if (!match?.[1]) {
    throw new KeyError(
      'KeyNotPem',
      `the ${kind} key is not a PEM file (it must start with a \`-----BEGIN ...-----\` line)`,
    );
  }
  return match[1];
}

function checkRsa2048(key: KeyObject): void {
  if (key.asymmetricKeyType !== 'rsa') {
    throw new KeyError(
      'KeyNotRsa',
      `the key is ${key.asymmetricKeyType ?? 'not asymmetric'}, Capgo needs plain RSA`,
    );
  }
  const bits = key.asymmetricKeyDetails?.modulusLength;
  if (bits !== RSA_MODULUS_BITS) {
    throw new KeyError(
      'KeyWrongSize',
      `the key is RSA-${bits ?? '?'} but devices only accept RSA-${RSA_MODULUS_BITS}; create a new pair with \`liveupdate keys create\``,
    );
  }
}

function exportPublicPem(publicKey: KeyObject): string {
  return publicKey.export({ type: 'pkcs1', format: 'pem' }) as string;
}

async function readKeyFile(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new KeyError('KeyUnreadable', `cannot read key file ${path}: ${errorText(err)}`);
  }
}

async function writeAtomically(path: string, content: string, mode: number): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, content, { mode });
  await rename(tmp, path);
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
