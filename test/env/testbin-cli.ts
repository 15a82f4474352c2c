// `npm run testbin`: builds (when missing) and prints the cached Go test tools; `npm run testbin -- <name>...` the
// named ones only, on-demand tools included (e.g. the single-node cluster's kubelet for `npm run test:cluster`).
import { TOOL_NAMES, TOOLS, ensureTool, testbinRoot, type ToolName } from './testbin.js';

function requested(args: readonly string[]): readonly ToolName[] {
  if (args.length === 0) return TOOL_NAMES;
  const unknown = args.filter((name) => !(name in TOOLS));
  if (unknown.length > 0)
    throw new Error(`unknown tool ${unknown.join(', ')} (known: ${Object.keys(TOOLS).join(', ')})`);
  return args as ToolName[];
}

async function main(): Promise<void> {
  const started = Date.now();
  const names = requested(process.argv.slice(2));
  console.log(`tool cache: ${testbinRoot()} (override with LIVEUPDATE_TESTBIN)`);
  for (const name of names) {
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
