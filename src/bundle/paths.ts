import { BundleValidationError } from './errors.js';

/**
 * Path segments left out of bundles and delta manifests. `@capgo/cli` skips these names in delta uploads
 * (by substring of the whole path, which also drops e.g. `my.gitkeep`; we match whole segments instead) and adds
 * `__MACOSX` Finder debris which breaks iOS next to a top folder. Capgo's full zip (adm-zip `addLocalFolder`)
 * skips nothing; we skip the same set in both so a full bundle and its delta manifest list the same files.
 */
export const SKIPPED_SEGMENTS: ReadonlySet<string> = new Set([
  '.DS_Store',
  '__MACOSX',
  '.git',
  '.gitignore',
  'node_modules',
  'package-lock.json',
  'tsconfig.json',
  'tsconfig.app.json',
  'tsconfig.spec.json',
]);

export function isSkippedPath(relativePath: string): boolean {
  return relativePath.split('/').some((segment) => SKIPPED_SEGMENTS.has(segment));
}

/**
 * The entry-name rules devices enforce when unzipping (CAPGO-PROTOCOL.md §4 step 4) plus the ones that make a
 * name ambiguous. Returns the refusal, or undefined when the name is fine. Directory names end with `/`.
 */
export function entryNameProblem(name: string): BundleValidationError | undefined {
  if (name.length === 0) return new BundleValidationError('EmptyName', 'an entry has an empty name', name);
  if (name.includes('\0'))
    return new BundleValidationError(
      'NulInName',
      `entry name contains a NUL byte: ${JSON.stringify(name)}`,
      name,
    );
  if (name.includes('\\'))
    return new BundleValidationError('Backslash', `entry name contains a backslash: ${name}`, name);
  if (name.startsWith('/') || /^[a-zA-Z]:/.test(name))
    return new BundleValidationError('AbsolutePath', `entry name is an absolute path: ${name}`, name);
  if (name.split('/').includes('..'))
    return new BundleValidationError(
      'PathTraversal',
      `entry name escapes the bundle with "..": ${name}`,
      name,
    );
  return undefined;
}
