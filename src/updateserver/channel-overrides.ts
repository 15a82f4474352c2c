/**
 * Server-side channel overrides of legacy plugins (< 5.34 / 6.34 / 7.34), which expect `setChannel` to be remembered
 * by the server (Capgo's `channel_devices` / channel_self store) rather than on the device. ADR 0016.
 *
 * State lives in the object store, per app, in 256 shard documents `overrides/<xx>.json` keyed by a salted SHA-256 of
 * the device id (never the id itself). Each shard holds at most `maxPerShard` entries (the oldest are dropped) and
 * entries expire `ttlSeconds` after they were set (default 720 h, the default `statsRetention`). Writes are
 * read-modify-write with the store's conditional writes (If-Match / If-None-Match: *), retried on a lost race, so
 * replicas never overwrite each other's entries. Reads are cached per shard for `cacheSeconds` (bounded), so a fleet of
 * legacy devices costs one GET per shard and replica per interval; current plugins never touch this.
 */
import { hash } from 'node:crypto';
import type { Logger } from '../observability/logger.js';
import type { AppRef, StorageLayout } from '../storage/layout.js';
import { ObjectNotFoundError, PreconditionFailedError, type ObjectStore } from '../storage/object-store.js';

export const CHANNEL_OVERRIDES_API_VERSION = 'liveupdate.dev/channel-overrides/v1';

interface Entry {
  /** metadata.name of the LiveUpdateChannel. */
  channel: string;
  /** Epoch ms the device set it. */
  at: number;
}

interface ShardDocument {
  apiVersion: typeof CHANNEL_OVERRIDES_API_VERSION;
  entries: Record<string, Entry>;
}

interface CachedShard {
  entries: Record<string, Entry>;
  etag: string | undefined;
  fetchedAt: number;
}

export interface ChannelOverridesOptions {
  store: ObjectStore;
  layout: StorageLayout;
  logger: Logger;
  ttlSeconds?: number;
  maxPerShard?: number;
  cacheSeconds?: number;
  maxCachedShards?: number;
  now?: () => number;
}

const MAX_SHARD_BYTES = 4 * 1024 * 1024;
const WRITE_ATTEMPTS = 5;

export function deviceKey(deviceId: string): string {
  return hash('sha256', `liveupdate-override:${deviceId.toLowerCase()}`);
}

export class ChannelOverrides {
  private readonly ttlMs: number;
  private readonly maxPerShard: number;
  private readonly cacheMs: number;
  private readonly maxCached: number;
  private readonly now: () => number;
  private readonly cache = new Map<string, CachedShard>();

  constructor(private readonly opts: ChannelOverridesOptions) {
    this.ttlMs = (opts.ttlSeconds ?? 720 * 3600) * 1000;
    this.maxPerShard = opts.maxPerShard ?? 4096;
    this.cacheMs = (opts.cacheSeconds ?? 10) * 1000;
    this.maxCached = opts.maxCachedShards ?? 4096;
    this.now = opts.now ?? Date.now;
  }

  /** The channel (metadata.name) this device selected, if it has an unexpired override. */
  async get(app: AppRef, deviceId: string): Promise<string | undefined> {
    const key = deviceKey(deviceId);
    const shard = await this.read(app, key.slice(0, 2), false);
    const e = shard.entries[key];
    return e && this.fresh(e) ? e.channel : undefined;
  }

  /** Stores (`channel`) or removes (`undefined`) the device's override. Returns whether one was removed or set. */
  async set(app: AppRef, deviceId: string, channel: string | undefined): Promise<boolean> {
    const key = deviceKey(deviceId);
    const shardId = key.slice(0, 2);
    for (let attempt = 1; ; attempt++) {
      const shard = await this.read(app, shardId, true);
      const entries: Record<string, Entry> = {};
      for (const [k, e] of Object.entries(shard.entries)) if (this.fresh(e)) entries[k] = e;
      const had = key in entries;
      if (channel === undefined) {
        if (!had) return false;
        delete entries[key];
      } else {
        entries[key] = { channel, at: this.now() };
        this.bound(entries);
      }
      const doc: ShardDocument = { apiVersion: CHANNEL_OVERRIDES_API_VERSION, entries };
      const storeKey = this.opts.layout.channelOverridesKey(app, shardId);
      try {
        const { etag } = await this.opts.store.put(storeKey, JSON.stringify(doc), {
          ...(shard.etag === undefined ? { ifNoneMatch: '*' as const } : { ifMatch: shard.etag }),
          contentType: 'application/json',
        });
        this.remember(storeKey, { entries, etag, fetchedAt: this.now() });
        return true;
      } catch (error) {
        this.cache.delete(storeKey);
        if (error instanceof PreconditionFailedError && attempt < WRITE_ATTEMPTS) continue;
        throw error;
      }
    }
  }

  private fresh(e: Entry): boolean {
    return this.now() - e.at < this.ttlMs;
  }

  /** Drops the oldest entries above the shard bound. */
  private bound(entries: Record<string, Entry>): void {
    const keys = Object.keys(entries);
    if (keys.length <= this.maxPerShard) return;
    keys.sort((a, b) => entries[a]!.at - entries[b]!.at);
    for (const k of keys.slice(0, keys.length - this.maxPerShard)) delete entries[k];
  }

  private async read(app: AppRef, shardId: string, forWrite: boolean): Promise<CachedShard> {
    const storeKey = this.opts.layout.channelOverridesKey(app, shardId);
    const cached = this.cache.get(storeKey);
    if (cached && !forWrite && this.now() - cached.fetchedAt < this.cacheMs) return cached;
    let shard: CachedShard;
    try {
      const { info, data } = await this.opts.store.getBuffer(storeKey, { maxBytes: MAX_SHARD_BYTES });
      shard = {
        entries: parseShard(data, this.opts.logger, storeKey),
        etag: info.etag,
        fetchedAt: this.now(),
      };
    } catch (error) {
      if (!(error instanceof ObjectNotFoundError)) throw error;
      shard = { entries: {}, etag: undefined, fetchedAt: this.now() };
    }
    this.remember(storeKey, shard);
    return shard;
  }

  private remember(storeKey: string, shard: CachedShard): void {
    this.cache.delete(storeKey);
    if (this.cache.size >= this.maxCached) {
      const oldest = this.cache.keys().next().value;
      if (oldest !== undefined) this.cache.delete(oldest);
    }
    this.cache.set(storeKey, shard);
  }
}

/** A shard that does not parse is treated as empty (and rewritten by the next set): overrides are a convenience. */
function parseShard(data: Buffer, logger: Logger, key: string): Record<string, Entry> {
  try {
    const doc = JSON.parse(data.toString('utf8')) as Partial<ShardDocument>;
    const out: Record<string, Entry> = {};
    if (
      doc.apiVersion !== CHANNEL_OVERRIDES_API_VERSION ||
      typeof doc.entries !== 'object' ||
      doc.entries === null
    )
      throw new Error('not a channel-overrides document');
    for (const [k, e] of Object.entries(doc.entries)) {
      if (/^[a-f0-9]{64}$/.test(k) && typeof e?.channel === 'string' && typeof e.at === 'number') out[k] = e;
    }
    return out;
  } catch (error) {
    logger.warn({ key, err: (error as Error).message }, 'ignoring an unreadable channel-overrides shard');
    return {};
  }
}
