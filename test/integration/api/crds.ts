// Installs the project's CRDs into the test apiserver with `kubectl apply --server-side` (client-node's typed CRD
// models would drop `x-kubernetes-validations` and `default` from raw YAML) and waits until they are Established.
// Shared by the api and controller integration tests; safe to call from every test file.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { CRD_FILES } from '../../../src/api/v1alpha1/codegen.js';
import { KUBECTL, testEnvironment } from '../../env/fixtures.js';

const run = promisify(execFile);
const crdDir = fileURLToPath(new URL('../../../crds/', import.meta.url));

export async function kubectl(...args: string[]): Promise<string> {
  return (await run(KUBECTL, ['--kubeconfig', testEnvironment().kubeconfigPath, ...args])).stdout;
}

export async function installCrds(): Promise<void> {
  await kubectl(
    'apply',
    '--server-side',
    '--force-conflicts',
    '--field-manager',
    'liveupdate-tests',
    '-f',
    crdDir,
  );
  const names = CRD_FILES.map(
    (file) => `crd/${file.replace(/^liveupdate\.dev_(.*)\.yaml$/, '$1.liveupdate.dev')}`,
  );
  await kubectl('wait', '--for=condition=Established', '--timeout=60s', ...names);
  // Discovery and the CRD handler's schema cache lag a little behind the Established condition.
  await sleep(1000);
}
