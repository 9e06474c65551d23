// `fp8q verify` of static conversions: the quantized forward runs MLC LLM's static linear with
// the calibrated scales and passes the default gates on every fixture; clipping is reported per
// linear and overall — exactly 0 on the calibration tokens themselves (the scales cover them),
// above 0 but small on other tokens. A scale shrunk 8× shows that the forward really uses it: that
// linear clips heavily and fails the per-linear gate by name, and nothing else moves.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { join } from 'node:path';
import { renderReport } from '../src/cli/commands/verify.js';
import { convertCheckpoint } from '../src/pipeline/convert-checkpoint.js';
import { readInputIds } from '../src/runtime/models/token-ids.js';
import { verifyCheckpoints, type VerifyReport } from '../src/runtime/verify/verify-checkpoints.js';
import { copyCheckpointWithEdits, scaleF32 } from './helpers/checkpoint-edit.js';
import { testDevice } from './helpers/device.js';
import { FIXTURE_MODELS, MODELS, modelDir } from './helpers/fixtures.js';
import { makeTempDir, type TempDir } from './helpers/temp-dir.js';

type FixtureName = (typeof FIXTURE_MODELS)[number];

let tmp: TempDir;
const converted = new Map<FixtureName, string>();
const calibrationFile = (name: FixtureName): string => join(MODELS, `${name}.logits.safetensors`);

before(async () => {
  tmp = await makeTempDir('calib-verify');
  for (const name of FIXTURE_MODELS) {
    const out = join(tmp.path, name);
    await convertCheckpoint({ input: modelDir(name), output: out, activationScheme: 'static', calibration: { file: calibrationFile(name) } });
    converted.set(name, out);
  }
});
after(() => tmp.cleanup());

async function verify(name: FixtureName, quantized: string, onCalibrationTokens: boolean): Promise<VerifyReport> {
  return verifyCheckpoints({
    original: modelDir(name),
    quantized,
    device: testDevice(),
    ...(onCalibrationTokens ? { input: await readInputIds(calibrationFile(name)) } : { tokens: 32, seed: 3 }),
  });
}

for (const name of FIXTURE_MODELS) {
  test(`${name}: a static conversion passes verify, with clipping reported`, async () => {
    const same = await verify(name, converted.get(name)!, true);
    assert.equal(same.passed, true, same.failures.map((f) => f.message).join('; '));
    assert.ok(same.clipping, 'a static conversion reports clipping');
    assert.equal(same.clipping.linears, same.summary.linearsCompared, 'every compared linear has a static scale');
    assert.equal(same.clipping.clipped, 0, 'the calibration tokens never exceed their own range');
    for (const l of same.linears) {
      assert.ok(l.clipping && l.clipping.elements > 0 && l.clipping.elements % l.rows === 0, `${l.module}: clipping counted over rows × K`);
      // Static scales are coarser than per-token ones but stay FP8-sized on calibrated inputs.
      assert.ok(l.relativeError < 0.08 && l.cosine > 0.996, `${l.module}: relative error ${l.relativeError}, cosine ${l.cosine}`);
    }

    const other = await verify(name, converted.get(name)!, false);
    assert.equal(other.passed, true, other.failures.map((f) => f.message).join('; '));
    assert.ok(other.clipping);
    assert.ok(other.clipping.clipped > 0 && other.clipping.rate < 0.01, `other tokens clip a little: ${other.clipping.rate}`);
    const perLinear = other.linears.reduce((n, l) => n + l.clipping!.clipped, 0);
    assert.equal(other.clipping.clipped, perLinear, 'overall = sum over linears');
    const text = renderReport(other);
    assert.match(text, /clipped\n/);
    assert.match(text, /static activation scales: \d+ of \d+ input values \([\d.e-]+%\) beyond the calibrated range over \d+ linear\(s\); most: model\.layers\./);
  });
}

test('the forward uses the scale: one shrunk 8x clips, fails its gate by name, and only it', async () => {
  const damaged = join(tmp.path, 'llama-damaged');
  const target = 'model.layers.1.mlp.up_proj';
  await copyCheckpointWithEdits(converted.get('llama')!, damaged, (tensors) => scaleF32(tensors.get(`${target}.activation_scale`)!, 1 / 8));
  const r = await verify('llama', damaged, true);
  assert.equal(r.passed, false);
  assert.deepEqual(
    r.failures.filter((f) => f.gate === 'max-layer-rel-error' || f.gate === 'max-layer-error-ratio').map((f) => f.subject),
    [target],
  );
  const hit = r.linears.find((l) => l.module === target)!;
  assert.ok(hit.clipping!.rate > 0.01, `clipping ${hit.clipping!.rate}`);
  assert.equal(r.clipping!.worst!.module, target);
  assert.equal(r.clipping!.clipped, hit.clipping!.clipped, 'no other linear clips');
});

test('a dynamic conversion reports no clipping', async () => {
  const dynamic = join(tmp.path, 'llama-dynamic');
  await convertCheckpoint({ input: modelDir('llama'), output: dynamic });
  const r = await verify('llama', dynamic, true);
  assert.equal(r.clipping, undefined);
  assert.ok(r.linears.every((l) => l.clipping === undefined));
  assert.doesNotMatch(renderReport(r), /clipped|static activation/);
});
