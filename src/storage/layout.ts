/**
 * Object key layout in the store (DESIGN.md "Storage layout"). Every key the product writes is built here.
 * Bundle and delta objects are content-addressed and immutable; the index and the root are the only objects that
 * are overwritten.
 */
export interface AppRef {
  namespace: string;
  name: string;
}

function clean(prefix: string): string {
  return prefix.replace(/^\/+|\/+$/g, '');
}

function join(...parts: string[]): string {
  return parts.filter((p) => p.length > 0).join('/');
}

export class StorageLayout {
  readonly prefix: string;

  constructor(prefix = '') {
    this.prefix = clean(prefix);
  }

  appPrefix(app: AppRef): string {
    return join(this.prefix, app.namespace, app.name) + '/';
  }

  /** `<prefix>/<ns>/<app>/bundles/<sha256 of the stored object>.zip` */
  bundleKey(app: AppRef, storedSha256: string): string {
    return this.appPrefix(app) + `bundles/${storedSha256}.zip`;
  }

  /** `<prefix>/<ns>/<app>/files/<sha256 of the stored body>` — delta (manifest) file bodies. */
  deltaFileKey(app: AppRef, storedSha256: string): string {
    return this.appPrefix(app) + `files/${storedSha256}`;
  }

  indexKey(app: AppRef): string {
    return this.appPrefix(app) + 'index.json';
  }

  /** Prefix under which update-service replicas write their stats rollups (the only prefix they may write). */
  statsPrefix(app: AppRef): string {
    return this.appPrefix(app) + 'stats/';
  }

  /**
   * `<prefix>/<ns>/<app>/overrides/<shard>.json` — channels that plugins older than 5.34/6.34/7.34 selected with
   * setChannel (they expect the server to keep them), by hashed device id; written by the update service.
   */
  channelOverridesKey(app: AppRef, shard: string): string {
    return this.channelOverridesPrefix(app) + `${shard}.json`;
  }

  channelOverridesPrefix(app: AppRef): string {
    return this.appPrefix(app) + 'overrides/';
  }

  rootKey(): string {
    return join(this.prefix, 'root.json');
  }
}
