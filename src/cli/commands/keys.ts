import { generateKeyPairSync } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { KeyError, generateSigningKey, loadSigningKey, writeKeyFiles } from '../../bundle/index.js';
import { publicKeyId } from '../../bundle/oci/index.js';
import { optionalString, requireString } from '../io.js';
import type { Command } from '../io.js';

export const keysCreate: Command = {
  name: 'create',
  summary: 'create an RSA-2048 key pair as .capgo_key_v2 (private) and .capgo_key_v2.pub (public)',
  usage: 'liveupdate keys create [--dir <dir>] [--force]',
  positionals: [],
  options: {
    dir: {
      type: 'string',
      description: 'directory to write the two files into (default: current directory)',
      valueName: 'dir',
    },
    force: {
      type: 'boolean',
      description: 'replace existing key files (apps built with the old public key will reject new bundles)',
    },
  },
  async run(ctx) {
    const dir = resolve(ctx.io.cwd, optionalString(ctx, 'dir') ?? '.');
    const files = await writeKeyFiles(generateSigningKey(), dir, { force: ctx.values['force'] === true });
    return { ...files };
  },
};

export const keysImport: Command = {
  name: 'import',
  summary:
    'check an existing Capgo private key and show its key id (optionally copy it under the Capgo file names)',
  usage: 'liveupdate keys import --private <private.pem> [--dir <dir>] [--force]',
  positionals: [],
  options: {
    private: {
      type: 'string',
      description: 'PKCS#1 private key PEM (e.g. .capgo_key_v2)',
      valueName: 'file',
    },
    dir: {
      type: 'string',
      description: 'also write .capgo_key_v2 and .capgo_key_v2.pub into this directory',
      valueName: 'dir',
    },
    force: { type: 'boolean', description: 'with --dir: replace existing key files' },
  },
  async run(ctx) {
    const path = resolve(ctx.io.cwd, requireString(ctx, 'private'));
    let pem: string;
    try {
      pem = await readFile(path, 'utf8');
    } catch (err) {
      throw new KeyError(
        'KeyUnreadable',
        `cannot read ${path}: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    const key = loadSigningKey(pem);
    const dir = optionalString(ctx, 'dir');
    if (dir)
      return {
        ...(await writeKeyFiles(key, resolve(ctx.io.cwd, dir), { force: ctx.values['force'] === true })),
        publicKey: key.publicKeyPem,
      };
    return { keyId: key.keyId, publicKey: key.publicKeyPem };
  },
};

export const keysCreateSigner: Command = {
  name: 'create-signer',
  summary:
    'create an ECDSA P-256 key pair for signing OCI artifacts in CI: signer.pem (private) and signer.pub (cosign.pub format)',
  usage: 'liveupdate keys create-signer [--dir <dir>] [--force]',
  positionals: [],
  options: {
    dir: {
      type: 'string',
      description: 'directory to write signer.pem and signer.pub into (default: current directory)',
      valueName: 'dir',
    },
    force: { type: 'boolean', description: 'replace existing files' },
  },
  async run(ctx) {
    const dir = resolve(ctx.io.cwd, optionalString(ctx, 'dir') ?? '.');
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const flag = ctx.values['force'] === true ? 'w' : 'wx';
    const privatePath = join(dir, 'signer.pem');
    const publicPath = join(dir, 'signer.pub');
    await mkdir(dir, { recursive: true });
    await writeFile(privatePath, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag });
    await writeFile(publicPath, publicKey.export({ type: 'spki', format: 'pem' }), { flag });
    return { privateKeyPath: privatePath, publicKeyPath: publicPath, keyId: publicKeyId(publicKey) };
  },
};
