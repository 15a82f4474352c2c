/**
 * `liveupdate bundle publish`: from a CI build to a reviewed LiveUpdateBundle manifest in one step. Packs a web
 * build (or takes a zip / tar.gz), pushes it as an OCI artifact (or uploads it to an S3 bucket), optionally signs the
 * manifest digest cosign-compatibly (keyed, no transparency log), and prints or writes the LiveUpdateBundle with the
 * source pinned by tag and digest and spec.digest filled in; `--apply` server-side-applies it for teams without GitOps.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { Agent as HttpsAgent } from 'node:https';
import { homedir, tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { Client as MinioClient } from 'minio';
import { stringify } from 'yaml';
import { API_VERSION, type LiveUpdateBundle } from '../../api/v1alpha1/index.js';
import { hashBundle, packDirectory, packTarball, validateZip } from '../../bundle/index.js';
import {
  RegistryClient,
  credentialsFromDockerConfig,
  formatReference,
  parseReference,
  pushBundleArtifact,
  signManifest,
  type RegistryCredentials,
} from '../../bundle/oci/index.js';
import { UsageError, optionalString, positional, requireString } from '../io.js';
import type { Command, CommandContext } from '../io.js';

const SEMVER =
  /^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$/;
const TARBALL = /\.(tar|tgz|tar\.gz)$/i;

interface Packed {
  path: string;
  size: number;
  sha256: string;
}

export const bundlePublish: Command = {
  name: 'publish',
  summary:
    'pack a build, push it as an OCI artifact (or to S3), optionally sign it (cosign-compatible) and emit the LiveUpdateBundle',
  usage:
    'liveupdate bundle publish <webdir|bundle.zip|build.tar.gz> --app <app> --version <semver> --to <oci://host/repo | s3://bucket/key> [--sign-key <key.pem>] [--out <bundle.yaml>] [--apply]',
  positionals: ['build'],
  options: {
    app: { type: 'string', description: 'LiveUpdateApp name (spec.app)', valueName: 'name' },
    version: { type: 'string', description: 'bundle version (semver, spec.version)', valueName: 'semver' },
    to: {
      type: 'string',
      description:
        'oci://<registry>/<repository> or s3://<bucket>/<key> (a key ending in / gets <app>-<version>.zip)',
      valueName: 'target',
    },
    name: {
      type: 'string',
      description: 'LiveUpdateBundle name (default <app>-<version>)',
      valueName: 'name',
    },
    namespace: {
      type: 'string',
      short: 'n',
      description: 'metadata.namespace of the manifest',
      valueName: 'ns',
    },
    tag: { type: 'string', description: 'OCI tag (default: the version, + replaced by _)', valueName: 'tag' },
    'sign-key': {
      type: 'string',
      description:
        'sign the OCI manifest with this PEM private key (ECDSA/RSA/Ed25519; passphrase in LIVEUPDATE_SIGN_KEY_PASSWORD)',
      valueName: 'file',
    },
    'registry-config': {
      type: 'string',
      description:
        'docker config.json with registry credentials (default $DOCKER_CONFIG/config.json or ~/.docker/config.json; LIVEUPDATE_REGISTRY_USERNAME/PASSWORD win)',
      valueName: 'file',
    },
    'ca-file': {
      type: 'string',
      description: 'PEM CA bundle to trust for the registry or S3',
      valueName: 'file',
    },
    'cert-file': {
      type: 'string',
      description: 'PEM client certificate (mTLS to the registry)',
      valueName: 'file',
    },
    'key-file': { type: 'string', description: 'PEM key of --cert-file', valueName: 'file' },
    'plain-http': {
      type: 'boolean',
      description: 'talk plain HTTP to the registry (sets spec.source.oci.insecure)',
    },
    's3-endpoint': {
      type: 'string',
      description:
        'S3 endpoint URL for s3:// targets (credentials in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)',
      valueName: 'url',
    },
    's3-region': { type: 'string', description: 'S3 region', valueName: 'region' },
    'pull-secret': {
      type: 'string',
      description: 'name of the Secret the controller pulls with (OCI: dockerconfigjson, S3: access keys)',
      valueName: 'name',
    },
    'ca-secret': {
      type: 'string',
      description: 'name of the Secret with the CA (key ca.crt) for the controller',
      valueName: 'name',
    },
    'verify-secret': {
      type: 'string',
      description: 'name of the Secret with the cosign public key(s) (*.pub): adds spec.source.oci.verify',
      valueName: 'name',
    },
    comment: { type: 'string', description: 'release notes (spec.comment)', valueName: 'text' },
    out: {
      type: 'string',
      short: 'o',
      description: 'write the manifest (YAML) to this file',
      valueName: 'file',
    },
    apply: { type: 'boolean', description: 'server-side apply the manifest with the current kubeconfig' },
    kubeconfig: {
      type: 'string',
      description: 'kubeconfig for --apply (default $KUBECONFIG)',
      valueName: 'file',
    },
  },
  async run(ctx) {
    const app = requireString(ctx, 'app');
    const version = requireString(ctx, 'version');
    if (!SEMVER.test(version))
      throw new UsageError(`--version ${version} is not a semantic version such as 1.4.2`);
    const to = requireString(ctx, 'to');
    const name =
      optionalString(ctx, 'name') ?? `${app}-${version}`.toLowerCase().replace(/[^a-z0-9-]+/g, '-');
    const signKeyPath = optionalString(ctx, 'sign-key');
    if (signKeyPath && !to.startsWith('oci://'))
      throw new UsageError('--sign-key signs OCI artifacts; use an oci:// target');
    if (optionalString(ctx, 'verify-secret') && !to.startsWith('oci://'))
      throw new UsageError('--verify-secret applies to oci:// targets');
    const signKey = signKeyPath ? await readSignKey(file(ctx, signKeyPath)) : undefined;

    const work = await mkdtemp(join(tmpdir(), 'liveupdate-publish-'));
    try {
      const packed = await packInput(ctx, file(ctx, positional(ctx, 0)), work);
      const signal = AbortSignal.timeout(30 * 60_000);
      let source: LiveUpdateBundle['spec']['source'];
      const result: Record<string, unknown> = { name, version, sha256: packed.sha256, size: packed.size };
      if (to.startsWith('oci://')) {
        const pushed = await pushOci(ctx, to, version, packed, signKey, signal);
        Object.assign(result, pushed.result);
        source = pushed.source;
      } else if (to.startsWith('s3://')) {
        const uploaded = await uploadS3(ctx, to, `${app}-${version}.zip`, packed);
        Object.assign(result, uploaded.result);
        source = uploaded.source;
      } else {
        throw new UsageError(`--to ${to} must start with oci:// or s3://`);
      }
      const namespace = optionalString(ctx, 'namespace');
      const comment = optionalString(ctx, 'comment');
      const manifest: LiveUpdateBundle = {
        apiVersion: API_VERSION,
        kind: 'LiveUpdateBundle',
        metadata: { name, ...(namespace ? { namespace } : {}) },
        spec: {
          app,
          version,
          source,
          digest: `sha256:${packed.sha256}`,
          ...(comment ? { comment } : {}),
        },
      };
      const yaml = stringify(manifest);
      result['manifest'] = yaml;
      const out = optionalString(ctx, 'out');
      if (out) {
        await writeFile(file(ctx, out), yaml);
        result['out'] = file(ctx, out);
      }
      if (ctx.values['apply'] === true) {
        const { applyBundle } = await import('./publish-apply.js');
        result['applied'] = await applyBundle(manifest, optionalString(ctx, 'kubeconfig'));
      }
      return result;
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  },
};

function file(ctx: CommandContext, p: string): string {
  return resolve(ctx.io.cwd, p);
}

async function readSignKey(path: string): Promise<KeyObject> {
  const pem = await readFile(path, 'utf8');
  if (pem.includes('ENCRYPTED SIGSTORE PRIVATE KEY') || pem.includes('ENCRYPTED COSIGN PRIVATE KEY')) {
    throw new UsageError(
      `${path} is a cosign-encrypted key; sign with a PEM key (cosign import-key-pair --key <pem> makes the cosign copy of the same key)`,
    );
  }
  try {
    const passphrase = process.env['LIVEUPDATE_SIGN_KEY_PASSWORD'];
    return createPrivateKey(passphrase ? { key: pem, passphrase } : pem);
  } catch (error) {
    throw new UsageError(`--sign-key ${path} is not a usable PEM private key: ${(error as Error).message}`);
  }
}

/** A directory or tarball is packed deterministically; a zip is validated and used as is. */
async function packInput(ctx: CommandContext, input: string, work: string): Promise<Packed> {
  const onProgress = ctx.progress('pack');
  const progress = onProgress ? { onProgress } : {};
  const zip = join(work, 'bundle.zip');
  if ((await stat(input)).isDirectory()) {
    const result = await packDirectory(input, zip, progress);
    return { path: zip, size: result.size, sha256: result.sha256 };
  }
  if (TARBALL.test(input)) {
    const result = await packTarball(createReadStream(input), zip, { ...progress, tmpDir: work });
    return { path: zip, size: result.size, sha256: result.sha256 };
  }
  await validateZip(input);
  const hashed = await hashBundle(input);
  return { path: input, size: hashed.size, sha256: hashed.sha256 };
}

