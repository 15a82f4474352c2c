/**
 * The root document (one per storage prefix) lists every app index with its revision. Several writers share it:
 * controllers of other namespaces or installations on the same bucket, and for a moment a deposed leader. So:
 * - every write is conditional on the ETag it was computed from (create-only when there is no root), and a lost race
 *   (PreconditionFailedError) is redone on a fresh read;
 * - fields this version does not know are kept, at the top and in the entries of other apps (forward compatibility);
 * - a root that exists but cannot be read (not JSON, invalid, newer schemaVersion) is never rewritten: the publish
 *   fails with {@link RootDocumentUnreadableError} until a human repairs or deletes it;
 * - an entry never goes back to a lower revision, so a late writer cannot undo a newer publish;
 * - each process remembers the entries it published and {@link RootPublisher.settle} re-reads the root and restores
 *   any that a racing writer lost. S3 servers that evaluate conditions atomically (AWS S3, MinIO, Ceph RGW) never
 *   lose one; versitygw checks the condition before it receives the body, so two writers can both pass
 *   (docs/adr/0007-conditional-writes.md). The controller settles periodically while it leads.
 */
import type { Logger } from 'pino';
import { realClock, sleep } from '../../kube/clock.js';
import { PreconditionFailedError, type ObjectStore } from '../../storage/object-store.js';
import {
  RELEASE_ROOT_API_VERSION,
  RELEASE_SCHEMA_VERSION,
  type ReleaseRoot,
} from '../../storage/release-index.js';
import { validateReleaseRoot } from '../../storage/release-index-schema.js';
import { DocumentUnreadableError, readDocument } from './documents.js';

export type RootEntry = ReleaseRoot['apps'][number];

/** How often a lost race is redone before the publish fails as transient (each retry reads the root again). */
const MAX_ATTEMPTS = 16;
/** How long a removal is remembered, so that a racing writer cannot bring the entry back unnoticed. */
const REMOVAL_MEMORY_MS = 10 * 60_000;

export class RootDocumentUnreadableError extends Error {
  constructor(
    readonly key: string,
    problem: string,
  ) {
    super(
      `the root document ${key} is unreadable (${problem}); it is not rewritten: repair it, or delete it to let the controllers recreate it`,
    );
    this.name = 'RootDocumentUnreadableError';
  }
}

export class RootConflictError extends Error {
  constructor(key: string) {
    super(`the root document ${key} kept changing under ${MAX_ATTEMPTS} attempts to write it`);
    this.name = 'RootConflictError';
  }
}

/** What happened to one root write attempt, for metrics. */
export type RootWriteResult = 'written' | 'conflict' | 'repaired' | 'unreadable';

export interface RootPublisherOptions {
  onWrite?: (result: RootWriteResult) => void;
  log?: Logger;
  now?: () => Date;
}

type Desired = { entry: RootEntry } | { removedAt: number };

function appKey(a: { namespace: string; name: string }): string {
  return `${a.namespace}/${a.name}`;
}

function sameEntry(a: RootEntry, b: RootEntry): boolean {
  return (
    a.namespace === b.namespace &&
    a.name === b.name &&
    a.appId === b.appId &&
    a.indexKey === b.indexKey &&
    a.revision === b.revision
  );
}

export class RootPublisher {
  private chain: Promise<unknown> = Promise.resolve();
  private readonly desired = new Map<string, Desired>();
  /** Entries this process wrote and saw in the root afterwards; missing later = lost to a racing writer. */
  private readonly confirmed = new Set<string>();
  private readonly now: () => Date;

  constructor(
    private readonly store: ObjectStore,
    private readonly rootKey: string,
    private readonly opts: RootPublisherOptions = {},
  ) {
    this.now = opts.now ?? (() => new Date());
  }

  /** Adds or replaces the app's entry (never with a lower revision than the root has). */
  upsert(entry: RootEntry, signal?: AbortSignal): Promise<void> {
    this.desired.set(appKey(entry), { entry: { ...entry } });
    this.confirmed.delete(appKey(entry));
    return this.sync(signal);
  }

