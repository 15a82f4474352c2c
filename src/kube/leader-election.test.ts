import { FakeClock, flushPromises } from './clock.js';
import { LeaderElector, LeaseLostError, ShutdownError } from './leader-election.js';
import { FakeLeaseBackend, FakeStore } from './testing.js';
import { silentLogger } from '../observability/logger.js';
import { createRegistry, createRuntimeMetrics } from '../observability/metrics.js';

interface Candidate {
  elector: LeaderElector;
  store: FakeStore;
  leading: boolean;
  stopReason: unknown;
  stopped: number;
  stop: AbortController;
  done: Promise<'lost' | 'stopped'>;
}

function candidate(
  identity: string,
  backend: FakeLeaseBackend,
  clock: FakeClock,
  metrics = createRuntimeMetrics(createRegistry({ defaultMetrics: false })),
): Candidate {
  const store = new FakeStore(backend);
  const c = {
    store,
    leading: false,
    stopReason: undefined,
    stopped: 0,
    stop: new AbortController(),
  } as Candidate;
  c.elector = new LeaderElector({
    identity,
    store,
    clock,
    name: 'test',
    log: silentLogger(),
    metrics: metrics.leaderElection,
    onStartedLeading: (signal) =>
      new Promise<void>((resolve) => {
        c.leading = true;
        signal.addEventListener('abort', () => {
          c.stopReason = signal.reason;
          c.leading = false;
          resolve();
        });
      }),
    onStoppedLeading: () => c.stopped++,
  });
  c.done = c.elector.run(c.stop.signal);
  return c;
}

describe('LeaderElector', () => {
  it('acquires a missing lease, reports the metric and renews every retry period', async () => {
    const clock = new FakeClock();
    const backend = new FakeLeaseBackend();
    const metrics = createRuntimeMetrics(createRegistry({ defaultMetrics: false }));
    const a = candidate('a', backend, clock, metrics);
    await clock.advance(0);
    expect(a.leading).toBe(true);
    expect(backend.lease?.record.holderIdentity).toBe('a');
    expect(backend.lease?.record.leaseDurationSeconds).toBe(15);
    expect(await metrics.registry.metrics()).toContain('leader_election_master_status{name="test"} 1');
    const writes = backend.writes;
    await clock.advance(10_000);
    expect(backend.writes).toBe(writes + 5);
    a.stop.abort();
    await a.done;
    expect(await metrics.registry.metrics()).toContain('leader_election_master_status{name="test"} 0');
  });

  it('two candidates: exactly one leads while the leader renews', async () => {
    const clock = new FakeClock();
    const backend = new FakeLeaseBackend();
    const a = candidate('a', backend, clock);
    const b = candidate('b', backend, clock);
    for (let i = 0; i < 30; i++) {
      await clock.advance(1_000);
      expect(Number(a.leading) + Number(b.leading)).toBe(1);
    }
    a.stop.abort();
    b.stop.abort();
    await Promise.all([a.done, b.done]);
  });

  it('release on shutdown hands over at once; the leader first stops its work gracefully', async () => {
    const clock = new FakeClock();
    const backend = new FakeLeaseBackend();
    const a = candidate('a', backend, clock);
    await clock.advance(0);
    const b = candidate('b', backend, clock);
    await clock.advance(5_000);
    expect(b.leading).toBe(false);
    a.stop.abort();
    await a.done;
    expect(a.stopReason).toBeInstanceOf(ShutdownError);
    expect(a.stopped).toBe(1);
    expect(backend.lease?.record.holderIdentity).toBe('');
    await clock.advance(2_000 * 2.2);
    expect(b.leading).toBe(true);
    expect(backend.lease?.record.leaseTransitions).toBe(1);
    b.stop.abort();
    await b.done;
  });

  it("a vanished leader (no release) is replaced once the lease expired by the standby's own observation", async () => {
    const clock = new FakeClock();
    const backend = new FakeLeaseBackend();
    const a = candidate('a', backend, clock);
    await clock.advance(0);
    const b = candidate('b', backend, clock);
    await clock.advance(3_000);
    a.store.partitioned = true; // a can no longer reach the API server
    const lastRenewObservedBy = clock.now();
    // b must not take over before a full lease duration since it last saw the record change
    while (!b.leading) {
      await clock.advance(100);
      expect(clock.now() - lastRenewObservedBy).toBeLessThan(15_000 + 2 * 2_000 * 2.2 + 1_000);
    }
    expect(clock.now() - lastRenewObservedBy).toBeGreaterThanOrEqual(15_000 - 2_000);
    // a gave up after its renew deadline, before b could take over: its work was aborted as lost
    expect(a.leading).toBe(false);
    expect(a.stopReason).toBeInstanceOf(LeaseLostError);
    expect(a.stopped).toBe(1);
    await a.done;
    b.stop.abort();
    await b.done;
  });

  it('does not trust the renewTime written by another clock', async () => {
    const clock = new FakeClock();
    const backend = new FakeLeaseBackend();
    // a lease renewed "an hour ago" according to a skewed clock, by a holder that may be alive
    backend.create({
      holderIdentity: 'other',
      leaseDurationSeconds: 15,
      renewTime: '2020-01-01T00:00:00.000000Z',
      leaseTransitions: 0,
    });
    const b = candidate('b', backend, clock);
    await clock.advance(14_000);
    expect(b.leading).toBe(false);
    await clock.advance(6_000);
    expect(b.leading).toBe(true);
    b.stop.abort();
    await b.done;
  });

  it("judges expiry with the record's leaseDurationSeconds, not its own", async () => {
    const clock = new FakeClock();
    const backend = new FakeLeaseBackend();
    // the holder runs with a 60 s lease; this candidate's own default is 15 s
    backend.create({ holderIdentity: 'other', leaseDurationSeconds: 60, leaseTransitions: 0 });
    const b = candidate('b', backend, clock);
    await clock.advance(30_000);
    expect(b.leading).toBe(false);
    await clock.advance(35_000);
    expect(b.leading).toBe(true);
    b.stop.abort();
    await b.done;
  });

  it('loses the lease when it cannot renew within the renew deadline', async () => {
    const clock = new FakeClock();
    const backend = new FakeLeaseBackend();
    const a = candidate('a', backend, clock);
    await clock.advance(0);
    a.store.partitioned = true;
    await clock.advance(2_000 + 9_000);
    expect(a.leading).toBe(true);
    await clock.advance(1_500);
    expect(a.leading).toBe(false);
    expect(a.stopReason).toBeInstanceOf(LeaseLostError);
    await a.done;
    expect(a.elector.isLeader()).toBe(true); // it still believes the stale record, but run() has returned
    expect(a.elector.healthy()).toBe(true);
    await clock.advance(40_000);
    expect(a.elector.healthy()).toBe(false);
  });

  it('rejects inconsistent timings', () => {
    expect(
      () =>
        new LeaderElector({
          identity: 'x',
          store: new FakeStore(new FakeLeaseBackend()),
          log: silentLogger(),
          name: 'x',
          leaseDurationMs: 10_000,
          renewDeadlineMs: 10_000,
          onStartedLeading: () => undefined,
        }),
    ).toThrow(/leaseDuration/);
  });
});

afterAll(flushPromises);
