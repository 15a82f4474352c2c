import { FakeClock, flushPromises } from './clock.js';
import {
  BucketRateLimiter,
  ItemExponentialFailureRateLimiter,
  WorkQueue,
  defaultControllerRateLimiter,
} from './workqueue.js';
import { createRegistry, createRuntimeMetrics } from '../observability/metrics.js';

function newQueue(clock = new FakeClock()): { q: WorkQueue; clock: FakeClock } {
  return { q: new WorkQueue({ name: 'test', clock }), clock };
}

describe('WorkQueue', () => {
  it('de-duplicates keys that are queued', async () => {
    const { q } = newQueue();
    q.add('a');
    q.add('b');
    q.add('a');
    expect(q.len()).toBe(2);
    expect(await q.get()).toBe('a');
    expect(await q.get()).toBe('b');
    expect(q.len()).toBe(0);
  });

  it('never hands out a key being processed; an add while processing re-queues it after done', async () => {
    const { q } = newQueue();
    q.add('a');
    expect(await q.get()).toBe('a');
    q.add('a');
    q.add('a');
    expect(q.len()).toBe(0);
    let second: string | undefined;
    void q.get().then((k) => (second = k));
    await flushPromises();
    expect(second).toBeUndefined();
    q.done('a');
    await flushPromises();
    expect(second).toBe('a');
    q.done('a');
    expect(q.len()).toBe(0);
  });

  it('does not re-queue a processed key that was not added again', async () => {
    const { q } = newQueue();
    q.add('a');
    await q.get();
    q.done('a');
    expect(q.len()).toBe(0);
  });

  it('addAfter delays the add and keeps the earliest time', async () => {
    const { q, clock } = newQueue();
    q.addAfter('a', 1000);
    q.addAfter('a', 500);
    q.addAfter('a', 2000);
    await clock.advance(499);
    expect(q.len()).toBe(0);
    await clock.advance(1);
    expect(q.len()).toBe(1);
    await clock.advance(5000);
    expect(q.len()).toBe(1);
  });

  it('addRateLimited backs off exponentially per item and forget resets it', async () => {
    const { q, clock } = newQueue();
    const delays: number[] = [];
    for (let i = 0; i < 4; i++) {
      const start = clock.now();
      q.addRateLimited('a');
      while (q.len() === 0) await clock.advance(1);
      delays.push(clock.now() - start);
      expect(await q.get()).toBe('a');
      q.done('a');
    }
    expect(delays).toEqual([5, 10, 20, 40]);
    expect(q.numRequeues('a')).toBe(4);
    q.forget('a');
    expect(q.numRequeues('a')).toBe(0);
  });

  it('shutdown drains queued keys, then get returns undefined; adds are ignored', async () => {
    const { q } = newQueue();
    q.add('a');
    q.add('b');
    q.shutdown();
    q.add('c');
    expect(await q.get()).toBe('a');
    expect(await q.get()).toBe('b');
    expect(await q.get()).toBeUndefined();
  });

  it('shutdown wakes idle getters', async () => {
    const { q } = newQueue();
    const pending = q.get();
    q.shutdown();
    expect(await pending).toBeUndefined();
  });

  it('shutdownWithDrain waits for in-flight keys', async () => {
    const { q } = newQueue();
    q.add('a');
    await q.get();
    let drained = false;
    void q.shutdownWithDrain().then(() => (drained = true));
    await flushPromises();
    expect(drained).toBe(false);
    q.done('a');
    await flushPromises();
    expect(drained).toBe(true);
  });

  it('shutdown cancels delayed adds', async () => {
    const { q, clock } = newQueue();
    q.addAfter('a', 10);
    q.shutdown();
    await clock.advance(100);
    expect(q.len()).toBe(0);
  });

  it('reports workqueue metrics with the queue name', async () => {
    const clock = new FakeClock();
    const metrics = createRuntimeMetrics(createRegistry({ defaultMetrics: false }));
    const q = new WorkQueue({ name: 'apps', clock, metrics: metrics.workqueue });
    q.add('a');
    q.add('b');
    q.addRateLimited('c');
    await clock.advance(1000);
    await q.get();
    await clock.advance(3000);
    const text = await metrics.registry.metrics();
    expect(text).toContain('workqueue_adds_total{name="apps"} 3');
    expect(text).toContain('workqueue_depth{name="apps"} 2');
    expect(text).toContain('workqueue_retries_total{name="apps"} 1');
    expect(text).toContain('workqueue_longest_running_processor_seconds{name="apps"} 3');
    expect(text).toContain('workqueue_unfinished_work_seconds{name="apps"} 3');
    expect(text).toMatch(/workqueue_queue_duration_seconds_count\{name="apps"\} 1/);
    q.done('a');
    expect(await metrics.registry.metrics()).toMatch(/workqueue_work_duration_seconds_sum\{name="apps"\} 3/);
  });
});

describe('rate limiters', () => {
  it('exponential backoff goes 5 ms → 1000 s and caps', () => {
    const rl = new ItemExponentialFailureRateLimiter(5, 1_000_000);
    const seen = Array.from({ length: 30 }, () => rl.when('x'));
    expect(seen.slice(0, 3)).toEqual([5, 10, 20]);
    expect(seen[17]).toBe(655_360);
    expect(seen[18]).toBe(1_000_000);
    expect(seen[29]).toBe(1_000_000);
    expect(rl.when('y')).toBe(5);
  });

  it('token bucket allows a burst of 100 then 10 per second', async () => {
    const clock = new FakeClock();
    const rl = new BucketRateLimiter(10, 100, clock);
    for (let i = 0; i < 100; i++) expect(rl.when(`k${i}`)).toBe(0);
    expect(rl.when('k100')).toBeCloseTo(100);
    expect(rl.when('k101')).toBeCloseTo(200);
    await clock.advance(1000);
    // 1 s refills 10 tokens of which 2 were owed
    for (let i = 0; i < 8; i++) expect(rl.when(`r${i}`)).toBe(0);
    expect(rl.when('r8')).toBeCloseTo(100);
  });

  it('default controller limiter takes the larger of both delays', () => {
    const clock = new FakeClock();
    const rl = defaultControllerRateLimiter(clock);
    for (let i = 0; i < 100; i++) rl.when(`k${i}`);
    // bucket empty: 100 ms from the bucket beats 5 ms from a fresh item
    expect(rl.when('fresh')).toBeCloseTo(100);
    const rl2 = defaultControllerRateLimiter(clock);
    for (let i = 0; i < 10; i++) rl2.when('same');
    expect(rl2.when('same')).toBe(5 * 1024);
  });
});
