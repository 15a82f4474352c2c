/** Loads the Kubernetes client configuration: an explicit kubeconfig file, else $KUBECONFIG / in-cluster. */
import { KubeConfig } from '@kubernetes/client-node';

export { KubeConfig } from '@kubernetes/client-node';

export function loadKubeConfig(kubeconfigPath?: string): KubeConfig {
  const kc = new KubeConfig();
  if (kubeconfigPath) {
    kc.loadFromFile(kubeconfigPath);
  } else if (process.env['KUBERNETES_SERVICE_HOST'] && !process.env['KUBECONFIG']) {
    kc.loadFromCluster();
  } else {
    kc.loadFromDefault();
  }
  if (!kc.getCurrentCluster()) throw new Error('kubeconfig has no current cluster');
  return kc;
}
