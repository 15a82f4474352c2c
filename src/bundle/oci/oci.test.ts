import { generateKeyPairSync, sign } from 'node:crypto';
import { credentialsFromDockerConfig } from './docker-config.js';
import { OciError } from './errors.js';
import { loadTrustedKey, publicKeyId, simpleSigningPayload } from './cosign.js';
import { selectBundleLayer } from './artifact.js';
import { BUNDLE_ZIP_LAYER } from './media-types.js';
import { parseReference, signatureTag } from './reference.js';
import type { ImageManifest } from './registry-client.js';

const digest = `sha256:${'a'.repeat(64)}`;

function reason(run: () => unknown): string | undefined {
  try {
    run();
  } catch (error) {
    if (error instanceof OciError) return error.reason;
    throw error;
  }
  return undefined;
}

describe('parseReference', () => {
  it('reads registry, repository, tag and digest, with or without oci://', () => {
    expect(parseReference('oci://127.0.0.1:5000/team/app:1.0.0')).toEqual({
      registry: '127.0.0.1:5000',
      repository: 'team/app',
      tag: '1.0.0',
    });
    expect(parseReference(`registry.internal/a/b/c@${digest}`)).toEqual({
      registry: 'registry.internal',
      repository: 'a/b/c',
      digest,
    });
  });

  it.each(['app:1.0', 'host/UPPER', 'host/app:bad tag', 'host/app@sha256:short', 'host/app@x@y'])(
    'refuses %s',
    (text) => expect(reason(() => parseReference(text))).toBe('OciReferenceInvalid'),
  );

  it('names the cosign signature tag after the digest', () => {
    expect(signatureTag(digest)).toBe(`sha256-${'a'.repeat(64)}.sig`);
  });
});

describe('credentialsFromDockerConfig', () => {
  const auth = Buffer.from('robot$ci:s3cr:et').toString('base64');
  it('finds the entry by host, with or without a scheme, and splits user:password at the first colon', () => {
    const json = JSON.stringify({ auths: { 'https://reg.internal:5000/v1/': { auth } } });
    expect(credentialsFromDockerConfig(json, 'reg.internal:5000')).toEqual({
      username: 'robot$ci',
      password: 's3cr:et',
    });
    expect(credentialsFromDockerConfig(json, 'other.internal')).toBeUndefined();
  });
  it('refuses what is not a docker config', () => {
    expect(reason(() => credentialsFromDockerConfig('nope', 'x'))).toBe('OciDockerConfigInvalid');
    expect(reason(() => credentialsFromDockerConfig('{}', 'x'))).toBe('OciDockerConfigInvalid');
  });
});

describe('selectBundleLayer', () => {
  const layer = (mediaType: string, n: number) => ({
    mediaType,
    digest: `sha256:${String(n).repeat(64)}`,
    size: n,
  });
  const manifest = (...layers: ReturnType<typeof layer>[]): ImageManifest => ({
    schemaVersion: 2,
    config: layer('application/vnd.oci.empty.v1+json', 0),
    layers,
  });
  it('takes the only layer of a plain oras push, our media type among several, or the selected one', () => {
    const oras = layer('application/vnd.oci.image.layer.v1.tar', 1);
    expect(selectBundleLayer(manifest(oras))).toBe(oras);
    const ours = layer(BUNDLE_ZIP_LAYER, 2);
    expect(selectBundleLayer(manifest(oras, ours))).toBe(ours);
    expect(selectBundleLayer(manifest(oras, ours), 'application/vnd.oci.image.layer.v1.tar')).toBe(oras);
  });
  it('refuses ambiguity and an absent selected type', () => {
    const a = layer('application/x-a', 1);
    const b = layer('application/x-b', 2);
    expect(reason(() => selectBundleLayer(manifest(a, b)))).toBe('OciLayerAmbiguous');
    expect(reason(() => selectBundleLayer(manifest(a), 'application/x-c'))).toBe('OciLayerAmbiguous');
  });
});

describe('cosign keys and payloads', () => {
  it('key id is the sha256 of the DER public key; payload has the simple-signing shape', () => {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pem = publicKey.export({ type: 'spki', format: 'pem' }) as string;
    const key = loadTrustedKey('cosign.pub', pem);
    expect(key.keyId).toMatch(/^sha256:[a-f0-9]{64}$/);
    expect(key.keyId).toBe(publicKeyId(publicKey));
    const payload = simpleSigningPayload('reg/app', digest);
    expect(JSON.parse(payload.toString())).toEqual({
      critical: {
        identity: { 'docker-reference': 'reg/app' },
        image: { 'docker-manifest-digest': digest },
        type: 'cosign container image signature',
      },
      optional: null,
    });
    expect(sign('sha256', payload, privateKey).length).toBeGreaterThan(60);
  });
  it('refuses keys that are not public keys cosign uses', () => {
    expect(reason(() => loadTrustedKey('x.pub', 'not pem'))).toBe('VerificationKeyInvalid');
    const dsa = generateKeyPairSync('dsa', { modulusLength: 1024, divisorLength: 160 }).publicKey;
    expect(reason(() => loadTrustedKey('x.pub', dsa.export({ type: 'spki', format: 'pem' }) as string))).toBe(
      'VerificationKeyInvalid',
    );
  });
});
