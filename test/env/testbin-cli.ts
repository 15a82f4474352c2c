// `npm run testbin`: builds (when missing) and prints the cached Go test tools.
import { TOOL_NAMES, TOOLS, ensureTool, testbinRoot } from './testbin.js';

async function main(): Promise<void> {
  const started = Date.now();
  console.log(`tool cache: ${testbinRoot()} (override with LIVEUPDATE_TESTBIN)`);
  for (const name of TOOL_NAMES) {
    const toolStarted = Date.now();
    const path = await ensureTool(name);
    const seconds = ((Date.now() - toolStarted) / 1000).toFixed(1);
    console.log(`${name.padEnd(15)} ${TOOLS[name].version.padEnd(9)} ${path}  (${seconds} s)`);
  }
  console.log(`all tools ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
