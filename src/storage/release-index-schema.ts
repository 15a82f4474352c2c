/**
 * Validation of the release index and root documents against their committed JSON schemas
 * (release-index.schema.json, release-root.schema.json), plus the cross-references a schema cannot express.
 * The controller validates before every write; the update service validates everything it reads back.
 */
import { Ajv, type ErrorObject } from 'ajv';
import indexSchema from './release-index.schema.json' with { type: 'json' };
import rootSchema from './release-root.schema.json' with { type: 'json' };
import { RELEASE_SCHEMA_VERSION, type ReleaseIndex, type ReleaseRoot } from './release-index.js';

export class ReleaseIndexValidationError extends Error {
  constructor(readonly problems: string[]) {
    super(
      `invalid release document: ${problems.slice(0, 5).join('; ')}${problems.length > 5 ? ` (+${problems.length - 5} more)` : ''}`,
    );
    this.name = 'ReleaseIndexValidationError';
  }
}

/** What a channel's `bundle` says to send devices back to the bundle shipped in the native app. */
const BUILTIN_BUNDLE_NAME = 'builtin';

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false });
ajv.addFormat('date-time', {
  type: 'string',
  validate: (s: string) => RFC3339.test(s) && !Number.isNaN(Date.parse(s)),
});
const checkIndex = ajv.compile<ReleaseIndex>(indexSchema);
const checkRoot = ajv.compile<ReleaseRoot>(rootSchema);

function describe(errors: ErrorObject[] | null | undefined): string[] {
  return (errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? 'is invalid'}`);
}

/** Every channel references bundles the index holds, channel names and ids are unique. */
function crossReferenceProblems(index: ReleaseIndex): string[] {
  const problems: string[] = [];
  const names = new Set<string>();
  const ids = new Set<number>();
  for (const [i, channel] of index.channels.entries()) {
    if (names.has(channel.name)) problems.push(`/channels/${i}/name duplicates ${channel.name}`);
    if (ids.has(channel.id)) problems.push(`/channels/${i}/id duplicates ${channel.id}`);
    names.add(channel.name);
    ids.add(channel.id);
    if (channel.bundle !== BUILTIN_BUNDLE_NAME && !(channel.bundle in index.bundles)) {
      problems.push(`/channels/${i}/bundle references ${channel.bundle}, which is not in bundles`);
    }
    if (channel.rollout && !(channel.rollout.bundle in index.bundles)) {
      problems.push(
        `/channels/${i}/rollout/bundle references ${channel.rollout.bundle}, which is not in bundles`,
      );
    }
  }
  for (const [name, bundle] of Object.entries(index.bundles)) {
    if (bundle.name !== name) problems.push(`/bundles/${name}/name is ${bundle.name}`);
  }
  return problems;
}

/** A document written by a newer version whose changes this version must not serve or rewrite. */
export class UnsupportedSchemaVersionError extends ReleaseIndexValidationError {
  constructor(readonly schemaVersion: number) {
    super([
      `/schemaVersion ${schemaVersion} is newer than ${RELEASE_SCHEMA_VERSION}, the highest this version understands`,
    ]);
    this.name = 'UnsupportedSchemaVersionError';
  }
}

function checkSchemaVersion(doc: { schemaVersion?: number }): void {
  if ((doc.schemaVersion ?? 1) > RELEASE_SCHEMA_VERSION)
    throw new UnsupportedSchemaVersionError(doc.schemaVersion!);
}

/**
 * Returns the document typed as a ReleaseIndex, or throws {@link ReleaseIndexValidationError}
 * ({@link UnsupportedSchemaVersionError} for a newer schemaVersion). Unknown fields are allowed and kept.
 */
export function validateReleaseIndex(doc: unknown): ReleaseIndex {
  if (!checkIndex(doc)) throw new ReleaseIndexValidationError(describe(checkIndex.errors));
  checkSchemaVersion(doc);
  const problems = crossReferenceProblems(doc);
  if (problems.length > 0) throw new ReleaseIndexValidationError(problems);
  return doc;
}

/** Like {@link validateReleaseIndex}, for the root document. */
export function validateReleaseRoot(doc: unknown): ReleaseRoot {
  if (!checkRoot(doc)) throw new ReleaseIndexValidationError(describe(checkRoot.errors));
  checkSchemaVersion(doc);
  return doc;
}
