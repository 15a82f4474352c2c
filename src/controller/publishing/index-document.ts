/**
 * Writes an app's release index: every object it references is checked to exist first, then the index is written
 * with revision = previous + 1 (DESIGN.md "Storage layout"), conditionally on the ETag it was rendered from, so a
 * writer that read an older copy (a zombie leader, a second installation) fails instead of overwriting a newer one.
 * Nothing is written when the content did not change.
 */
import { createHash } from 'node:crypto';
import { ObjectNotFoundError, type ObjectStore } from '../../storage/object-store.js';
import type { StorageLayout } from '../../storage/layout.js';
import type { ReleaseIndex } from '../../storage/release-index.js';
import { validateReleaseIndex } from '../../storage/release-index-schema.js';
import { readDocument, type StoredDocument } from './documents.js';
import { sameContent, type RenderedIndex } from './render.js';

/** Stat calls in flight while checking that referenced objects exist. */
const STAT_CONCURRENCY = 8;

export class MissingObjectError extends Error {
  constructor(readonly key: string) {
    super(`the index references ${key}, which is not in the store`);
    this.name = 'MissingObjectError';
  }
}

export interface PublishResult {
  index: ReleaseIndex;
  indexKey: string;
  /** sha256:<hex> of the written document. */
  digest: string;
  /** False when the content was unchanged and nothing was written. */
  written: boolean;
}

/**
 * The index currently in the store with its ETag, or undefined when there is none. Throws DocumentUnreadableError
 * when one exists that this version cannot use (corrupt, or from a newer schema version): it is never replaced blindly.
 */
export function readIndex(
  store: ObjectStore,
  key: string,
  signal?: AbortSignal,
): Promise<StoredDocument<ReleaseIndex> | undefined> {
  return readDocument(store, key, validateReleaseIndex, signal);
}

export function referencedKeys(index: Pick<ReleaseIndex, 'bundles'>): string[] {
  const keys = new Set<string>();
  for (const bundle of Object.values(index.bundles)) {
    keys.add(bundle.objectKey);
    for (const file of bundle.manifest ?? []) keys.add(file.objectKey);
  }
  return [...keys];
}

async function assertObjectsExist(store: ObjectStore, keys: string[], signal?: AbortSignal): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < keys.length) {
      const key = keys[next++]!;
      try {
        await store.stat(key, signal);
      } catch (error) {
        if (error instanceof ObjectNotFoundError) throw new MissingObjectError(key);
        throw error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(STAT_CONCURRENCY, keys.length) }, worker));
}

function digestOf(body: string): string {
  return `sha256:${createHash('sha256').update(body).digest('hex')}`;
}

/**
 * Writes `content` as the app's next index revision unless the stored one already has this content.
 * `knownRevision` (from the app's status) guards against a lost or replaced index making the revision go back.
 * The write is conditional on `previous` (its ETag, or create-only when there was none): throws
 * PreconditionFailedError when someone else wrote the index since it was read; the caller reads again and retries.
 */
export async function publishIndex(
  store: ObjectStore,
  layout: StorageLayout,
  content: RenderedIndex,
  opts: {
    previous: StoredDocument<ReleaseIndex> | undefined;
    knownRevision: number;
    now: Date;
    signal?: AbortSignal;
  },
): Promise<PublishResult> {
  const indexKey = layout.indexKey(content.app);
  const previous = opts.previous?.doc;
  if (previous && sameContent(content, previous) && previous.revision >= opts.knownRevision) {
    return { index: previous, indexKey, digest: digestOf(JSON.stringify(previous)), written: false };
  }
  const index = validateReleaseIndex({
    ...content,
    revision: Math.max(previous?.revision ?? 0, opts.knownRevision) + 1,
    generatedAt: opts.now.toISOString(),
  });
  await assertObjectsExist(store, referencedKeys(index), opts.signal);
  const body = JSON.stringify(index);
  await store.put(indexKey, body, {
    contentType: 'application/json',
    ...(opts.previous ? { ifMatch: opts.previous.etag } : { ifNoneMatch: '*' as const }),
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  return { index, indexKey, digest: digestOf(body), written: true };
}
