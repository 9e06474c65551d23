// The test side of cli-batch.ts: runs a table of fp8q command lines in one child process and
// returns each one's exit code, stdout and stderr.

import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './fixtures.js';
import type { CliResult } from './safety.js';

export function fp8qBatch(commands: readonly (readonly string[])[], opts: { readonly env?: NodeJS.ProcessEnv; readonly timeoutMs?: number } = {}): Promise<CliResult[]> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', join(ROOT, 'test/helpers/cli-batch.ts'), JSON.stringify(commands)],
      { cwd: ROOT, timeout: opts.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024, ...(opts.env ? { env: opts.env } : {}) },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`cli-batch failed: ${err.message}\n${stderr}`));
        else resolve(JSON.parse(stdout) as CliResult[]);
      },
    );
  });
}
