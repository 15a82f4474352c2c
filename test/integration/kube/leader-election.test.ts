import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { KubeLeaseStore, LEASE_TYPE, LeaderElector } from '../../../src/kube/leader-election.js';
import type { KubeObject } from '../../../src/kube/types.js';
import { silentLogger } from '../../../src/observability/logger.js';
import { cleanupTestResources, newNamespace, testEnvironment } from '../../env/fixtures.js';
import { spawnOwned } from '../../env/process-utils.js';
import { newClient, waitFor } from './helpers.js';
import { TEST_TIMINGS } from './timings.js';

interface Lease extends KubeObject {
  spec?: { holderIdentity?: string; leaseTransitions?: number; leaseDurationSeconds?: number };
}

function candidate(identity: string, ns: string, lease: string) {
  const client = newClient(identity);
  const stop = new AbortController();
  const state = { leading: false, terms: 0 };
  const elector = new LeaderElector({
    identity,
    name: lease,
    store: new KubeLeaseStore(client, ns, lease),
    log: silentLogger(),
    ...TEST_TIMINGS,
    onStartedLeading: (signal) => {
      state.leading = true;
      state.terms++;
      return new Promise<void>((resolve) =>
        signal.addEventListener('abort', () => {
          state.leading = false;
          resolve();
        }),
      );
    },
  });
  const done = elector.run(stop.signal).finally(() => client.rest.close());
  return { identity, state, stop, done };
}

describe('leader election against the real API server', () => {
  const reader = newClient('reader');
  let ns: string;
  const children: ChildProcess[] = [];

  beforeEach(async () => {
    ns = await newNamespace('leader');
  });
  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    reader.rest.close();
    await cleanupTestResources();
  });

  const holder = async (lease: string): Promise<Lease['spec']> =>
    (await reader.get<Lease>(LEASE_TYPE, { namespace: ns, name: lease })).spec;

  it('elects exactly one leader; a stopping leader releases and the other takes over', async () => {
    const a = candidate('a', ns, 'lease');
    const b = candidate('b', ns, 'lease');
    await waitFor('a leader', () => a.state.leading || b.state.leading);
    // sample for a few renew periods: never two leaders
    for (let i = 0; i < 20; i++) {
      expect(Number(a.state.leading) + Number(b.state.leading)).toBeLessThanOrEqual(1);
      await new Promise((r) => setTimeout(r, 100));
    }
    const [leader, standby] = a.state.leading ? [a, b] : [b, a];
    expect((await holder('lease'))?.holderIdentity).toBe(leader.identity);
    leader.stop.abort();
    await leader.done;
    expect(leader.state.leading).toBe(false);
    await waitFor('the standby to take over', () => standby.state.leading);
    const spec = await holder('lease');
    expect(spec?.holderIdentity).toBe(standby.identity);
    expect(spec?.leaseTransitions).toBe(1);
    standby.stop.abort();
    await standby.done;
    expect((await holder('lease'))?.holderIdentity ?? '').toBe('');
  }, 60_000);

  it('a killed leader (no release) is replaced once its lease expires', async () => {
    const script = fileURLToPath(new URL('./elector-process.ts', import.meta.url));
    const child = spawnOwned(
      process.execPath,
      ['--import', 'tsx', script, testEnvironment().kubeconfigPath, ns, 'lease', 'doomed'],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    children.push(child);
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    await waitFor('the child to lead', () => out.includes('LEADING'), 45_000);
    const standby = candidate('standby', ns, 'lease');
    await new Promise((r) => setTimeout(r, 1_000));
    expect(standby.state.leading).toBe(false);
    expect((await holder('lease'))?.holderIdentity).toBe('doomed');
    child.kill('SIGKILL');
    // nobody releases the lease: the standby takes it once it saw the record unchanged for a lease duration
    await waitFor('the standby to take over', () => standby.state.leading, TEST_TIMINGS.leaseDurationMs * 5);
    expect(await holder('lease')).toMatchObject({ holderIdentity: 'standby', leaseTransitions: 1 });
    standby.stop.abort();
    await standby.done;
  }, 60_000);
});
