/** OCI references: `registry[:port]/repository[:tag][@sha256:…]`, optionally written with an `oci://` scheme. */
import { OciError } from './errors.js';

export interface OciReference {
  /** host[:port] */
  registry: string;
  repository: string;
  tag?: string;
  /** sha256:<64 hex> */
  digest?: string;
}

const REPOSITORY = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
export const DIGEST = /^sha256:[a-f0-9]{64}$/;

/** Parses `host/repo[:tag][@digest]` (with or without `oci://`); the registry part is required. */
export function parseReference(text: string): OciReference {
  const input = text.replace(/^oci:\/\//, '');
  const fail = (why: string) => new OciError('OciReferenceInvalid', `${text}: ${why}`);
  const [nameAndTag = '', digest, extra] = input.split('@');
  if (extra !== undefined) throw fail('more than one @');
  if (digest !== undefined && !DIGEST.test(digest))
    throw fail('the digest must be sha256:<64 lowercase hex>');
  const slash = nameAndTag.indexOf('/');
  if (slash <= 0) throw fail('expected <registry>/<repository>');
  const registry = nameAndTag.slice(0, slash);
  let repository = nameAndTag.slice(slash + 1);
  let tag: string | undefined;
  const colon = repository.lastIndexOf(':');
  if (colon >= 0) {
    tag = repository.slice(colon + 1);
    repository = repository.slice(0, colon);
    if (!TAG.test(tag)) throw fail(`invalid tag "${tag}"`);
  }
  if (!/^[A-Za-z0-9.-]+(:[0-9]{1,5})?$/.test(registry)) throw fail(`invalid registry host "${registry}"`);
  if (!REPOSITORY.test(repository)) throw fail(`invalid repository "${repository}" (lowercase path)`);
  return { registry, repository, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) };
}

export function formatReference(ref: OciReference): string {
  return `${ref.registry}/${ref.repository}${ref.tag ? `:${ref.tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}`;
}

/** cosign's tag for the signatures of a manifest: `sha256-<hex>.sig`. */
export function signatureTag(digest: string): string {
  return `${digest.replace(':', '-')}.sig`;
}
