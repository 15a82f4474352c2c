// See jest-global-setup.ts for why this goes through tsx.
import { tsImport } from 'tsx/esm/api';
import type * as JestGlobal from './jest-global.js';

export default async function globalTeardown(): Promise<void> {
  const hooks = (await tsImport('./jest-global.ts', import.meta.url)) as typeof JestGlobal;
  await hooks.teardown();
}
