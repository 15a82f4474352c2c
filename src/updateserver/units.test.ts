/** Small pure pieces: semver, plugin gates, token buckets, Range parsing, key decoding, JSON depth, OpenAPI doc. */
import { readFileSync, writeFileSync } from 'node:fs';
import { jsonDepthExceeds } from './body.js';
import { parseDeviceInfo } from './device-request.js';
import { androidBody } from './testing/fixtures.js';
import { keyFromPath, parseRange } from './downloads.js';
import { openApiDocument } from './openapi.js';
import { pluginGates } from './policy.js';
import { TokenBucketLimiter } from './rate-limit.js';
import { atLeast, compareSemver, memoizeBounded, parseSemver, parseSemverCached } from './semver.js';
import { rolloutBucket } from './compiled-index.js';

describe('semver', () => {
  it.each([
    ['1', '1.0.0'],
    ['1.2', '1.2.0'],
    ['v1.2.3', '1.2.3'],
    ['1.2.3-beta.1+build.5', '1.2.3'],
  ])('parses %s leniently', (raw, core) => {
    const v = parseSemver(raw)!;
    expect(`${v.major}.${v.minor}.${v.patch}`).toBe(core);
  });

  it.each(['', 'abc', '1.2.3.4', '01.2.3', '1..2', '1.2.3-', 'x'.repeat(200)])('refuses %s', (raw) => {
    expect(parseSemver(raw)).toBeNull();
  });

  it.each([
    ['1.0.0', '1.0.1', -1],
    ['1.10.0', '1.9.9', 1],
    ['1.0.0-alpha', '1.0.0', -1],
    ['1.0.0-alpha', '1.0.0-alpha.1', -1],
    ['1.0.0-alpha.2', '1.0.0-alpha.10', -1],
    ['1.0.0-1', '1.0.0-alpha', -1],
    ['1.0.0+a', '1.0.0+b', 0],
  ])('orders %s vs %s', (a, b, sign) => {
    expect(Math.sign(compareSemver(parseSemver(a)!, parseSemver(b)!))).toBe(sign);
    expect(Math.sign(compareSemver(parseSemver(b)!, parseSemver(a)!))).toBe(-sign || 0);
  });
});

describe('hot-path shortcuts agree with the plain forms', () => {
  const versions = [
    '1.0.0',
    '1.0.0-alpha',
    '1.0.1',
    '0.9.9',
    '2.0.0',
    '1.1.0',
    '1.0.0+b',
    '8.35.0-beta.1',
    '8.35.0',
  ];
  it.each(versions)('atLeast(%s, …) is compareSemver ≥ 0', (raw) => {
    for (const [major, minor, patch] of [
      [1, 0, 0],
      [1, 0, 1],
      [0, 9, 9],
      [8, 35, 0],
      [2, 0, 0],
    ] as const) {
      const expected =
        compareSemver(parseSemver(raw)!, { major, minor, patch, prerelease: [], build: '' }) >= 0;
      expect(atLeast(parseSemver(raw)!, major, minor, patch)).toBe(expected);
    }
  });

  it('parseSemverCached returns the parse, frozen, and null for garbage', () => {
    expect(parseSemverCached('8.51.23')).toEqual(parseSemver('8.51.23'));
    expect(Object.isFrozen(parseSemverCached('8.51.23'))).toBe(true);
    expect(parseSemverCached('not a version')).toBeNull();
  });

  it('memoizeBounded calls the function once per input and starts over when full', () => {
    const seen: string[] = [];
    const f = memoizeBounded((s) => {
      seen.push(s);
      return s.length;
    }, 2);
    expect([f('a'), f('a'), f('bb'), f('a')]).toEqual([1, 1, 2, 1]);
    expect(seen).toEqual(['a', 'bb']);
    f('ccc'); // full: starts over
    f('a');
    expect(seen).toEqual(['a', 'bb', 'ccc', 'a']);
  });

  it('rollout buckets are the ones the Buffer-based computation gave (devices keep their bucket)', () => {
    // Values computed with the previous implementation (first 6 bytes of the SHA-256 digest as a Buffer).
    expect(rolloutBucket('rollout-1', '5C0E3A2E-8D43-4A63-9C52-1B1F0F2C9E11')).toBe(6965);
    expect(rolloutBucket('r2', '9a1d4e1c-7b7e-4c77-8f2e-0d9d0f6f3a21')).toBe(7569);
  });
});

