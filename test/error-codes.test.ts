// Stable error codes: one table (src/cli/common/error-codes.ts) that README documents in full, each error
// mapped to its code (typed errors, Hub errors, OS errors, a new command's own errors without any
// registration), OS errors described with the path and what to do, a failed verify gate reported
// in its JSON with the gate's code, and the few message details hostile inputs exposed.

import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ERROR_CODES, errorCodeOf, GATE_ERROR_CODES } from '../src/cli/common/error-codes.js';
import { describeError, EXIT_GATE_FAILED, EXIT_USAGE, ExitError, isKnownError, UsageError } from '../src/cli/common/errors.js';
import { ByteProgress, outputMode } from '../src/cli/common/output.js';
import { convertCheckpoint } from '../src/pipeline/convert-checkpoint.js';
import { CheckpointError } from '../src/io/errors.js';
import { HubError } from '../src/io/hub/errors.js';
import { SafetensorsReader } from '../src/io/safetensors/safetensors-reader.js';
import { copyCheckpointWithEdits, scaleF32 } from './helpers/checkpoint-edit.js';
import { MODELS, modelDir, ROOT } from './helpers/fixtures.js';
import { assertJsonError } from './helpers/hostile.js';
import { rawSafetensors, runCli } from './helpers/safety.js';
import { makeTempDir, type TempDir } from './helpers/temp-dir.js';

let tmp: TempDir;
before(async () => {
  tmp = await makeTempDir('error-codes');
});
after(async () => tmp.cleanup());

function errno(code: string, path: string, syscall = 'mkdir'): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: failure, ${syscall} '${path}'`), { code, path, syscall });
}

describe('the table', () => {
  test('exit codes follow README: 2 usage, 3 gates, 130 interrupted, 1 otherwise', () => {
    for (const [code, info] of Object.entries(ERROR_CODES)) {
      const expected = code === 'E_USAGE' ? EXIT_USAGE : code.startsWith('E_GATE_') ? EXIT_GATE_FAILED : code === 'E_INTERRUPTED' ? 130 : 1;
      assert.equal(info.exit, expected, code);
    }
  });

  test('README documents every code', async () => {
    const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
    for (const code of Object.keys(ERROR_CODES)) assert.ok(readme.includes(`\`${code}\``), `README lacks ${code}`);
  });

  test('errors map to codes by errorCode, class, Hub code or errno', () => {
    assert.equal(errorCodeOf(new UsageError('x')), 'E_USAGE');
    assert.equal(errorCodeOf(new CheckpointError('x')), 'E_INPUT_MALFORMED');
    assert.equal(errorCodeOf(new CheckpointError('x', 'E_OUTPUT_BUSY')), 'E_OUTPUT_BUSY');
    assert.equal(errorCodeOf(new HubError('HUB_TIMEOUT', 'x')), 'E_HUB_TIMEOUT');
    assert.equal(errorCodeOf(new HubError('HUB_REVISION_NOT_FOUND', 'x')), 'E_HUB_NOT_FOUND');
    assert.equal(errorCodeOf(errno('ENOSPC', '/o')), 'E_DISK_FULL');
    assert.equal(errorCodeOf(errno('EROFS', '/o')), 'E_PERMISSION');
    assert.equal(errorCodeOf(errno('EISDIR', '/o', 'rename')), 'E_IO');
    assert.equal(errorCodeOf(new Error('bug')), 'E_INTERNAL');
    // A command's own exit-2 refusal that names no code is still the command line, not a bug.
    assert.equal(errorCodeOf(new ExitError('x', EXIT_USAGE)), 'E_USAGE');
    assert.equal(errorCodeOf('thrown string'), 'E_INTERNAL');
    // A new command's error names its code and is known without being registered anywhere.
    class SetupError extends Error {
      readonly errorCode = 'E_DEVICE_UNAVAILABLE';
    }
    assert.equal(errorCodeOf(new SetupError('no driver')), 'E_DEVICE_UNAVAILABLE');
    assert.ok(isKnownError(new SetupError('no driver')));
    assert.ok(!isKnownError(new Error('bug')));
  });
});

