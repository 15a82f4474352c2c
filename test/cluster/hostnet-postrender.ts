// Helm post-renderer for the single loopback node (test/cluster/node.ts): only what that node forces, nothing else.
// - hostNetwork Pods: the CNI config gives Pods nothing but a loopback interface (no bridge may be created here), so a
//   Pod is reachable only on the host's network;
// - probes sent to 127.0.0.1 (the kubelet would use the node's address as the Pod IP);
// - every listener on 127.0.0.1 with distinct ports (both components would bind 8081 on one host network), with the
//   containerPorts moved along so the probes and the Service's named targetPorts follow. The caller picks new ports for
//   every helm install/upgrade, so a surge Pod of the next revision binds other ports than the Pod it replaces and the
//   chart's own rolling-update strategy (the update server's maxUnavailable 0) works unchanged;
// - the API server at its loopback address (no kube-proxy routes the kubernetes Service's IP).
// Reads the rendered manifests on stdin, writes them on stdout; the settings come in LIVEUPDATE_POSTRENDER (JSON).
import { parseAllDocuments, stringify } from 'yaml';

export interface PostRenderSettings {
  readonly apiServer: { readonly host: string; readonly port: string };
  /** component → port name → [env variable holding the address, port] */
  readonly ports: Record<string, Record<string, readonly [string, number]>>;
}

interface Probe {
  httpGet?: { host?: string };
}

interface Container {
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  ports?: { name: string; containerPort: number }[];
  env?: { name: string; value?: string }[];
}

interface Manifest {
  kind?: string;
  spec?: {
    template: {
      metadata: { labels: Record<string, string> };
      spec: { hostNetwork?: boolean; containers: Container[] };
    };
  };
}

export function postRender(manifests: string, settings: PostRenderSettings): string {
  const out: string[] = [];
  for (const document of parseAllDocuments(manifests)) {
    const object = document.toJS() as Manifest | null;
    if (!object) continue;
    if (object.kind === 'Deployment' && object.spec) {
      const template = object.spec.template;
      const component = String(template.metadata.labels['app.kubernetes.io/component']);
      const ports = settings.ports[component];
      if (!ports) throw new Error(`no ports for component ${component}`);
      template.spec.hostNetwork = true;
      const container = template.spec.containers[0];
      if (!container) throw new Error(`${component}: no container`);
      for (const port of container.ports ?? []) {
        const setting = ports[port.name];
        if (!setting) throw new Error(`${component}: no port for ${port.name}`);
        const [variable, number] = setting;
        port.containerPort = number;
        const env = container.env?.find((e) => e.name === variable);
        if (!env) throw new Error(`${component}: no env ${variable}`);
        env.value = `127.0.0.1:${number}`;
      }
      // The kubelet probes the Pod IP, which for a host-network Pod is the node's address, not the loopback the
      // components listen on.
      for (const probe of [container.livenessProbe, container.readinessProbe, container.startupProbe])
        if (probe?.httpGet) probe.httpGet.host = '127.0.0.1';
      container.env = [
        ...(container.env ?? []),
        { name: 'KUBERNETES_SERVICE_HOST', value: settings.apiServer.host },
        { name: 'KUBERNETES_SERVICE_PORT', value: settings.apiServer.port },
      ];
    }
    out.push(stringify(object));
  }
  return out.join('---\n');
}

async function main(): Promise<void> {
  const settings = JSON.parse(process.env['LIVEUPDATE_POSTRENDER'] ?? '') as PostRenderSettings;
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  process.stdout.write(postRender(Buffer.concat(chunks).toString('utf8'), settings));
}

if (process.argv[1]?.endsWith('hostnet-postrender.ts')) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
