/**
 * Picks up changes of the Secrets that apps and bundles name (signing keys, source credentials, CAs, client
 * certificates, verification keys) without an annotation, within the RBAC of ADR 0013 (Secrets: `get` only, so no
 * watch): while leading, every period the controller re-reads each referenced Secret into the {@link SecretCache}
 * the reconcilers read from, and enqueues the objects whose last reconcile read another resourceVersion of it (a
 * changed, created or deleted Secret). An object that read the version the poll sees is not enqueued, whenever it
 * first named the Secret; one that never read it (its reconcile had not got that far) is not either: whatever
 * stopped it enqueues it again. docs/adr/0032-recovery-without-kubectl.md, docs/adr/0037-secret-reads-from-a-bounded-cache.md.
 */
import type { Logger } from 'pino';
import { realClock, sleep, type Clock } from '../kube/clock.js';
import { keyString, parseKey } from '../kube/client.js';
import { keyOf, type KubeObject, type ObjectKey, type ResourceType } from '../kube/types.js';
import {
  APP_RESOURCE,
  BUNDLE_RESOURCE,
  type LiveUpdateApp,
  type LiveUpdateBundle,
} from '../api/v1alpha1/index.js';
import type { Runnable } from './manager.js';
import { secretReaderId, type SecretCache } from './secret-cache.js';

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
  /** Reads Secrets from the API server (they have no informer) and remembers what each reconcile read. */
  cache: SecretCache;
  /** The cached objects of a type (empty while not leading). */
  objects: (type: ResourceType) => KubeObject[];
  enqueue: (controller: string, key: ObjectKey) => void;
  log: Logger;
  periodMs: number;
  /** Secrets read at once (default 4). */
  concurrency?: number;
  clock?: Clock;
}

interface Referrer {
  controller: string;
  key: ObjectKey;
  reader: string;
}

export class ReferencedSecrets implements Runnable {
  readonly name = 'referenced-secrets';

  constructor(private readonly opts: ReferencedSecretsOptions) {}

  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.poll(signal);
      await sleep(this.opts.clock ?? realClock, this.opts.periodMs, signal).catch(() => undefined);
    }
  }

  /** One round: reads each referenced Secret once; returns the keys enqueued ("<controller> <namespace>/<name>"). */
  async poll(signal?: AbortSignal): Promise<string[]> {
    const referrers = new Map<string, Referrer[]>();
    const apps = new Map<string, Map<string, LiveUpdateApp>>();
    for (const app of this.opts.objects(APP_RESOURCE) as LiveUpdateApp[]) {
      const namespace = app.metadata.namespace ?? '';
      if (!apps.has(namespace)) apps.set(namespace, new Map());
      apps.get(namespace)!.set(app.metadata.name, app);
    }
    for (const { controller, type, secretNames } of SECRET_REFERRERS) {
      for (const obj of this.opts.objects(type)) {
        if (obj.metadata.deletionTimestamp) continue;
        const key = keyOf(obj);
        for (const name of secretNames(obj, apps.get(key.namespace) ?? new Map())) {
          const secret = keyString({ namespace: key.namespace, name });
          const list = referrers.get(secret) ?? [];
          list.push({ controller, key, reader: secretReaderId(type, key) });
          referrers.set(secret, list);
        }
      }
    }
    const { cache } = this.opts;
    cache.retain(
      new Map([...referrers].map(([secret, list]) => [secret, new Set(list.map((r) => r.reader))])),
    );

    const enqueued: string[] = [];
    const pending = [...referrers.entries()];
    const worker = async (): Promise<void> => {
      for (let next = pending.shift(); next && !signal?.aborted; next = pending.shift()) {
        const [secret, objects] = next;
        const key = parseKey(secret);
        const version = await this.readVersion(key);
        if (version === undefined) continue;
        const stale = objects.filter((o) => {
          const read = cache.versionReadBy(key, o.reader);
          return read !== undefined && read !== version;
        });
        if (stale.length === 0) continue;
        this.opts.log.info({ secret, objects: stale.length }, 'referenced secret changed, reconciling');
        for (const { controller, key: objectKey, reader } of stale) {
          cache.recordRead(key, reader, version);
          this.opts.enqueue(controller, objectKey);
          enqueued.push(`${controller} ${keyString(objectKey)}`);
        }
      }
    };
    await Promise.all(Array.from({ length: this.opts.concurrency ?? 4 }, worker));
    return enqueued;
  }

  /** The Secret's resourceVersion (ABSENT when it does not exist), read into the cache; undefined when unreadable. */
  private async readVersion(key: ObjectKey): Promise<string | undefined> {
    try {
      return await this.opts.cache.refresh(key);
    } catch (error) {
      // Forbidden (a namespace outside the RBAC) or an outage: keep what was read, try again next round.
      this.opts.log.warn({ err: error, secret: keyString(key) }, 'cannot read a referenced secret');
      return undefined;
    }
  }
}
