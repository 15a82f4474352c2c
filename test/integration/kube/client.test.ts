import { KubeClient } from '../../../src/kube/client.js';
import { EVENT_TYPE, KubeEventRecorder } from '../../../src/kube/events.js';
import { KubeApiError, type KubeObject } from '../../../src/kube/types.js';
import { silentLogger } from '../../../src/observability/logger.js';
import { cleanupTestResources, kubeConfig, newNamespace } from '../../env/fixtures.js';
import { CONFIGMAP, WIDGET, ensureWidgetCrd, newClient, waitFor } from './helpers.js';

interface ConfigMap extends KubeObject {
  data?: Record<string, string>;
}
interface Widget extends KubeObject {
  spec?: { size?: number; color?: string };
  status?: { phase?: string; observedGeneration?: number };
}
type Managed = KubeObject & {
  metadata: { managedFields?: { manager: string; operation: string; subresource?: string }[] };
};

describe('KubeClient against the real API server', () => {
  const client = newClient('liveupdate-controller');
  let ns: string;

  beforeAll(async () => {
    ns = await newNamespace('kube-client');
    await ensureWidgetCrd(client);
  });
  afterAll(async () => {
    client.rest.close();
    await cleanupTestResources();
  });

  it('server-side applies with its field manager, creating and then updating', async () => {
    const created = await client.apply<ConfigMap>(CONFIGMAP, {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'ssa', namespace: ns },
      data: { a: '1' },
    } as ConfigMap);
    expect(created.data).toEqual({ a: '1' });
    const other = newClient('someone-else');
    await other.apply(CONFIGMAP, {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'ssa', namespace: ns },
      data: { b: '2' },
    } as ConfigMap);
    // our next apply no longer mentions a: SSA removes the fields we owned and dropped, keeps the other manager's
    const updated = await client.apply<ConfigMap>(CONFIGMAP, {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'ssa', namespace: ns },
      data: { c: '3' },
    } as ConfigMap);
    expect(updated.data).toEqual({ b: '2', c: '3' });
    const managers = (updated as Managed).metadata.managedFields
      ?.map((f) => `${f.manager}:${f.operation}`)
      .sort();
    expect(managers).toEqual(['liveupdate-controller:Apply', 'someone-else:Apply']);
    // force=true takes over conflicting fields instead of failing
    const forced = await client.apply<ConfigMap>(CONFIGMAP, {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'ssa', namespace: ns },
      data: { b: 'mine', c: '3' },
    } as ConfigMap);
    expect(forced.data).toEqual({ b: 'mine', c: '3' });
    other.rest.close();
  }, 60_000);

  it('merge-patches metadata (content type application/merge-patch+json, not JSON Patch)', async () => {
    await client.apply(CONFIGMAP, {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'merge', namespace: ns, annotations: { keep: 'yes' } },
    });
    const patched = await client.mergePatch<ConfigMap>(
      CONFIGMAP,
      { namespace: ns, name: 'merge' },
      {
        metadata: {
          finalizers: ['liveupdate.dev/finalizer'],
          annotations: { 'liveupdate.dev/reconcile-requested-at': 'now' },
        },
      },
    );
    expect(patched.metadata.finalizers).toEqual(['liveupdate.dev/finalizer']);
    expect(patched.metadata.annotations).toEqual({
      keep: 'yes',
      'liveupdate.dev/reconcile-requested-at': 'now',
    });
    const cleared = await client.mergePatch<ConfigMap>(
      CONFIGMAP,
      { namespace: ns, name: 'merge' },
      { metadata: { finalizers: null } },
    );
    expect(cleared.metadata.finalizers).toBeUndefined();
  }, 60_000);

  it('applies status on the status subresource only', async () => {
    const w = await client.apply<Widget>(WIDGET, {
      apiVersion: `${WIDGET.group}/v1`,
      kind: 'Widget',
      metadata: { name: 'w', namespace: ns },
      spec: { size: 1 },
    } as Widget);
    const withStatus = await client.applyStatus<Widget>(WIDGET, {
      apiVersion: `${WIDGET.group}/v1`,
      kind: 'Widget',
      metadata: { name: 'w', namespace: ns },
      status: { phase: 'Ready', observedGeneration: w.metadata.generation ?? 0 },
    });
    expect(withStatus.status).toEqual({ phase: 'Ready', observedGeneration: 1 });
    expect(withStatus.metadata.generation).toBe(1); // status writes do not bump the generation
    const entry = (withStatus as Managed).metadata.managedFields?.find((f) => f.subresource === 'status');
    expect(entry?.manager).toBe('liveupdate-controller');
    // a main-resource apply cannot change status
    const main = await client.apply<Widget>(WIDGET, {
      apiVersion: `${WIDGET.group}/v1`,
      kind: 'Widget',
      metadata: { name: 'w', namespace: ns },
      spec: { size: 2 },
      status: { phase: 'Hacked' },
    } as Widget);
    expect(main.status?.phase).toBe('Ready');
    expect(main.metadata.generation).toBe(2);
  }, 60_000);

  it('maps API errors to KubeApiError reasons with the server message', async () => {
    const notFound = await client.get(CONFIGMAP, { namespace: ns, name: 'absent' }).catch((e: unknown) => e);
    expect(notFound).toBeInstanceOf(KubeApiError);
    expect(notFound).toMatchObject({ reason: 'NotFound', statusCode: 404 });
    const invalid = await client
      .apply(WIDGET, {
        apiVersion: `${WIDGET.group}/v1`,
        kind: 'Widget',
        metadata: { name: 'bad', namespace: ns },
        spec: { size: -1 },
      } as Widget)
      .catch((e: unknown) => e);
    expect(invalid).toMatchObject({ reason: 'Invalid', statusCode: 422 });
    expect((invalid as Error).message).toContain('spec.size');
    const cm = await client.get<ConfigMap>(CONFIGMAP, { namespace: ns, name: 'merge' });
    await client.mergePatch(CONFIGMAP, { namespace: ns, name: 'merge' }, { data: { x: '1' } });
    const conflict = await client.replace(CONFIGMAP, cm).catch((e: unknown) => e);
    expect(conflict).toMatchObject({ reason: 'Conflict', statusCode: 409 });
    const exists = await client
      .create(CONFIGMAP, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'merge', namespace: ns } })
      .catch((e: unknown) => e);
    expect(exists).toMatchObject({ reason: 'AlreadyExists', statusCode: 409 });
  }, 60_000);

  it('lists across pages and deletes', async () => {
    for (let i = 0; i < 3; i++)
      await client.apply(CONFIGMAP, {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: `list-${i}`, namespace: ns, labels: { set: 'list' } },
      });
    const paged = new KubeClient(kubeConfig(), { fieldManager: 'x', listPageSize: 2 });
    const listed = await paged.list(CONFIGMAP, ns, 'set=list');
    expect(paged.rest.requestCounts.get('GET')).toBe(2);
    paged.rest.close();
    expect(listed.map((o) => o.metadata.name).sort()).toEqual(['list-0', 'list-1', 'list-2']);
    expect(listed[0]?.kind).toBe('ConfigMap');
    await client.delete(CONFIGMAP, { namespace: ns, name: 'list-0' });
    await expect(client.get(CONFIGMAP, { namespace: ns, name: 'list-0' })).rejects.toMatchObject({
      reason: 'NotFound',
    });
    await expect(client.delete(CONFIGMAP, { namespace: ns, name: 'list-0' })).rejects.toMatchObject({
      reason: 'NotFound',
    });
  }, 60_000);

  it('times out a request that takes too long', async () => {
    const impatient = new KubeClient(kubeConfig(), { fieldManager: 'x', timeoutMs: 1 });
    await expect(impatient.list(CONFIGMAP, ns)).rejects.toMatchObject({ reason: 'Timeout' });
    impatient.rest.close();
  }, 60_000);

  it('records Events and aggregates repeats into a series', async () => {
    const recorder = new KubeEventRecorder(client, {
      controller: 'liveupdate.dev/controller',
      instance: 'test-pod',
      log: silentLogger(),
    });
    const cm = await client.get<ConfigMap>(CONFIGMAP, { namespace: ns, name: 'merge' });
    recorder.event(cm, 'Warning', 'FetchFailed', 'GET http://artifacts/x.zip: 404');
    await recorder.flush();
    for (let i = 0; i < 4; i++)
      recorder.event(cm, 'Warning', 'FetchFailed', 'GET http://artifacts/x.zip: 404');
    recorder.event(cm, 'Normal', 'Published', 'index revision 3');
    await recorder.flush();
    const events = await waitFor('two events', async () => {
      const list = await client.list<
        KubeObject & {
          reason?: string;
          note?: string;
          series?: { count: number };
          regarding?: { uid?: string };
          reportingController?: string;
        }
      >(EVENT_TYPE, ns);
      const fetchFailed = list.find((e) => e.reason === 'FetchFailed');
      return list.length === 2 && fetchFailed?.series?.count === 5 ? list : undefined;
    });
    const failed = events.find((e) => e.reason === 'FetchFailed');
    expect(failed?.regarding?.uid).toBe(cm.metadata.uid);
    expect(failed?.reportingController).toBe('liveupdate.dev/controller');
    expect(failed?.note).toBe('GET http://artifacts/x.zip: 404');
  }, 60_000);

  it('never throws from the recorder, even when the API rejects the event', async () => {
    const recorder = new KubeEventRecorder(client, {
      controller: 'liveupdate.dev/controller',
      instance: 'test-pod',
      log: silentLogger(),
    });
    const ghost = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'ghost', namespace: 'namespace-that-does-not-exist' },
    };
    expect(() => recorder.event(ghost, 'Normal', 'Reason', 'message')).not.toThrow();
    await recorder.flush();
  }, 60_000);
});