describe('plugin gates', () => {
  const v = (s: string) => parseSemver(s)!;
  it('compares key ids only after 8.40.7', () => {
    expect(pluginGates.keyIdCheck(v('8.40.7'))).toBe(false);
    expect(pluginGates.keyIdCheck(v('8.40.8'))).toBe(true);
    expect(pluginGates.keyIdCheck(v('9.0.0'))).toBe(true);
  });
});

describe('TokenBucketLimiter', () => {
  it('allows the burst, refuses with a retry hint, refills over time', () => {
    let now = 0;
    const l = new TokenBucketLimiter({ perMinute: 60, burst: 2, now: () => now });
    expect(l.take('a').allowed).toBe(true);
    expect(l.take('a').allowed).toBe(true);
    const refused = l.take('a');
    expect(refused).toEqual({ allowed: false, retryAfterSeconds: 1 });
    now += 1000;
    expect(l.take('a').allowed).toBe(true);
    expect(l.take('b').allowed).toBe(true);
  });

  it('bounds the number of tracked keys', () => {
    const l = new TokenBucketLimiter({ perMinute: 1, burst: 1, maxKeys: 100 });
    for (let i = 0; i < 1000; i++) l.take(`k${i}`);
    expect(l.size).toBe(100);
  });

  it('is a no-op at 0', () => {
    const l = new TokenBucketLimiter({ perMinute: 0 });
    for (let i = 0; i < 100; i++) expect(l.take('a').allowed).toBe(true);
  });
});

describe('parseRange', () => {
  it.each([
    [undefined, { type: 'none' }],
    ['bytes=0-9', { type: 'range', range: { start: 0, end: 9 } }],
    ['bytes=5-', { type: 'range', range: { start: 5, end: 99 } }],
    ['bytes=90-200', { type: 'range', range: { start: 90, end: 99 } }],
    ['bytes=-10', { type: 'range', range: { start: 90, end: 99 } }],
    ['bytes=-1000', { type: 'range', range: { start: 0, end: 99 } }],
    ['bytes=100-', { type: 'unsatisfiable' }],
    ['bytes=-0', { type: 'unsatisfiable' }],
    ['bytes=9-5', { type: 'none' }],
    ['bytes=0-1,5-6', { type: 'none' }],
    ['items=0-1', { type: 'none' }],
  ])('%s of 100 bytes', (header, expected) => {
    expect(parseRange(header, 100)).toEqual(expected);
  });
});

describe('keyFromPath', () => {
  it.each([
    ['/a/b/c.zip', 'a/b/c.zip'],
    ['/a/b%20c', 'a/b c'],
    ['/a/../b', undefined],
    ['/a//b', undefined],
    ['/a%2Fb', undefined],
    ['/%E0%A4%A', undefined],
    ['/', undefined],
  ])('%s → %s', (path, key) => {
    expect(keyFromPath(path)).toBe(key);
  });
});

