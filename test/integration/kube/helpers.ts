/** Shared helpers for the kube runtime's integration tests (real kube-apiserver). */
import { KubeClient } from '../../../src/kube/client.js';
import { KubeApiError, type KubeObject, type ResourceType } from '../../../src/kube/types.js';
import { kubeConfig } from '../../env/fixtures.js';

export const CONFIGMAP: ResourceType = {
  group: '',
  version: 'v1',
  kind: 'ConfigMap',
  plural: 'configmaps',
  namespaced: true,
};

/** A tiny CRD of the runtime's own, with a status subresource and a schema that rejects bad specs. */
export const WIDGET: ResourceType = {
  group: 'kube-test.liveupdate.dev',
  version: 'v1',
  kind: 'Widget',
  plural: 'widgets',
  namespaced: true,
};
const CRD_TYPE: ResourceType = {
  group: 'apiextensions.k8s.io',
  version: 'v1',
  kind: 'CustomResourceDefinition',
  plural: 'customresourcedefinitions',
  namespaced: false,
};

export function newClient(fieldManager = 'kube-runtime-test'): KubeClient {
  return new KubeClient(kubeConfig(), { fieldManager, timeoutMs: 15_000 });
}

export async function waitFor<T>(
  what: string,
  fn: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last instanceof Error ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function ensureWidgetCrd(client: KubeClient): Promise<void> {
  const crd = {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${WIDGET.plural}.${WIDGET.group}` },
    spec: {
      group: WIDGET.group,
      scope: 'Namespaced',
      names: { plural: WIDGET.plural, singular: 'widget', kind: WIDGET.kind, listKind: 'WidgetList' },
      versions: [
        {
          name: 'v1',
          served: true,
          storage: true,
          subresources: { status: {} },
          schema: {
            openAPIV3Schema: {
              type: 'object',
              properties: {
                spec: {
                  type: 'object',
                  properties: { size: { type: 'integer', minimum: 0 }, color: { type: 'string' } },
                },
                status: {
                  type: 'object',
                  properties: { phase: { type: 'string' }, observedGeneration: { type: 'integer' } },
                },
              },
            },
          },
        },
      ],
    },
  };
  try {
    await client.apply(CRD_TYPE, crd);
  } catch (err) {
    if (!(err instanceof KubeApiError && err.reason === 'AlreadyExists')) throw err;
  }
  await waitFor('the Widget CRD to be established', async () => {
    const got = await client.get<
      KubeObject & { status?: { conditions?: { type: string; status: string }[] } }
    >(CRD_TYPE, {
      namespace: '',
      name: crd.metadata.name,
    });
    return got.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True');
  });
  // discovery of a new CRD lags its Established condition a little
  await waitFor('the Widget API to be served', () => client.list(WIDGET, 'default').then(() => true));
}
