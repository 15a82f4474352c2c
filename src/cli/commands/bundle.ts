import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { isAbsolute, join, relative, resolve } from 'node:path';
import {
  MANIFEST_FILE,
  buildDeltaManifest,
  encryptBundle,
  packDirectory,
  packTarball,
  readPublicKeyFile,
  readSigningKeyFile,
  validateZip,
  verifyBundle,
} from '../../bundle/index.js';
import type { ZipLimits } from '../../bundle/index.js';
import { UsageError, optionalString, positional, requireString } from '../io.js';
import type { Command, CommandContext } from '../io.js';

const TARBALL = /\.(tar|tgz|tar\.gz)$/i;

export const bundlePack: Command = {
  name: 'pack',
  summary: 'zip a web build directory (or a .tar/.tar.gz of one) deterministically, index.html at the root',
  usage: 'liveupdate bundle pack <webdir|build.tar.gz> --out <bundle.zip>',
  positionals: ['webdir'],
  options: { out: { type: 'string', short: 'o', description: 'zip file to write', valueName: 'zip' } },
  async run(ctx) {
    const input = path(ctx, positional(ctx, 0));
    const out = path(ctx, requireString(ctx, 'out'));
    const onProgress = ctx.progress('pack');
    const progress = onProgress ? { onProgress } : {};
    const isDirectory = (await stat(input)).isDirectory();
    const fromInput = relative(input, out);
    if (isDirectory && fromInput !== '..' && !fromInput.startsWith('../') && !isAbsolute(fromInput)) {
      throw new UsageError(`--out ${out} is inside ${input}; the next pack would include the zip itself`);
    }
    if (!isDirectory && !TARBALL.test(input))
      throw new UsageError(`${input} is neither a directory nor a .tar/.tar.gz file`);
    const result = isDirectory
      ? await packDirectory(input, out, progress)
      : await packTarball(createReadStream(input), out, progress);
    return { ...result, out };
  },
};

export const bundleEncrypt: Command = {
  name: 'encrypt',
  summary:
    'encrypt and sign a zip for apps with a publicKey (AES-128-CBC, RSA-wrapped session key, V3 + V2 checksums)',
  usage: 'liveupdate bundle encrypt <bundle.zip> --key <.capgo_key_v2> --out <bundle.enc.zip>',
  positionals: ['zip'],
  options: {
    key: { type: 'string', short: 'k', description: 'PKCS#1 private key (.capgo_key_v2)', valueName: 'file' },
    out: { type: 'string', short: 'o', description: 'encrypted file to write', valueName: 'file' },
  },
  async run(ctx) {
    const key = await readSigningKeyFile(path(ctx, requireString(ctx, 'key')));
    const input = path(ctx, positional(ctx, 0));
    // The controller's rules: never sign what it would refuse (non-zips, zip-slip, zips readers see differently).
    await validateZip(input);
    const onProgress = ctx.progress('encrypt');
    const result = await encryptBundle({
      input,
      output: path(ctx, requireString(ctx, 'out')),
      key,
      ...(onProgress ? { onProgress } : {}),
    });
    return { ...result };
  },
};

export const bundleVerify: Command = {
  name: 'verify',
  summary:
    'check a bundle exactly as a device does (decrypt, recover the signed checksum, compare) and that devices can install the zip',
  usage:
    'liveupdate bundle verify <file> --checksum <c> [--public-key <.capgo_key_v2.pub> --session-key <iv:key>] [--out <plain.zip>]',
  positionals: ['file'],
  options: {
    checksum: {
      type: 'string',
      short: 'c',
      description: 'the checksum of the update answer',
      valueName: 'checksum',
    },
    'public-key': {
      type: 'string',
      description: 'the app public key (PKCS#1); omit for unencrypted bundles',
      valueName: 'file',
    },
    'session-key': {
      type: 'string',
      description: 'the session_key of the update answer',
      valueName: 'iv:key',
    },
    out: { type: 'string', short: 'o', description: 'also write the decrypted zip here', valueName: 'file' },
  },
  async run(ctx) {
    const publicKeyPath = optionalString(ctx, 'public-key');
    const sessionKey = optionalString(ctx, 'session-key');
    if (!publicKeyPath && sessionKey) throw new UsageError('--session-key needs --public-key');
    const out = optionalString(ctx, 'out');
    const input = path(ctx, positional(ctx, 0));
    const onProgress = ctx.progress('verify');
    // The decrypted zip is validated like the controller validates it: a right checksum on a zip devices cannot
    // install (or would install differently) is not ok.
    const scratch = publicKeyPath && !out ? await mkdtemp(join(tmpdir(), 'liveupdate-verify-')) : undefined;
    try {
      const plainZip = out ? path(ctx, out) : scratch ? join(scratch, 'plain.zip') : input;
      const result = await verifyBundle({
        input,
        checksum: requireString(ctx, 'checksum'),
        ...(publicKeyPath ? { publicKey: await readPublicKeyFile(path(ctx, publicKeyPath)) } : {}),
        ...(sessionKey !== undefined ? { sessionKey } : {}),
        ...(plainZip !== input ? { output: plainZip } : {}),
        ...(onProgress ? { onProgress } : {}),
      });
      const zip = await validateZip(plainZip);
      return {
        ok: result.ok,
        sha256: result.sha256,
        size: result.size,
        encrypted: result.encrypted,
        files: zip.files,
        root: zip.root,
      };
    } finally {
      if (scratch) await rm(scratch, { recursive: true, force: true });
    }
  },
};

