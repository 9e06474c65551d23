// fp8q as users get it: `npm pack` (which builds dist/ through `prepare`, as a publish does), the
// tarball checked for what it must not carry (tests, fixtures, sources, weights, tokens, npm
// config) and for its size, then installed into a temporary global prefix with
// ONNXRUNTIME_NODE_INSTALL=skip (the variable an offline install needs: onnxruntime-node's install
// script otherwise downloads its CUDA 12 provider from outside the npm registry) and npm's cache
// preferred. The installed bin, run from outside the repository, prints its versions, converts
// and verifies a fixture, and reports its CUDA setup: a file missing from package.json's `files`
// fails here.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { MODELS, ROOT } from './helpers/fixtures.js';
import { makeTempDir, type TempDir } from './helpers/temp-dir.js';

const run = promisify(execFile);

/** The environment of a user's shell: none of the npm_* variables `npm test` sets for its scripts. */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k)) env[k] = v;
  return { ...env, ...extra };
}

interface PackResult {
  filename: string;
  size: number;
  unpackedSize: number;
  files: { path: string; size: number }[];
}

/** Largest tarball accepted: the build is ~0.3 MB; a stray fixture or weight file is megabytes. */
const MAX_TARBALL_BYTES = 2 * 1024 * 1024;
const ALLOWED = /^(bin\/fp8q\.js|dist\/.+\.js(\.map)?|data\/verify-sample\.txt|README\.md|LICENSE|package\.json)$/;
/** Hub tokens, private keys, npm auth lines: what must never ship. */
const SECRET = /\bhf_[A-Za-z0-9]{30,}|-----BEGIN [A-Z ]*PRIVATE KEY-----|_authToken\s*=|npm_[A-Za-z0-9]{36}/;

let tmp: TempDir;
let pack: PackResult;
let fp8q: string;

before(async () => {
  tmp = await makeTempDir('pack');
  const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', tmp.path], { cwd: ROOT, env: userEnv(), maxBuffer: 64 << 20 });
  pack = (JSON.parse(stdout) as PackResult[])[0]!;
  const prefix = join(tmp.path, 'prefix');
  await run('npm', ['install', '--global', '--prefix', prefix, join(tmp.path, pack.filename), '--prefer-offline', '--no-audit', '--no-fund'], {
    cwd: tmp.path,
    env: userEnv({ ONNXRUNTIME_NODE_INSTALL: 'skip' }),
    maxBuffer: 64 << 20,
  });
  fp8q = join(prefix, 'bin', 'fp8q');
});

after(async () => tmp?.cleanup());

test('the tarball holds the build (JavaScript and source maps), README and package.json only, no secret, and stays small', async (t) => {
  t.diagnostic(`${pack.filename}: ${(pack.size / 1024).toFixed(0)} KiB packed, ${(pack.unpackedSize / 1024).toFixed(0)} KiB unpacked, ${pack.files.length} files`);
  const stray = pack.files.map((f) => f.path).filter((p) => !ALLOWED.test(p));
  assert.deepEqual(stray, [], 'files outside bin/, dist/, data/verify-sample.txt, README.md, package.json');
  assert.ok(
    pack.files.some((f) => f.path === 'dist/cli/index.js'),
    'the compiled CLI is in the tarball',
  );
  assert.ok(pack.size < MAX_TARBALL_BYTES, `tarball is ${pack.size} bytes`);
  // The installed copy is the tarball's content: scan it for tokens and keys.
  const installed = join(tmp.path, 'prefix', 'lib', 'node_modules', 'fp8q');
  const files = (await readdir(installed, { recursive: true })).filter((f) => !f.startsWith('node_modules'));
  let scanned = 0;
  for (const f of files) {
    const path = join(installed, f);
    if (!(await stat(path)).isFile()) continue;
    const text = await readFile(path, 'utf8');
    assert.doesNotMatch(text, SECRET, `${relative(installed, path)} holds something token-shaped`);
    scanned++;
  }
  assert.equal(scanned, pack.files.length);
});

test('the installed fp8q --version names fp8q, Node, onnxruntime-node and the execution providers', async () => {
  const { stdout } = await run(fp8q, ['--version'], { cwd: tmp.path, env: userEnv() });
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string; dependencies: Record<string, string> };
  assert.match(stdout, new RegExp(`^fp8q ${pkg.version.replaceAll('.', '\\.')}$`, 'm'));
  assert.match(stdout, new RegExp(`^node ${process.version.replaceAll('.', '\\.')} \\(`, 'm'));
  assert.match(stdout, new RegExp(`^onnxruntime-node ${pkg.dependencies['onnxruntime-node']!.replaceAll('.', '\\.')}$`, 'm'));
  assert.match(stdout, /^execution providers: cpu, .*cuda \(/m);
});

test('the installed bin converts and verifies a fixture, and setup-cuda --check reports the device', async () => {
  const out = join(tmp.path, 'llama-fp8');
  const convert = await run(fp8q, ['convert', join(MODELS, 'llama'), '-o', out, '--json'], { cwd: tmp.path, env: userEnv() });
  const summary = JSON.parse(convert.stdout) as { tensorsQuantized: number; quantizationConfig: { quant_method: string } };
  assert.equal(summary.quantizationConfig.quant_method, 'fp8');
  assert.ok(summary.tensorsQuantized > 0);
  const verify = await run(fp8q, ['verify', join(MODELS, 'llama'), out, '--input-ids', join(MODELS, 'llama.logits.safetensors'), '--device', 'cpu', '--json'], {
    cwd: tmp.path,
    env: userEnv(),
    maxBuffer: 64 << 20,
  });
  const report = JSON.parse(verify.stdout) as { passed: boolean };
  assert.equal(report.passed, true);
  const check = await run(fp8q, ['setup-cuda', '--check', '--json'], { cwd: tmp.path, env: userEnv() });
  const cuda = JSON.parse(check.stdout) as { installed: unknown[]; providerDir: string; auto: { device: string; reason: string } };
  assert.deepEqual(cuda.installed, []);
  assert.ok(cuda.providerDir.startsWith(join(tmp.path, 'prefix')), `the installed package's own onnxruntime-node: ${cuda.providerDir}`);
  assert.ok(cuda.auto.device === 'cpu' || cuda.auto.device === 'cuda', cuda.auto.reason);
});
