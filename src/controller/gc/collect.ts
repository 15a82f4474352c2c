/**
 * Garbage collection of an app's objects, mark and sweep (Flux source-controller's artifact GC is the anchor;
 * ordering in ADR 0017).
 *
 * Mark (the live set): every object the published index references (bundle zips and delta files) and the index
 * itself; the stored artifact (zip, delta manifest and the delta files it lists) of every LiveUpdateBundle of the app
 * that is within `keepLast` most recent or younger than `unreferencedTTL`; every object younger than the grace
 * (max of `unreferencedTTL` and a floor that covers builds in flight: objects written before a bundle's status
 * records them); stats rollups updated within `statsRetention`.
 * Sweep: everything else under the app's prefix, but only if the index is still the one marked (its ETag is checked
 * again right before the sweep; a publish in between aborts the run, the next run starts over).
 * The app reconciler runs it after its publish step, so the work queue serializes it with the app's own publishes.
 */
import type { LiveUpdateBundle } from '../../api/v1alpha1/index.js';
import type { AppRef, StorageLayout } from '../../storage/layout.js';
import { ObjectNotFoundError, type ObjectInfo, type ObjectStore } from '../../storage/object-store.js';
import type { IndexManifestEntry } from '../../storage/release-index.js';
import { readIndex, referencedKeys } from '../publishing/index-document.js';

/** Objects younger than this are never collected, whatever unreferencedTTL says (builds in flight). */
export const MIN_GRACE_MS = 10 * 60_000;
const DELETE_CONCURRENCY = 8;
const MAX_MANIFEST_BYTES = 32 * 1024 * 1024;

export interface GcInput {
  store: ObjectStore;
  layout: StorageLayout;
  app: AppRef;
  /** The app's LiveUpdateBundles (any state). */
  bundles: readonly LiveUpdateBundle[];
  keepLast: number;
  unreferencedTtlMs: number;
  statsRetentionMs: number;
  now: Date;
  /** Floor of the grace period (default {@link MIN_GRACE_MS}); tests lower it. */
  minGraceMs?: number;
  signal?: AbortSignal;
}

export interface GcResult {
  /** Objects listed under the app's prefix. */
  scanned: number;
  deleted: Array<{ key: string; size: number }>;
  bytes: number;
  errors: number;
  /** Set when the run stopped before sweeping because the index changed after it was marked. */
  aborted?: 'index-changed';
}

async function manifestKeys(store: ObjectStore, key: string, signal?: AbortSignal): Promise<string[]> {
  try {
    const { data } = await store.getBuffer(key, {
      maxBytes: MAX_MANIFEST_BYTES,
      ...(signal ? { signal } : {}),
    });
    const entries = JSON.parse(data.toString('utf8')) as IndexManifestEntry[];
    return Array.isArray(entries) ? entries.map((e) => e.objectKey).filter((k) => typeof k === 'string') : [];
  } catch (error) {
    if (error instanceof ObjectNotFoundError || error instanceof SyntaxError) return [];
    throw error;
  }
}

/** Age of a stats rollup by its `updatedAt` (when its replica last wrote it), else by the object's time. */
async function rollupAge(
  store: ObjectStore,
  info: ObjectInfo,
  now: number,
  signal?: AbortSignal,
): Promise<number> {
  const fallback = now - info.lastModified.getTime();
  try {
    const { data } = await store.getBuffer(info.key, {
      maxBytes: MAX_MANIFEST_BYTES,
      ...(signal ? { signal } : {}),
    });
    const updatedAt = Date.parse(
      (JSON.parse(data.toString('utf8')) as { updatedAt?: string }).updatedAt ?? '',
    );
    return Number.isFinite(updatedAt) ? Math.max(now - updatedAt, fallback) : fallback;
  } catch (error) {
    if (error instanceof ObjectNotFoundError || error instanceof SyntaxError) return fallback;
    throw error;
  }
}

async function indexEtag(store: ObjectStore, key: string, signal?: AbortSignal): Promise<string | undefined> {
  try {
    return (await store.stat(key, signal)).etag;
  } catch (error) {
    if (error instanceof ObjectNotFoundError) return undefined;
    throw error;
  }
}

export async function collectGarbage(input: GcInput): Promise<GcResult> {
  const { store, layout, app, signal } = input;
  const now = input.now.getTime();
  const indexKey = layout.indexKey(app);
  const statsPrefix = layout.statsPrefix(app);
  const overridesPrefix = layout.channelOverridesPrefix(app);
  const grace = Math.max(input.unreferencedTtlMs, input.minGraceMs ?? MIN_GRACE_MS);

  // Mark: the published index first (with its ETag), then the bundles, then the listing.
  const stored = await readIndex(store, indexKey, signal);
  const live = new Set<string>([indexKey]);
  if (stored) for (const key of referencedKeys(stored.doc)) live.add(key);

  const withArtifact = input.bundles
    .filter((b) => b.status?.artifact !== undefined)
    .sort((a, b) =>
      (b.status!.artifact!.lastUpdateTime ?? '').localeCompare(a.status!.artifact!.lastUpdateTime ?? ''),
    );
  let unreferencedKept = 0;
  for (const bundle of withArtifact) {
    const artifact = bundle.status!.artifact!;
    const served = live.has(artifact.objectKey);
    const young = now - Date.parse(artifact.lastUpdateTime ?? '') < input.unreferencedTtlMs;
    if (!served && !bundle.metadata.deletionTimestamp) {
      if (unreferencedKept >= input.keepLast && !young) continue;
      unreferencedKept++;
    } else if (!served) continue;
    live.add(artifact.objectKey);
    if (artifact.manifestKey) {
      live.add(artifact.manifestKey);
      for (const key of await manifestKeys(store, artifact.manifestKey, signal)) live.add(key);
    }
  }

  const candidates: ObjectInfo[] = [];
  let scanned = 0;
  for await (const info of store.list(layout.appPrefix(app), signal)) {
    scanned++;
    if (live.has(info.key)) continue;
    const age = now - info.lastModified.getTime();
    // Legacy plugins' channel overrides (ADR 0016): a shard nobody wrote for statsRetention holds only stale entries.
    if (info.key.startsWith(overridesPrefix)) {
      if (age > input.statsRetentionMs) candidates.push(info);
      continue;
    }
    if (info.key.startsWith(statsPrefix)) {
      if ((await rollupAge(store, info, now, signal)) > input.statsRetentionMs) candidates.push(info);
      continue;
    }
    if (age > grace) candidates.push(info);
  }

  // A publish since the mark may reference objects marked as garbage: start over next time.
  if ((await indexEtag(store, indexKey, signal)) !== stored?.etag) {
    return { scanned, deleted: [], bytes: 0, errors: 0, aborted: 'index-changed' };
  }

  // Sweep.
  const deleted: GcResult['deleted'] = [];
  let errors = 0;
  let next = 0;
  const worker = async () => {
    while (next < candidates.length) {
      const info = candidates[next++]!;
      try {
        await store.remove(info.key, signal);
        deleted.push({ key: info.key, size: info.size });
      } catch (error) {
        if (error instanceof ObjectNotFoundError) continue;
        if (signal?.aborted) throw error;
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(DELETE_CONCURRENCY, candidates.length) }, worker));
  return { scanned, deleted, bytes: deleted.reduce((n, d) => n + d.size, 0), errors };
}
