// A bundle pulled from a real OCI registry (Distribution v3 on 127.0.0.1, TLS from a test CA, basic auth),
// pushed with the real `oras` and signed with the real `cosign` (keyed, no transparency log). Signed → Ready, the
// provenance lands in status and in the release index, and devices decrypt the original zip. Unsigned, wrong key,
// tampered layer and a moved tag are refused with named reasons and nothing reaches the store.
import { createHash, generateKeyPairSync } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import {
  APP_RESOURCE,
  BUNDLE_RESOURCE,
  CHANNEL_RESOURCE,
  SECRET_RESOURCE,
  type LiveUpdateApp,
  type LiveUpdateBundle,
} from '../../../src/api/v1alpha1/index.js';
import { generateSigningKey, loadPublicKey, verifyBundle } from '../../../src/bundle/index.js';
import { loadTrustedKey } from '../../../src/bundle/oci/index.js';
import { findCondition } from '../../../src/controller/common/conditions.js';
import { webZip } from '../../../src/controller/common/testing/fixtures.js';
import { runCli } from '../../../src/cli/main.js';
import { validateReleaseIndex } from '../../../src/storage/release-index-schema.js';
import { cleanupTestResources, newBucket, newNamespace } from '../../env/fixtures.js';
import { startTestRegistry, type TestRegistry } from '../../env/oci-registry.js';
import { installCrds } from '../api/crds.js';
import { converge, isCurrent, manifests, newHarness, type Harness } from './harness.js';

const COSIGN_PASSWORD = 'test-cosign-password';
const WEBAPP = fileURLToPath(new URL('../../fixtures/webapp', import.meta.url));
let registry: TestRegistry;
let cosignPub: string;
const signingKey = generateSigningKey();

beforeAll(async () => {
  await installCrds();
  registry = await startTestRegistry();
  await registry.run('cosign', ['generate-key-pair'], { COSIGN_PASSWORD });
  cosignPub = await readFile(join(registry.dir, 'cosign.pub'), 'utf8');
});
afterAll(async () => {
  await registry?.stop();
  await cleanupTestResources();
});

/** `oras push <repo>:<tag> <file>` exactly as a user would (default layer media type); returns the manifest digest. */
async function orasPush(
  repository: string,
  tag: string,
  zip: Buffer,
  file = 'bundle.zip',
  reg = registry,
  extra: string[] = [],
): Promise<string> {
  await writeFile(join(reg.dir, file), zip);
  const output = await reg.run('oras', ['push', ...extra, `${reg.host}/${repository}:${tag}`, file]);
  const digest = /Digest:\s*(sha256:[a-f0-9]{64})/.exec(output)?.[1];
  if (!digest) throw new Error(`no digest in the oras output:\n${output}`);
  return digest;
}

function cosignSign(repository: string, digest: string): Promise<string> {
  return registry.run(
    'cosign',
    [
      'sign',
      '--key',
      'cosign.key',
      '--tlog-upload=false',
      '--yes',
      `${registry.host}/${repository}@${digest}`,
    ],
    { COSIGN_PASSWORD },
  );
}

async function secrets(h: Harness, namespace: string, verifyPub = cosignPub, reg = registry): Promise<void> {
  const create = (body: object) => h.user.create(SECRET_RESOURCE, body as never);
  await create({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'demo-key', namespace },
    stringData: { 'private.pem': signingKey.privateKeyPem },
  });
  await create({
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'kubernetes.io/dockerconfigjson',
    metadata: { name: 'registry-pull', namespace },
    stringData: { '.dockerconfigjson': reg.dockerConfigJson },
  });
  await create({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'registry-ca', namespace },
    stringData: { 'ca.crt': reg.ca },
  });
  await create({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'ci-signer', namespace },
    stringData: { 'cosign.pub': verifyPub },
  });
}

function ociSource(
  repository: string,
  ref: { tag?: string; digest?: string },
  verify = true,
  reg = registry,
) {
  return {
    oci: {
      url: `oci://${reg.host}/${repository}`,
      ref,
      secretRef: { name: 'registry-pull' },
      caSecretRef: { name: 'registry-ca' },
      ...(verify ? { verify: { provider: 'cosign' as const, secretRef: { name: 'ci-signer' } } } : {}),
    },
  };
}

async function storedBundles(h: Harness): Promise<string[]> {
  const keys: string[] = [];
  for await (const info of h.store.list(`${h.storagePrefix}/`))
    if (info.key.includes('/bundles/')) keys.push(info.key);
  return keys;
}