  remove(app: { namespace: string; name: string }, signal?: AbortSignal): Promise<void> {
    this.desired.set(appKey(app), { removedAt: this.now().getTime() });
    this.confirmed.delete(appKey(app));
    return this.sync(signal);
  }

  /** Re-reads the root and restores what this process published and a racing writer lost. */
  settle(signal?: AbortSignal): Promise<void> {
    return this.sync(signal);
  }

  /** Settles every `periodMs` until the signal aborts (while leading). Errors are logged and retried next period. */
  async run(signal: AbortSignal, periodMs: number): Promise<void> {
    while (!signal.aborted) {
      try {
        await sleep(realClock, periodMs, signal);
      } catch {
        return;
      }
      await this.settle(signal).catch((err: unknown) => {
        if (!signal.aborted) this.opts.log?.warn({ err }, 'root document check failed');
      });
    }
  }

  /** Serialized within the process: its workers publish several apps at once. */
  private sync(signal?: AbortSignal): Promise<void> {
    const run = this.chain.then(() => this.write(signal));
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async write(signal?: AbortSignal): Promise<void> {
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      signal?.throwIfAborted();
      let current;
      try {
        current = await readDocument(this.store, this.rootKey, validateReleaseRoot, signal);
      } catch (error) {
        if (error instanceof DocumentUnreadableError) {
          this.opts.onWrite?.('unreadable');
          throw new RootDocumentUnreadableError(this.rootKey, error.problem);
        }
        throw error;
      }
      const change = this.apply(current?.doc);
      if (!change) return;
      try {
        await this.store.put(this.rootKey, JSON.stringify(change.root), {
          contentType: 'application/json',
          ...(current ? { ifMatch: current.etag } : { ifNoneMatch: '*' as const }),
          ...(signal ? { signal } : {}),
        });
      } catch (error) {
        if (!(error instanceof PreconditionFailedError)) throw error;
        this.opts.onWrite?.('conflict');
        // another writer won this round: a short random pause breaks lockstep between two retrying writers
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 20 * attempt));
        continue;
      }
      // Only what this root contained: an upsert that arrived while the put was in flight is written next.
      for (const [key, want] of change.written) if (this.desired.get(key) === want) this.confirmed.add(key);
      this.opts.onWrite?.(change.repaired ? 'repaired' : 'written');
      if (change.repaired)
        this.opts.log?.warn(
          { key: this.rootKey },
          'root document had lost an entry of this controller, restored',
        );
      return;
    }
    throw new RootConflictError(this.rootKey);
  }

  /** The next root, or undefined when `root` already says what this process wants. */
  private apply(
    root: ReleaseRoot | undefined,
  ): { root: ReleaseRoot; repaired: boolean; written: Map<string, Desired> } | undefined {
    const now = this.now().getTime();
    const apps = new Map((root?.apps ?? []).map((a) => [appKey(a), a]));
    /** The desired entries the next root contains, as they were when it was computed. */
    const written = new Map<string, Desired>();
    let changed = false;
    let repaired = false;
    for (const [key, want] of this.desired) {
      const have = apps.get(key);
      if ('removedAt' in want) {
        if (have) {
          apps.delete(key);
          changed = true;
        } else if (now - want.removedAt > REMOVAL_MEMORY_MS) this.desired.delete(key);
        continue;
      }
      if (have && (sameEntry(have, want.entry) || have.revision > want.entry.revision)) {
        this.confirmed.add(key);
        continue;
      }
      if (this.confirmed.has(key)) repaired = true;
      apps.set(key, want.entry);
      written.set(key, want);
      changed = true;
    }
    if (!changed) return undefined;
    const next: ReleaseRoot = {
      ...root,
      apiVersion: RELEASE_ROOT_API_VERSION,
      kind: 'ReleaseRoot',
      schemaVersion: RELEASE_SCHEMA_VERSION,
      generatedAt: this.now().toISOString(),
      apps: [...apps.values()].sort((a, b) => appKey(a).localeCompare(appKey(b))),
    };
    return { root: validateReleaseRoot(next), repaired, written };
  }
}
