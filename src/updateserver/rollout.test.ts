/**
 * Rollout states as devices see them (issue 13): a held rollout (`paused`, by hand or by a failure threshold) never
 * downgrades a device already on the rollout bundle and lets nobody new in; a rolled-back rollout offers its devices
 * the stable bundle; a non-sticky rollout draws again at every check but never takes the bundle away.
 */
import type { IndexRollout } from '../storage/release-index.js';
import { compileIndex, type CompiledApp } from './compiled-index.js';
import { parseDeviceInfo } from './device-request.js';
import { decideUpdate } from './policy.js';
import { androidBody, sampleIndex } from './testing/fixtures.js';

const STABLE = '1.4.1';
const ROLLOUT = '1.4.2';
const ids = Array.from(
  { length: 2_000 },
  (_, i) => `${i.toString(16).padStart(8, '0')}-1111-4222-8333-444455556666`,
);

function appWith(rollout: Partial<IndexRollout>): CompiledApp {
  const idx = sampleIndex();
  idx.channels.find((c) => c.name === 'next')!.rollout = {
    bundle: 'app-1-4-2',
    percentage: 20,
    id: 'rollout-1',
    ...rollout,
  };
  return compileIndex(idx);
}

/** What a device running `versionName` is told: the version it installs, or `<kind>:<error>`. */
function outcome(app: CompiledApp, id: string, versionName: string): string {
  const d = decideUpdate(
    app,
    parseDeviceInfo(androidBody({ device_id: id, defaultChannel: 'next', version_name: versionName })),
  );
  if (d.type === 'update') return d.bundle.bundle.version;
  if (d.type === 'error') return `${d.kind}:${d.error}`;
  return 'reset';
}

/** The devices a sticky 20 % rollout puts on the rollout bundle (they installed it before the pause). */
const members = ids.filter((id) => outcome(appWith({}), id, 'builtin') === ROLLOUT);

describe('a paused rollout holds', () => {
  const paused = appWith({ paused: true });

  it('keeps devices already on the rollout bundle on it (up to date), nobody is downgraded', () => {
    expect(members.length).toBeGreaterThan(300);
    for (const id of members)
      expect(outcome(paused, id, ROLLOUT)).toBe('up_to_date:no_new_version_available');
  });

  it('lets no new device in: devices not on the rollout bundle get the stable one', () => {
    for (const id of ids) expect(outcome(paused, id, 'builtin')).toBe(STABLE);
    for (const id of members) expect(outcome(paused, id, STABLE)).toBe('up_to_date:no_new_version_available');
  });
});

describe('a rolled-back rollout', () => {
  it('offers devices on the rollout bundle the stable bundle', () => {
    const back = appWith({ rolledBack: true });
    for (const id of members) expect(outcome(back, id, ROLLOUT)).toBe(STABLE);
    for (const id of ids) expect(outcome(back, id, 'builtin')).toBe(STABLE);
  });
});

describe('a non-sticky rollout', () => {
  const loose = appWith({ sticky: false });

  it('draws again at every check: a device outside the share at one check can be in it at the next', () => {
    const first = new Map(ids.map((id) => [id, outcome(loose, id, 'builtin')]));
    const second = new Map(ids.map((id) => [id, outcome(loose, id, 'builtin')]));
    const share = [...first.values()].filter((v) => v === ROLLOUT).length / ids.length;
    expect(share).toBeGreaterThan(0.15);
    expect(share).toBeLessThan(0.25);
    const changed = ids.filter((id) => first.get(id) !== second.get(id)).length;
    expect(changed).toBeGreaterThan(100);
  });

  it('never takes the rollout bundle away from a device that has it', () => {
    for (const id of ids) expect(outcome(loose, id, ROLLOUT)).toBe('up_to_date:no_new_version_available');
  });
});
