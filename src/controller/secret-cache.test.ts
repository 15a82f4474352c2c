import { SECRET_RESOURCE } from '../api/v1alpha1/index.js';
import { FakeClock } from '../kube/clock.js';
import { KubeApiError, type ObjectKey } from '../kube/types.js';
import { FakeObjectClient } from './common/testing/fake-client.js';
import { NS, seedSecret } from './common/testing/fixtures.js';
import { ABSENT, SecretCache } from './secret-cache.js';

const TOKEN: ObjectKey = { namespace: NS, name: 'token' };

function setup(maxAgeMs = 30_000) {
  const client = new FakeObjectClient();
  seedSecret(client, 'token', { token: 'one' });
  const clock = new FakeClock();
  const cache = new SecretCache({ client, maxAgeMs, clock });
  const gets = () => client.calls.filter((c) => c.startsWith('get Secret')).length;
  const setToken = (value: string) =>
    client.mergePatch(SECRET_RESOURCE, TOKEN, { data: { token: Buffer.from(value).toString('base64') } });
  const token = async (opts = {}) => {
    const secret = await cache.get(TOKEN, opts);
    return secret && Buffer.from(secret.data!['token']!, 'base64').toString();
  };
  return { client, clock, cache, gets, setToken, token };
}

describe('SecretCache', () => {
  it('serves a read for maxAge, then reads the API server again', async () => {
    const { clock, gets, setToken, token } = setup();
    expect(await token()).toBe('one');
    await setToken('two');
    await clock.advance(29_999);
    expect(await token()).toBe('one');
    expect(gets()).toBe(1);
    await clock.advance(1);
    expect(await token()).toBe('two');
    expect(gets()).toBe(2);
  });

  it('reads the API server for a fresh read (a reconcile request) and serves that copy afterwards', async () => {
    const { gets, setToken, token } = setup();
    await token();
    await setToken('two');
    expect(await token({ fresh: true })).toBe('two');
    expect(await token()).toBe('two');
    expect(gets()).toBe(2);
  });

  it('shares one request between concurrent reads', async () => {
    const { gets, token } = setup();
    expect(await Promise.all([token(), token(), token()])).toEqual(['one', 'one', 'one']);
    expect(gets()).toBe(1);
  });

  it('reads a missing Secret as undefined, recorded as absent for its reader, and throws other errors', async () => {
    const { client, cache } = setup();
    const missing = { namespace: NS, name: 'missing' };
    expect(await cache.get(missing, { reader: 'r' })).toBeUndefined();
    expect(cache.versionReadBy(missing, 'r')).toBe(ABSENT);
    expect(cache.versionReadBy(missing, 'other')).toBeUndefined();
    client.failNext.get = new KubeApiError('Forbidden', 403, 'secrets is forbidden');
    await expect(cache.get({ namespace: NS, name: 'other' })).rejects.toThrow('forbidden');
  });

  it('records the version each reader got, and refresh replaces the copy later reads get', async () => {
    const { cache, setToken, token } = setup();
    await cache.get(TOKEN, { reader: 'a' });
    const first = cache.versionReadBy(TOKEN, 'a');
    await setToken('two');
    const second = await cache.refresh(TOKEN);
    expect(second).not.toBe(first);
    expect(cache.versionReadBy(TOKEN, 'a')).toBe(first);
    expect(await token({ reader: 'b' })).toBe('two');
    expect(cache.versionReadBy(TOKEN, 'b')).toBe(second);
  });

  it('hands out frozen copies: a reconcile cannot change what the next one reads', async () => {
    const { cache } = setup();
    const secret = await cache.get(TOKEN);
    expect(Object.isFrozen(secret)).toBe(true);
    expect(Object.isFrozen(secret!.data)).toBe(true);
    expect(() => {
      secret!.data!['token'] = 'x';
    }).toThrow(TypeError);
  });

  it('forgets Secrets and readers that are no longer referenced', async () => {
    const { cache, gets } = setup();
    await cache.get(TOKEN, { reader: 'a' });
    await cache.get(TOKEN, { reader: 'b' });
    cache.retain(new Map([[`${NS}/token`, new Set(['a'])]]));
    expect(cache.versionReadBy(TOKEN, 'a')).toBeDefined();
    expect(cache.versionReadBy(TOKEN, 'b')).toBeUndefined();
    cache.retain(new Map());
    expect(cache.versionReadBy(TOKEN, 'a')).toBeUndefined();
    await cache.get(TOKEN);
    expect(gets()).toBe(2);
  });

  it('keeps at most maxEntries Secrets', async () => {
    const client = new FakeObjectClient();
    for (const name of ['s1', 's2', 's3']) seedSecret(client, name, { k: name });
    const cache = new SecretCache({ client, maxAgeMs: 30_000, maxEntries: 2, clock: new FakeClock() });
    for (const name of ['s1', 's2', 's3', 's1']) await cache.get({ namespace: NS, name });
    expect(client.calls.filter((c) => c.startsWith('get Secret'))).toHaveLength(4);
  });
});
