// A TCP proxy in front of a real S3 server that changes or cuts short an upload on the way: what a faulty network,
// proxy or disk between the controller and the store would do. Listens on 127.0.0.1 only.
import { connect, createServer, type Socket } from 'node:net';

/**
 * A TCP proxy in front of an S3 server that alters the body of each connection's first PUT: `flip` changes its
 * first byte (same length), `cut` sends all of it but the last byte and closes. Everything else passes unchanged.
 */
export async function alteringProxy(
  target: string,
  alter: 'flip' | 'cut',
): Promise<{ endpoint: string; altered: () => number; close: () => void }> {
  const { hostname, port } = new URL(target);
  const sockets: Socket[] = [];
  let altered = 0;
  const server = createServer((client) => {
    const upstream = connect(Number(port), hostname);
    sockets.push(client, upstream);
    const fail = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', fail);
    upstream.on('error', fail);
    upstream.on('data', (d: Buffer) => client.write(d));
    upstream.on('end', () => client.end());
    let pending: Buffer | undefined = Buffer.alloc(0);
    client.on('data', (chunk: Buffer) => {
      if (pending === undefined) {
        upstream.write(chunk);
        return;
      }
      pending = Buffer.concat([pending, chunk]);
      const end = pending.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = pending.subarray(0, end + 4);
      const text = head.toString('latin1');
      const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(text)?.[1] ?? 0);
      if (!text.startsWith('PUT ') || length === 0) {
        upstream.write(pending);
        pending = undefined;
        return;
      }
      const body = pending.subarray(end + 4);
      if (body.length < length) return;
      pending = undefined;
      altered++;
      if (alter === 'flip') {
        const changed = Buffer.from(body);
        changed[0] = changed[0]! ^ 0x01;
        upstream.write(Buffer.concat([head, changed]));
      } else {
        upstream.end(Buffer.concat([head, body.subarray(0, length - 1)]));
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    altered: () => altered,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}