export const bundleManifest: Command = {
  name: 'manifest',
  summary:
    'build a delta manifest and its per-file objects (Brotli, encrypted with the bundle session key, signed hashes)',
  usage:
    'liveupdate bundle manifest <webdir|bundle.zip> --out <dir> [--key <.capgo_key_v2> --session-key <iv:key>]',
  positionals: ['webdir'],
  options: {
    key: {
      type: 'string',
      short: 'k',
      description: 'private key the bundle was encrypted with; omit for unencrypted apps',
      valueName: 'file',
    },
    'session-key': {
      type: 'string',
      description: 'session key printed by `bundle encrypt` for this bundle',
      valueName: 'iv:key',
    },
    out: {
      type: 'string',
      short: 'o',
      description: `directory for ${MANIFEST_FILE} and the objects`,
      valueName: 'dir',
    },
  },
  async run(ctx) {
    const keyPath = optionalString(ctx, 'key');
    const sessionKey = optionalString(ctx, 'session-key');
    if (!!keyPath !== !!sessionKey)
      throw new UsageError(
        '--key and --session-key go together (both for encrypted apps, neither otherwise)',
      );
    const input = path(ctx, positional(ctx, 0));
    const outDir = path(ctx, requireString(ctx, 'out'));
    const source = (await stat(input)).isDirectory() ? { dir: input } : { zip: input };
    const manifest = await buildDeltaManifest({
      source,
      outDir,
      ...(keyPath && sessionKey ? { key: await readSigningKeyFile(path(ctx, keyPath)), sessionKey } : {}),
    });
    return {
      files: manifest.entries.length,
      brotliFiles: manifest.brotliFiles,
      storedBytes: manifest.storedBytes,
      manifest: resolve(outDir, MANIFEST_FILE),
    };
  },
};

export const bundleValidate: Command = {
  name: 'validate',
  summary: 'check a zip against device layout rules and zip-bomb limits',
  usage: 'liveupdate bundle validate <bundle.zip> [--max-entries N] [--max-bytes N] [--max-ratio N]',
  positionals: ['zip'],
  options: {
    'max-entries': { type: 'string', description: 'most entries (default 20000)', valueName: 'N' },
    'max-bytes': { type: 'string', description: 'most uncompressed bytes (default 1 GiB)', valueName: 'N' },
    'max-ratio': { type: 'string', description: 'highest compression ratio (default 200)', valueName: 'N' },
  },
  async run(ctx) {
    const limits: Partial<{ -readonly [K in keyof ZipLimits]: ZipLimits[K] }> = {};
    const number = (option: string): number | undefined => {
      const text = optionalString(ctx, option);
      if (text === undefined) return undefined;
      const value = Number(text);
      if (!Number.isSafeInteger(value) || value <= 0)
        throw new UsageError(`--${option} must be a positive integer`);
      return value;
    };
    const maxEntries = number('max-entries');
    const maxBytes = number('max-bytes');
    const maxRatio = number('max-ratio');
    if (maxEntries) limits.maxEntries = maxEntries;
    if (maxBytes) limits.maxUncompressedBytes = maxBytes;
    if (maxRatio) limits.maxCompressionRatio = maxRatio;
    const summary = await validateZip(path(ctx, positional(ctx, 0)), { limits });
    return { ok: true, ...summary };
  },
};

function path(ctx: CommandContext, p: string): string {
  return resolve(ctx.io.cwd, p);
}
