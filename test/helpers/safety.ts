// Helpers of the safety tests: safetensors bytes built by hand (any header text, any length field),
// the CLI run in-process with its output captured, and checks that a failed run left nothing.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { main } from '../../src/cli/index.js';

/**
 * A safetensors file from a header (an object, serialised as is, or raw text for headers JSON
 * cannot express, such as duplicate keys) and a data section. `headerLength` overrides the
 * 8-byte length field.
 */
export function rawSafetensors(header: unknown, data: Uint8Array = new Uint8Array(0), headerLength?: bigint): Uint8Array {
  const json = typeof header === 'string' ? new TextEncoder().encode(header) : header instanceof Uint8Array ? header : new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.byteLength + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, headerLength ?? BigInt(json.byteLength), true);
  out.set(json, 8);
  out.set(data, 8 + json.byteLength);
  return out;
}

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `fp8q <args>` in this process and captures what it prints. Only string writes are captured:
 * node:test's child protocol writes Buffers to stdout, and those must pass through untouched.
 */
export async function runCli(args: readonly string[]): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const realOut = process.stdout.write;
  const realErr = process.stderr.write;
  const capture = (stream: NodeJS.WriteStream, real: typeof realOut, append: (s: string) => void): typeof realOut =>
    ((chunk: string | Uint8Array, ...rest: unknown[]): boolean => {
      if (typeof chunk === 'string') {
        append(chunk);
        return true;
      }
      return (real as (...a: unknown[]) => boolean).call(stream, chunk, ...rest);
    }) as typeof realOut;
  process.stdout.write = capture(process.stdout, realOut, (s) => (stdout += s));
  process.stderr.write = capture(process.stderr, realErr, (s) => (stderr += s));
  try {
    const code = await main(['node', 'fp8q', ...args]);
    return { code, stdout, stderr };
  } finally {
    process.stdout.write = realOut;
    process.stderr.write = realErr;
  }
}

/** A failed CLI run: non-zero exit, exactly one line `fp8q: …` on stderr matching every pattern. */
export function assertOneLineFailure(result: CliResult, ...patterns: (RegExp | string)[]): void {
  assert.notEqual(result.code, 0, `expected a failure, got exit 0; stderr: ${result.stderr}`);
  const lines = result.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('warning: '));
  assert.equal(lines.length, 1, `expected one error line, got:\n${result.stderr}`);
  assert.match(lines[0]!, /^fp8q: /);
  for (const p of patterns) {
    if (typeof p === 'string') assert.ok(lines[0]!.includes(p), `error line lacks ${JSON.stringify(p)}: ${lines[0]}`);
    else assert.match(lines[0]!, p);
  }
}

/** Neither `output` nor any staging sibling or lock of it (`.<name>.fp8q-tmp-*`, `.<name>.fp8q-lock`) exists. */
export async function assertNoOutputLeft(output: string): Promise<void> {
  const siblings = await readdir(dirname(output));
  const name = basename(output);
  assert.deepEqual(
    siblings.filter((s) => s === name || s.startsWith(`.${name}.fp8q-`)),
    [],
    `left behind beside ${output}: ${siblings.join(', ')}`,
  );
}

/** SHA-256 of every file under `dir`, by relative path: to prove a folder was not changed. */
export async function folderChecksums(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  for (const e of entries) {
    if (!e.isFile()) continue;
    const path = join(e.parentPath, e.name);
    out.set(
      path.slice(dir.length + 1),
      createHash('sha256')
        .update(await readFile(path))
        .digest('hex'),
    );
  }
  return new Map([...out].sort((a, b) => (a[0] < b[0] ? -1 : 1)));
}
