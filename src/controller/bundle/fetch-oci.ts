/**
 * The OCI source: resolve the reference to a manifest digest (a tag must still name a pinned digest), verify the
 * cosign signature of that digest when asked (before a byte of the bundle is downloaded), then stream the bundle
 * layer to disk under the same size limit, timeout and abort as the other sources, and check it against the layer
 * digest the signed manifest names. Registry refusals stall with the library's reason; transport failures retry.
 */
import { rm } from 'node:fs/promises';
import { Reason, type OciSource } from '../../api/v1alpha1/index.js';
import {
  OciError,
  RegistryClient,
  credentialsFromDockerConfig,
  loadTrustedKey,
  RegistryHttpError,
  selectBundleLayer,
  verifyCosignSignature,
  type RegistryCredentials,
  type TrustedKey,
} from '../../bundle/oci/index.js';
import { StallingError } from '../common/errors.js';
import { httpStatusError, writeHashed, type FetchRequest, type FetchedArtifact } from './fetch.js';

export interface OciFetchOptions {
  credentials?: RegistryCredentials;
  ca?: string;
  cert?: string;
  key?: string;
  /** Public keys from spec.source.oci.verify; verification is required when set. */
  trustedKeys?: TrustedKey[];
}

/** PEM client certificate and key (keys tls.crt, tls.key) of a kubernetes.io/tls Secret, for mutual TLS. */
export function clientCertificate(shown: string, data: Map<string, Buffer>): { cert: string; key: string } {
  const cert = data.get('tls.crt')?.toString('utf8');
  const key = data.get('tls.key')?.toString('utf8');
  if (!cert || !key) {
    throw new StallingError(Reason.SourceSecretInvalid, `Secret ${shown} needs keys tls.crt and tls.key`);
  }
  return { cert, key };
}

/**
 * Credentials, trust and verification keys of an OCI source from the Secrets it names (a missing Secret or key
 * stalls): pull credentials for the registry host from .dockerconfigjson, a CA bundle, a client certificate,
 * and every `*.pub` entry of the verify Secret as a trusted cosign key.
 */
export async function ociFetchOptions(
  source: OciSource,
  namespace: string,
  secret: (name: string) => Promise<Map<string, Buffer>>,
): Promise<OciFetchOptions> {
  const { registry } = splitOciUrl(source.url);
  const options: OciFetchOptions = {};
  const fail = (name: string, why: string, reason: string = Reason.SourceSecretInvalid) =>
    new StallingError(reason, `Secret ${namespace}/${name} ${why}`);
  if (source.secretRef) {
    const name = source.secretRef.name;
    const config = (await secret(name)).get('.dockerconfigjson');
    if (!config) throw fail(name, 'has no key .dockerconfigjson (type kubernetes.io/dockerconfigjson)');
    try {
      const credentials = credentialsFromDockerConfig(config.toString('utf8'), registry);
      if (!credentials) throw fail(name, `has no credentials for ${registry}`);
      options.credentials = credentials;
    } catch (error) {
      if (error instanceof OciError) throw fail(name, error.message, error.reason);
      throw error;
    }
  }
  if (source.caSecretRef) {
    const entry = source.caSecretRef.key ?? 'ca.crt';
    const ca = (await secret(source.caSecretRef.name)).get(entry);
    if (!ca) throw fail(source.caSecretRef.name, `has no key ${entry}`);
    options.ca = ca.toString('utf8');
  }
  if (source.certSecretRef) {
    const name = source.certSecretRef.name;
    Object.assign(options, clientCertificate(`${namespace}/${name}`, await secret(name)));
  }
  if (source.verify) {
    const name = source.verify.secretRef.name;
    const keys = [...(await secret(name)).entries()]
      .filter(([entry]) => entry.endsWith('.pub'))
      .map(([entry, pem]) => {
        try {
          return loadTrustedKey(`${name}/${entry}`, pem.toString('utf8'));
        } catch (error) {
          if (error instanceof OciError) throw fail(name, error.message, error.reason);
          throw error;
        }
      });
    if (keys.length === 0) throw fail(name, 'has no *.pub public key', Reason.VerificationKeyInvalid);
    options.trustedKeys = keys;
  }
  return options;
}

/** Registry and repository of `oci://host[:port]/path`. */
export function splitOciUrl(url: string): { registry: string; repository: string } {
  const rest = url.replace(/^oci:\/\//, '');
  const slash = rest.indexOf('/');
  return { registry: rest.slice(0, slash), repository: rest.slice(slash + 1) };
}

export async function fetchOci(
  source: OciSource,
  request: FetchRequest,
  signal: AbortSignal,
  classify: (what: string, error: unknown) => Error,
): Promise<FetchedArtifact> {
  const { registry, repository } = splitOciUrl(source.url);
  const options = request.oci ?? {};
  const client = new RegistryClient({
    registry,
    plainHttp: source.insecure === true,
    ...(options.credentials ? { credentials: options.credentials } : {}),
    ...(options.ca ? { ca: options.ca } : {}),
    ...(options.cert && options.key ? { cert: options.cert, key: options.key } : {}),
    ...(request.proxyEnv ? { proxyEnv: request.proxyEnv } : {}),
    userAgent: 'liveupdate-controller',
  });
  const shown = `${registry}/${repository}`;
  try {
    const { tag, digest } = source.ref;
    const manifest = await client.manifest(repository, tag ?? digest ?? '', signal);
    if (tag && digest && manifest.digest !== digest) {
      throw new StallingError(
        Reason.OciTagMoved,
        `${shown}:${tag} now resolves to ${manifest.digest}, spec.source.oci.ref.digest pins ${digest}`,
      );
    }
    const verified = options.trustedKeys
      ? await verifyCosignSignature(client, repository, manifest.digest, options.trustedKeys, signal)
      : undefined;
    const layer = selectBundleLayer(manifest.manifest, source.layerSelector?.mediaType);
    if (layer.size > request.maxBytes) {
      throw new StallingError(
        Reason.ArtifactTooLarge,
        `${shown}@${manifest.digest} has a ${layer.size}-byte bundle layer, more than the limit of ${request.maxBytes}`,
      );
    }
    const body = await client.blob(repository, layer.digest, signal);
    const fetched = await writeHashed(body, request.destination, request.maxBytes, signal);
    if (`sha256:${fetched.sha256}` !== layer.digest || fetched.size !== layer.size) {
      await rm(request.destination, { force: true });
      throw new StallingError(
        Reason.OciDigestMismatch,
        `the bundle layer of ${shown}@${manifest.digest} has ${fetched.size} bytes with sha256:${fetched.sha256}, the manifest names ${layer.size} bytes with ${layer.digest}`,
      );
    }
    return {
      ...fetched,
      provenance: {
        ociManifestDigest: manifest.digest,
        ...(verified
          ? {
              signatureProvider: 'cosign',
              signatureKeyId: verified.keyId,
              signatureDigest: verified.signatureDigest,
            }
          : {}),
      },
    };
  } catch (error) {
    if (error instanceof OciError) {
      const reason =
        error.reason === 'OciUnauthorized'
          ? Reason.SourceUnauthorized
          : error.reason === 'OciManifestNotFound'
            ? Reason.SourceNotFound
            : error.reason;
      throw new StallingError(reason, `${shown}: ${error.message}`);
    }
    if (error instanceof RegistryHttpError) {
      throw httpStatusError(`${shown} (${error.message})`, error.status);
    }
    throw classify(`fetching ${shown}`, error);
  }
}