async function registryCredentials(
  ctx: CommandContext,
  registry: string,
): Promise<RegistryCredentials | undefined> {
  const username = process.env['LIVEUPDATE_REGISTRY_USERNAME'];
  const password = process.env['LIVEUPDATE_REGISTRY_PASSWORD'];
  if (username && password !== undefined) return { username, password };
  const explicit = optionalString(ctx, 'registry-config');
  const path = explicit
    ? file(ctx, explicit)
    : join(process.env['DOCKER_CONFIG'] ?? join(homedir(), '.docker'), 'config.json');
  let json: string;
  try {
    json = await readFile(path, 'utf8');
  } catch (error) {
    if (explicit) throw error;
    return undefined;
  }
  return credentialsFromDockerConfig(json, registry);
}

async function pushOci(
  ctx: CommandContext,
  to: string,
  version: string,
  packed: Packed,
  signKey: KeyObject | undefined,
  signal: AbortSignal,
) {
  const target = parseReference(to);
  if (target.tag || target.digest)
    throw new UsageError(`--to ${to}: give the repository only; the tag is --tag`);
  const tag = optionalString(ctx, 'tag') ?? version.replace(/\+/g, '_');
  const plainHttp = ctx.values['plain-http'] === true;
  const ca = optionalString(ctx, 'ca-file');
  const cert = optionalString(ctx, 'cert-file');
  const key = optionalString(ctx, 'key-file');
  if (!!cert !== !!key) throw new UsageError('--cert-file and --key-file go together');
  const credentials = await registryCredentials(ctx, target.registry);
  const client = new RegistryClient({
    registry: target.registry,
    plainHttp,
    ...(credentials ? { credentials } : {}),
    ...(ca ? { ca: await readFile(file(ctx, ca), 'utf8') } : {}),
    ...(cert && key
      ? { cert: await readFile(file(ctx, cert), 'utf8'), key: await readFile(file(ctx, key), 'utf8') }
      : {}),
    proxyEnv: process.env,
    userAgent: 'liveupdate-cli',
  });
  const pushed = await pushBundleArtifact(
    client,
    target.repository,
    tag,
    {
      path: packed.path,
      size: packed.size,
      sha256: packed.sha256,
      format: 'zip',
      title: `${basename(target.repository)}-${version}.zip`,
    },
    {
      'org.opencontainers.image.version': version,
      'org.opencontainers.image.created': new Date().toISOString(),
    },
    signal,
  );
  const result: Record<string, unknown> = {
    reference: formatReference({ ...target, tag, digest: pushed.manifestDigest }),
    manifestDigest: pushed.manifestDigest,
  };
  if (signKey) {
    const signed = await signManifest(
      client,
      target.repository,
      pushed.manifestDigest,
      `${target.registry}/${target.repository}`,
      signKey,
      signal,
    );
    result['signatureDigest'] = signed.signatureDigest;
    result['signatureKeyId'] = signed.keyId;
  }
  const secretRef = (option: string) => {
    const value = optionalString(ctx, option);
    return value ? { name: value } : undefined;
  };
  const pullSecret = secretRef('pull-secret');
  const caSecret = secretRef('ca-secret');
  const verifySecret = secretRef('verify-secret');
  const source: LiveUpdateBundle['spec']['source'] = {
    oci: {
      url: `oci://${target.registry}/${target.repository}`,
      ref: { tag, digest: pushed.manifestDigest },
      ...(pullSecret ? { secretRef: pullSecret } : {}),
      ...(caSecret ? { caSecretRef: caSecret } : {}),
      ...(plainHttp ? { insecure: true } : {}),
      ...(verifySecret ? { verify: { provider: 'cosign', secretRef: verifySecret } } : {}),
    },
  };
  return { result, source };
}

