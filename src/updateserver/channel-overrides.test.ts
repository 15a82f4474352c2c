/**
 * Legacy plugins' server-side channel overrides (ADR 0016): hashed device ids, expiry, a bound per shard, and
 * conditional writes so that two replicas never lose each other's entries.
 */
import { silentLogger } from '../observability/logger.js';
import { StorageLayout } from '../storage/layout.js';
import { MemoryObjectStore } from '../storage/memory-store.js';
import { ChannelOverrides, deviceKey } from './channel-overrides.js';

const app = { namespace: 'apps', name: 'example' };
const layout = new StorageLayout('lu');
const id = (i: number): string => `${i.toString(16).padStart(8, '0')}-1111-4222-8333-444455556666`;

function overrides(
  store: MemoryObjectStore,
  now: () => number,
  extra: { maxPerShard?: number } = {},
): ChannelOverrides {
  return new ChannelOverrides({
    store,
    layout,
    logger: silentLogger(),
    cacheSeconds: 0,
    ttlSeconds: 60,
    now,
    ...extra,
  });
}

describe('ChannelOverrides', () => {
  it('stores, reads and removes a device override under a hashed key', async () => {
    const store = new MemoryObjectStore('b');
    const o = overrides(store, () => 1000);
    expect(await o.get(app, id(1))).toBeUndefined();
    expect(await o.set(app, id(1).toUpperCase(), 'beta')).toBe(true);
    expect(await o.get(app, id(1))).toBe('beta');
    const key = layout.channelOverridesKey(app, deviceKey(id(1)).slice(0, 2));
    const doc = (await store.getBuffer(key)).data.toString('utf8');
    expect(doc).toContain(deviceKey(id(1)));
    expect(doc).not.toContain(id(1));
    expect(await o.set(app, id(1), undefined)).toBe(true);
    expect(await o.get(app, id(1))).toBeUndefined();
    expect(await o.set(app, id(1), undefined)).toBe(false);
  });

  it('expires entries after the TTL', async () => {
    let now = 0;
    const o = overrides(new MemoryObjectStore('b'), () => now);
    await o.set(app, id(2), 'beta');
    now = 59_000;
    expect(await o.get(app, id(2))).toBe('beta');
    now = 60_000;
    expect(await o.get(app, id(2))).toBeUndefined();
  });

  it('keeps at most maxPerShard entries per shard, dropping the oldest', async () => {
    let now = 0;
    const o = overrides(new MemoryObjectStore('b'), () => now, { maxPerShard: 2 });
    // Devices of one shard: find three ids whose hashes share the first two hex digits.
    const shard = deviceKey(id(0)).slice(0, 2);
    const same = [id(0)];
    for (let i = 1; same.length < 3; i++) if (deviceKey(id(i)).slice(0, 2) === shard) same.push(id(i));
    for (const d of same) {
      now += 1;
      await o.set(app, d, 'beta');
    }
    expect(await o.get(app, same[0]!)).toBeUndefined();
    expect(await o.get(app, same[1]!)).toBe('beta');
    expect(await o.get(app, same[2]!)).toBe('beta');
  });

  it('two replicas writing the same shard keep both entries (conditional writes, retried)', async () => {
    const store = new MemoryObjectStore('b');
    const a = overrides(store, () => 1);
    const b = overrides(store, () => 1);
    const shard = deviceKey(id(0)).slice(0, 2);
    let other = 1;
    while (deviceKey(id(other)).slice(0, 2) !== shard) other++;
    // Both read the (empty) shard before either writes.
    await Promise.all([a.get(app, id(0)), b.get(app, id(other))]);
    await Promise.all([a.set(app, id(0), 'beta'), b.set(app, id(other), 'next')]);
    const fresh = overrides(store, () => 1);
    expect(await fresh.get(app, id(0))).toBe('beta');
    expect(await fresh.get(app, id(other))).toBe('next');
  });

  it('treats an unreadable shard as empty and rewrites it', async () => {
    const store = new MemoryObjectStore('b');
    const key = layout.channelOverridesKey(app, deviceKey(id(3)).slice(0, 2));
    await store.put(key, 'not json');
    const o = overrides(store, () => 1);
    expect(await o.get(app, id(3))).toBeUndefined();
    await o.set(app, id(3), 'beta');
    expect(await o.get(app, id(3))).toBe('beta');
  });
});
