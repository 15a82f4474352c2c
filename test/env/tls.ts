// Test certificates: a throwaway CA that issues server certificates for 127.0.0.1 and client certificates (mTLS).
// forge builds the structures, node:crypto signs them (forge's RSA is slow under Jest).
import { generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import forge from 'node-forge';

export interface IssuedCertificate {
  /** PEM certificate. */
  readonly cert: string;
  /** PEM PKCS#1 private key. */
  readonly key: string;
}

export interface TestCertificateAuthority extends IssuedCertificate {
  /** A certificate for 127.0.0.1 (server) or with the given common name (client), signed by this CA. */
  issue(kind: 'server' | 'client', commonName?: string): IssuedCertificate;
}

/** forge builds the to-be-signed structure but does not declare it in its types. */
const tbsCertificate = (cert: forge.pki.Certificate): forge.asn1.Asn1 =>
  (
    forge.pki as unknown as { getTBSCertificate(c: forge.pki.Certificate): forge.asn1.Asn1 }
  ).getTBSCertificate(cert);

function build(
  subject: string,
  issuer: { name: string; key: KeyObject } | undefined,
  extensions: object[],
): IssuedCertificate & { privateKey: KeyObject } {
  const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(
    pair.publicKey.export({ type: 'spki', format: 'pem' }) as string,
  );
  cert.serialNumber = `01${randomBytes(8).toString('hex')}`;
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + 24 * 3_600_000);
  cert.setSubject([{ name: 'commonName', value: subject }]);
  cert.setIssuer([{ name: 'commonName', value: issuer?.name ?? subject }]);
  cert.setExtensions(extensions);
  cert.siginfo.algorithmOid = forge.pki.oids['sha256WithRSAEncryption']!;
  cert.signatureOid = forge.pki.oids['sha256WithRSAEncryption']!;
  const tbs = Buffer.from(forge.asn1.toDer(tbsCertificate(cert)).getBytes(), 'binary');
  cert.signature = sign('sha256', tbs, issuer?.key ?? pair.privateKey).toString('binary');
  return {
    cert: forge.pki.certificateToPem(cert),
    key: pair.privateKey.export({ type: 'pkcs1', format: 'pem' }) as string,
    privateKey: pair.privateKey,
  };
}

/** A self-signed certificate for 127.0.0.1 that is its own CA (trust it by passing it as the CA bundle). */
export function selfSignedCertificate(): IssuedCertificate {
  const { cert, key } = build('artifact-test', undefined, [
    { name: 'basicConstraints', cA: true },
    { name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] },
  ]);
  return { cert, key };
}

export function testCertificateAuthority(name = 'liveupdate-test-ca'): TestCertificateAuthority {
  const ca = build(name, undefined, [
    { name: 'basicConstraints', cA: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true },
  ]);
  return {
    cert: ca.cert,
    key: ca.key,
    issue(kind, commonName) {
      const extensions =
        kind === 'server'
          ? [
              { name: 'basicConstraints', cA: false },
              { name: 'extKeyUsage', serverAuth: true },
              {
                name: 'subjectAltName',
                altNames: [
                  { type: 7, ip: '127.0.0.1' },
                  { type: 2, value: 'localhost' },
                ],
              },
            ]
          : [
              { name: 'basicConstraints', cA: false },
              { name: 'extKeyUsage', clientAuth: true },
            ];
      const { cert, key } = build(
        commonName ?? (kind === 'server' ? '127.0.0.1' : 'client'),
        {
          name,
          key: ca.privateKey,
        },
        extensions,
      );
      return { cert, key };
    },
  };
}
