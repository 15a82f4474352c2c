/**
 * A leader-election candidate in a process of its own, so a test can SIGKILL it (no lease release).
 * argv: <kubeconfig> <namespace> <lease> <identity>; prints "LEADING" once it leads.
 */
import { KubeClient } from '../../../src/kube/client.js';
import { loadKubeConfig } from '../../../src/kube/config.js';
import { KubeLeaseStore, LeaderElector } from '../../../src/kube/leader-election.js';
import { silentLogger } from '../../../src/observability/logger.js';
import { TEST_TIMINGS } from './timings.js';

const [kubeconfig, namespace, lease, identity] = process.argv.slice(2) as [string, string, string, string];
const client = new KubeClient(loadKubeConfig(kubeconfig), { fieldManager: 'elector' });
const elector = new LeaderElector({
  identity,
  name: lease,
  store: new KubeLeaseStore(client, namespace, lease),
  log: silentLogger(),
  ...TEST_TIMINGS,
  onStartedLeading: () => {
    process.stdout.write('LEADING\n');
  },
});
void elector.run(new AbortController().signal);
