import type { LiveUpdateApp } from '../../api/v1alpha1/index.js';
import { StorageLayout } from '../../storage/layout.js';

/** The app's key layout: its spec.storage.prefix replaces the operator's prefix for that app's objects. */
export function layoutForApp(app: LiveUpdateApp, storagePrefix = ''): StorageLayout {
  return new StorageLayout(app.spec.storage?.prefix ?? storagePrefix);
}
