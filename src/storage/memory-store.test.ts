import { StoreUnavailableError } from './object-store.js';
import { MemoryObjectStore } from './memory-store.js';
import { describeObjectStoreContract } from './testing/object-store-contract.js';

describeObjectStoreContract('memory', () =>
  Promise.resolve({ store: new MemoryObjectStore(), prefix: 'p/' }),
);

describe('MemoryObjectStore', () => {
  it('fails every call with StoreUnavailableError while switched off, and recovers', async () => {
    const store = new MemoryObjectStore();
    await store.put('k', 'v');
    store.setUnavailable(true);
    await expect(store.stat('k')).rejects.toBeInstanceOf(StoreUnavailableError);
    await expect(store.get('k')).rejects.toBeInstanceOf(StoreUnavailableError);
    store.setUnavailable(false);
    expect((await store.getBuffer('k')).data.toString()).toBe('v');
  });
});
