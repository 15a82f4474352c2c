// Small process, port and file helpers shared by the test environment and the tool cache.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';

/** The checkout's root: the nearest ancestor of the working directory with this project's package.json. */
export function repoRoot(start = process.cwd()): string {
  for (let dir = start; ; dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      const { name } = JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string };
      if (name === 'liveupdate-operator') return dir;
    }
    if (dirname(dir) === dir) throw new Error(`not inside the liveupdate-operator checkout: ${start}`);
  }
}

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The process start time in clock ticks since boot (field 22 of /proc/<pid>/stat); tells a reused pid apart. */
export function processStartTicks(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces and parentheses; fields after the last ')' are fixed.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19];
  } catch {
    return undefined;
  }
}

/** argv[0] of a live process, or undefined when it is gone (or a zombie). */
export function processArgv0(pid: number): string | undefined {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.split('\0')[0] || undefined;
  } catch {
    return undefined;
  }
}

/**
 * A free TCP port on 127.0.0.1 for a server started next, and not handed out before by this process.
 *
 * Picked below the kernel's ephemeral range (`ip_local_port_range`) where there is one: a port the kernel picks for
 * `listen(0)` comes from that range, and so does the local port of every outbound connection — under load (a test
 * suite, a benchmark) some connection took the port between this probe and the server's own `listen`, and the server
 * died with EADDRINUSE. Ports below the range are taken only by servers that bind them on purpose.
 */
export async function freePort(): Promise<number> {
  const range = portsBelowEphemeral();
  for (let attempt = 0; range && attempt < 100; attempt++) {
    const port = range.low + Math.floor(Math.random() * (range.high - range.low + 1));
    if (handedOut.has(port)) continue;
    if (await canListen(port)) return handOut(port);
  }
  for (;;) {
    const port = await listenAndClose(0);
    if (!handedOut.has(port)) return handOut(port);
  }
}

const handedOut = new Set<number>();

function handOut(port: number): number {
  handedOut.add(port);
  return port;
}

/** [10000, start of the ephemeral range), or undefined when the range is unknown (not Linux) or leaves too little. */
function portsBelowEphemeral(): { low: number; high: number } | undefined {
  try {
    const [start] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number);
    const low = 10_000;
    return start !== undefined && start - low >= 1000 ? { low, high: start - 1 } : undefined;
  } catch {
    return undefined;
  }
}

function canListen(port: number): Promise<boolean> {
  return listenAndClose(port).then(
    () => true,
    () => false,
  );
}

function listenAndClose(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const address = server.address();
      const bound = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (bound ? resolve(bound) : reject(new Error('no port assigned'))));
    });
  });
}

/** The last `bytes` of a file, for error messages; never throws. */
export async function fileTail(path: string, bytes = 4000): Promise<string> {
  try {
    const handle = await open(path, 'r');
    try {
      const { size } = await handle.stat();
      const start = Math.max(0, size - bytes);
      const buffer = Buffer.alloc(size - start);
      await handle.read(buffer, 0, buffer.length, start);
      return buffer.toString('utf8');
    } finally {
      await handle.close();
    }
  } catch (error) {
    return `(cannot read ${path}: ${String(error)})`;
  }
}

export async function readJsonFile<T>(path: string): Promise<T> {
  return JSON.parse(await readFile(path, 'utf8')) as T;
}

const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((path) => existsSync(path));

/**
 * spawn() for a long-running child (a server, a controller process) that must never outlive this process: it runs
 * under `setpriv --pdeathsig KILL` (util-linux; it execs in place, so the pid is the child's own), so the kernel
 * kills it when its parent dies, even by SIGKILL. Without setpriv it is a plain spawn.
 */
export function spawnOwned(
  command: string,
  args: readonly string[],
  options: SpawnOptions = {},
): ChildProcess {
  return SETPRIV
    ? spawn(SETPRIV, ['--pdeathsig', 'KILL', '--', command, ...args], options)
    : spawn(command, [...args], options);
}
