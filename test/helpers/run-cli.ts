// Runs the CLI from source in a child process (`node --import tsx test/helpers/run-cli.ts …`), for
// tests that need a real process: signals, exit codes. Most tests call the commands directly.

import { main } from '../../src/cli/index.js';

process.exitCode = await main(process.argv);
