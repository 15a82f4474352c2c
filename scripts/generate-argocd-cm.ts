// Embeds deploy/argocd/health.lua into deploy/argocd/argocd-cm.yaml, one health customization per liveupdate.dev
// kind. `--check` fails instead of writing when the snippet is out of date.
//
//   npx tsx scripts/generate-argocd-cm.ts [--check]
import { readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';

export const repoRoot = resolve(fileURLToPath(new URL('..', import.meta.url)));
export const healthScriptPath = join(repoRoot, 'deploy', 'argocd', 'health.lua');
export const argocdCmPath = join(repoRoot, 'deploy', 'argocd', 'argocd-cm.yaml');
export const KINDS = ['LiveUpdateApp', 'LiveUpdateChannel', 'LiveUpdateBundle'] as const;

export function healthKey(kind: string): string {
  return `resource.customizations.health.liveupdate.dev_${kind}`;
}

export function renderArgocdCm(script: string): string {
  const data = Object.fromEntries(KINDS.map((kind) => [healthKey(kind), script]));
  const configMap = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: 'argocd-cm',
      namespace: 'argocd',
      labels: { 'app.kubernetes.io/name': 'argocd-cm', 'app.kubernetes.io/part-of': 'argocd' },
    },
    data,
  };
  const header = [
    '# Argo CD health checks for the liveupdate.dev kinds. Generated from health.lua by scripts/generate-argocd-cm.ts.',
    '# Merge into your argocd-cm, e.g.:',
    '#   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file deploy/argocd/argocd-cm.yaml',
    '# or list this file as a patch of the argocd-cm ConfigMap in the kustomization that installs Argo CD.',
  ].join('\n');
  return `${header}\n${stringify(configMap, { lineWidth: 0 })}`;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const next = renderArgocdCm(await readFile(healthScriptPath, 'utf8'));
  if (process.argv.includes('--check')) {
    const current = await readFile(argocdCmPath, 'utf8').catch(() => '');
    if (current !== next) {
      console.error('deploy/argocd/argocd-cm.yaml is out of date: run npx tsx scripts/generate-argocd-cm.ts');
      process.exit(1);
    }
    console.log('deploy/argocd/argocd-cm.yaml is up to date');
  } else {
    await writeFile(argocdCmPath, next);
    console.log(`wrote ${argocdCmPath}`);
  }
}