describe('jsonDepthExceeds', () => {
  it('counts brackets outside strings only', () => {
    expect(jsonDepthExceeds(Buffer.from('[[[1]]]'), 3)).toBe(false);
    expect(jsonDepthExceeds(Buffer.from('[[[[1]]]]'), 3)).toBe(true);
    expect(jsonDepthExceeds(Buffer.from('{"a":"[[[[[[\\"[[[["}'), 1)).toBe(false);
    // More brackets than the limit, but side by side: the byte scan decides.
    expect(jsonDepthExceeds(Buffer.from('[[],[],[{}],[]]'), 3)).toBe(false);
    expect(jsonDepthExceeds(Buffer.from('{"a":{"b":{"c":[{}]}}}'), 4)).toBe(true);
  });

  it('decides on the decoded text as a byte-by-byte scan of the raw bytes does, invalid UTF-8 included', () => {
    const byteScan = (buf: Buffer, max: number): boolean => {
      let depth = 0;
      let inString = false;
      for (let i = 0; i < buf.length; i++) {
        const c = buf[i];
        if (inString) {
          if (c === 0x5c) i++;
          else if (c === 0x22) inString = false;
        } else if (c === 0x22) inString = true;
        else if (c === 0x7b || c === 0x5b) {
          if (++depth > max) return true;
        } else if (c === 0x7d || c === 0x5d) depth--;
      }
      return false;
    };
    // Brackets, quotes, a backslash, a letter, and bytes of valid and broken multi-byte sequences.
    const alphabet = [
      0x7b, 0x5b, 0x7d, 0x5d, 0x22, 0x5c, 0x61, 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0xff,
    ];
    let seed = 17;
    const random = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) >>> 8) % n;
    let exceeded = 0;
    const disagreements: string[] = [];
    for (let k = 0; k < 20_000; k++) {
      const buf = Buffer.from(
        Array.from({ length: 1 + random(14) }, () => alphabet[random(alphabet.length)]!),
      );
      const max = 1 + random(3);
      const expected = byteScan(buf, max);
      if (expected) exceeded++;
      if (jsonDepthExceeds(buf.toString('utf8'), max) !== expected) disagreements.push(buf.toString('hex'));
    }
    expect(disagreements).toEqual([]);
    expect(exceeded).toBeGreaterThan(500);
  });
});

describe('OpenAPI document', () => {
  // Regenerate after a change: UPDATE_OPENAPI=1 npm run test:unit -- --testPathPatterns src/updateserver/units
  it('is committed as docs/openapi/device-api.json for the default paths', () => {
    const file = new URL('../../docs/openapi/device-api.json', import.meta.url);
    const doc = openApiDocument({
      update: '/updates',
      stats: '/stats',
      channel: '/channel_self',
      bundles: '/bundles',
    });
    if (process.env['UPDATE_OPENAPI'] === '1') writeFileSync(file, JSON.stringify(doc, null, 2) + '\n');
    const committed = JSON.parse(readFileSync(file, 'utf8')) as unknown;
    expect(committed).toEqual(doc);
  });
});

describe('OpenAPI agrees with the service', () => {
  const doc = openApiDocument({
    update: '/updates',
    stats: '/stats',
    channel: '/channel_self',
    bundles: '/bundles',
  });
  const field = (name: string): { pattern: string; maxLength: number } =>
    (doc['components'] as { schemas: { DeviceInfo: { properties: Record<string, never> } } }).schemas
      .DeviceInfo.properties[name]!;
  const accepted = (overrides: Record<string, unknown>): boolean => {
    try {
      parseDeviceInfo(androidBody(overrides));
      return true;
    } catch {
      return false;
    }
  };
  it.each([
    ['device_id', '5c0e3a2e-8d43-4a63-9c52-1b1f0f2c9e11'],
    ['device_id', '0F673663-459A-44C0-A7F5-613F2A4AF3AB'],
    ['device_id', 'invalid-uuid'],
    ['device_id', '5c0e3a2e-8d43-4a63-9c52-1b1f0f2c9e11x'],
    ['plugin_version', '8.51.23'],
    ['plugin_version', '8.35.0-beta.1'],
    ['plugin_version', '8.51'],
    ['plugin_version', 'invalid_version'],
    ['app_id', 'com.example.app'],
    ['app_id', '../../etc'],
  ])('%s %s: pattern and service decide alike', (name, value) => {
    const f = field(name);
    const byDoc = new RegExp(f.pattern).test(value) && value.length <= f.maxLength;
    expect(accepted({ [name]: value })).toBe(byDoc);
  });
});
