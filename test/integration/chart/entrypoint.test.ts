// The image's entrypoint works: `npm run build` produces dist/, which is exactly what the Dockerfile copies
// (with the production node_modules), and `node dist/main.js` starts from it. No Docker engine is needed: the
// runtime stage adds nothing but the Node.js base image around these files.
import { jest } from '@jest/globals';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { repoRoot } from '../../env/process-utils.js';
import { run } from './chart-helpers.js';

// helm, kubectl and the API server on 2 shared cores: seconds per call, not milliseconds.
jest.setTimeout(300_000);

const root = repoRoot();
// The Node 24 of the `node` dev dependency, which `npm run` puts first on PATH (the machine's bare node is older).
const node24 = join(root, 'node_modules', '.bin', 'node');

describe('image entrypoint', () => {
  beforeAll(async () => {
    // npm puts the Node 24 of the `node` dev dependency first on PATH, as in the image's build stage.
    const build = await run('npm', ['run', 'build'], { timeoutMs: 600_000 });
    if (build.code !== 0) throw new Error(`npm run build failed:\n${build.stdout}\n${build.stderr}`);
  }, 600_000);

  test('node dist/main.js --help exits 0 and lists both commands', async () => {
    const result = await run(node24, [join(root, 'dist', 'main.js'), '--help']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^\s+controller\s/m);
    expect(result.stdout).toMatch(/^\s+update-server\s/m);
  });

  test.each(['controller', 'update-server'])(
    'node dist/main.js %s --help loads the whole command from the build output',
    async (command) => {
      const result = await run(node24, [join(root, 'dist', 'main.js'), command, '--help']);
      expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });
      expect(result.stdout).toContain(`liveupdate-operator ${command}`);
    },
  );

  test('the code the entrypoints load imports only production dependencies (what npm prune keeps)', async () => {
    const manifest = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    };
    const production = new Set(Object.keys(manifest.dependencies));
    const importPattern = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)['"]([^'"]+)['"]/g;
    // Follow relative imports (static and dynamic) from the image's entrypoint and the CLI.
    const pending = [join(root, 'dist', 'main.js'), join(root, 'dist', 'cli', 'main.js')];
    const seen = new Set<string>();
    const packages = new Set<string>();
    while (pending.length > 0) {
      const file = pending.pop()!;
      if (seen.has(file)) continue;
      seen.add(file);
      const code = await readFile(file, 'utf8');
      for (const match of code.matchAll(importPattern)) {
        const specifier = match[1]!;
        if (specifier.startsWith('.')) pending.push(join(dirname(file), specifier));
        else if (!specifier.startsWith('node:')) {
          const parts = specifier.split('/');
          packages.add(specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!);
        }
      }
    }
    expect(seen.size).toBeGreaterThan(10);
    expect([...packages].filter((name) => !production.has(name)).sort()).toEqual([]);
  });

  test('an unknown command exits 2 with the usage on stderr', async () => {
    const result = await run(node24, [join(root, 'dist', 'main.js'), 'no-such-command']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('unknown command');
  });

  test('the Dockerfile copies the build output and runs it as the fixed non-root uid', async () => {
    const dockerfile = await readFile(join(root, 'Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/^ENTRYPOINT \["node", "\/app\/dist\/main\.js"\]$/m);
    expect(dockerfile).toMatch(/^USER 65532:65532$/m);
    expect(dockerfile).toMatch(
      /^ARG NODE_IMAGE=docker\.io\/library\/node:24-bookworm-slim@sha256:[a-f0-9]{64}$/m,
    );
    expect(dockerfile).toMatch(/^RUN npm ci --ignore-scripts$/m);
    expect(dockerfile).toMatch(/npm run build/);
    expect(dockerfile).toMatch(/npm prune --omit=dev/);
    const copies = [...dockerfile.matchAll(/^COPY --from=build \S+ \/src\/(\S+) /gm)].map((m) => m[1]);
    expect(copies).toEqual(['package.json', 'node_modules', 'dist']);
    // What the build stage copies in before building must be in the (.dockerignore-filtered) context.
    const dockerignore = await readFile(join(root, '.dockerignore'), 'utf8');
    for (const source of [
      'package.json',
      'package-lock.json',
      'tsconfig.json',
      'tsconfig.build.json',
      'src/',
    ]) {
      expect(dockerignore).toContain(`!${source}`);
      expect(existsSync(join(root, source))).toBe(true);
    }
    // The entrypoint the image runs exists after the build, and tsconfig.build.json writes it where the image looks.
    expect(existsSync(join(root, 'dist', 'main.js'))).toBe(true);
    const buildConfig = JSON.parse(await readFile(join(root, 'tsconfig.build.json'), 'utf8')) as {
      compilerOptions: { outDir: string; rootDir: string };
    };
    expect(buildConfig.compilerOptions).toMatchObject({ outDir: 'dist', rootDir: 'src' });
  });
});
