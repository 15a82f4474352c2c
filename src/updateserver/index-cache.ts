/**
 * The release-index cache: everything the update service answers comes from here, in memory.
 *
 * Every poll does one conditional GET of root.json (If-None-Match on the last ETag). When the root changed, or an app
 * is still behind the revision the root announces, that app's index is fetched, parsed, validated against the
 * schema and compiled; the whole snapshot (app id → compiled index, plus the download allow-list) is then replaced
 * in one assignment, so a request never sees half of an update.
 *
 * One app can never take the others down (docs/adr/0008-readiness-model.md):
 * - the replica is ready once the root was read (a missing root on a fresh install counts as "no apps yet");
 * - an app whose index cannot be used keeps its last good index; without one it is *failed*: its devices get a
 *   per-app error (see {@link IndexCache.failure}), the others are unaffected;
 * - a root that disappears or becomes unreadable after one was loaded keeps the last good state; only an explicit,
 *   valid root that omits an app removes it.
 * Every failure counts in `liveupdate_index_load_errors_total`, `liveupdate_index_apps{state}` and the readiness
 * detail.
 */
import type { Logger } from '../observability/logger.js';
import { ObjectNotFoundError } from '../storage/object-store.js';
import type { ObjectStore } from '../storage/object-store.js';
import type { StorageLayout } from '../storage/layout.js';
import type { ReleaseIndex, ReleaseRoot } from '../storage/release-index.js';
import { validateReleaseIndex, validateReleaseRoot } from '../storage/release-index-schema.js';
import { compileIndex, type CompiledApp } from './compiled-index.js';
import type { UpdateServerMetrics } from './metrics.js';

/** Validates a parsed index document; throws with a readable message when it does not match the schema. */
export type IndexValidator = (doc: unknown) => ReleaseIndex;

export interface IndexSnapshot {
  readonly apps: ReadonlyMap<string, CompiledApp>;
  /** Object key → size, for every key any loaded index references (the download allow-list). */
  readonly objects: ReadonlyMap<string, number>;
}

export interface IndexCacheOptions {
  store: ObjectStore;
  layout: StorageLayout;
  /** Default: validateReleaseIndex (the committed JSON schema). */
  validate?: IndexValidator;
  logger: Logger;
  metrics: UpdateServerMetrics;
  pollSeconds?: number;
  /** Largest index or root object accepted (default 32 MiB). */
  maxObjectBytes?: number;
  /** Per-request timeout against the store (default 10 s). */
  requestTimeoutMs?: number;
  now?: () => number;
}

interface AppState {
  app: CompiledApp | undefined;
  /** Why the last load failed (cleared by a successful load). */
  error: string | undefined;
  /** Last time (ms) this replica confirmed the served index is what the root announces. */
  confirmedAt: number;
  /** Revision the root announced at the last poll. */
  wanted: number;
  /** Root revision and app name the served index was loaded for (a recreated app may restart at a lower revision). */
  loadedFor: string | undefined;
}

const EMPTY: IndexSnapshot = { apps: new Map(), objects: new Map() };

export class IndexCache {
  private snapshotValue: IndexSnapshot = EMPTY;
  private readonly states = new Map<string, AppState>();
  private rootEtag: string | undefined;
  private rootEntries: ReleaseRoot['apps'] = [];
  private rootLoaded = false;
  private lastErrorValue: string | undefined;
  private readonly pollMs: number;
  private readonly maxBytes: number;
  private readonly timeoutMs: number;
  private readonly now: () => number;

  constructor(private readonly opts: IndexCacheOptions) {
    this.pollMs = Math.max(0.1, opts.pollSeconds ?? 5) * 1000;
    this.maxBytes = opts.maxObjectBytes ?? 32 * 1024 * 1024;
    this.timeoutMs = opts.requestTimeoutMs ?? 10_000;
    this.now = opts.now ?? Date.now;
    opts.metrics.setIndexAgeSource(() => this.ages());
  }

  /** The current snapshot; replaced as a whole, never mutated. */
  get snapshot(): IndexSnapshot {
    return this.snapshotValue;
  }

  app(appId: string): CompiledApp | undefined {
    return this.snapshotValue.apps.get(appId);
  }

  /** Ready once the root was read: an app whose index cannot be loaded only fails that app. */
  get ready(): boolean {
    return this.rootLoaded;
  }

  /** Why the cache is not ready or is degraded (undefined when the last poll was clean). */
  get reason(): string | undefined {
    return this.lastErrorValue;
  }

