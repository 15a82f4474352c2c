// Converts an API server's OpenAPI v2 document (/openapi/v2, CRDs included once installed) into the JSON schema
// layout kubeconform reads from disk, in the spirit of openapi2jsonschema --strict:
// - one file per group/version/kind: <dir>/<group or "v1">/<version>/<kind lowercased>.json, matching
//   kubeconform's -schema-location template below;
// - each file holds the kind's schema plus every definition it references (local `#/definitions/...` refs, so
//   recursive types such as JSONSchemaProps need no inlining);
// - strict: objects with declared properties reject unknown fields (additionalProperties: false), unless the API
//   says it preserves unknown fields;
// - int-or-string and Quantity accept a string or a number, as the API server does.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

type Schema = Record<string, unknown>;

interface GroupVersionKind {
  readonly group: string;
  readonly version: string;
  readonly kind: string;
}

export interface OpenApiV2 {
  readonly definitions: Record<string, Schema>;
}

export function schemaLocation(dir: string): string {
  return `${dir}/{{ .Group }}/{{ .ResourceAPIVersion }}/{{ .ResourceKind }}.json`;
}

/** The file kubeconform looks up for an apiVersion and kind (same splitting as kubeconform's registry). */
export function schemaFile(dir: string, apiVersion: string, kind: string): string {
  const parts = apiVersion.split('/');
  return join(dir, parts[0] ?? '', parts[parts.length - 1] ?? '', `${kind.toLowerCase()}.json`);
}

const REF_PREFIX = '#/definitions/';
const QUANTITY = 'io.k8s.apimachinery.pkg.api.resource.Quantity';

function isObject(value: unknown): value is Schema {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function transform(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(transform);
  if (!isObject(node)) return node;
  if (node['format'] === 'int-or-string' || node['x-kubernetes-int-or-string'] === true) {
    const { type: _type, format: _format, ...rest } = node;
    return { ...rest, oneOf: [{ type: 'string' }, { type: 'integer' }] };
  }
  const out: Schema = {};
  for (const [key, value] of Object.entries(node)) {
    // Property names are data, not schema keywords: transform their values only.
    out[key] =
      key === 'properties' && isObject(value)
        ? Object.fromEntries(Object.entries(value).map(([name, schema]) => [name, transform(schema)]))
        : transform(value);
  }
  if (
    isObject(out['properties']) &&
    out['additionalProperties'] === undefined &&
    out['x-kubernetes-preserve-unknown-fields'] !== true
  ) {
    out['additionalProperties'] = false;
  }
  return out;
}

function collectRefs(node: unknown, found: Set<string>, definitions: Record<string, Schema>): void {
  if (Array.isArray(node)) {
    for (const item of node) collectRefs(item, found, definitions);
    return;
  }
  if (!isObject(node)) return;
  const ref = node['$ref'];
  if (typeof ref === 'string' && ref.startsWith(REF_PREFIX)) {
    const name = ref.slice(REF_PREFIX.length);
    if (!found.has(name)) {
      found.add(name);
      collectRefs(definitions[name], found, definitions);
    }
  }
  for (const value of Object.values(node)) collectRefs(value, found, definitions);
}

function gvks(schema: Schema): GroupVersionKind[] {
  const list = schema['x-kubernetes-group-version-kind'];
  return Array.isArray(list) ? (list as GroupVersionKind[]) : [];
}

/** Writes one schema per kind into `dir`; returns the number of files written. */
export async function writeKubeconformSchemas(openapi: OpenApiV2, dir: string): Promise<number> {
  const definitions: Record<string, Schema> = { ...openapi.definitions };
  const quantity = definitions[QUANTITY];
  if (quantity)
    definitions[QUANTITY] = {
      description: quantity['description'],
      oneOf: [{ type: 'string' }, { type: 'number' }],
    };

  const files = new Map<string, { name: string; schema: Schema }>();
  for (const [name, schema] of Object.entries(definitions)) {
    const kinds = gvks(schema);
    // Shared types (DeleteOptions, WatchEvent, ...) list many kinds; only a type that is one kind is a resource.
    if (kinds.length !== 1) continue;
    const gvk = kinds[0]!;
    const apiVersion = gvk.group ? `${gvk.group}/${gvk.version}` : gvk.version;
    const file = schemaFile(dir, apiVersion, gvk.kind);
    if (!files.has(file)) files.set(file, { name, schema });
  }

  for (const [file, { schema }] of files) {
    const referenced = new Set<string>();
    collectRefs(schema, referenced, definitions);
    const referencedDefinitions = Object.fromEntries(
      [...referenced].sort().map((ref) => [ref, transform(definitions[ref] ?? {})]),
    );
    const root = transform(schema) as Schema;
    await mkdir(join(file, '..'), { recursive: true });
    await writeFile(file, JSON.stringify({ ...root, definitions: referencedDefinitions }));
  }
  return files.size;
}
