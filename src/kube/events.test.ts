import { FakeClock } from './clock.js';
import { KubeEventRecorder, microTime } from './events.js';
import type { KubeObject, ObjectKey, ResourceType } from './types.js';
import { silentLogger } from '../observability/logger.js';

const OBJ: KubeObject = {
  apiVersion: 'liveupdate.dev/v1alpha1',
  kind: 'LiveUpdateBundle',
  metadata: { name: 'b', namespace: 'ns', uid: 'u1' },
};

class FakeEventsApi {
  created: (KubeObject & Record<string, unknown>)[] = [];
  patches: { key: ObjectKey; patch: { series: { count: number } } }[] = [];
  fail = false;
  create<T extends KubeObject>(_t: ResourceType, obj: KubeObject): Promise<T> {
    if (this.fail) return Promise.reject(new Error('apiserver down'));
    this.created.push(obj as KubeObject & Record<string, unknown>);
    return Promise.resolve(obj as T);
  }
  mergePatch<T extends KubeObject>(_t: ResourceType, key: ObjectKey, patch: object): Promise<T> {
    this.patches.push({ key, patch: patch as { series: { count: number } } });
    return Promise.resolve(OBJ as T);
  }
}

describe('KubeEventRecorder', () => {
  it('creates one event, then aggregates repeats into series.count; other reasons get their own event', async () => {
    const api = new FakeEventsApi();
    const clock = new FakeClock();
    const r = new KubeEventRecorder(api, {
      controller: 'liveupdate.dev/controller',
      instance: 'pod-0',
      log: silentLogger(),
      clock,
    });
    r.event(OBJ, 'Warning', 'FetchFailed', '404');
    await r.flush();
    for (let i = 0; i < 3; i++) r.event(OBJ, 'Warning', 'FetchFailed', '404');
    r.event(OBJ, 'Normal', 'Stored', 'ok');
    await r.flush();
    expect(api.created).toHaveLength(2);
    expect(api.created[0]).toMatchObject({
      type: 'Warning',
      reason: 'FetchFailed',
      note: '404',
      reportingController: 'liveupdate.dev/controller',
      reportingInstance: 'pod-0',
      regarding: { kind: 'LiveUpdateBundle', name: 'b', namespace: 'ns', uid: 'u1' },
    });
    expect(api.patches.at(-1)?.patch.series.count).toBe(4);
    expect(api.patches.at(-1)?.key.name).toBe(api.created[0]!.metadata.name);
    // after the series window a repeat starts a new event
    await clock.advance(7 * 60_000);
    r.event(OBJ, 'Warning', 'FetchFailed', '404');
    await r.flush();
    expect(api.created).toHaveLength(3);
  });

  it('truncates long notes and never throws when the API fails', async () => {
    const api = new FakeEventsApi();
    api.fail = true;
    const r = new KubeEventRecorder(api, { controller: 'c', instance: 'i', log: silentLogger() });
    expect(() => r.event(OBJ, 'Normal', 'R', 'x'.repeat(5000))).not.toThrow();
    await r.flush();
    api.fail = false;
    r.event(OBJ, 'Normal', 'R2', 'x'.repeat(5000));
    await r.flush();
    expect((api.created[0]!['note'] as string).length).toBe(1024);
  });

  it('writes events in the background, at most `concurrency` at a time, and counts every outcome', async () => {
    let inFlight = 0;
    let most = 0;
    const release: (() => void)[] = [];
    const results: string[] = [];
    const api = {
      create: <T extends KubeObject>(_t: ResourceType, obj: KubeObject): Promise<T> => {
        inFlight++;
        most = Math.max(most, inFlight);
        return new Promise<T>((resolve, reject) =>
          release.push(() => {
            inFlight--;
            if (obj.metadata.name.startsWith('bad')) reject(new Error('apiserver down'));
            else resolve(obj as T);
          }),
        );
      },
      mergePatch: <T extends KubeObject>(): Promise<T> => Promise.resolve(OBJ as T),
    };
    const r = new KubeEventRecorder(api, {
      controller: 'c',
      instance: 'i',
      log: silentLogger(),
      concurrency: 2,
      metrics: { events: { inc: ({ result }) => results.push(result) } },
    });
    for (const name of ['a', 'b', 'bad-c', 'd', 'e']) {
      // recording returns before any write finished
      r.event({ ...OBJ, metadata: { ...OBJ.metadata, name, uid: name } }, 'Normal', 'Stored', 'ok');
    }
    const flushed = r.flush();
    for (let i = 0; i < 5; i++) {
      await Promise.resolve();
      await new Promise((resolve) => setImmediate(resolve));
      release.shift()?.();
    }
    await flushed;
    expect(most).toBe(2);
    expect(results.sort()).toEqual(['failed', 'written', 'written', 'written', 'written']);
  });

  it('drops events beyond 1,000 waiting writes, and counts them', async () => {
    const results: string[] = [];
    const api = new FakeEventsApi();
    const r = new KubeEventRecorder(api, {
      controller: 'c',
      instance: 'i',
      log: silentLogger(),
      metrics: { events: { inc: ({ result }) => results.push(result) } },
    });
    for (let i = 0; i < 1005; i++)
      r.event({ ...OBJ, metadata: { ...OBJ.metadata, uid: `u${i}` } }, 'Normal', 'Stored', 'ok');
    await r.flush();
    expect(api.created).toHaveLength(1000);
    expect(results.filter((x) => x === 'dropped')).toHaveLength(5);
    expect(results.filter((x) => x === 'written')).toHaveLength(1000);
  });

  it('formats MicroTime with microseconds', () => {
    expect(microTime(Date.UTC(2026, 0, 2, 3, 4, 5, 678))).toBe('2026-01-02T03:04:05.678000Z');
  });
});
