/**
 * Test fixtures for the update service: a hand-built release index, real §2.1 device bodies, and a running server
 * (memory store + IndexCache + createUpdateServer on an ephemeral 127.0.0.1 port).
 */
import type { AddressInfo } from 'node:net';
import { createServer, type Server } from 'node:http';
import { silentLogger } from '../../observability/logger.js';
import { createRegistry, type Registry } from '../../observability/metrics.js';
import { StorageLayout } from '../../storage/layout.js';
import { MemoryObjectStore } from '../../storage/memory-store.js';
import {
  RELEASE_INDEX_API_VERSION,
  RELEASE_ROOT_API_VERSION,
  channelNumericId,
  hashPinnedId,
  type IndexBundle,
  type IndexChannel,
  type IndexChannelPolicy,
  type ReleaseIndex,
  type ReleaseRoot,
} from '../../storage/release-index.js';
import { createUpdateServer } from '../app.js';
import { ChannelOverrides } from '../channel-overrides.js';
import type { UpdateServerOptions } from '../options.js';
import { IndexCache } from '../index-cache.js';
import { UpdateServerMetrics } from '../metrics.js';
import { StatsAggregator } from '../stats-rollup.js';

export const APP_ID = 'com.example.app';
export const NS = 'apps';
export const APP_NAME = 'example';
export const KEY_ID = 'MIIBCgKCAQEAzvBQkpU7';
export const PINNED_DEVICE = '0f0f0f0f-0000-4000-8000-000000000001';
export const PINNED_CUSTOM = 'qa-tester@example.com';
export const layout = new StorageLayout('lu');
const ref = { namespace: NS, name: APP_NAME };

export function policy(overrides: Partial<IndexChannelPolicy> = {}): IndexChannelPolicy {
  return {
    disableAutoUpdate: 'major',
    disableAutoUpdateUnderNative: true,
    allowEmulator: false,
    allowDev: false,
    allowProd: true,
    allowDeviceSelfSet: false,
    platforms: ['ios', 'android'],
    ...overrides,
  };
}

export function bundle(name: string, version: string, overrides: Partial<IndexBundle> = {}): IndexBundle {
  const digest = Buffer.from(name).toString('hex').padEnd(64, '0').slice(0, 64);
  return {
    name,
    version,
    objectKey: layout.bundleKey(ref, digest),
    size: 1000 + name.length,
    sha256: 'a'.repeat(64),
    encrypted: true,
    checksum: 'c'.repeat(512),
    checksumV2: 'QUJD'.repeat(86),
    sessionKey: 'aXZpdml2aXZpdml2aXZpdg==:' + 'k'.repeat(344),
    keyId: KEY_ID,
    ...overrides,
  };
}

export function channel(
  name: string,
  bundleName: string,
  overrides: Partial<IndexChannel> = {},
): IndexChannel {
  return {
    name,
    id: channelNumericId(NS, APP_NAME, name),
    bundle: bundleName,
    policy: policy(),
    pinnedIdHashes: [],
    ...overrides,
  };
}

/** production (1.4.1, default) · beta (1.5.0, self-set) · qa (2.0.0, pinned) · next (rollout) · reset (builtin). */
export function sampleIndex(revision = 1): ReleaseIndex {
  return {
    apiVersion: RELEASE_INDEX_API_VERSION,
    kind: 'ReleaseIndex',
    revision,
    generatedAt: '2026-11-29T09:00:00Z',
    app: {
      namespace: NS,
      name: APP_NAME,
      appId: APP_ID,
      keyId: KEY_ID,
      defaultChannel: 'production',
      exposeBundleMetadata: true,
    },
    bundles: {
      'app-1-4-1': bundle('app-1-4-1', '1.4.1', {
        comment: 'Fixes login',
        link: 'https://example.com/notes/1.4.1',
      }),
      'app-1-5-0': bundle('app-1-5-0', '1.5.0', {
        manifest: [
          {
            fileName: 'index.html',
            fileHash: 'd'.repeat(512),
            objectKey: layout.deltaFileKey(ref, '1'.repeat(64)),
            size: 120,
          },
          {
            fileName: 'assets/app.js.br',
            fileHash: 'e'.repeat(512),
            objectKey: layout.deltaFileKey(ref, '2'.repeat(64)),
            size: 3400,
          },
        ],
      }),
      'app-2-0-0': bundle('app-2-0-0', '2.0.0', { breaking: true }),
      'app-1-4-2': bundle('app-1-4-2', '1.4.2', { minNativeVersion: '1.4.0' }),
      'plain-1-4-3': bundle('plain-1-4-3', '1.4.3', {
        encrypted: false,
        checksum: 'f'.repeat(64),
      }),
    },
    channels: [
      channel('production', 'app-1-4-1'),
      channel('beta', 'app-1-5-0', {
        policy: policy({ allowDeviceSelfSet: true, allowDev: true, allowEmulator: true }),
      }),
      channel('qa', 'app-2-0-0', {
        policy: policy({ disableAutoUpdate: 'none', allowDev: true, allowEmulator: true }),
        pinnedIdHashes: [hashPinnedId(PINNED_DEVICE), hashPinnedId(PINNED_CUSTOM)],
      }),
      channel('next', 'app-1-4-1', {
        rollout: { bundle: 'app-1-4-2', percentage: 10, id: 'rollout-1' },
        policy: policy({ allowDeviceSelfSet: true }),
      }),
      channel('reset', 'builtin', { policy: policy({ allowDeviceSelfSet: true }) }),
      channel('plain', 'plain-1-4-3', {
        policy: policy({ allowDeviceSelfSet: true, platforms: ['android'] }),
      }),
    ],
  };
}

