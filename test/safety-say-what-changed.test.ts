// "Say what changed": NaN/Inf in a checkpoint never passes unreported. A kept (unquantized) tensor
// with NaN is refused like a quantized one; --allow-nonfinite counts what it replaced or kept;
// an FP8 checkpoint whose scales are NaN/Inf/0/negative, or whose codes are NaN, makes inspect
// warn and dequant refuse (unless --allow-nonfinite); float16 overflow is refused with advice;
// verify's metrics show NaN logits as NaN, not as "top-1 100%, max KL -Infinity".

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { join } from 'node:path';
import { float32ToBf16Bits } from '../src/fp8/dtypes.js';
import { compareLogits } from '../src/runtime/verify/metrics.js';
import { copyCheckpointWithEdits, type EditableTensor } from './helpers/checkpoint-edit.js';
import { assertJsonError, tinyLlamaTensors, writeTinyLlama } from './helpers/hostile.js';
import { assertNoOutputLeft, runCli } from './helpers/safety.js';
import { makeTempDir, type TempDir } from './helpers/temp-dir.js';

let tmp: TempDir;
let fp8: string;
let n = 0;
const fresh = (label: string): string => join(tmp.path, `${label}-${n++}`);

function setBf16(bytes: Uint8Array, index: number, value: number): void {
  new DataView(bytes.buffer, bytes.byteOffset).setUint16(index * 2, float32ToBf16Bits(value), true);
}

before(async () => {
  tmp = await makeTempDir('say-changed');
  const model = join(tmp.path, 'model');
  await writeTinyLlama(model);
  fp8 = join(tmp.path, 'fp8');
  const r = await runCli(['convert', model, '-o', fp8, '-q', '--block', '64x64']);
  assert.equal(r.code, 0, r.stderr);
});
after(async () => tmp.cleanup());

describe('convert', () => {
  test('NaN in a kept tensor (the final norm) is refused; --allow-nonfinite keeps it and says so', async () => {
    const dir = fresh('nan-norm');
    const tensors = tinyLlamaTensors();
    setBf16(tensors.get('model.norm.weight')!.bytes, 5, NaN);
    await writeTinyLlama(dir, { tensors });
    const out = fresh('nan-norm-out');
    const err = assertJsonError(await runCli(['convert', dir, '-o', out, '--json']), 'E_INPUT_NONFINITE', 1);
    assert.match(err.message, /model\.norm\.weight.*kept unquantized.*NaN\/Inf/);
    await assertNoOutputLeft(out);
    const r = await runCli(['convert', dir, '-o', out, '--json', '--allow-nonfinite']);
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout) as { nonFinite: { values: number; tensors: { name: string; values: number; action: string }[] } };
    assert.deepEqual(summary.nonFinite, { values: 1, tensors: [{ name: 'model.norm.weight', values: 1, action: 'kept' }] });
  });

  test('--allow-nonfinite reports how many values it replaced in quantized weights', async () => {
    const dir = fresh('inf-weight');
    const tensors = tinyLlamaTensors();
    const w = tensors.get('model.layers.0.mlp.up_proj.weight')!.bytes;
    setBf16(w, 10, Infinity);
    setBf16(w, 200, -Infinity);
    setBf16(w, 300, NaN);
    await writeTinyLlama(dir, { tensors });
    const r = await runCli(['convert', dir, '-o', fresh('inf-out'), '--json', '--allow-nonfinite']);
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout) as { nonFinite: unknown; warnings: string[] };
    assert.deepEqual(summary.nonFinite, { values: 3, tensors: [{ name: 'model.layers.0.mlp.up_proj.weight', values: 3, action: 'replaced' }] });
    assert.ok(summary.warnings.some((x) => /3 NaN\/Inf value\(s\) in 1 quantized tensor\(s\) replaced/.test(x)));
    assert.match(r.stderr, /warning: --allow-nonfinite: 3 NaN\/Inf/);
  });
});