  /**
   * Why an app the root lists cannot be answered (no index of it could be loaded yet), or undefined when it is served
   * or unknown. The detail stays in logs, metrics and the admin port's readiness; devices get a generic answer.
   */
  failure(appId: string): string | undefined {
    const state = this.states.get(appId);
    return state && !state.app ? (state.error ?? 'not loaded yet') : undefined;
  }

  /** Polls until the signal aborts. Never throws: errors are recorded and retried at the next tick. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.poll(signal);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, this.pollMs);
        signal.addEventListener(
          'abort',
          () => {
            clearTimeout(t);
            resolve();
          },
          { once: true },
        );
      });
    }
  }

  /** One poll of the root and of every app that is behind. Returns true when the snapshot changed. */
  async poll(signal?: AbortSignal): Promise<boolean> {
    const errors: string[] = [];
    let rootChanged = false;
    try {
      rootChanged = await this.refreshRoot(signal);
    } catch (err) {
      this.opts.metrics.indexLoadErrors.inc({ reason: errorReason(err, 'root') });
      errors.push(`root: ${message(err)}`);
      this.opts.logger.warn({ err: message(err) }, 'release root not loaded, keeping the last good indexes');
      this.finish(errors, false);
      return false;
    }
    const now = this.now();
    let changed = rootChanged;
    const entries = this.rootEntries;
    const seen = new Set<string>();
    for (const entry of entries) {
      if (seen.has(entry.appId)) {
        errors.push(`root lists app id ${entry.appId} twice; ${entry.namespace}/${entry.name} ignored`);
        this.opts.metrics.indexLoadErrors.inc({ reason: 'root_invalid' });
        continue;
      }
      seen.add(entry.appId);
      let state = this.states.get(entry.appId);
      if (!state) {
        state = {
          app: undefined,
          error: undefined,
          confirmedAt: 0,
          wanted: entry.revision,
          loadedFor: undefined,
        };
        this.states.set(entry.appId, state);
      }
      state.wanted = entry.revision;
      const loadKey = `${entry.namespace}/${entry.name}@${entry.revision}`;
      if (state.app && state.loadedFor === loadKey) {
        state.confirmedAt = now;
        continue;
      }
      try {
        const app = await this.loadApp(entry, signal);
        state.app = app;
        state.error = undefined;
        state.loadedFor = loadKey;
        state.confirmedAt = now;
        changed = true;
        this.opts.metrics.indexRevision.set({ app_id: entry.appId }, app.revision);
        this.opts.logger.info({ app: entry.appId, revision: app.revision }, 'release index loaded');
      } catch (err) {
        const reason = errorReason(err, 'index');
        this.opts.metrics.indexLoadErrors.inc({ reason });
        state.error = message(err);
        errors.push(
          `${entry.appId}${state.app ? ` (serving revision ${state.app.revision})` : ' (failed)'}: ${message(err)}`,
        );
        this.opts.logger.warn(
          { app: entry.appId, wanted: entry.revision, serving: state.app?.revision, err: message(err) },
          'release index refused, keeping the last good one',
        );
      }
    }
    for (const appId of [...this.states.keys()]) {
      if (!seen.has(appId)) {
        this.states.delete(appId);
        this.opts.metrics.indexRevision.remove({ app_id: appId });
        changed = true;
      }
    }
    if (changed) this.swap();
    this.finish(errors, true);
    return changed;
  }

  private finish(errors: string[], rootLoaded: boolean): void {
    // Failed apps first: they are what an operator must look at.
    errors.sort((a, b) => Number(b.includes(' (failed)')) - Number(a.includes(' (failed)')));
    this.lastErrorValue =
      errors.length > 0
        ? errors.slice(0, 5).join('; ') + (errors.length > 5 ? ` (+${errors.length - 5} more)` : '')
        : undefined;
    if (!this.rootLoaded && rootLoaded) {
      this.rootLoaded = true;
      this.opts.logger.info({ apps: this.states.size }, 'release root loaded, ready');
    }
    let serving = 0;
    let stale = 0;
    let failed = 0;
    for (const s of this.states.values()) {
      if (!s.app) failed++;
      else if (s.app.revision < s.wanted) stale++;
      else serving++;
    }
    this.opts.metrics.indexApps.set({ state: 'serving' }, serving);
    this.opts.metrics.indexApps.set({ state: 'stale' }, stale);
    this.opts.metrics.indexApps.set({ state: 'failed' }, failed);
  }

