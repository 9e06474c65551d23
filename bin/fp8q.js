#!/usr/bin/env node
// Shim: the CLI lives in src/cli (compiled to dist/ by `npm ci` / `npm run build`).
import { main } from '../dist/cli/index.js';

process.exitCode = await main(process.argv);
