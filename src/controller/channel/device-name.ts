/**
 * Device-visible channel names (`spec.deviceName`, else metadata.name) must be unique per app: devices select a
 * channel by that name. CEL cannot see other objects, so the controller decides: the oldest channel (then the
 * smaller metadata.name) holds a name; the others are left out of the release index and report DeviceNameConflict.
 */
import type { LiveUpdateChannel } from '../../api/v1alpha1/index.js';

export function deviceNameOf(channel: LiveUpdateChannel): string {
  return channel.spec.deviceName ?? channel.metadata.name;
}

const age = (c: LiveUpdateChannel): string => c.metadata.creationTimestamp ?? '';

/** Device name → the channel holding it, among `channels` (one app's live channels). */
export function deviceNameHolders(channels: readonly LiveUpdateChannel[]): Map<string, LiveUpdateChannel> {
  const holders = new Map<string, LiveUpdateChannel>();
  const ordered = [...channels].sort(
    (a, b) => age(a).localeCompare(age(b)) || a.metadata.name.localeCompare(b.metadata.name),
  );
  for (const c of ordered) {
    const name = deviceNameOf(c);
    if (!holders.has(name)) holders.set(name, c);
  }
  return holders;
}
