/** Builders for reconciler unit tests: objects as the apiserver would return them (defaults applied). */
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import yazl from 'yazl';
import {
  API_VERSION,
  APP_RESOURCE,
  BUNDLE_RESOURCE,
  CHANNEL_RESOURCE,
  SECRET_RESOURCE,
  type LiveUpdateApp,
  type LiveUpdateAppSpec,
  type LiveUpdateBundle,
  type LiveUpdateBundleSpec,
  type LiveUpdateChannel,
  type LiveUpdateChannelSpec,
} from '../../../api/v1alpha1/index.js';
import { silentLogger } from '../../../observability/logger.js';
import type { ReconcileContext } from '../../reconciler-interface.js';
import type { FakeObjectClient } from './fake-client.js';

export const NS = 'team-a';

export function ctx(): ReconcileContext {
  return { reconcileID: randomUUID(), log: silentLogger(), signal: new AbortController().signal };
}

export function seedApp(
  client: FakeObjectClient,
  name = 'demo',
  spec: Partial<LiveUpdateAppSpec> = {},
): LiveUpdateApp {
  return client.create<LiveUpdateApp>(APP_RESOURCE, {
    apiVersion: API_VERSION,
    kind: 'LiveUpdateApp',
    metadata: { name, namespace: NS },
    spec: {
      appId: 'com.example.demo',
      defaultChannel: 'production',
      encryptByDefault: true,
      suspend: false,
      ...spec,
    },
  });
}

export function seedBundle(
  client: FakeObjectClient,
  name: string,
  spec: Partial<LiveUpdateBundleSpec> = {},
  metadata: Partial<LiveUpdateBundle['metadata']> = {},
): LiveUpdateBundle {
  return client.create<LiveUpdateBundle>(BUNDLE_RESOURCE, {
    apiVersion: API_VERSION,
    kind: 'LiveUpdateBundle',
    metadata: { name, namespace: NS, ...metadata },
    spec: {
      app: 'demo',
      version: '1.0.0',
      source: { http: { url: `https://artifacts.example/${name}.zip` }, timeout: '5m' },
      delta: false,
      breaking: false,
      suspend: false,
      deletionPolicy: 'Delete',
      ...spec,
    },
  });
}

export function seedChannel(
  client: FakeObjectClient,
  name: string,
  spec: Partial<LiveUpdateChannelSpec> = {},
): LiveUpdateChannel {
  return client.create<LiveUpdateChannel>(CHANNEL_RESOURCE, {
    apiVersion: API_VERSION,
    kind: 'LiveUpdateChannel',
    metadata: { name, namespace: NS },
    spec: { app: 'demo', bundle: 'demo-1-0-0', ...spec },
  });
}

export function seedSecret(
  client: FakeObjectClient,
  name: string,
  data: Record<string, string>,
  labels?: Record<string, string>,
): void {
  client.create(SECRET_RESOURCE, {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace: NS, ...(labels ? { labels } : {}) },
    data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
  } as never);
}

/** A small valid web bundle zip (index.html at the root), as bytes. */
export function webZip(
  files: Record<string, string> = {
    'index.html': '<!doctype html><title>demo</title>',
    'app.js': 'console.log(1)',
  },
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const zip = new yazl.ZipFile();
    for (const [name, content] of Object.entries(files))
      zip.addBuffer(Buffer.from(content), name, { mtime: new Date(1980, 0, 1) });
    zip.end();
    const chunks: Buffer[] = [];
    zip.outputStream.on('data', (c: Buffer) => chunks.push(c));
    zip.outputStream.on('end', () => resolve(Buffer.concat(chunks)));
    zip.outputStream.on('error', reject);
  });
}

export async function writeWebZip(path: string, files?: Record<string, string>): Promise<Buffer> {
  const data = await webZip(files);
  await writeFile(path, data);
  return data;
}