describe('system errors in words', () => {
  const staging = '/data/out/.llama-fp8.fp8q-tmp-1234-abcd0123';
  test('a path in the temporary folder is named by the output, with what to do', () => {
    assert.equal(describeError(errno('EROFS', staging)), '/data/out/llama-fp8 is on a read-only file system (EROFS): choose an -o folder on a writable disk');
    assert.match(describeError(errno('EISDIR', `${staging}/model.safetensors`, 'rename')), /^\/data\/out\/llama-fp8 is a folder where a file was expected \(EISDIR\)/);
    assert.match(describeError(errno('ENAMETOOLONG', '/x/y')), /too long .*choose a shorter name/);
    assert.match(describeError(errno('EACCES', '/data/out/.llama-fp8.fp8q-lock')), /permission denied \(EACCES\) at \/data\/out\/llama-fp8/);
    assert.match(describeError(errno('EWEIRD', '/p')), /^EWEIRD at \/p: /);
  });

  test('a read-only output folder fails with one translated line and E_PERMISSION', { skip: process.getuid?.() === 0 }, async () => {
    const { chmod, mkdir } = await import('node:fs/promises');
    const ro = join(tmp.path, 'ro');
    await mkdir(ro);
    await chmod(ro, 0o555);
    try {
      const r = await runCli(['convert', modelDir('llama'), '-o', join(ro, 'out'), '--json']);
      assert.match(assertJsonError(r, 'E_PERMISSION', 1).message, /permission denied \(EACCES\) at .*ro\/out/);
      assert.doesNotMatch(r.stderr, /fp8q-tmp|internal error/);
    } finally {
      await chmod(ro, 0o755);
    }
  });
});

describe('messages from hostile inputs', () => {
  test('a 2^63 header length is printed exactly', async () => {
    const path = join(tmp.path, 'huge-header.safetensors');
    await writeFile(path, rawSafetensors('{}', new Uint8Array(0), 2n ** 63n));
    await assert.rejects(SafetensorsReader.open(path), /header length 9223372036854775808 exceeds/);
  });

  test('progress never passes 100% or shows a negative ETA', () => {
    const mode = outputMode({}, { isTTY: false, columns: 80 });
    assert.equal(outputMode({}, { isTTY: true, columns: 0 }).tty, false, 'a 0-column terminal gets plain lines');
    const lines: string[] = [];
    const real = process.stderr.write;
    process.stderr.write = ((s: string) => (lines.push(s), true)) as typeof real;
    try {
      const p = new ByteProgress(mode, 'converting');
      p.update(1007, 1000);
    } finally {
      process.stderr.write = real;
    }
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /^converting 100\.0% .* ETA 0s/);
  });
});

describe('verify', () => {
  test('a failed gate: exit 3, and the JSON report carries error.code and a code per failure', async () => {
    const fp8 = join(tmp.path, 'llama-fp8');
    await convertCheckpoint({ input: modelDir('llama'), output: fp8 });
    const bad = join(tmp.path, 'llama-bad');
    await copyCheckpointWithEdits(fp8, bad, (t) => scaleF32(t.get('model.layers.0.self_attn.v_proj.weight_scale_inv')!, 4));
    const r = await runCli(['verify', modelDir('llama'), bad, '--input-ids', join(MODELS, 'llama.logits.safetensors'), '--device', 'cpu', '--json']);
    // The first failure is the per-linear gate against the FP8 floor.
    const err = assertJsonError(r, 'E_GATE_LAYER_RATIO', 3);
    assert.match(err.message, /v_proj/);
    const report = JSON.parse(r.stdout) as { passed: boolean; failures: { gate: string; code: string }[]; device: string; deviceSelection: { device: string } };
    assert.equal(report.passed, false);
    assert.ok(report.failures.some((f) => f.gate === 'max-layer-error-ratio' && f.code === 'E_GATE_LAYER_RATIO'));
    assert.ok(report.failures.every((f) => f.code === GATE_ERROR_CODES[f.gate as keyof typeof GATE_ERROR_CODES]));
    assert.equal(report.device, 'cpu');
    assert.equal(report.deviceSelection.device, 'cpu');
    assert.equal(
      r.stderr
        .trim()
        .split('\n')
        .filter((l) => l.startsWith('fp8q: ')).length,
      1,
    );
  });
});

