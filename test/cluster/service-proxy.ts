// What kube-proxy does for one Service, on loopback: the node of test/cluster/node.ts has no kube-proxy (its modes
// program iptables, nftables or IPVS, none of which may be touched on these machines), so devices reach the update
// service through this TCP proxy instead of a ClusterIP. It follows the Service's EndpointSlices, written by the real
// kube-controller-manager from the Pods' readiness as the kubelet probes it, and routes each new connection as
// kube-proxy does: round robin over the ready endpoints; when none is ready, over the serving terminating ones; when
// there is none of either, the connection is refused. Host-network Pods here listen on 127.0.0.1 only, so every
// endpoint is dialled at 127.0.0.1 on the port its slice names.
import { createServer, connect, type Server, type Socket } from 'node:net';
import { Informer } from '../../src/kube/informer.js';
import type { KubeClient } from '../../src/kube/client.js';
import type { KubeObject, ResourceType } from '../../src/kube/types.js';
import { silentLogger } from '../../src/observability/logger.js';

const ENDPOINT_SLICE_RESOURCE: ResourceType = {
  group: 'discovery.k8s.io',
  version: 'v1',
  kind: 'EndpointSlice',
  plural: 'endpointslices',
  namespaced: true,
};

interface EndpointSlice extends KubeObject {
  ports?: { name?: string; port?: number }[] | null;
  endpoints?:
    | {
        addresses: string[];
        conditions?: { ready?: boolean; serving?: boolean; terminating?: boolean };
        targetRef?: { name?: string };
      }[]
    | null;
}

export interface ServiceProxyOptions {
  readonly kube: KubeClient;
  readonly namespace: string;
  readonly service: string;
  /** The Service port (by name) this proxy stands for. */
  readonly portName: string;
  /** Loopback port the proxy listens on (where devices connect). */
  readonly listenPort: number;
}

interface Backend {
  readonly pod: string;
  readonly port: number;
}

export class ServiceProxy {
  private readonly informer: Informer<EndpointSlice>;
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private next = 0;
  /** Connections routed per `pod:port` since start, and connections refused for want of an endpoint. */
  readonly routed = new Map<string, number>();
  refused = 0;

  constructor(readonly options: ServiceProxyOptions) {
    this.informer = new Informer<EndpointSlice>({
      type: ENDPOINT_SLICE_RESOURCE,
      source: options.kube,
      log: silentLogger(),
      namespace: options.namespace,
      labelSelector: `kubernetes.io/service-name=${options.service}`,
    });
  }

  /** The endpoints new connections go to now (kube-proxy's choice: ready, else serving and terminating). */
  backends(): Backend[] {
    const ready: Backend[] = [];
    const terminating: Backend[] = [];
    for (const slice of this.informer.list()) {
      const port = slice.ports?.find((p) => p.name === this.options.portName)?.port;
      if (port === undefined) continue;
      for (const endpoint of slice.endpoints ?? []) {
        const pod = endpoint.targetRef?.name ?? endpoint.addresses[0] ?? '?';
        const conditions = endpoint.conditions ?? {};
        // An unset `ready` means ready (discovery.k8s.io/v1).
        if (conditions.ready !== false) ready.push({ pod, port });
        else if (conditions.serving && conditions.terminating) terminating.push({ pod, port });
      }
    }
    const sort = (list: Backend[]) => list.sort((a, b) => a.pod.localeCompare(b.pod) || a.port - b.port);
    return ready.length > 0 ? sort(ready) : sort(terminating);
  }

  /** The EndpointSlices as the informer holds them (name, ports, endpoints with conditions), for diagnostics. */
  slices(): { name: string; ports: EndpointSlice['ports']; endpoints: EndpointSlice['endpoints'] }[] {
    return this.informer
      .list()
      .map((slice) => ({ name: slice.metadata.name, ports: slice.ports, endpoints: slice.endpoints }));
  }

  async start(): Promise<void> {
    this.informer.start();
    await this.informer.waitForSync();
    const server = createServer((client) => this.route(client));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.listenPort, '127.0.0.1', () => resolve());
    });
  }

  private route(client: Socket): void {
    const backends = this.backends();
    if (backends.length === 0) {
      this.refused++;
      client.resetAndDestroy();
      return;
    }
    const backend = backends[this.next++ % backends.length]!;
    const key = `${backend.pod}:${backend.port}`;
    this.routed.set(key, (this.routed.get(key) ?? 0) + 1);
    const upstream = connect(backend.port, '127.0.0.1');
    for (const socket of [client, upstream]) {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    }
    // Either side failing or closing ends both, as a NATed connection would.
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.resetAndDestroy());
    client.pipe(upstream);
    upstream.pipe(client);
  }

  async stop(): Promise<void> {
    const server = this.server;
    const closed = server && new Promise<void>((resolve) => server.close(() => resolve()));
    // close() waits for open connections: clients keep theirs alive, so end them.
    for (const socket of this.sockets) socket.destroy();
    await closed;
    await this.informer.stop();
  }
}
