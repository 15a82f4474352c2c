// Proof that the test environment is a real Kubernetes API: each assertion needs behaviour a mock would not have
// (build version ldflags, CEL evaluation, watch streams from etcd revisions, optimistic concurrency).
import {
  ApiException,
  ApiextensionsV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  V1MicroTime,
  VersionApi,
  Watch,
  type KubernetesObject,
  type V1ConfigMap,
  type V1CustomResourceDefinition,
} from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  cleanupTestResources,
  kubeConfig,
  newNamespace,
  uniqueName,
  INTEGRATION_TEST_TIMEOUT_MS,
} from '../../env/fixtures.js';

afterAll(cleanupTestResources);

/** The HTTP status of a failed call, or undefined when it did not fail with an API error. */
async function failureOf(call: Promise<unknown>): Promise<ApiException<unknown>> {
  try {
    await call;
  } catch (error) {
    if (error instanceof ApiException) return error as ApiException<unknown>;
    throw error;
  }
  throw new Error('the call succeeded, but a failure was expected');
}

function bodyText(error: ApiException<unknown>): string {
  return typeof error.body === 'string' ? error.body : JSON.stringify(error.body);
}

test(
  '/version reports the Kubernetes version compiled in with ldflags',
  async () => {
    const version = await kubeConfig().makeApiClient(VersionApi).getCode();
    expect(version.gitVersion).toMatch(/^v1\.34\.\d+$/);
    expect(version.major).toBe('1');
    expect(version.minor).toBe('34');
  },
  INTEGRATION_TEST_TIMEOUT_MS,
);

