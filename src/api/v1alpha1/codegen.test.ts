import { readFile } from 'node:fs/promises';
import {
  generatedFileUrl,
  generateTypes,
  readCrds,
  renderTypesFile,
  type JsonSchemaProps,
} from './codegen.js';

const repoRoot = new URL('../../../', import.meta.url);

/** Every property path whose schema lacks a description (kubectl explain would show nothing). */
function undocumented(schema: JsonSchemaProps, path: string): string[] {
  const missing = schema.description ? [] : [path];
  for (const [name, child] of Object.entries(schema.properties ?? {})) {
    if (name === 'metadata' && path.split('.').length === 1) continue;
    missing.push(...undocumented(child, `${path}.${name}`));
  }
  if (schema.items) missing.push(...undocumented(schema.items, `${path}[]`));
  return missing;
}

describe('API types generated from the CRDs', () => {
  it('types.generated.ts is what the CRDs produce (run `npx tsx src/api/v1alpha1/codegen.ts` after a CRD change)', async () => {
    const committed = await readFile(generatedFileUrl(repoRoot), 'utf8');
    expect(committed).toBe(await renderTypesFile(repoRoot));
  });

  it('turns a CRD change into a type change', () => {
    const crd = (props: Record<string, JsonSchemaProps>) => ({
      spec: {
        names: { kind: 'Thing' },
        versions: [
          {
            name: 'v1alpha1',
            storage: true,
            schema: {
              openAPIV3Schema: {
                type: 'object',
                properties: { spec: { type: 'object', properties: props } },
              },
            },
          },
        ],
      },
    });
    const before = generateTypes([crd({ size: { type: 'integer' } })]);
    const after = generateTypes([crd({ size: { type: 'string', enum: ['Small', 'Large'] } })]);
    expect(before).toContain('size?: number;');
    expect(after).toContain('size?: "Small" | "Large";');
  });

  it('documents every field of every kind, so kubectl explain helps', async () => {
    for (const crd of await readCrds(new URL('crds/', repoRoot))) {
      for (const version of crd.spec.versions) {
        expect(undocumented(version.schema.openAPIV3Schema, crd.spec.names.kind)).toEqual([]);
      }
    }
  });
});
