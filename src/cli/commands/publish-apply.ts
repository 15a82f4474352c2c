/** `bundle publish --apply`: server-side apply of the emitted LiveUpdateBundle (loaded lazily: only --apply needs a cluster). */
import { BUNDLE_RESOURCE, type LiveUpdateBundle } from '../../api/v1alpha1/index.js';
import { KubeClient } from '../../kube/client.js';
import { loadKubeConfig } from '../../kube/config.js';

export const CLI_FIELD_MANAGER = 'liveupdate-cli';

export async function applyBundle(
  manifest: LiveUpdateBundle,
  kubeconfig: string | undefined,
): Promise<{ namespace: string; name: string; uid: string }> {
  const kc = loadKubeConfig(kubeconfig);
  const namespace =
    manifest.metadata.namespace ?? kc.getContextObject(kc.getCurrentContext())?.namespace ?? 'default';
  const client = new KubeClient(kc, { fieldManager: CLI_FIELD_MANAGER });
  const applied = await client.apply<LiveUpdateBundle>(BUNDLE_RESOURCE, {
    ...manifest,
    metadata: { ...manifest.metadata, namespace },
  });
  return { namespace, name: applied.metadata.name, uid: applied.metadata.uid ?? '' };
}
