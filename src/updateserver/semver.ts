/**
 * The small part of semver the device protocol needs, lenient the way Capgo's backend is: `"1"` → 1.0.0,
 * `"1.2"` → 1.2.0, an optional leading `v`, prerelease and build metadata per semver 2.0.0. Anything else is not a
 * version (`null`), which the update check answers with `semver_error`.
 */
export interface SemVer {
  major: number;
  minor: number;
  patch: number;
  prerelease: readonly (string | number)[];
  build: string;
}

const PATTERN =
  /^v?(0|[1-9]\d{0,8})(?:\.(0|[1-9]\d{0,8}))?(?:\.(0|[1-9]\d{0,8}))?(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$/;

export function parseSemver(input: string): SemVer | null {
  if (input.length > 128) return null;
  const m = PATTERN.exec(input.trim());
  if (!m) return null;
  const prerelease = m[4] === undefined ? [] : m[4].split('.').map((p) => (/^\d+$/.test(p) ? Number(p) : p));
  return {
    major: Number(m[1]),
    minor: Number(m[2] ?? 0),
    patch: Number(m[3] ?? 0),
    prerelease,
    build: m[5] ?? '',
  };
}

function cmpNum(a: number, b: number): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Semver precedence (build metadata ignored): negative, zero or positive. */
export function compareSemver(a: SemVer, b: SemVer): number {
  const core = cmpNum(a.major, b.major) || cmpNum(a.minor, b.minor) || cmpNum(a.patch, b.patch);
  if (core !== 0) return core;
  if (a.prerelease.length === 0 || b.prerelease.length === 0) {
    return cmpNum(b.prerelease.length, a.prerelease.length) === 0 ? 0 : a.prerelease.length === 0 ? 1 : -1;
  }
  const n = Math.max(a.prerelease.length, b.prerelease.length);
  for (let i = 0; i < n; i++) {
    const x = a.prerelease[i];
    const y = b.prerelease[i];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    if (x === y) continue;
    if (typeof x === 'number' && typeof y === 'number') return cmpNum(x, y);
    if (typeof x === 'number') return -1;
    if (typeof y === 'number') return 1;
    return x < y ? -1 : 1;
  }
  return 0;
}

/** True when `v` is at least `major.minor.patch` (prerelease of that exact version counts as lower). */
export function atLeast(v: SemVer, major: number, minor: number, patch: number): boolean {
  if (v.major !== major) return v.major > major;
  if (v.minor !== minor) return v.minor > minor;
  if (v.patch !== patch) return v.patch > patch;
  return v.prerelease.length === 0;
}

/**
 * A bounded memo of a function of one device-sent string (versions: a fleet sends few distinct ones), for the update
 * check's hot path. It starts over when full, so device input cannot grow it without limit.
 */
export function memoizeBounded<T>(fn: (input: string) => T, limit = 4096): (input: string) => T {
  const cache = new Map<string, T>();
  return (input) => {
    // One lookup on a hit (the usual case); `has` only tells a cached undefined from a miss.
    const hit = cache.get(input);
    if (hit !== undefined || cache.has(input)) return hit as T;
    const v = fn(input);
    if (cache.size >= limit) cache.clear();
    cache.set(input, v);
    return v;
  };
}

/** {@link parseSemver}, memoized; the result is frozen because requests share it. */
export const parseSemverCached: (input: string) => Readonly<SemVer> | null = memoizeBounded((input) => {
  const parsed = parseSemver(input);
  return parsed && Object.freeze(parsed);
});
