/**
 * cosign keyed signatures of OCI manifests, verified and made with node:crypto (docs/adr/0023-cosign-keyed-verification.md).
 *
 * What cosign stores (tag scheme, cosign 2.x default): a manifest tagged `sha256-<hex>.sig` in the artifact's
 * repository, each layer a "simple signing" JSON payload
 * `{"critical":{"identity":{"docker-reference":…},"image":{"docker-manifest-digest":"sha256:…"},"type":"cosign container image signature"},"optional":…}`
 * with the base64 signature of the payload bytes in the layer annotation `dev.cosignproject.cosign/signature`.
 * The same manifest may also be attached as an OCI 1.1 referrer (`--registry-referrers-mode=oci-1-1`).
 *
 * Keyed, air-gapped mode only: no Rekor transparency log, no Fulcio certificates. A signature is accepted when
 * one trusted public key verifies it and its payload names exactly the manifest digest being pulled.
 */
import { createHash, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { OciError } from './errors.js';
import {
  COSIGN_SIGNATURE_ANNOTATION,
  COSIGN_SIGNATURE_ARTIFACT,
  COSIGN_SIGNATURE_TYPE,
  COSIGN_SIMPLE_SIGNING,
  OCI_IMAGE_CONFIG,
  OCI_MANIFEST,
} from './media-types.js';
import { signatureTag } from './reference.js';
import type { Descriptor, ImageManifest, RegistryClient } from './registry-client.js';

const MAX_PAYLOAD_BYTES = 64 * 1024;
const MAX_SIGNATURE_LAYERS = 32;

export interface TrustedKey {
  /** Where the key came from, for messages (e.g. the Secret key name). */
  name: string;
  key: KeyObject;
  /** sha256:<hex> of the DER SubjectPublicKeyInfo: the key id written to status and the release index. */
  keyId: string;
}

export interface VerifiedSignature {
  keyId: string;
  keyName: string;
  /** The manifest digest the signature covers (the one pulled). */
  manifestDigest: string;
  /** Digest of the signature manifest that held the accepted signature. */
  signatureDigest: string;
  /** docker-reference the signer wrote in the payload. */
  dockerReference: string;
}

/** A cosign public key (PEM SubjectPublicKeyInfo, as in cosign.pub): ECDSA P-256/384/521, RSA or Ed25519. */
export function loadTrustedKey(name: string, pem: string): TrustedKey {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch {
    throw new OciError('VerificationKeyInvalid', `${name} is not a PEM public key`);
  }
  const type = key.asymmetricKeyType;
  if (type !== 'ec' && type !== 'rsa' && type !== 'ed25519') {
    throw new OciError(
      'VerificationKeyInvalid',
      `${name} is a ${type ?? 'unknown'} key; cosign keys are ECDSA, RSA or Ed25519`,
    );
  }
  return { name, key, keyId: publicKeyId(key) };
}

export function publicKeyId(key: KeyObject): string {
  const der = key.export({ type: 'spki', format: 'der' });
  return `sha256:${createHash('sha256').update(der).digest('hex')}`;
}

/** The digest cosign pairs with a key: SHA-256, SHA-384 for P-384, SHA-512 for P-521; none for Ed25519. */
function hashFor(key: KeyObject): string | null {
  if (key.asymmetricKeyType === 'ed25519') return null;
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (curve === 'secp384r1') return 'sha384';
  if (curve === 'secp521r1') return 'sha512';
  return 'sha256';
}

export function simpleSigningPayload(dockerReference: string, manifestDigest: string): Buffer {
  return Buffer.from(
    JSON.stringify({
      critical: {
        identity: { 'docker-reference': dockerReference },
        image: { 'docker-manifest-digest': manifestDigest },
        type: COSIGN_SIGNATURE_TYPE,
      },
      optional: null,
    }),
  );
}

/**
 * Looks up the signatures of `manifestDigest` (the `.sig` tag, then OCI 1.1 referrers) and returns the first one a
 * trusted key verifies. Refusals: SignatureMissing (none stored), SignatureInvalid (none verifies with the keys),
 * SignatureDigestMismatch (a valid signature, but for another manifest).
 */
export async function verifyCosignSignature(
  client: RegistryClient,
  repository: string,
  manifestDigest: string,
  keys: readonly TrustedKey[],
  signal: AbortSignal,
): Promise<VerifiedSignature> {
  if (keys.length === 0) throw new OciError('VerificationKeyInvalid', 'no public key to verify with');
  const candidates: Array<{ digest: string; manifest: ImageManifest }> = [];
  try {
    const tagged = await client.manifest(repository, signatureTag(manifestDigest), signal);
    candidates.push({ digest: tagged.digest, manifest: tagged.manifest });
  } catch (error) {
    if (!(error instanceof OciError && error.reason === 'OciManifestNotFound')) throw error;
  }
  if (candidates.length === 0) {
    for (const ref of await client.referrers(repository, manifestDigest, COSIGN_SIGNATURE_ARTIFACT, signal)) {
      const fetched = await client.manifest(repository, ref.digest, signal);
      candidates.push({ digest: fetched.digest, manifest: fetched.manifest });
    }
  }
  if (candidates.length === 0) {
    throw new OciError('SignatureMissing', `no cosign signature is stored for ${manifestDigest}`);
  }
  let coversOther: string | undefined;
  let checked = 0;
  for (const candidate of candidates) {
    const layers = candidate.manifest.layers
      .filter((l) => l.mediaType === COSIGN_SIMPLE_SIGNING && l.annotations?.[COSIGN_SIGNATURE_ANNOTATION])
      .slice(0, MAX_SIGNATURE_LAYERS);
    for (const layer of layers) {
      checked += 1;
      const payload = await client.blobBytes(repository, layer.digest, MAX_PAYLOAD_BYTES, signal);
      const signature = Buffer.from(layer.annotations?.[COSIGN_SIGNATURE_ANNOTATION] ?? '', 'base64');
      const key = keys.find((k) => verify(hashFor(k.key), payload, k.key, signature));
      if (!key) continue;
      const claims = parsePayload(payload);
      if (claims.digest !== manifestDigest) {
        coversOther = claims.digest;
        continue;
      }
      return {
        keyId: key.keyId,
        keyName: key.name,
        manifestDigest,
        signatureDigest: candidate.digest,
        dockerReference: claims.dockerReference,
      };
    }
  }
  if (coversOther) {
    throw new OciError(
      'SignatureDigestMismatch',
      `the signature stored for ${manifestDigest} was made for ${coversOther}`,
    );
  }
  throw new OciError(
    'SignatureInvalid',
    `none of the ${checked} cosign signature(s) of ${manifestDigest} verifies with the trusted key(s) ${keys.map((k) => k.keyId).join(', ')}`,
  );
}

function parsePayload(payload: Buffer): { digest: string; dockerReference: string } {
  try {
    const parsed = JSON.parse(payload.toString('utf8')) as {
      critical?: { type?: string; image?: Record<string, string>; identity?: Record<string, string> };
    };
    const critical = parsed.critical;
    if (critical?.type !== COSIGN_SIGNATURE_TYPE) throw new Error('wrong type');
    return {
      digest: critical.image?.['docker-manifest-digest'] ?? '',
      dockerReference: critical.identity?.['docker-reference'] ?? '',
    };
  } catch {
    throw new OciError('SignatureInvalid', 'the signed payload is not a cosign simple-signing document');
  }
}

/** Signs `manifestDigest` the way `cosign sign --key … --tlog-upload=false` does and stores it under the `.sig` tag. */
export async function signManifest(
  client: RegistryClient,
  repository: string,
  manifestDigest: string,
  dockerReference: string,
  privateKey: KeyObject,
  signal: AbortSignal,
): Promise<{ signatureDigest: string; keyId: string }> {
  const payload = simpleSigningPayload(dockerReference, manifestDigest);
  const publicKey = createPublicKey(privateKey);
  const signature = sign(hashFor(publicKey), payload, privateKey).toString('base64');
  const payloadDescriptor: Descriptor = {
    mediaType: COSIGN_SIMPLE_SIGNING,
    size: payload.length,
    digest: `sha256:${createHash('sha256').update(payload).digest('hex')}`,
    annotations: { [COSIGN_SIGNATURE_ANNOTATION]: signature },
  };
  // The image config cosign writes for a signature "image": one layer, no platform.
  const config = Buffer.from(
    JSON.stringify({
      architecture: '',
      created: '0001-01-01T00:00:00Z',
      history: [{ created: '0001-01-01T00:00:00Z' }],
      os: '',
      rootfs: { type: 'layers', diff_ids: [payloadDescriptor.digest] },
      config: {},
    }),
  );
  const configDescriptor: Descriptor = {
    mediaType: OCI_IMAGE_CONFIG,
    size: config.length,
    digest: `sha256:${createHash('sha256').update(config).digest('hex')}`,
  };
  await client.pushBlob(
    repository,
    { digest: payloadDescriptor.digest, size: payload.length, body: payload },
    signal,
  );
  await client.pushBlob(
    repository,
    { digest: configDescriptor.digest, size: config.length, body: config },
    signal,
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: configDescriptor,
      layers: [payloadDescriptor],
    }),
  );
  const signatureDigest = await client.pushManifest(
    repository,
    signatureTag(manifestDigest),
    manifest,
    OCI_MANIFEST,
    signal,
  );
  return { signatureDigest, keyId: publicKeyId(publicKey) };
}