async function uploadS3(ctx: CommandContext, to: string, defaultName: string, packed: Packed) {
  const match = /^s3:\/\/([^/]+)\/(.*)$/.exec(to);
  if (!match || !match[2]) throw new UsageError(`--to ${to} must be s3://<bucket>/<key or prefix/>`);
  const bucket = match[1]!;
  const objectKey = match[2].endsWith('/') ? `${match[2]}${defaultName}` : match[2];
  const endpointText = requireString(ctx, 's3-endpoint');
  const endpoint = new URL(endpointText);
  const accessKey = process.env['AWS_ACCESS_KEY_ID'];
  const secretKey = process.env['AWS_SECRET_ACCESS_KEY'];
  if (!accessKey || !secretKey)
    throw new UsageError('s3:// targets need AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY');
  const region = optionalString(ctx, 's3-region');
  const ca = optionalString(ctx, 'ca-file');
  const client = new MinioClient({
    endPoint: endpoint.hostname,
    port: endpoint.port ? Number(endpoint.port) : endpoint.protocol === 'https:' ? 443 : 80,
    useSSL: endpoint.protocol === 'https:',
    accessKey,
    secretKey,
    pathStyle: true,
    ...(region ? { region } : {}),
    ...(ca ? { transportAgent: new HttpsAgent({ ca: await readFile(file(ctx, ca), 'utf8') }) } : {}),
  });
  await client.fPutObject(bucket, objectKey, packed.path, { 'Content-Type': 'application/zip' });
  const pullSecret = optionalString(ctx, 'pull-secret');
  const source: LiveUpdateBundle['spec']['source'] = {
    s3: {
      endpoint: `${endpoint.protocol}//${endpoint.host}`,
      bucket,
      key: objectKey,
      ...(region ? { region } : {}),
      ...(pullSecret ? { secretRef: { name: pullSecret } } : {}),
    },
  };
  return { result: { reference: `s3://${bucket}/${objectKey}` }, source };
}