describe('a CRD with a CEL validation rule', () => {
  const group = `${uniqueName('cel')}.foundation.test.liveupdate.dev`;
  const plural = 'widgets';
  const message = 'minReplicas must not exceed maxReplicas';
  const crd: V1CustomResourceDefinition = {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.${group}` },
    spec: {
      group,
      scope: 'Namespaced',
      names: { plural, singular: 'widget', kind: 'Widget', listKind: 'WidgetList' },
      versions: [
        {
          name: 'v1alpha1',
          served: true,
          storage: true,
          schema: {
            openAPIV3Schema: {
              type: 'object',
              properties: {
                spec: {
                  type: 'object',
                  required: ['minReplicas', 'maxReplicas'],
                  properties: {
                    minReplicas: { type: 'integer', minimum: 0 },
                    maxReplicas: { type: 'integer', minimum: 0 },
                  },
                  // client-node's model name; serialized as x-kubernetes-validations.
                  x_kubernetes_validations: [{ rule: 'self.minReplicas <= self.maxReplicas', message }],
                },
              },
            },
          },
        },
      ],
    },
  };

  test(
    'rejects a violating object with the rule message and accepts a valid one',
    async () => {
      const kc = kubeConfig();
      const extensions = kc.makeApiClient(ApiextensionsV1Api);
      const objects = kc.makeApiClient(CustomObjectsApi);
      const namespace = await newNamespace('cel');
      await extensions.createCustomResourceDefinition({ body: crd });
      await waitForEstablished(extensions, crd.metadata!.name!);

      const widget = (name: string, minReplicas: number, maxReplicas: number) => ({
        apiVersion: `${group}/v1alpha1`,
        kind: 'Widget',
        metadata: { name },
        spec: { minReplicas, maxReplicas },
      });
      const create = (body: object) =>
        objects.createNamespacedCustomObject({ group, version: 'v1alpha1', namespace, plural, body });

      // Established can precede the moment the new resource is served; retry only "not found".
      let rejected: ApiException<unknown> | undefined;
      for (let attempt = 0; attempt < 50; attempt++) {
        rejected = await failureOf(create(widget('too-small', 5, 2)));
        if (rejected.code !== 404) break;
        await sleep(200);
      }
      expect(rejected?.code).toBe(422);
      expect(bodyText(rejected!)).toContain(message);

      const created = (await create(widget('fine', 1, 3))) as KubernetesObject & {
        spec: { maxReplicas: number };
      };
      expect(created.metadata?.uid).toBeTruthy();
      expect(created.spec.maxReplicas).toBe(3);
    },
    INTEGRATION_TEST_TIMEOUT_MS,
  );
});

async function waitForEstablished(api: ApiextensionsV1Api, name: string): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const current = await api.readCustomResourceDefinition({ name });
    const established = current.status?.conditions?.find((c) => c.type === 'Established');
    if (established?.status === 'True') return;
    await sleep(100);
  }
  throw new Error(`CRD ${name} did not become Established`);
}

test(
  'a watch sees an update of a ConfigMap',
  async () => {
    const kc = kubeConfig();
    const core = kc.makeApiClient(CoreV1Api);
    const namespace = await newNamespace('watch');
    const created = await core.createNamespacedConfigMap({
      namespace,
      body: { metadata: { name: 'watched' }, data: { value: 'before' } },
    });

    const events: Array<{ type: string; value: string | undefined }> = [];
    let sawUpdate!: () => void;
    const updated = new Promise<void>((resolve) => (sawUpdate = resolve));
    let watchError: unknown;
    // Starting at the creation's resourceVersion: exactly the later changes are delivered, so nothing races.
    const controller = await new Watch(kc).watch(
      `/api/v1/namespaces/${namespace}/configmaps`,
      { resourceVersion: created.metadata!.resourceVersion!, fieldSelector: 'metadata.name=watched' },
      (type, object: V1ConfigMap) => {
        events.push({ type, value: object.data?.['value'] });
        if (type === 'MODIFIED' && object.data?.['value'] === 'after') sawUpdate();
      },
      (error: unknown) => {
        watchError = error;
      },
    );
    try {
      await core.replaceNamespacedConfigMap({
        name: 'watched',
        namespace,
        body: { ...created, data: { value: 'after' } },
      });
      await updated; // or the test times out
      expect(watchError).toBeUndefined();
    } finally {
      controller.abort();
    }
    expect(events).toEqual([{ type: 'MODIFIED', value: 'after' }]);
  },
  INTEGRATION_TEST_TIMEOUT_MS,
);

test(
  'a Lease is created and renewed, and a write with a stale resourceVersion gets 409 Conflict',
  async () => {
    const coordination = kubeConfig().makeApiClient(CoordinationV1Api);
    const namespace = await newNamespace('lease');
    const acquired = new V1MicroTime();
    const created = await coordination.createNamespacedLease({
      namespace,
      body: {
        metadata: { name: 'leader' },
        spec: {
          holderIdentity: 'candidate-a',
          leaseDurationSeconds: 15,
          acquireTime: acquired,
          renewTime: acquired,
          leaseTransitions: 0,
        },
      },
    });
    expect(created.spec?.holderIdentity).toBe('candidate-a');

    await sleep(20); // a renewal must carry a later MicroTime
    const renewed = await coordination.replaceNamespacedLease({
      name: 'leader',
      namespace,
      body: { ...created, spec: { ...created.spec, renewTime: new V1MicroTime() } },
    });
    expect(renewed.metadata?.resourceVersion).not.toBe(created.metadata?.resourceVersion);
    expect(new Date(renewed.spec!.renewTime!).getTime()).toBeGreaterThan(
      new Date(created.spec!.renewTime!).getTime(),
    );

    // Another candidate still holding the first version tries to take over: optimistic concurrency must refuse it.
    const stale = await failureOf(
      coordination.replaceNamespacedLease({
        name: 'leader',
        namespace,
        body: {
          ...created,
          spec: { ...created.spec, holderIdentity: 'candidate-b', renewTime: new V1MicroTime() },
        },
      }),
    );
    expect(stale.code).toBe(409);
    const current = await coordination.readNamespacedLease({ name: 'leader', namespace });
    expect(current.spec?.holderIdentity).toBe('candidate-a');
    expect(current.metadata?.resourceVersion).toBe(renewed.metadata?.resourceVersion);
  },
  INTEGRATION_TEST_TIMEOUT_MS,
);