describe('the newer commands never report their refusals as E_INTERNAL', () => {
  const linuxX64 = process.platform === 'linux' && process.arch === 'x64';
  test('convert --target that would not load: E_USAGE, exit 2, nothing written', async () => {
    const out = join(tmp.path, 'target-out');
    const r = await runCli(['convert', modelDir('llama'), '-o', out, '--target', 'vllm:tp8', '--json']);
    assert.match(assertJsonError(r, 'E_USAGE', 2).message, /^refusing to convert: the output would not load in vllm:tp8/);
    assert.equal(existsSync(out), false);
  });

  test('setup-cuda: a missing source is E_INPUT_MISSING, a source with --check E_USAGE', { skip: !linuxX64 }, async () => {
    assertJsonError(await runCli(['setup-cuda', join(tmp.path, 'absent.tgz'), '--json']), 'E_INPUT_MISSING', 1);
    assertJsonError(await runCli(['setup-cuda', '--check', join(tmp.path, 'x.tgz'), '--json']), 'E_USAGE', 2);
  });

  test('convert --calibration naming a missing file: E_INPUT_MISSING (exit 1) like every missing input, nothing written', async () => {
    const out = join(tmp.path, 'calibration-out');
    const r = await runCli(['convert', modelDir('llama'), '-o', out, '--activation-scheme', 'static', '--calibration', join(tmp.path, 'absent.txt'), '--json']);
    assert.match(assertJsonError(r, 'E_INPUT_MISSING', 1).message, /^--calibration: no such file: .*absent\.txt$/);
    assert.equal(existsSync(out), false);
  });

  test('convert --calibration and logits --text naming a folder: E_INPUT_MALFORMED naming it, not "the output is a folder"', async () => {
    const out = join(tmp.path, 'calibration-folder-out');
    const folder = join(tmp.path, 'a-folder');
    await mkdir(folder, { recursive: true });
    const r = await runCli(['convert', join(MODELS, 'stories260K'), '-o', out, '--activation-scheme', 'static', '--calibration', folder, '--calibration-device', 'cpu', '--json']);
    assert.match(assertJsonError(r, 'E_INPUT_MALFORMED', 1).message, /^cannot read calibration file .*a-folder: it is a folder; give a file$/);
    assert.equal(existsSync(out), false);
    const logits = await runCli(['logits', join(MODELS, 'stories260K'), '--text', folder, '-o', join(tmp.path, 'l.safetensors'), '--device', 'cpu', '--json']);
    assert.match(assertJsonError(logits, 'E_INPUT_MALFORMED', 1).message, /^cannot read text file .*a-folder: it is a folder; give a file$/);
  });

  test('verify --text naming a missing file: E_INPUT_MISSING', async () => {
    // stories260K: a model with tokenizer.json, so the text file is what is looked for.
    const fp8 = join(tmp.path, 'stories-fp8-text');
    await convertCheckpoint({ input: join(MODELS, 'stories260K'), output: fp8 });
    const r = await runCli(['verify', join(MODELS, 'stories260K'), fp8, '--text', join(tmp.path, 'absent.txt'), '--device', 'cpu', '--json']);
    assert.match(assertJsonError(r, 'E_INPUT_MISSING', 1).message, /cannot read text file .*absent\.txt \(ENOENT\)/);
  });
});
