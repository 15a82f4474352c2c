// `npm run cli:sea`: the `liveupdate` CLI as one executable for CI runners without Node (Node's single executable
// applications): esbuild bundles src/cli/sea-main.ts into one CommonJS file, Node 24 turns it into a preparation
// blob, and postject injects the blob into a copy of the Node binary that runs this script. Linux x64 from a Linux
// x64 machine (build on each target platform for others). Output: dist-sea/liveupdate (override with --out <file>).
import { execFile } from 'node:child_process';
import { chmod, copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { build } from 'esbuild';
import { inject } from 'postject';

const REPO = fileURLToPath(new URL('../', import.meta.url));
const FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
const run = promisify(execFile);

export async function buildSingleExecutable(
  out: string,
): Promise<{ path: string; version: string; bytes: number }> {
  const work = join(dirname(out), '.sea-work');
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  const { version } = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as { version: string };
  const bundle = join(work, 'liveupdate.cjs');
  await build({
    entryPoints: [join(REPO, 'src/cli/sea-main.ts')],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node24',
    outfile: bundle,
    define: { __LIVEUPDATE_VERSION__: JSON.stringify(version) },
    // Third-party licence comments stay in the bundle (and so in the binary).
    legalComments: 'eof',
    logLevel: 'warning',
  });
  const blob = join(work, 'sea-prep.blob');
  const config = join(work, 'sea-config.json');
  await writeFile(
    config,
    JSON.stringify({ main: bundle, output: blob, disableExperimentalSEAWarning: true, useCodeCache: false }),
  );
  await run(process.execPath, ['--experimental-sea-config', config]);
  await rm(out, { force: true });
  await copyFile(process.execPath, out);
  await chmod(out, 0o755);
  await inject(out, 'NODE_SEA_BLOB', await readFile(blob), { sentinelFuse: FUSE });
  const { stdout } = await run(out, ['--version'], { env: { PATH: '' } });
  if (stdout.trim() !== `liveupdate ${version}`)
    throw new Error(`the built executable says "${stdout.trim()}"`);
  await rm(work, { recursive: true, force: true });
  const bytes = (await readFile(out)).length;
  return { path: out, version, bytes };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { out: { type: 'string' } } });
  const out = resolve(values.out ?? join(REPO, 'dist-sea', 'liveupdate'));
  await mkdir(dirname(out), { recursive: true });
  const result = await buildSingleExecutable(out);
  console.log(
    `built ${result.path} (liveupdate ${result.version}, ${(result.bytes / 1048576).toFixed(0)} MiB)`,
  );
}
