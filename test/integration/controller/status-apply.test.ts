// The controller's status write (server-side apply of the status subresource) against the real API server and the
// real CRD schemas. Found on the real stack (issue 13): a new rollout version has no failures yet, so
// status.stats.rollout.failuresByAction went from {download_fail: 4} to {}; server-side apply turns an emptied map
// into null (kubernetes/kubernetes#135841), the schema refuses null, and every later status write of the channel
// failed with 422: it never became Ready for the new rollout ("waiting for LiveUpdateApp to publish").
import {
  API_VERSION,
  CHANNEL_RESOURCE,
  FIELD_MANAGER,
  type LiveUpdateChannel,
  type LiveUpdateChannelStatus,
} from '../../../src/api/v1alpha1/index.js';
import { patchStatusIfChanged } from '../../../src/controller/common/status.js';
import { KubeClient } from '../../../src/kube/client.js';
import { cleanupTestResources, kubeConfig, newNamespace } from '../../env/fixtures.js';
import { installCrds } from '../api/crds.js';

const controller = new KubeClient(kubeConfig(), { fieldManager: FIELD_MANAGER });
let namespace: string;

beforeAll(async () => {
  await installCrds();
  namespace = await newNamespace('status-apply');
});

afterAll(async () => {
  controller.rest.close();
  await cleanupTestResources();
});

const key = () => ({ namespace, name: 'production' });

async function writeStatus(status: LiveUpdateChannelStatus): Promise<LiveUpdateChannel> {
  const current = await controller.get<LiveUpdateChannel>(CHANNEL_RESOURCE, key());
  await patchStatusIfChanged(controller, CHANNEL_RESOURCE, current, structuredClone(status));
  return controller.get<LiveUpdateChannel>(CHANNEL_RESOURCE, key());
}

function stats(failuresByAction: Record<string, number>, version: string): LiveUpdateChannelStatus {
  const failures = Object.values(failuresByAction).reduce((a, b) => a + b, 0);
  return {
    observedGeneration: 1,
    conditions: [],
    stats: {
      rollout: { version, devices: 200, installs: 200 - failures, failures, failuresByAction },
    },
  };
}

describe('status writes on the real API server', () => {
  it('a map in status that becomes empty (a new rollout without failures yet) is written, not refused', async () => {
    const channel: LiveUpdateChannel = {
      apiVersion: API_VERSION,
      kind: 'LiveUpdateChannel',
      metadata: key(),
      spec: { app: 'my-app', bundle: 'my-app-1.0.0' },
    };
    await controller.create(CHANNEL_RESOURCE, channel);
    const first = await writeStatus(stats({ download_fail: 4 }, '1.1.0'));
    expect(first.status?.stats?.rollout?.failuresByAction).toEqual({ download_fail: 4 });
    const next = await writeStatus(stats({}, '1.2.0'));
    expect(next.status?.stats?.rollout).toMatchObject({ version: '1.2.0', failures: 0 });
    expect(next.status?.stats?.rollout?.failuresByAction?.['download_fail']).toBeUndefined();
    // And back: the map fills again.
    const again = await writeStatus(stats({ decrypt_fail: 60 }, '1.2.0'));
    expect(again.status?.stats?.rollout?.failuresByAction).toEqual({ decrypt_fail: 60 });
  });
});