  private swap(): void {
    const apps = new Map<string, CompiledApp>();
    const objects = new Map<string, number>();
    for (const [appId, state] of this.states) {
      if (!state.app) continue;
      apps.set(appId, state.app);
      for (const [k, size] of state.app.objects) objects.set(k, size);
    }
    this.snapshotValue = { apps, objects };
  }

  private signal(outer?: AbortSignal): AbortSignal {
    const t = AbortSignal.timeout(this.timeoutMs);
    return outer ? AbortSignal.any([outer, t]) : t;
  }

  private async refreshRoot(outer?: AbortSignal): Promise<boolean> {
    const key = this.opts.layout.rootKey();
    let res;
    try {
      res = await this.opts.store.get(key, {
        ...(this.rootEtag !== undefined ? { ifNoneMatch: this.rootEtag } : {}),
        signal: this.signal(outer),
      });
    } catch (err) {
      if (err instanceof ObjectNotFoundError && !this.rootLoaded) {
        // No root yet: the controller has published no app. That is a complete (empty) load.
        this.opts.logger.warn({ key }, 'release root not found: serving no apps');
        return false;
      }
      // A root that disappears after one was loaded is an outage, not an instruction: keep the last good state.
      if (err instanceof ObjectNotFoundError) throw new RootMissingError(`root ${key} not found`);
      throw err;
    }
    if (res === null) return false;
    const data = await readBounded(res.body, this.maxBytes);
    const root = parseRoot(data);
    this.rootEntries = root.apps;
    this.rootEtag = res.info.etag;
    return true;
  }

  private async loadApp(entry: ReleaseRoot['apps'][number], outer?: AbortSignal): Promise<CompiledApp> {
    const { data } = await this.opts.store.getBuffer(entry.indexKey, {
      maxBytes: this.maxBytes,
      signal: this.signal(outer),
    });
    let doc: unknown;
    try {
      doc = JSON.parse(data.toString('utf8'));
    } catch (err) {
      throw new InvalidIndexError(`index ${entry.indexKey} is not JSON: ${message(err)}`);
    }
    let index: ReleaseIndex;
    try {
      index = (this.opts.validate ?? validateReleaseIndex)(doc);
    } catch (err) {
      throw new InvalidIndexError(`index ${entry.indexKey} does not match the schema: ${message(err)}`);
    }
    if (index.app.appId !== entry.appId) {
      throw new InvalidIndexError(
        `index ${entry.indexKey} is for app ${index.app.appId}, the root says ${entry.appId}`,
      );
    }
    if (index.revision < entry.revision) {
      throw new StaleIndexError(
        `index ${entry.indexKey} has revision ${index.revision}, the root announces ${entry.revision}`,
      );
    }
    try {
      return compileIndex(index);
    } catch (err) {
      throw new InvalidIndexError(`index ${entry.indexKey} is inconsistent: ${message(err)}`);
    }
  }

  private ages(): Array<{ app: string; seconds: number }> {
    const now = this.now();
    const out: Array<{ app: string; seconds: number }> = [];
    for (const [app, s] of this.states)
      if (s.app) out.push({ app, seconds: Math.max(0, (now - s.confirmedAt) / 1000) });
    return out;
  }
}

export class InvalidIndexError extends Error {
  override name = 'InvalidIndexError';
}
export class StaleIndexError extends Error {
  override name = 'StaleIndexError';
}
export class RootMissingError extends Error {
  override name = 'RootMissingError';
}

function parseRoot(data: Buffer): ReleaseRoot {
  let doc: unknown;
  try {
    doc = JSON.parse(data.toString('utf8'));
  } catch (err) {
    throw new InvalidIndexError(`root is not JSON: ${message(err)}`);
  }
  try {
    return validateReleaseRoot(doc);
  } catch (err) {
    throw new InvalidIndexError(`root does not match the schema: ${message(err)}`);
  }
}

async function readBounded(
  stream: NodeJS.ReadableStream & { destroy(): void },
  max: number,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const c of stream) {
    const b = c as Buffer;
    total += b.length;
    if (total > max) {
      stream.destroy();
      throw new InvalidIndexError(`object larger than ${max} bytes`);
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}

function errorReason(err: unknown, what: 'root' | 'index'): string {
  if (err instanceof RootMissingError) return 'root_missing';
  if (err instanceof StaleIndexError) return `${what}_stale`;
  if (err instanceof InvalidIndexError) return `${what}_invalid`;
  if (err instanceof ObjectNotFoundError) return `${what}_missing`;
  return `${what}_unavailable`;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