describe('LiveUpdateBundle with an oci source', () => {
  it('pulls a plain `oras push` signed with cosign: Ready, provenance in status and index, decrypts to the original', async () => {
    const namespace = await newNamespace('oci-ok');
    const h = newHarness(await newBucket('oci-ok'));
    const zip = await webZip({ 'index.html': '<!doctype html><title>oci</title>', 'main.js': 'ok()' });
    const digest = await orasPush('team/app', '1.0.0', zip);
    await cosignSign('team/app', digest);
    await secrets(h, namespace);
    await h.user.create(APP_RESOURCE, manifests.app(namespace, { signingKey: { secretName: 'demo-key' } }));
    await h.user.create(
      BUNDLE_RESOURCE,
      manifests.bundle(namespace, 'app-1-0-0', {
        version: '1.0.0',
        source: ociSource('team/app', { tag: '1.0.0' }),
      }),
    );
    await h.user.create(
      CHANNEL_RESOURCE,
      manifests.channel(namespace, 'production', { bundle: 'app-1-0-0' }),
    );
    await converge(h, namespace);

    const bundle = await h.user.get<LiveUpdateBundle>(BUNDLE_RESOURCE, { namespace, name: 'app-1-0-0' });
    expect(bundle.status?.conditions).toBeDefined();
    expect({ current: isCurrent(bundle), conditions: bundle.status?.conditions }).toMatchObject({
      current: true,
    });
    const keyId = loadTrustedKey('cosign.pub', cosignPub).keyId;
    expect(bundle.status?.artifact).toMatchObject({
      encrypted: true,
      sha256: createHash('sha256').update(zip).digest('hex'),
      provenance: { ociManifestDigest: digest, signatureProvider: 'cosign', signatureKeyId: keyId },
    });

    const { data } = await h.store.getBuffer(`${h.storagePrefix}/${namespace}/demo/index.json`);
    const served = validateReleaseIndex(JSON.parse(data.toString('utf8'))).bundles['app-1-0-0']!;
    expect(served.provenance).toMatchObject({
      ociManifestDigest: digest,
      signatureProvider: 'cosign',
      signatureKeyId: keyId,
      sourceDigest: `sha256:${createHash('sha256').update(zip).digest('hex')}`,
    });

    const app = await h.user.get<LiveUpdateApp>(APP_RESOURCE, { namespace, name: 'demo' });
    const output = join(registry.dir, `${namespace}.zip`);
    await verifyBundle({
      input: (await h.store.get(served.objectKey))!.body,
      checksum: served.checksum,
      publicKey: loadPublicKey(app.status!.publicKey!),
      sessionKey: served.sessionKey!,
      output,
    });
    expect((await readFile(output)).equals(zip)).toBe(true);
  });

  it('refuses unsigned, wrongly signed, tampered and moved-tag artifacts with named reasons and stores nothing', async () => {
    const namespace = await newNamespace('oci-refuse');
    const h = newHarness(await newBucket('oci-refuse'));
    await secrets(h, namespace);
    const otherPub = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({
      type: 'spki',
      format: 'pem',
    }) as string;
    await h.user.create(SECRET_RESOURCE, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'other-signer', namespace },
      stringData: { 'other.pub': otherPub },
    } as never);
    await h.user.create(APP_RESOURCE, manifests.app(namespace, { signingKey: { secretName: 'demo-key' } }));

    // unsigned: pushed, never signed
    await orasPush('team/refused', 'unsigned', await webZip({ 'index.html': 'unsigned' }));
    // wrong key: signed with cosign.key, verified against another key
    const wrongKeyDigest = await orasPush(
      'team/refused',
      'wrong-key',
      await webZip({ 'index.html': 'wrong key' }),
    );
    await cosignSign('team/refused', wrongKeyDigest);
    // tampered: signed, then the layer bytes are changed in the registry's storage
    const tamperedZip = await webZip({ 'index.html': 'tampered' });
    const tamperedDigest = await orasPush('team/refused', 'tampered', tamperedZip);
    await cosignSign('team/refused', tamperedDigest);
    const layerPath = registry.blobPath(`sha256:${createHash('sha256').update(tamperedZip).digest('hex')}`);
    const evil = await webZip({ 'index.html': 'evil!!!!' });
    expect(evil.length).toBe(tamperedZip.length);
    await writeFile(layerPath, evil);
    // moved tag: the manifest pins digest A (signed), the tag now points at B (also signed)
    const pinned = await orasPush('team/refused', 'moving', await webZip({ 'index.html': 'first' }));
    await cosignSign('team/refused', pinned);
    const moved = await orasPush('team/refused', 'moving', await webZip({ 'index.html': 'second' }));
    await cosignSign('team/refused', moved);
    expect(moved).not.toBe(pinned);

    const cases: Array<[string, string, ReturnType<typeof ociSource>, string, string]> = [
      [
        'unsigned',
        '2.0.0',
        ociSource('team/refused', { tag: 'unsigned' }),
        'SignatureMissing',
        'VerificationFailed',
      ],
      [
        'wrong-key',
        '2.0.1',
        ociSource('team/refused', { tag: 'wrong-key' }),
        'SignatureInvalid',
        'VerificationFailed',
      ],
      [
        'tampered',
        '2.0.2',
        ociSource('team/refused', { tag: 'tampered' }),
        'OciDigestMismatch',
        'FetchFailed',
      ],
      [
        'moved-tag',
        '2.0.3',
        ociSource('team/refused', { tag: 'moving', digest: pinned }),
        'OciTagMoved',
        'FetchFailed',
      ],
    ];
    const wrong = cases[1]![2].oci;
    wrong.verify = { provider: 'cosign', secretRef: { name: 'other-signer' } };
    for (const [name, version, source] of cases)
      await h.user.create(BUNDLE_RESOURCE, manifests.bundle(namespace, name, { version, source }));
    await converge(h, namespace);

    for (const [name, , , reason, negative] of cases) {
      const bundle = await h.user.get<LiveUpdateBundle>(BUNDLE_RESOURCE, { namespace, name });
      expect({ name, stalled: findCondition(bundle.status?.conditions, 'Stalled') }).toMatchObject({
        name,
        stalled: { status: 'True', reason },
      });
      expect({ name, negative: findCondition(bundle.status?.conditions, negative) }).toMatchObject({
        name,
        negative: { status: 'True', reason },
      });
      expect(bundle.status?.artifact).toBeUndefined();
    }
    expect(await storedBundles(h)).toEqual([]);
  });

  it('pulls through HTTPS_PROXY (CONNECT) from a registry that requires a client certificate (certSecretRef)', async () => {
    const mtls = await startTestRegistry({ clientCertificates: true });
    const tunnels: string[] = [];
    const proxy = createServer();
    const sockets: Duplex[] = [];
    proxy.on('connect', (req: IncomingMessage, client: Duplex, head: Buffer) => {
      tunnels.push(String(req.url));
      sockets.push(client);
      const [host, port] = String(req.url).split(':');
      const upstream = connect(Number(port), host ?? '127.0.0.1', () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        upstream.write(head);
        upstream.pipe(client);
        client.pipe(upstream);
      });
      sockets.push(upstream);
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    try {
      const clientCert = mtls.authority.issue('client', 'liveupdate-controller');
      await writeFile(join(mtls.dir, 'client.crt'), clientCert.cert);
      await writeFile(join(mtls.dir, 'client.key'), clientCert.key);
      const zip = await webZip({ 'index.html': 'mtls' });
      await orasPush('team/mtls', '1.0.0', zip, 'bundle.zip', mtls, [
        '--cert-file',
        'client.crt',
        '--key-file',
        'client.key',
      ]);
      const namespace = await newNamespace('oci-mtls');
      const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
      const h = newHarness(await newBucket('oci-mtls'), undefined, { proxyEnv: { HTTPS_PROXY: proxyUrl } });
      await secrets(h, namespace, cosignPub, mtls);
      await h.user.create(SECRET_RESOURCE, {
        apiVersion: 'v1',
        kind: 'Secret',
        type: 'kubernetes.io/tls',
        metadata: { name: 'registry-client', namespace },
        stringData: { 'tls.crt': clientCert.cert, 'tls.key': clientCert.key },
      } as never);
      await h.user.create(APP_RESOURCE, manifests.app(namespace));
      const source = ociSource('team/mtls', { tag: '1.0.0' }, false, mtls);
      await h.user.create(
        BUNDLE_RESOURCE,
        manifests.bundle(namespace, 'with-cert', {
          version: '1.0.0',
          source: { oci: { ...source.oci, certSecretRef: { name: 'registry-client' } } },
        }),
      );
      await h.user.create(
        BUNDLE_RESOURCE,
        manifests.bundle(namespace, 'without-cert', { version: '1.0.1', source }),
      );
      await converge(h, namespace);

      const withCert = await h.user.get<LiveUpdateBundle>(BUNDLE_RESOURCE, { namespace, name: 'with-cert' });
      expect({ current: isCurrent(withCert), conditions: withCert.status?.conditions }).toMatchObject({
        current: true,
      });
      expect(withCert.status?.artifact?.sha256).toBe(createHash('sha256').update(zip).digest('hex'));
      const withoutCert = await h.user.get<LiveUpdateBundle>(BUNDLE_RESOURCE, {
        namespace,
        name: 'without-cert',
      });
      expect(findCondition(withoutCert.status?.conditions, 'Stalled')).toMatchObject({
        status: 'True',
        reason: 'SourceCertificateInvalid',
      });
      expect(tunnels.length).toBeGreaterThan(0);
      expect(new Set(tunnels)).toEqual(new Set([mtls.host]));
    } finally {
      // Tunnelled sockets are no longer the server's: close them, or close() waits for them.
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
      await mtls.stop();
    }
  });

  it('pulls over plain HTTP only with insecure, picks the layerSelector layer, and takes what `bundle publish --plain-http` emits', async () => {
    const plain = await startTestRegistry({ plainHttp: true });
    try {
      const namespace = await newNamespace('oci-plain');
      const h = newHarness(await newBucket('oci-plain'));
      await h.user.create(SECRET_RESOURCE, {
        apiVersion: 'v1',
        kind: 'Secret',
        type: 'kubernetes.io/dockerconfigjson',
        metadata: { name: 'registry-pull', namespace },
        stringData: { '.dockerconfigjson': plain.dockerConfigJson },
      } as never);
      await h.user.create(APP_RESOURCE, manifests.app(namespace));

      // Two files in one artifact: the bundle and release notes.
      const zip = await webZip({ 'index.html': 'two layers' });
      await writeFile(join(plain.dir, 'bundle.zip'), zip);
      await writeFile(join(plain.dir, 'notes.txt'), 'release notes');
      await plain.run('oras', [
        'push',
        '--plain-http',
        `${plain.host}/team/multi:1.0.0`,
        'bundle.zip:application/zip',
        'notes.txt:text/plain',
      ]);
      const base = {
        url: `oci://${plain.host}/team/multi`,
        ref: { tag: '1.0.0' },
        secretRef: { name: 'registry-pull' },
      };

      // What CI emits for a plain-HTTP registry (the CLI in-process, credentials from a docker config file).
      await writeFile(join(plain.dir, 'config.json'), plain.dockerConfigJson);
      let stdout = '';
      const code = await runCli(
        [
          'bundle',
          'publish',
          WEBAPP,
          '--app',
          'demo',
          '--version',
          '4.0.0',
          '--namespace',
          namespace,
          '--to',
          `oci://${plain.host}/team/published`,
          '--plain-http',
          '--registry-config',
          join(plain.dir, 'config.json'),
          '--pull-secret',
          'registry-pull',
          '--json',
        ],
        { stdout: (t) => (stdout += t), stderr: () => undefined, stderrIsTTY: false, cwd: plain.dir },
      );
      expect(code).toBe(0);
      const published = parseYaml(
        String((JSON.parse(stdout) as { manifest: string }).manifest),
      ) as LiveUpdateBundle;
      expect(published.spec.source.oci).toMatchObject({
        insecure: true,
        secretRef: { name: 'registry-pull' },
      });

      await h.user.create(BUNDLE_RESOURCE, published);
      await h.user.create(
        BUNDLE_RESOURCE,
        manifests.bundle(namespace, 'selected', {
          version: '4.1.0',
          source: { oci: { ...base, insecure: true, layerSelector: { mediaType: 'application/zip' } } },
        }),
      );
      await h.user.create(
        BUNDLE_RESOURCE,
        manifests.bundle(namespace, 'ambiguous', {
          version: '4.1.1',
          source: { oci: { ...base, insecure: true } },
        }),
      );
      await h.user.create(
        BUNDLE_RESOURCE,
        manifests.bundle(namespace, 'not-insecure', {
          version: '4.1.2',
          source: { oci: { ...base, layerSelector: { mediaType: 'application/zip' } } },
        }),
      );
      await converge(h, namespace);

      const get = (name: string) => h.user.get<LiveUpdateBundle>(BUNDLE_RESOURCE, { namespace, name });
      const fromCli = await get(published.metadata.name);
      expect({ current: isCurrent(fromCli), conditions: fromCli.status?.conditions }).toMatchObject({
        current: true,
      });
      expect(`sha256:${fromCli.status?.artifact?.sha256}`).toBe(published.spec.digest);
      const selected = await get('selected');
      expect(isCurrent(selected)).toBe(true);
      expect(selected.status?.artifact?.sha256).toBe(createHash('sha256').update(zip).digest('hex'));
      expect(findCondition((await get('ambiguous')).status?.conditions, 'Stalled')).toMatchObject({
        status: 'True',
        reason: 'OciLayerAmbiguous',
      });
      // Without insecure the controller speaks TLS to the plain-HTTP registry and never gets the artifact.
      const notInsecure = await get('not-insecure');
      expect(notInsecure.status?.artifact).toBeUndefined();
      expect(findCondition(notInsecure.status?.conditions, 'FetchFailed')?.status).toBe('True');
    } finally {
      await plain.stop();
    }
  });
});
