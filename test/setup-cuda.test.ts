// `fp8q setup-cuda` and `fp8q --version` as a user runs them (child processes from the sources):
// a provider folder or tarball that is not the pinned build is refused before anything is
// copied, --check installs nothing and reports what --device auto picks, and --version names the
// versions a bug report needs. The pack-and-install test runs the same from an installed package.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { onnxruntimeBinaryDir } from '../src/runtime/device/device.js';
import { ROOT } from './helpers/fixtures.js';
import { makeTempDir, type TempDir } from './helpers/temp-dir.js';

function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, ['--import', 'tsx', join(ROOT, 'test/helpers/run-cli.ts'), ...args], { cwd: ROOT, timeout: 60_000 }, (err, stdout, stderr) => {
      done({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

const linuxX64 = process.platform === 'linux' && process.arch === 'x64';
let tmp: TempDir;
before(async () => {
  tmp = await makeTempDir('setup-cuda');
});
after(async () => tmp.cleanup());

test('a provider folder whose files are not the pinned build is refused, and nothing lands beside onnxruntime', { skip: !linuxX64 }, async () => {
  const dir = join(tmp.path, 'fake-provider');
  mkdirSync(dir);
  writeFileSync(join(dir, 'libonnxruntime_providers_shared.so'), 'not a library');
  writeFileSync(join(dir, 'libonnxruntime_providers_cuda.so'), 'not a library');
  const before = readdirSync(onnxruntimeBinaryDir()).sort();
  const r = await cli('setup-cuda', dir);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /^fp8q: setup-cuda: .*libonnxruntime_providers_shared\.so: sha256 [0-9a-f]{64}, expected c6a12593/);
  assert.deepEqual(readdirSync(onnxruntimeBinaryDir()).sort(), before);
});

test('a tarball that is not the pinned package is refused by its integrity', { skip: !linuxX64 }, async () => {
  const tgz = join(tmp.path, 'other.tgz');
  writeFileSync(tgz, 'not the package');
  const r = await cli('setup-cuda', tgz);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /other\.tgz: integrity sha512-\S+ is not com\.github\.asus4\.onnxruntime\.linux-x64-gpu@0\.4\.9's sha512-FopIhNE/);
  const missing = await cli('setup-cuda', join(tmp.path, 'absent.tgz'));
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /absent\.tgz: no such file or folder/);
});

test('--check installs nothing and says what --device auto picks; a source with --check is a usage error', async () => {
  const r = await cli('setup-cuda', '--check', '--json');
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout) as { installed: unknown[]; auto: { requested: string; device: string; reason: string }; remedy: string | null };
  assert.deepEqual(report.installed, []);
  assert.equal(report.auto.requested, 'auto');
  if (report.auto.device === 'cpu') assert.match(report.remedy ?? '', /\S/);
  const text = await cli('setup-cuda', '--check');
  assert.match(text.stdout, /^CUDA provider: .*\n--device auto: (cpu|cuda) \(/);
  const both = await cli('setup-cuda', '--check', join(tmp.path, 'x.tgz'));
  assert.equal(both.code, 2);
  assert.match(both.stderr, /--check installs nothing/);
});

test('--version prints fp8q, Node, onnxruntime-node and the execution providers', async () => {
  const r = await cli('--version');
  assert.equal(r.code, 0);
  const lines = r.stdout.trim().split('\n');
  assert.match(lines[0]!, /^fp8q \d+\.\d+\.\d+$/);
  assert.equal(lines[1], `node ${process.version} (${process.platform}-${process.arch})`);
  assert.match(lines[2]!, /^onnxruntime-node 1\.29\.0$/);
  assert.match(lines[3]!, /^execution providers: cpu\b/);
  if (linuxX64 && !existsSync(join(onnxruntimeBinaryDir(), 'libonnxruntime_providers_cuda.so'))) assert.match(lines[3]!, /cuda \(not installed: fp8q setup-cuda\)/);
  assert.equal((await cli('-V')).stdout, r.stdout);
  // --json gives the same as one document (it used to print commander's bare version number).
  const json = await cli('--version', '--json');
  assert.equal(json.code, 0, json.stderr);
  const v = JSON.parse(json.stdout) as { fp8q: string; node: string; onnxruntimeNode: string; executionProviders: string[] };
  assert.equal(`fp8q ${v.fp8q}`, lines[0]);
  assert.equal(v.node, process.version);
  assert.equal(v.onnxruntimeNode, '1.29.0');
  assert.equal(`execution providers: ${v.executionProviders.join(', ')}`, lines[3]);
});
