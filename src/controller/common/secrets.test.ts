import type { LiveUpdateApp } from '../../api/v1alpha1/index.js';
import { generateSigningKey } from '../../bundle/index.js';
import type { SecretObject, SecretReader } from '../secret-cache.js';
import { StallingError } from './errors.js';
import { readSigningKey } from './secrets.js';

const app: LiveUpdateApp = {
  apiVersion: 'liveupdate.dev/v1alpha1',
  kind: 'LiveUpdateApp',
  metadata: { name: 'demo', namespace: 'ns' },
  spec: { appId: 'com.example.demo', signingKey: { secretName: 'demo-key' } },
};
const pem = generateSigningKey().privateKeyPem;

function secretWith(value: string, frozen: boolean): SecretObject {
  const data = { 'private.pem': Buffer.from(value).toString('base64') };
  const secret = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'demo-key', namespace: 'ns' }, data };
  // what the SecretCache shares: deep-frozen, one object per version read
  return frozen ? Object.freeze({ ...secret, data: Object.freeze(data) }) : secret;
}

const readerOf = (current: () => SecretObject): SecretReader => ({ get: () => Promise.resolve(current()) });

describe('readSigningKey', () => {
  it('parses the key of a shared Secret copy once, and again for another version', async () => {
    let copy = secretWith(pem, true);
    const reader = readerOf(() => copy);
    const first = await readSigningKey(reader, app);
    expect(await readSigningKey(reader, app)).toBe(first);

    copy = secretWith(pem, true);
    const next = await readSigningKey(reader, app);
    expect(next).not.toBe(first);
    expect(next?.keyId).toBe(first?.keyId);
  });

  it('parses a copy of its own every time and never remembers a refused key', async () => {
    const own = readerOf(() => secretWith(pem, false));
    expect(await readSigningKey(own, app)).not.toBe(await readSigningKey(own, app));

    const broken = secretWith('not a key', true);
    const reader = readerOf(() => broken);
    await expect(readSigningKey(reader, app)).rejects.toBeInstanceOf(StallingError);
    await expect(readSigningKey(reader, app)).rejects.toBeInstanceOf(StallingError);
  });
});
