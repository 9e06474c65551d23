// `--scale-fmt ue8m0`: a conversion of each fixture has only power-of-two scales, the
// codes and scales of the reference kernel (blockQuantize, itself bit-exact with PyTorch's
// `<case>.e4m3_ue8m0.*` vectors in fp8-reference-vectors.test.ts), `"scale_fmt": "ue8m0"` in its
// config; inspect reports the scale format it finds and flags a ue8m0 config that lies.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURE_MODELS, f32, modelDir, readAll } from './helpers/fixtures.js';
import { blockQuantize, roundUpToPowerOfTwo, widenToFloat32, type FloatSourceDtype } from '../src/fp8/index.js';
import { firstNonPowerOfTwo, isPowerOfTwo, scaleFormatOfValues } from '../src/fp8/scale-format.js';
import { Checkpoint } from '../src/io/checkpoint/checkpoint.js';
import { convertCheckpoint } from '../src/pipeline/convert-checkpoint.js';
import { inspectCheckpoint } from '../src/pipeline/inspect/inspect-checkpoint.js';
import { SafetensorsReader } from '../src/io/safetensors/safetensors-reader.js';

let tmp = '';
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'fp8q-ue8m0-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const readConfig = async (dir: string): Promise<Record<string, unknown>> => JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;

test('isPowerOfTwo: normal and subnormal powers of two only; never 0, negatives, Inf or NaN', () => {
  for (const x of [1, 0.5, 2, 2 ** -126, 2 ** -127, 2 ** -149, 2 ** 127, 2 ** -9]) assert.ok(isPowerOfTwo(x), `${x}`);
  for (const x of [0, -0, -1, -(2 ** -10), 0.75, 3, 1 / 448, 3 * 2 ** -149, 1.5 * 2 ** -140, Infinity, -Infinity, NaN, Math.fround(1 + 2 ** -23)]) {
    assert.ok(!isPowerOfTwo(x), `${x}`);
  }
  // roundUpToPowerOfTwo always lands on one, at or above its input and below twice it.
  let seed = 12345;
  for (let i = 0; i < 20000; i++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    const x = Math.fround(2 ** ((seed / 2 ** 32) * 260 - 149) * (1 + (seed & 0xffff) / 65536));
    if (!(x > 0) || x === Infinity) continue;
    const p = roundUpToPowerOfTwo(x);
    assert.ok(isPowerOfTwo(p) && p >= x && p < 2 * x, `roundUp(${x}) = ${p}`);
  }
  assert.equal(firstNonPowerOfTwo(new Float32Array([1, 0.25, 0.3, 4])), 2);
  assert.equal(scaleFormatOfValues(new Float32Array([1, 0.25, 4])), 'ue8m0');
  assert.equal(scaleFormatOfValues(new Float32Array([1, 0.3])), 'float');
  assert.equal(scaleFormatOfValues(new Float32Array(0)), 'float');
});

for (const model of FIXTURE_MODELS) {
  test(`${model}: a ue8m0 conversion has only power-of-two scales, the reference kernel's codes, and scale_fmt in its config`, async () => {
    const ueDir = join(tmp, `${model}-ue8m0`);
    const floatDir = join(tmp, `${model}-float`);
    await convertCheckpoint({ input: modelDir(model), output: ueDir, scaleFormat: 'ue8m0' });
    await convertCheckpoint({ input: modelDir(model), output: floatDir });
    const ueConfig = await readConfig(ueDir);
    const floatConfig = await readConfig(floatDir);
    const ueQc = ueConfig['quantization_config'] as Record<string, unknown>;
    assert.equal(ueQc['scale_fmt'], 'ue8m0');
    assert.ok(!('scale_fmt' in (floatConfig['quantization_config'] as object)), 'float scales declare nothing');
    const { scale_fmt: _declared, ...rest } = ueQc;
    assert.deepEqual(rest, floatConfig['quantization_config'], 'scale_fmt is the only config difference');

    const written = (await readAll(join(ueDir, 'model.safetensors'))).tensors;
    const floats = (await readAll(join(floatDir, 'model.safetensors'))).tensors;
    const src = await Checkpoint.open(modelDir(model));
    let scaleTensors = 0;
    let scalesDiffering = 0;
    try {
      for (const [name, t] of written) {
        if (!name.endsWith('.weight_scale_inv')) continue;
        scaleTensors++;
        const scales = f32(t.bytes);
        const bad = firstNonPowerOfTwo(scales);
        assert.equal(bad, -1, `${name}[${bad}] = ${scales[bad]} is not a power of two`);
        const weightName = name.replace(/_scale_inv$/, '');
        const info = src.info(weightName);
        const [rows, cols] = info.shape as [number, number];
        const values = widenToFloat32(await src.readTensor(weightName), info.dtype as FloatSourceDtype);
        const ref = blockQuantize(values, rows, cols, { format: 'e4m3fn', block: { bn: 128, bk: 128 }, scaleFormat: 'ue8m0' });
        const badCode = ref.codes.findIndex((c, i) => c !== written.get(weightName)!.bytes[i]);
        assert.equal(badCode, -1, `${weightName}: code at [${Math.floor(badCode / cols)}, ${badCode % cols}] differs from the reference kernel`);
        assert.ok(Buffer.from(ref.scaleInv.buffer).equals(Buffer.from(t.bytes)), `${name}: scales differ from the reference kernel`);
        // Rounded up from the float scale: never below it, never twice it or more.
        const fl = f32(floats.get(name)!.bytes);
        for (let i = 0; i < fl.length; i++) {
          assert.ok(scales[i]! >= fl[i]! && scales[i]! < 2 * fl[i]!, `${name}[${i}]: ue8m0 ${scales[i]} vs float ${fl[i]}`);
          if (scales[i] !== fl[i]) scalesDiffering++;
        }
      }
    } finally {
      await src.close();
    }
    assert.ok(scaleTensors >= 14, `${model}: ${scaleTensors} scale tensors`);
    assert.ok(scalesDiffering > 0, 'the flag changed the scales');

    const ue = await inspectCheckpoint(ueDir);
    assert.equal(ue.quantizedFormat?.scaleFormat, 'ue8m0');
    assert.deepEqual([ue.scales?.declared, ue.scales?.found, ue.scales?.tensors, ue.scales?.nonPowerOfTwoTensors, ue.warnings], ['ue8m0', 'ue8m0', scaleTensors, 0, []]);
    const fl = await inspectCheckpoint(floatDir);
    assert.deepEqual([fl.scales?.declared, fl.scales?.found, fl.warnings], ['float', 'float', []]);
    assert.ok(fl.scales!.nonPowerOfTwoTensors > 0);
  });
}

