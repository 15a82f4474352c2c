import { createHash } from 'node:crypto';

/**
 * Device ids and custom ids are personal data: logs carry this short, salted-by-purpose digest instead,
 * which still lets an operator correlate lines about the same device.
 */
export function hashIdentifier(id: string): string {
  return createHash('sha256').update('liveupdate-log:').update(id.toLowerCase()).digest('hex').slice(0, 16);
}
