import { Informer } from '../../../src/kube/informer.js';
import type { KubeObject } from '../../../src/kube/types.js';
import { silentLogger } from '../../../src/observability/logger.js';
import { cleanupTestResources, newNamespace } from '../../env/fixtures.js';
import { CONFIGMAP, newClient, waitFor } from './helpers.js';

interface ConfigMap extends KubeObject {
  data?: Record<string, string>;
}

const cm = (ns: string, name: string, v: string): ConfigMap => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name, namespace: ns },
  data: { v },
});

describe('Informer against the real API server', () => {
  const writer = newClient('writer');
  let ns: string;
  const stops: (() => Promise<void>)[] = [];

  beforeEach(async () => {
    ns = await newNamespace('informer');
  });
  afterEach(async () => {
    for (const s of stops.splice(0)) await s();
  });
  afterAll(async () => {
    writer.rest.close();
    await cleanupTestResources();
  });

  function start(opts: { watchdogMs?: number; watchTimeoutSeconds?: number } = {}) {
    const client = newClient('reader');
    const informer = new Informer<ConfigMap>({
      type: CONFIGMAP,
      source: client,
      namespace: ns,
      log: silentLogger(),
      backoffInitialMs: 100,
      ...(opts.watchdogMs ? { watchdogMs: opts.watchdogMs } : {}),
      ...(opts.watchTimeoutSeconds ? { watchTimeoutSeconds: () => opts.watchTimeoutSeconds! } : {}),
    });
    const seen: string[] = [];
    informer.addHandlers({
      onAdd: (o) => seen.push(`add ${o.metadata.name} ${o.data?.['v']}`),
      onUpdate: (_old, o) => seen.push(`update ${o.metadata.name} ${o.data?.['v']}`),
      onDelete: (o) => seen.push(`delete ${o.metadata.name}`),
    });
    informer.start();
    stops.push(async () => {
      await informer.stop();
      client.rest.close();
    });
    return { client, informer, seen };
  }

  it('lists, then follows adds, updates and deletes', async () => {
    await writer.apply(CONFIGMAP, cm(ns, 'before', '1'));
    const { informer, seen } = start();
    await informer.waitForSync();
    expect(informer.get(`${ns}/before`)?.data).toEqual({ v: '1' });
    await writer.apply(CONFIGMAP, cm(ns, 'a', '1'));
    await writer.apply(CONFIGMAP, cm(ns, 'a', '2'));
    await writer.delete(CONFIGMAP, { namespace: ns, name: 'before' });
    await waitFor('events', () => seen.includes('delete before'));
    expect(seen).toEqual(['add before 1', 'add a 1', 'update a 2', 'delete before']);
    expect(informer.list().map((o) => o.metadata.name)).toEqual(['a']);
  }, 60_000);

  it('recovers from a severed connection: relists, notices changes made meanwhile, keeps watching', async () => {
    await writer.apply(CONFIGMAP, cm(ns, 'a', '1'));
    await writer.apply(CONFIGMAP, cm(ns, 'gone', '1'));
    const { client, informer, seen } = start();
    await informer.waitForSync();
    // once a change arrived through it, the watch connection is surely open
    await writer.apply(CONFIGMAP, cm(ns, 'probe', '1'));
    await waitFor('the watch to deliver', () => informer.get(`${ns}/probe`));
    const lists = informer.stats.lists;
    // sever every connection of the informer's client (the open watch included)
    client.rest.destroyConnections();
    await writer.apply(CONFIGMAP, cm(ns, 'b', '1'));
    await writer.delete(CONFIGMAP, { namespace: ns, name: 'gone' });
    await waitFor(
      'the informer to relist and see b',
      () => informer.get(`${ns}/b`) !== undefined && informer.get(`${ns}/gone`) === undefined,
    );
    expect(informer.stats.failures).toBeGreaterThanOrEqual(1);
    expect(informer.stats.lists).toBeGreaterThan(lists);
    await writer.apply(CONFIGMAP, cm(ns, 'a', '2'));
    await waitFor('a later update', () => informer.get(`${ns}/a`)?.data?.['v'] === '2');
    expect(seen).toContain('delete gone');
    expect(seen.filter((s) => s === 'add b 1')).toHaveLength(1);
  }, 60_000);

  it('re-watches without relisting when the server ends the watch', async () => {
    const { informer } = start({ watchTimeoutSeconds: 1 });
    await informer.waitForSync();
    await waitFor('two server-side watch timeouts', () => informer.stats.watches >= 3, 20_000);
    expect(informer.stats.lists).toBe(1);
    await writer.apply(CONFIGMAP, cm(ns, 'late', '1'));
    await waitFor('a change after the re-watch', () => informer.get(`${ns}/late`));
  }, 60_000);

  it('restarts a silent watch through the watchdog and keeps seeing changes', async () => {
    const { informer } = start({ watchdogMs: 1_500, watchTimeoutSeconds: 300 });
    await informer.waitForSync();
    await waitFor(
      'the watchdog to restart the silent watch',
      () => informer.stats.watchdogRestarts >= 1,
      20_000,
    );
    expect(informer.stats.lists).toBeGreaterThanOrEqual(2);
    await writer.apply(CONFIGMAP, cm(ns, 'after-watchdog', '1'));
    await waitFor('a change after the restart', () => informer.get(`${ns}/after-watchdog`));
  }, 60_000);
});