describe('FP8 checkpoints with damaged scales or codes', () => {
  const SCALE = 'model.layers.0.mlp.down_proj.weight_scale_inv';
  const cases: [string, (t: Map<string, EditableTensor>) => void][] = [
    ['a NaN scale', (t) => new DataView(t.get(SCALE)!.bytes.buffer).setFloat32(0, NaN, true)],
    ['an Inf scale', (t) => new DataView(t.get(SCALE)!.bytes.buffer).setFloat32(4, Infinity, true)],
    ['a zero scale', (t) => new DataView(t.get(SCALE)!.bytes.buffer).setFloat32(8, 0, true)],
    ['a negative scale', (t) => new DataView(t.get(SCALE)!.bytes.buffer).setFloat32(12, -0.5, true)],
  ];
  for (const [label, edit] of cases) {
    test(`${label}: inspect warns, dequant refuses before writing, --allow-nonfinite writes and counts`, async () => {
      const dir = fresh('bad-scale');
      await copyCheckpointWithEdits(fp8, dir, edit);
      const inspect = await runCli(['inspect', dir, '--json']);
      assert.equal(inspect.code, 0, inspect.stderr);
      assert.ok((JSON.parse(inspect.stdout) as { warnings: string[] }).warnings.some((w) => /block scale\(s\) are NaN, Inf, zero or negative \(first: .*weight_scale_inv/.test(w)));
      const out = fresh('bad-scale-out');
      assert.match(assertJsonError(await runCli(['dequant', dir, '-o', out, '--json']), 'E_INPUT_NONFINITE', 1).message, /NaN, Inf, zero or negative/);
      await assertNoOutputLeft(out);
      const forced = await runCli(['dequant', dir, '-o', out, '--json', '--allow-nonfinite']);
      assert.equal(forced.code, 0, forced.stderr);
      assert.ok((JSON.parse(forced.stdout) as { warnings: string[] }).warnings.some((w) => /written anyway/.test(w)));
    });
  }

  test('a scale of the wrong shape: inspect warns, dequant refuses before writing', async () => {
    const dir = fresh('scale-shape');
    await copyCheckpointWithEdits(fp8, dir, (t) => {
      const s = t.get(SCALE)!;
      t.set(SCALE, { ...s, shape: [4, 1], bytes: s.bytes.slice(0, 16) });
    });
    const inspect = await runCli(['inspect', dir, '--json']);
    assert.ok(
      (JSON.parse(inspect.stdout) as { warnings: string[] }).warnings.some((w) => /is \[4,1\] but .* needs \[2,2\].*dequant refuses it/.test(w)),
      inspect.stdout,
    );
    const out = fresh('scale-shape-out');
    assert.match(assertJsonError(await runCli(['dequant', dir, '-o', out, '--json']), 'E_INPUT_MALFORMED', 1).message, /needs \[2,2\]/);
    await assertNoOutputLeft(out);
  });

  test('a NaN FP8 code: dequant refuses naming the tensor', async () => {
    const dir = fresh('nan-code');
    await copyCheckpointWithEdits(fp8, dir, (t) => {
      t.get('model.layers.0.mlp.up_proj.weight')!.bytes[77] = 0x7f; // E4M3 NaN
    });
    const out = fresh('nan-code-out');
    assert.match(assertJsonError(await runCli(['dequant', dir, '-o', out, '--json']), 'E_INPUT_NONFINITE', 1).message, /up_proj\.weight" dequantizes to 1 NaN\/Inf/);
    await assertNoOutputLeft(out);
    const forced = await runCli(['dequant', dir, '-o', out, '--json', '--allow-nonfinite']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal((JSON.parse(forced.stdout) as { nonFinite: { values: number } }).nonFinite.values, 1);
  });

  test('float16 overflow is refused with advice; bfloat16 holds the same values', async () => {
    const dir = fresh('overflow');
    await copyCheckpointWithEdits(fp8, dir, (t) => new DataView(t.get(SCALE)!.bytes.buffer).setFloat32(0, 1e4, true));
    const err = assertJsonError(await runCli(['dequant', dir, '-o', fresh('f16'), '--dtype', 'float16', '--json']), 'E_INPUT_NONFINITE', 1);
    assert.match(err.message, /beyond float16's ±65504: try --dtype bfloat16/);
    assert.equal((await runCli(['dequant', dir, '-o', fresh('bf16'), '-q'])).code, 0);
  });

  test('dequant progress on a pipe ends at 100%', async () => {
    const r = await runCli(['dequant', fp8, '-o', fresh('progress')]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('dequantizing'));
    assert.match(lines.at(-1)!, /^dequantizing 100/);
    assert.ok(
      lines.every((l) => !/\b1\d\d\.\d%|ETA -/.test(l) || /100\.0%|100%/.test(l)),
      lines.join('\n'),
    );
  });
});

describe('verify metrics with NaN logits', () => {
  test('NaN logits give a NaN KL at the NaN token and no top-1 agreement there', () => {
    const vocab = 4;
    const o = new Float32Array([1, 2, 3, 4, 4, 3, 2, 1]);
    const q = new Float32Array([1, 2, 3, 4, NaN, NaN, NaN, NaN]);
    const m = compareLogits(o, q, vocab);
    assert.ok(Number.isNaN(m.maxKl), String(m.maxKl));
    assert.equal(m.maxKlToken, 1);
    assert.equal(m.top1Agreement, 0.5);
    assert.ok(Number.isNaN(m.meanKl));
    const both = compareLogits(q, q, vocab);
    assert.equal(both.top1Agreement, 0.5, 'a NaN row agrees with nothing, not even itself');
  });
});
