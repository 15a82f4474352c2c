/** Go duration subset the CRDs accept (e.g. 90s, 5m, 1h30m, 168h) in milliseconds. */
export function parseDuration(text: string): number {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  for (const match of text.matchAll(/([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)/g))
    total += Number(match[1]) * units[match[2]!]!;
  return total;
}