export function rootFor(indexes: ReleaseIndex[]): ReleaseRoot {
  return {
    apiVersion: RELEASE_ROOT_API_VERSION,
    kind: 'ReleaseRoot',
    generatedAt: '2026-11-29T09:00:00Z',
    apps: indexes.map((i) => ({
      namespace: i.app.namespace,
      name: i.app.name,
      appId: i.app.appId,
      indexKey: layout.indexKey({ namespace: i.app.namespace, name: i.app.name }),
      revision: i.revision,
    })),
  };
}

/** Writes the indexes and a root listing them. */
export async function publish(store: MemoryObjectStore, indexes: ReleaseIndex[]): Promise<void> {
  for (const i of indexes) {
    await store.put(layout.indexKey({ namespace: i.app.namespace, name: i.app.name }), JSON.stringify(i));
  }
  await store.put(layout.rootKey(), JSON.stringify(rootFor(indexes)));
}

/** A real Android 8.51.23 update-check body (CAPGO-PROTOCOL.md §2.1), with overrides. */
export function androidBody(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    platform: 'android',
    device_id: '5c0e3a2e-8d43-4a63-9c52-1b1f0f2c9e11',
    app_id: APP_ID,
    custom_id: '',
    version_build: '1.4.0',
    version_code: '140',
    version_os: '14',
    version_name: 'builtin',
    plugin_version: '8.51.23',
    is_emulator: false,
    is_prod: true,
    install_source: 'google_play',
    defaultChannel: '',
    key_id: KEY_ID,
    ...overrides,
  };
}

/** The iOS form: no install_source when unknown, no key_id when no public key. */
export function iosBody(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    platform: 'ios',
    device_id: '9a1d4e1c-7b7e-4c77-8f2e-0d9d0f6f3a21',
    app_id: APP_ID,
    custom_id: '',
    version_build: '1.4.0',
    version_code: '27',
    version_os: '18.1',
    version_name: '1.4.0',
    plugin_version: '8.51.23',
    is_emulator: false,
    is_prod: true,
    defaultChannel: '',
    key_id: KEY_ID,
    ...overrides,
  };
}

export interface RunningServer {
  url: string;
  store: MemoryObjectStore;
  cache: IndexCache;
  stats: StatsAggregator;
  metrics: UpdateServerMetrics;
  registry: Registry;
  server: Server;
  close(): Promise<void>;
  post(
    path: string,
    body: unknown,
    headers?: Record<string, string>,
  ): Promise<{ status: number; json: unknown; headers: Headers }>;
}

export async function startServer(
  opts: { options?: Partial<UpdateServerOptions>; indexes?: ReleaseIndex[]; store?: MemoryObjectStore } = {},
): Promise<RunningServer> {
  const store = opts.store ?? new MemoryObjectStore('bucket');
  await publish(store, opts.indexes ?? [sampleIndex()]);
  const registry = createRegistry({ defaultMetrics: false });
  const metrics = new UpdateServerMetrics(registry);
  const logger = silentLogger();
  const cache = new IndexCache({ store, layout, logger, metrics, pollSeconds: 1 });
  await cache.poll();
  const stats = new StatsAggregator({ replica: 'test-0', metrics });
  const app = createUpdateServer({
    indexes: cache,
    store,
    stats,
    metrics,
    logger,
    overrides: new ChannelOverrides({ store, layout, logger, cacheSeconds: 0 }),
    options: {
      publicUrl: 'https://updates.example.com',
      rateLimitPerDevice: 0,
      rateLimitPerAddress: 0,
      ...opts.options,
    },
  });
  const server = createServer(app.requestListener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    store,
    cache,
    stats,
    metrics,
    registry,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
    post: async (path, body, headers = {}) => {
      const res = await fetch(url + path, {
        method: 'POST',
        headers: { 'content-type': 'application/json; charset=utf-8', ...headers },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      });
      const text = await res.text();
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = text;
      }
      return { status: res.status, json, headers: res.headers };
    },
  };
}
