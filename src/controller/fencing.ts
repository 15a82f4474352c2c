/**
 * Write fencing for a leader-elected controller (docs/adr/0009-fenced-leadership.md): the reconcilers' Kubernetes
 * client and object store refuse every write while the process does not hold a fresh lease (`holds()`, the
 * manager's {@link Manager.holdsLease}). A leader frozen past its renew deadline (SIGSTOP, a stalled VM) and resumed
 * after a standby took over thus writes nothing before it learns that it lost the lease and exits. Reads pass.
 * Conditional writes of the shared documents (ADR 0007) cover the one write already in flight when it froze.
 */
import type { KubeObject, ObjectClient, ObjectKey, ResourceType } from '../kube/types.js';
import type { Manager } from './manager.js';
import type { ObjectStore, PutOptions } from '../storage/object-store.js';
import type { Readable } from 'node:stream';

export class NotLeaderError extends Error {
  constructor(what: string) {
    super(`${what} refused: this controller does not hold a fresh leader lease`);
    this.name = 'NotLeaderError';
  }
}

type Fence = Pick<Manager, 'holdsLease'>;

function check(fence: Fence, what: string): void {
  if (!fence.holdsLease()) throw new NotLeaderError(what);
}

export function fencedClient(client: ObjectClient, fence: Fence): ObjectClient {
  const guarded =
    <A extends unknown[], R>(what: string, fn: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      check(fence, what);
      return fn(...args);
    };
  return {
    get: (type, key) => client.get(type, key),
    list: (type, namespace, labelSelector) => client.list(type, namespace, labelSelector),
    ...(client.listMatching ? { listMatching: client.listMatching.bind(client) } : {}),
    apply: <T extends KubeObject>(type: ResourceType, obj: KubeObject) =>
      guarded('apply', () => client.apply<T>(type, obj))(),
    mergePatch: <T extends KubeObject>(type: ResourceType, key: ObjectKey, patch: object) =>
      guarded('patch', () => client.mergePatch<T>(type, key, patch))(),
    applyStatus: <T extends KubeObject>(type: ResourceType, obj: KubeObject & { status: unknown }) =>
      guarded('status write', () => client.applyStatus<T>(type, obj))(),
    delete: (type, key) => guarded('delete', () => client.delete(type, key))(),
  };
}

export function fencedStore(store: ObjectStore, fence: Fence): ObjectStore {
  return {
    bucket: store.bucket,
    stat: (key, signal) => store.stat(key, signal),
    get: (key, opts) => store.get(key, opts),
    getBuffer: (key, opts) => store.getBuffer(key, opts),
    list: (prefix, signal) => store.list(prefix, signal),
    ...(store.presignGet ? { presignGet: store.presignGet.bind(store) } : {}),
    put: (key: string, body: Readable | Buffer | string, opts?: PutOptions) => {
      check(fence, `writing ${key}`);
      return store.put(key, body, opts);
    },
    remove: (key, signal) => {
      check(fence, `removing ${key}`);
      return store.remove(key, signal);
    },
  };
}
