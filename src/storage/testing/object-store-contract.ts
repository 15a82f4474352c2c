/**
 * Contract tests every {@link ObjectStore} implementation must pass: run against the in-memory fake (unit) and
 * against S3ObjectStore on a real S3 server (integration), so the fake cannot drift from the real thing.
 */
import { Readable } from 'node:stream';
import { ObjectNotFoundError, PreconditionFailedError, type ObjectStore } from '../object-store.js';

async function text(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** `fresh()` returns a store whose bucket exists; keys are prefixed so runs never collide. */
export function describeObjectStoreContract(
  name: string,
  fresh: () => Promise<{ store: ObjectStore; prefix: string }>,
): void {
  describe(`ObjectStore contract: ${name}`, () => {
    let store: ObjectStore;
    let p: string;
    beforeEach(async () => {
      const f = await fresh();
      store = f.store;
      p = f.prefix;
    });

    it('puts a buffer and reads it back with size and etag', async () => {
      const { etag } = await store.put(`${p}a.txt`, Buffer.from('hello world'), {
        contentType: 'text/plain',
      });
      expect(etag).toMatch(/^[0-9a-f-]+$/);
      const info = await store.stat(`${p}a.txt`);
      expect(info.size).toBe(11);
      expect(info.etag).toBe(etag);
      const got = await store.get(`${p}a.txt`);
      expect(got).not.toBeNull();
      expect(got!.info.size).toBe(11);
      expect(got!.info.etag).toBe(etag);
      expect(await text(got!.body)).toBe('hello world');
    });

    it('streams a put with a declared size', async () => {
      const data = Buffer.alloc(300_000, 7);
      await store.put(`${p}s.bin`, Readable.from([data.subarray(0, 100_000), data.subarray(100_000)]), {
        size: data.length,
      });
      const { data: back } = await store.getBuffer(`${p}s.bin`);
      expect(back.equals(data)).toBe(true);
    });

    it('serves inclusive byte ranges and reports the full object size', async () => {
      await store.put(`${p}r.txt`, '0123456789');
      const mid = await store.get(`${p}r.txt`, { range: { start: 2, end: 4 } });
      expect(await text(mid!.body)).toBe('234');
      expect(mid!.info.size).toBe(10);
      const tail = await store.get(`${p}r.txt`, { range: { start: 7 } });
      expect(await text(tail!.body)).toBe('789');
    });

    it('returns null when ifNoneMatch equals the current etag, the object otherwise', async () => {
      const { etag } = await store.put(`${p}e.json`, '{"a":1}');
      expect(await store.get(`${p}e.json`, { ifNoneMatch: etag })).toBeNull();
      expect(await store.get(`${p}e.json`, { ifNoneMatch: `"${etag}"` })).toBeNull();
      const changed = await store.put(`${p}e.json`, '{"a":2}');
      expect(changed.etag).not.toBe(etag);
      const got = await store.get(`${p}e.json`, { ifNoneMatch: etag });
      expect(got).not.toBeNull();
      expect(await text(got!.body)).toBe('{"a":2}');
    });

    it('throws ObjectNotFoundError for a missing key on stat, get and getBuffer', async () => {
      await expect(store.stat(`${p}missing`)).rejects.toBeInstanceOf(ObjectNotFoundError);
      await expect(store.get(`${p}missing`)).rejects.toBeInstanceOf(ObjectNotFoundError);
      await expect(store.getBuffer(`${p}missing`)).rejects.toBeInstanceOf(ObjectNotFoundError);
    });

    it('refuses getBuffer beyond maxBytes', async () => {
      await store.put(`${p}big`, Buffer.alloc(2000));
      await expect(store.getBuffer(`${p}big`, { maxBytes: 1000 })).rejects.toThrow(/1000/);
    });

    it('lists keys under a prefix in order, and remove is idempotent', async () => {
      await store.put(`${p}l/b`, 'b');
      await store.put(`${p}l/a`, 'a');
      await store.put(`${p}l/c/d`, 'd');
      await store.put(`${p}other`, 'x');
      const keys: string[] = [];
      for await (const o of store.list(`${p}l/`)) keys.push(o.key);
      expect(keys).toEqual([`${p}l/a`, `${p}l/b`, `${p}l/c/d`]);
      await store.remove(`${p}l/a`);
      await store.remove(`${p}l/a`);
      await expect(store.stat(`${p}l/a`)).rejects.toBeInstanceOf(ObjectNotFoundError);
    });

    it('creates with ifNoneMatch only when the key is absent', async () => {
      const { etag } = await store.put(`${p}c.json`, '{"v":1}', { ifNoneMatch: '*' });
      const second = await store.put(`${p}c.json`, '{"v":2}', { ifNoneMatch: '*' }).catch((e: unknown) => e);
      expect(second).toBeInstanceOf(PreconditionFailedError);
      expect(second).toMatchObject({ key: `${p}c.json`, condition: 'if-none-match' });
      const back = await store.getBuffer(`${p}c.json`);
      expect(back.data.toString()).toBe('{"v":1}');
      expect(back.info.etag).toBe(etag);
    });

    it('replaces with ifMatch only while the etag is current', async () => {
      const first = await store.put(`${p}m.json`, '{"v":1}');
      const second = await store.put(`${p}m.json`, '{"v":2}', { ifMatch: first.etag });
      expect(second.etag).not.toBe(first.etag);
      // A writer that read version 1 loses: its change must be redone on a fresh read.
      const stale = await store
        .put(`${p}m.json`, '{"v":3}', { ifMatch: first.etag })
        .catch((e: unknown) => e);
      expect(stale).toBeInstanceOf(PreconditionFailedError);
      expect(stale).toMatchObject({ condition: 'if-match' });
      await store.put(`${p}m.json`, '{"v":4}', { ifMatch: `"${second.etag}"` });
      expect((await store.getBuffer(`${p}m.json`)).data.toString()).toBe('{"v":4}');
    });

    it('fails ifMatch on a missing key with PreconditionFailedError and creates nothing', async () => {
      const err = await store.put(`${p}gone.json`, '{}', { ifMatch: 'abc123' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PreconditionFailedError);
      await expect(store.stat(`${p}gone.json`)).rejects.toBeInstanceOf(ObjectNotFoundError);
    });

    it('honours an aborted signal', async () => {
      const ac = new AbortController();
      ac.abort(new Error('stop'));
      await expect(store.stat(`${p}anything`, ac.signal)).rejects.toThrow('stop');
    });
  });
}
