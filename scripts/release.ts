// `npm run release [-- --out <dir>] [--key <cosign.key>]`: the signed offline release folder and its tarball
// (scripts/release/build.ts, docs/adr/0021-signed-offline-release.md). The key's password comes from
// COSIGN_PASSWORD; without --key a throwaway key pair signs (a dry run). Tools come from the test tool cache.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { repoRoot } from '../test/env/process-utils.js';
import { ensureTool } from '../test/env/testbin.js';
import { buildRelease } from './release/build.js';

const { values } = parseArgs({ options: { out: { type: 'string' }, key: { type: 'string' } } });
const repo = repoRoot();

async function main(): Promise<void> {
  const tools = {
    helm: await ensureTool('helm'),
    cosign: await ensureTool('cosign'),
    syft: await ensureTool('syft'),
  };
  const release = await buildRelease({
    repo,
    outDir: values.out ?? join(repo, 'dist', 'release'),
    tools,
    ...(values.key !== undefined ? { key: values.key } : {}),
  });
  console.log(
    [
      `release: ${release.dir}`,
      `tarball: ${release.tarball}`,
      `image:   ${release.image.reference}@${release.image.digest}`,
      `verify:  cd ${release.dir} && cosign verify-blob --key cosign.pub --insecure-ignore-tlog=true --signature SHA256SUMS.sig SHA256SUMS && sha256sum -c SHA256SUMS`,
    ].join('\n'),
  );
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
