// Jest loads global hooks with Node's own loader (type stripping without the `.js` → `.ts` mapping that our imports
// need), so the implementation is loaded through tsx.
import { tsImport } from 'tsx/esm/api';
import type * as JestGlobal from './jest-global.js';

export default async function globalSetup(): Promise<void> {
  const hooks = (await tsImport('./jest-global.ts', import.meta.url)) as typeof JestGlobal;
  await hooks.setup();
}
