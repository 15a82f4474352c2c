/** Listing a few objects among many: from the cache without copying the rest when the client can. */
import type { KubeObject, ObjectClient, ResourceType } from '../../kube/types.js';

/** The objects of `namespace` (undefined: every namespace) that `match` (which must not modify what it is given). */
export function listWhere<T extends KubeObject>(
  client: ObjectClient,
  type: ResourceType,
  namespace: string | undefined,
  match: (obj: T) => boolean,
): Promise<T[]> {
  return client.listMatching
    ? client.listMatching<T>(type, namespace, match)
    : client.list<T>(type, namespace).then((items) => items.filter(match));
}
