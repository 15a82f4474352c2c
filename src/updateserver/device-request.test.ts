/**
 * The hand-written device id check of device-request.ts accepts exactly what Capgo's regular expression accepts:
 * compared with the original expression on every string of a small alphabet up to a length, on UUID-shaped strings
 * and on every one-character change, insertion and deletion of valid ids.
 */
import { isDeviceId, isPluginVersion, MAX_KEYS, parseDeviceInfo, RequestError } from './device-request.js';
import { iosBody } from './testing/fixtures.js';

/** Capgo's `deviceIdRegex`, as written there. */
const DEVICE_ID_REGEX = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Characters where a hand-written check could go wrong: the classes' bounds and neighbours, `_`, `-`, `.`, case,
 * whitespace, non-ASCII letters that case-fold onto ASCII ones (ſ → S, K → k, ı → I, İ → i), NUL and a surrogate.
 */
const TRICKY = [
  ...'09afAFgGzZ`{@[/:_-.',
  ...' \n\t\r\0',
  '\u017f',
  '\u212a',
  '\u0131',
  '\u0130',
  '\u00e9',
  '\ud83d',
];

/** Every character code below 0x180 and the tricky ones. */
const ALL_CHARS = [
  ...new Set([...Array.from({ length: 0x180 }, (_, i) => String.fromCharCode(i)), ...TRICKY]),
];

/** Every one-character replacement, insertion and deletion of `valid`. */
function* edits(valid: string): Generator<string> {
  for (let i = 0; i <= valid.length; i++) {
    if (i < valid.length) yield valid.slice(0, i) + valid.slice(i + 1);
    for (const c of ALL_CHARS) {
      if (i < valid.length) yield valid.slice(0, i) + c + valid.slice(i + 1);
      yield valid.slice(0, i) + c + valid.slice(i);
    }
  }
}

/** Every string over `alphabet` of length 0 to `max`. */
function* strings(alphabet: readonly string[], max: number): Generator<string> {
  let level = [''];
  yield '';
  for (let n = 1; n <= max; n++) {
    const next: string[] = [];
    for (const s of level) for (const c of alphabet) next.push(s + c);
    yield* next;
    level = next;
  }
}

/** The inputs on which `check` and `regex` disagree (empty when equivalent). */
function disagreements(check: (s: string) => boolean, regex: RegExp, inputs: Iterable<string>): string[] {
  const out: string[] = [];
  let count = 0;
  for (const s of inputs) {
    count++;
    if (check(s) !== regex.test(s)) out.push(JSON.stringify(s));
  }
  expect(count).toBeGreaterThan(1000);
  return out;
}

describe('isDeviceId is Capgo’s deviceIdRegex', () => {
  it.each([
    '123e4567-e89b-12d3-a456-426614174000',
    'ABCDEF01-2345-6789-ABCD-EF0123456789',
    'abcdef01-2345-6789-abcd-ef0123456789',
  ])('on every one-character edit of %s', (valid) => {
    expect(isDeviceId(valid)).toBe(true);
    expect(disagreements(isDeviceId, DEVICE_ID_REGEX, edits(valid))).toEqual([]);
  });

  it('on every string of hex digits, dashes and tricky characters up to 5 long, and on UUID-shaped ones', () => {
    expect(disagreements(isDeviceId, DEVICE_ID_REGEX, strings(['a', 'G', '-', '\u212a', '\n'], 5))).toEqual(
      [],
    );
    // UUID-shaped: one of the four dashes moved to any position, in any case, with a leading space or a trailing
    // newline (`$` is the end of the input).
    const shaped = function* (): Generator<string> {
      for (const hex of ['0123456789abcdef0123456789abcdef0123', 'ABCDEF0123456789ABCDEF0123456789ABCD'])
        for (const dash of [8, 13, 18, 23])
          for (let moved = 0; moved < 36; moved++) {
            const chars = [...hex];
            for (const i of [8, 13, 18, 23]) if (i !== dash) chars[i] = '-';
            chars[moved] = '-';
            const id = chars.join('');
            yield* [id, ` ${id}`, `${id}\n`, id.slice(1), `${id}0`];
          }
    };
    expect(disagreements(isDeviceId, DEVICE_ID_REGEX, shaped())).toEqual([]);
  });
});

describe('the errors of the id checks', () => {
  it.each([
    [
      'device_id',
      '123e4567-e89b-12d3-a456-42661417400g',
      'device_id must be a UUID of at most 36 characters',
    ],
    [
      'device_id',
      '123e4567-e89b-12d3-a456-4266141740001',
      'device_id must be a UUID of at most 36 characters',
    ],
    ['app_id', 'com..example', 'app_id must be a reverse-domain identifier such as com.example.app'],
    ['app_id', 'com_x.example', 'app_id must be a reverse-domain identifier such as com.example.app'],
  ])('%s %j → 400 invalid_json_body', (field, value, message) => {
    let error: unknown;
    try {
      parseDeviceInfo({ ...iosBody(), [field]: value });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(RequestError);
    expect(error).toMatchObject({ status: 400, code: 'invalid_json_body', message });
  });

  it('counts the fields: 64 are accepted, 65 refused', () => {
    const withFields = (n: number): Record<string, unknown> => {
      const body = iosBody();
      for (let i = 0; Object.keys(body).length < n; i++) body[`extra_${i}`] = 'x';
      return body;
    };
    expect(parseDeviceInfo(withFields(MAX_KEYS)).appId).toBe(iosBody()['app_id']);
    expect(() => parseDeviceInfo(withFields(MAX_KEYS + 1))).toThrow(
      new RequestError(400, 'invalid_json_body', `the body must have at most ${MAX_KEYS} fields`),
    );
  });

  it('a memoized plugin version check answers the same the second time', () => {
    for (const v of [
      '8.51.23',
      '8.51.23',
      'v7.0.0-rc.1+b.2',
      'v7.0.0-rc.1+b.2',
      '8.51',
      '8.51',
      '08.1.1',
      '08.1.1',
    ])
      expect(isPluginVersion(v)).toBe(v === '8.51.23' || v === 'v7.0.0-rc.1+b.2');
  });
});
