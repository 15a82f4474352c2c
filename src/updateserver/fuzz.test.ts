/**
 * Seeded fuzzing of the device endpoints: malformed JSON, wrong types, huge and deeply nested bodies, random bytes,
 * odd methods, paths and headers. The service must never answer 5xx and never crash.
 */
import { androidBody, startServer, type RunningServer } from './testing/fixtures.js';

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const CASES = 3000;

/** Lone surrogates cannot be percent-encoded. */
const wellFormed = (s: string): string => s.replace(/[\uD800-\uDFFF]/g, '?');

describe('fuzzing the device API', () => {
  let srv: RunningServer;
  beforeAll(async () => {
    srv = await startServer({ options: { rateLimitPerDevice: 0, rateLimitPerAddress: 0 } });
  });
  afterAll(() => srv.close());

  it(`never answers 5xx nor crashes over ${CASES} seeded cases`, async () => {
    const rnd = mulberry32(0x5eed);
    const int = (n: number): number => Math.floor(rnd() * n);
    const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
    const randomString = (max: number): string =>
      Array.from({ length: int(max) }, () =>
        String.fromCharCode(pick([int(128), 0x20 + int(95), 0xd800 + int(2048), int(0x10000)])),
      ).join('');
    const randomValue = (depth: number): unknown => {
      switch (int(depth > 3 ? 6 : 9)) {
        case 0:
          return null;
        case 1:
          return rnd() * 1e12 - 5e11;
        case 2:
          return rnd() < 0.5;
        case 3:
          return randomString(40);
        case 4:
          return 'x'.repeat(int(5000));
        case 5:
          return pick([
            '',
            'builtin',
            '1.4.1',
            '8.51.23',
            'android',
            'ios',
            '__proto__',
            'constructor',
            '9'.repeat(400),
          ]);
        case 6:
          return Array.from({ length: int(5) }, () => randomValue(depth + 1));
        default: {
          const o: Record<string, unknown> = {};
          for (let i = 0; i < int(6); i++) {
            // defineProperty: an own "__proto__" key, as JSON.parse creates it, not a prototype change.
            Object.defineProperty(o, pick(['__proto__', 'device_id', 'app_id', 'a', randomString(8)]), {
              value: randomValue(depth + 1),
              enumerable: true,
              writable: true,
              configurable: true,
            });
          }
          return o;
        }
      }
    };
    const fields = Object.keys(androidBody()).concat([
      'channel',
      'version',
      'manifest',
      'action',
      'metadata',
    ]);
    const bodies: Array<() => string | Buffer> = [
      // A valid body with one field of the wrong type or value.
      () =>
        JSON.stringify({
          ...androidBody({ defaultChannel: pick(['', 'beta', 'qa', 'reset', 'next']) }),
          [pick(fields)]: randomValue(0),
        }),
      // Several fields replaced.
      () => {
        const b: Record<string, unknown> = androidBody();
        for (let i = 0; i < 1 + int(6); i++) b[pick(fields)] = randomValue(0);
        return JSON.stringify(b);
      },
      // Truncated or corrupted JSON.
      () => {
        const s = JSON.stringify(androidBody());
        const i = int(s.length);
        return pick([
          s.slice(0, i),
          s.slice(0, i) + randomString(5) + s.slice(i + 1),
          s.replace(/"/g, pick(["'", '', '\\'])),
        ]);
      },
      // Random bytes.
      () => Buffer.from(Array.from({ length: int(2000) }, () => int(256))),
      // Deep nesting, in arrays or objects, valid or not.
      () => {
        const n = 10 + int(5000);
        return pick([
          `${'['.repeat(n)}${']'.repeat(n)}`,
          `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`,
          `[${'['.repeat(n)}`,
        ]);
      },
      // Huge bodies around the limits.
      () => JSON.stringify({ ...androidBody(), junk: 'y'.repeat(pick([60_000, 70_000, 1_100_000])) }),
      // Arrays of events for stats, some valid.
      () =>
        JSON.stringify(
          Array.from({ length: int(600) }, () =>
            rnd() < 0.5
              ? { ...androidBody(), action: randomString(10), version_name: '1.4.1' }
              : randomValue(1),
          ),
        ),
      () => JSON.stringify(randomValue(0)),
      () => '',
    ];
    const targets: Array<[string, string]> = [
      ['POST', '/updates'],
      ['POST', '/updates/manifest_size'],
      ['POST', '/stats'],
      ['POST', '/channel_self'],
      ['PUT', '/channel_self'],
      ['GET', '/channel_self'],
      ['DELETE', '/channel_self'],
      ['GET', '/bundles/'],
      ['PATCH', '/updates'],
      ['GET', '/updates'],
    ];
    const failures: string[] = [];
    const run = async (i: number): Promise<void> => {
      const [method, basePath] = pick(targets);
      let path = basePath;
      if (basePath === '/bundles/')
        path += pick([
          '',
          '..%2F..%2Fetc%2Fpasswd',
          encodeURIComponent(wellFormed(randomString(30))),
          'lu/apps/example/index.json',
          '%E0%A4%A',
        ]);
      if (method === 'GET' || method === 'DELETE') {
        const params = new URLSearchParams();
        for (let k = 0; k < int(12); k++) {
          const v = randomValue(2);
          params.append(pick(fields), typeof v === 'string' ? wellFormed(v) : JSON.stringify(v));
        }
        path += `?${params.toString()}${rnd() < 0.1 ? '&device_id=a&device_id=b' : ''}`;
      }
      const hasBody = method !== 'GET' && method !== 'HEAD';
      const body = hasBody ? pick(bodies)() : undefined;
      const headers: Record<string, string> = {
        'content-type': pick([
          'application/json',
          'application/json; charset=utf-8',
          'text/plain',
          'application/json; charset=latin-1',
          'multipart/form-data',
        ]),
      };
      if (rnd() < 0.1) headers['content-encoding'] = pick(['gzip', 'br', 'identity', 'x-unknown']);
      if (rnd() < 0.1)
        headers['range'] = pick(['bytes=0-', 'bytes=abc', 'bytes=5-1', 'bytes=-0', 'bytes=0-1,2-3']);
      try {
        const res = await fetch(srv.url + path, { method, headers, ...(body !== undefined ? { body } : {}) });
        const text = await res.text();
        if (res.status >= 500) failures.push(`#${i} ${method} ${path} → ${res.status} ${text.slice(0, 200)}`);
        if (/\bat .*\.(ts|js):\d+/.test(text))
          failures.push(`#${i} stack trace leaked: ${text.slice(0, 200)}`);
      } catch (err) {
        failures.push(`#${i} ${method} ${path} → ${err instanceof Error ? err.message : String(err)}`);
      }
    };
    const concurrency = 8;
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < CASES) await run(next++);
      }),
    );
    expect(failures.slice(0, 10)).toEqual([]);
    // Still alive and correct.
    const ok = await srv.post('/updates', androidBody());
    expect(ok.json).toMatchObject({ version: '1.4.1' });
  }, 120_000);
});
