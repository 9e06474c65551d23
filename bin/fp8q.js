#!/usr/bin/env node
// Shim: the CLI lives in src/cli (compiled to dist/ by `npm ci` / `npm run build`). The runtime
// commands run in a child started with glibc malloc tunables (src/cli/malloc-relaunch.ts).
import { url as inspectorUrl } from 'node:inspector';
import { fileURLToPath } from 'node:url';
import { relaunchTunables, runRelaunched, stopWithParent } from '../dist/cli/malloc-relaunch.js';

const args = process.argv.slice(2);
const tunables = relaunchTunables(args, process.env, process.platform, inspectorUrl() !== undefined);
const outcome = tunables === undefined ? undefined : await runRelaunched(fileURLToPath(import.meta.url), args, tunables).catch(() => undefined);
if (typeof outcome === 'string') {
  // The child ended by a signal: end the same way, so the caller sees what it would have seen.
  process.kill(process.pid, outcome);
} else if (typeof outcome === 'number') {
  process.exitCode = outcome;
} else {
  stopWithParent();
  const { main } = await import('../dist/cli/index.js');
  process.exitCode = await main(process.argv);
}
