// Runs several fp8q command lines in ONE child process (`node --import tsx cli-batch.ts '<json>'`,
// the JSON an array of argv arrays), each through `main` with stdout and stderr captured, and
// prints `[{code, stdout, stderr}, …]` as JSON. Starting tsx costs ~1 s of CPU per process; this
// pays it once for a table of command-line cases. Capturing here is safe: unlike a test file, this
// process has no test reporter writing to stdout.

import { main } from '../../src/cli/index.js';

const commands = JSON.parse(process.argv[2] ?? '[]') as string[][];
const realOut = process.stdout.write.bind(process.stdout);
const realErr = process.stderr.write.bind(process.stderr);
const results: { code: number; stdout: string; stderr: string }[] = [];
for (const args of commands) {
  const out: string[] = [];
  const err: string[] = [];
  const capture = (into: string[]) =>
    ((chunk: string | Uint8Array): boolean => {
      into.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
      return true;
    }) as typeof process.stdout.write;
  process.stdout.write = capture(out);
  process.stderr.write = capture(err);
  let code: number;
  try {
    code = await main([process.execPath, 'fp8q', ...args]);
  } finally {
    process.stdout.write = realOut;
    process.stderr.write = realErr;
  }
  results.push({ code, stdout: out.join(''), stderr: err.join('') });
}
realOut(JSON.stringify(results));
