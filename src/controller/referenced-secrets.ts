/**
 * Picks up changes of the Secrets that apps and bundles name (signing keys, source credentials, CAs, client
 * certificates, verification keys) without an annotation, within the RBAC of ADR 0013 (Secrets: `get` only, so no
 * watch): while leading, every period the controller re-reads each referenced Secret and compares its
 * resourceVersion with the one seen last time. A change, or a Secret appearing or disappearing, enqueues the objects
 * that name it. A Secret first named after the first round also enqueues its objects (it may have changed between
 * their reconcile and this read); on the first round of a term the Secrets are only recorded, since the informers'
 * initial list reconciles every object anyway. docs/adr/0032-recovery-without-kubectl.md.
 */
import type { Logger } from 'pino';
import { realClock, sleep, type Clock } from '../kube/clock.js';
import { keyString } from '../kube/client.js';
import {
  isNotFound,
  keyOf,
  type KubeObject,
  type ObjectClient,
  type ObjectKey,
  type ResourceType,
} from '../kube/types.js';
import {
  APP_RESOURCE,
  BUNDLE_RESOURCE,
  SECRET_RESOURCE,
  type LiveUpdateApp,
  type LiveUpdateBundle,
} from '../api/v1alpha1/index.js';
import type { Runnable } from './manager.js';

/** What objects of the same namespace a Secret name function may look at: the apps, by name. */
type AppsByName = ReadonlyMap<string, LiveUpdateApp>;

/**
 * The controllers (by name) whose objects name Secrets, and the names each object depends on. A bundle depends on
 * its app's signing key too: it is rebuilt with a rotated key even if no app status event reaches it.
 */
export const SECRET_REFERRERS: readonly {
  readonly controller: string;
  readonly type: ResourceType;
  readonly secretNames: (obj: KubeObject, apps: AppsByName) => string[];
}[] = [
  {
    controller: 'liveupdateapp',
    type: APP_RESOURCE,
    secretNames: (obj) => signingKeySecret(obj as LiveUpdateApp),
  },
  {
    controller: 'liveupdatebundle',
    type: BUNDLE_RESOURCE,
    secretNames: (obj, apps) => bundleSecretNames(obj, apps),
  },
];

function signingKeySecret(app: LiveUpdateApp | undefined): string[] {
  const name = app?.spec.signingKey?.secretName;
  return name ? [name] : [];
}

export function bundleSecretNames(obj: KubeObject, apps: AppsByName = new Map()): string[] {
  const bundle = obj as LiveUpdateBundle;
  const { http, s3, oci } = bundle.spec.source;
  const refs = [
    http?.secretRef,
    http?.caSecretRef,
    http?.certSecretRef,
    s3?.secretRef,
    s3?.caSecretRef,
    oci?.secretRef,
    oci?.caSecretRef,
    oci?.certSecretRef,
    oci?.verify?.secretRef,
  ];
  const names = refs.flatMap((ref) => (ref?.name ? [ref.name] : []));
  return [...new Set([...names, ...signingKeySecret(apps.get(bundle.spec.app))])];
}

export interface ReferencedSecretsOptions {
  /** Reads Secrets from the API server (they have no informer). */
  client: ObjectClient;
  /** The cached objects of a type (empty while not leading). */
  objects: (type: ResourceType) => KubeObject[];
  enqueue: (controller: string, key: ObjectKey) => void;
  log: Logger;
  periodMs: number;
  /** Secrets read at once (default 4). */
  concurrency?: number;
  clock?: Clock;
}

/** resourceVersion of a Secret as last read; ABSENT when it did not exist. */
const ABSENT = '';

export class ReferencedSecrets implements Runnable {
  readonly name = 'referenced-secrets';
  private readonly seen = new Map<string, string>();
  private primed = false;

  constructor(private readonly opts: ReferencedSecretsOptions) {}

  async run(signal: AbortSignal): Promise<void> {
    // A new term starts from what this term reads: the reconciles of the initial list read every Secret anyway.
    this.seen.clear();
    this.primed = false;
    while (!signal.aborted) {
      await this.poll(signal);
      await sleep(this.opts.clock ?? realClock, this.opts.periodMs, signal).catch(() => undefined);
    }
  }

  /** One round: reads each referenced Secret once; returns the keys enqueued ("<controller> <namespace>/<name>"). */
  async poll(signal?: AbortSignal): Promise<string[]> {
    const referrers = new Map<string, { controller: string; key: ObjectKey }[]>();
    const apps = new Map<string, Map<string, LiveUpdateApp>>();
    for (const app of this.opts.objects(APP_RESOURCE) as LiveUpdateApp[]) {
      const namespace = app.metadata.namespace ?? '';
      if (!apps.has(namespace)) apps.set(namespace, new Map());
      apps.get(namespace)!.set(app.metadata.name, app);
    }
    for (const { controller, type, secretNames } of SECRET_REFERRERS) {
      for (const obj of this.opts.objects(type)) {
        if (obj.metadata.deletionTimestamp) continue;
        for (const name of secretNames(obj, apps.get(obj.metadata.namespace ?? '') ?? new Map())) {
          const secret = keyString({ namespace: obj.metadata.namespace ?? '', name });
          const list = referrers.get(secret) ?? [];
          list.push({ controller, key: keyOf(obj) });
          referrers.set(secret, list);
        }
      }
    }
    for (const secret of this.seen.keys()) if (!referrers.has(secret)) this.seen.delete(secret);

    const enqueued: string[] = [];
    const pending = [...referrers.entries()];
    const worker = async (): Promise<void> => {
      for (let next = pending.shift(); next && !signal?.aborted; next = pending.shift()) {
        const [secret, objects] = next;
        const version = await this.readVersion(secret);
        if (version === undefined) continue;
        const before = this.seen.get(secret);
        this.seen.set(secret, version);
        if (before === version || (before === undefined && !this.primed)) continue;
        this.opts.log.info({ secret, objects: objects.length }, 'referenced secret changed, reconciling');
        for (const { controller, key } of objects) {
          this.opts.enqueue(controller, key);
          enqueued.push(`${controller} ${keyString(key)}`);
        }
      }
    };
    await Promise.all(Array.from({ length: this.opts.concurrency ?? 4 }, worker));
    this.primed = true;
    return enqueued;
  }

  /** The Secret's resourceVersion, ABSENT when it does not exist, undefined when it could not be read. */
  private async readVersion(secret: string): Promise<string | undefined> {
    const slash = secret.indexOf('/');
    const key = { namespace: secret.slice(0, slash), name: secret.slice(slash + 1) };
    try {
      const obj = await this.opts.client.get<KubeObject>(SECRET_RESOURCE, key);
      return obj.metadata.resourceVersion ?? ABSENT;
    } catch (error) {
      if (isNotFound(error)) return ABSENT;
      // Forbidden (a namespace outside the RBAC) or an outage: keep what was seen, try again next round.
      this.opts.log.warn({ err: error, secret }, 'cannot read a referenced secret');
      return undefined;
    }
  }
}
