// freePort: ports for servers the tests start next. A port from the kernel's ephemeral range could be taken by an
// outbound connection before the server bound it (device-journey's update server died with EADDRINUSE in CI).
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { freePort } from '../../env/process-utils.js';

function ephemeralStart(): number | undefined {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
  } catch {
    return undefined;
  }
}

function listen(port: number): Promise<() => Promise<void>> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(port, '127.0.0.1', () =>
      resolve(() => new Promise<void>((done) => server.close(() => done()))),
    );
  });
}

describe('freePort', () => {
  const start = ephemeralStart();

  (start !== undefined && start > 11_000 ? it : it.skip)(
    'never hands out a port of the ephemeral range, where outbound connections take ports',
    async () => {
      const ports = await Promise.all(Array.from({ length: 64 }, () => freePort()));
      expect(ports.filter((p) => p >= start!)).toEqual([]);
    },
  );

  it('hands out each port once per process, and every one can be listened on', async () => {
    const ports = await Promise.all(Array.from({ length: 64 }, () => freePort()));
    expect(new Set(ports).size).toBe(ports.length);
    const closers = await Promise.all(ports.map((p) => listen(p)));
    await Promise.all(closers.map((close) => close()));
  });
});