test('ue8m0 in compressed-tensors: the same power-of-two scales as hf, undeclarable, found by inspect', async () => {
  const hfDir = join(tmp, 'llama-ue8m0-hf');
  const ctDir = join(tmp, 'llama-ue8m0-ct');
  await convertCheckpoint({ input: modelDir('llama'), output: hfDir, scaleFormat: 'ue8m0' });
  const summary = await convertCheckpoint({ input: modelDir('llama'), output: ctDir, scaleFormat: 'ue8m0', outputFormat: 'compressed-tensors' });
  assert.ok(summary.warnings.some((w) => /compressed-tensors has no field for power-of-two scales/.test(w)));
  assert.ok(!JSON.stringify(summary.quantizationConfig).includes('ue8m0'), 'nothing llm-compressor would not write');
  const hf = (await readAll(join(hfDir, 'model.safetensors'))).tensors;
  const ct = (await readAll(join(ctDir, 'model.safetensors'))).tensors;
  for (const [name, t] of hf) {
    const other = ct.get(name.replace(/_scale_inv$/, '_scale'))!;
    assert.ok(Buffer.from(other.bytes).equals(Buffer.from(t.bytes)), name);
  }
  const report = await inspectCheckpoint(ctDir);
  assert.deepEqual([report.quantizedFormat?.format, report.scales?.declared, report.scales?.found, report.warnings], ['compressed-tensors', 'float', 'ue8m0', []]);
});

test('inspect flags a ue8m0 config whose scales are not powers of two, naming the tensor and the block', async () => {
  // A float conversion relabelled ue8m0: nearly every scale tensor is wrong.
  const relabelled = join(tmp, 'relabelled');
  await convertCheckpoint({ input: modelDir('llama'), output: relabelled });
  const config = await readConfig(relabelled);
  (config['quantization_config'] as Record<string, unknown>)['scale_fmt'] = 'ue8m0';
  await writeFile(join(relabelled, 'config.json'), JSON.stringify(config));
  const r1 = await inspectCheckpoint(relabelled);
  assert.equal(r1.scales?.found, 'float');
  assert.equal(r1.warnings.length, 1);
  assert.match(
    r1.warnings[0]!,
    /^config\.json declares scale_fmt "ue8m0" but 14 of 14 scale tensors hold values that are not powers of two \(first: model\.layers\.0\.mlp\.down_proj\.weight_scale_inv\[0, 0\] = /,
  );

  // A true ue8m0 conversion with one scale damaged in place: exactly that one is reported.
  const damaged = join(tmp, 'damaged');
  await convertCheckpoint({ input: modelDir('llama'), output: damaged, scaleFormat: 'ue8m0' });
  const target = 'model.layers.1.self_attn.o_proj.weight_scale_inv'; // [2, 2]
  const reader = await SafetensorsReader.open(join(damaged, 'model.safetensors'));
  const at = reader.info(target).fileOffset + 3 * 4; // element [1, 1]
  const old = f32(await reader.readTensor(target))[3]!;
  await reader.close();
  const fh = await open(join(damaged, 'model.safetensors'), 'r+');
  await fh.write(new Uint8Array(new Float32Array([old * 1.5]).buffer), 0, 4, at);
  await fh.close();
  const r2 = await inspectCheckpoint(damaged);
  assert.deepEqual([r2.scales?.found, r2.scales?.nonPowerOfTwoTensors, r2.scales?.firstNonPowerOfTwo], ['float', 1, { tensor: target, at: [1, 1], value: old * 1.5 }]);
  assert.match(r2.warnings.join('\n'), new RegExp(`but 1 of 14 scale tensors .*first: ${target.replace(/\./g, '\\.')}\\[1, 1\\] = ${old * 1.5}\\)`));
});
