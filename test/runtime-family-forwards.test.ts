// Forwards of the families added beside the first nine, on their transformers-made fixtures
// (scripts/make_family_fixtures.py): the language model on text of Qwen2.5-VL, Qwen3-VL(-MoE),
// Gemma 3 and Mistral 3; Gemma 3 text, DeepSeek-V2, GLM-4.5-style MoE, MiniMax-M2 and gpt-oss. The
// graph forward against transformers' float32 logits and (Gemma and gpt-oss excepted) the plain
// TypeScript reference forward, a default conversion through `verify`, and the new routings by hand.
//
// These fixtures' logits_f32 come from the checkpoint loaded in float32 (rotary frequencies
// computed in float32, not rounded to BF16 as for the first fixtures), so the graph forward is
// held to 2e-6 relative L2: float32 accumulation order, nothing else.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { convertCheckpoint } from '../src/pipeline/convert-checkpoint.js';
import { referenceForward } from '../src/runtime/models/reference-forward.js';
import { DEFAULT_GATES } from '../src/runtime/verify/gates.js';
import { verifyCheckpoints } from '../src/runtime/verify/verify-checkpoints.js';
import { makeTempDir, type TempDir } from './helpers/temp-dir.js';

import { ModelRunner } from '../src/runtime/models/runner.js';
import { readInputIds } from '../src/runtime/models/token-ids.js';
import { relativeL2Error } from '../src/runtime/ops/compare.js';
import { routeTokens } from '../src/runtime/models/routing.js';
import { testDevice } from './helpers/device.js';
import { f32, MODELS, readAll } from './helpers/fixtures.js';

const TOLERANCE = 2e-6;

export const FAMILY_FORWARD_FIXTURES = ['qwen2_5_vl', 'qwen3_vl', 'deepseek_v2', 'glm4_moe', 'gemma3_text', 'gemma3', 'mistral3', 'qwen3_vl_moe', 'minimax_m2', 'gpt_oss'] as const;

async function fixtureLogits(name: string): Promise<{ ids: Int32Array; logits: Float32Array }> {
  const path = join(MODELS, `${name}.logits.safetensors`);
  const { tensors } = await readAll(path);
  return { ids: (await readInputIds(path)).ids, logits: f32(tensors.get('logits_f32')!.bytes) };
}

for (const name of FAMILY_FORWARD_FIXTURES) {
  test(`${name}: graph forward matches transformers' float32 logits`, async () => {
    const { ids, logits: expected } = await fixtureLogits(name);
    const runner = await ModelRunner.open(join(MODELS, name), { device: testDevice() });
    try {
      const logits = await runner.forward(ids, { batch: 2, seq: 24 });
      assert.equal(logits.length, expected.length);
      const err = relativeL2Error(logits, expected);
      assert.ok(err < TOLERANCE, `${name}: relative L2 error ${err.toExponential(3)} ≥ ${TOLERANCE}`);
      if (runner.spec.gemma === undefined && runner.spec.gptOssExperts === undefined) {
        const reference = await referenceForward(runner, ids, { batch: 2, seq: 24 });
        const refErr = relativeL2Error(logits, reference);
        assert.ok(refErr < TOLERANCE, `${name}: graph vs reference forward ${refErr.toExponential(3)}`);
      }
    } finally {
      await runner.close();
    }
  });
}

let tmp: TempDir;
before(async () => {
  tmp = await makeTempDir('family-verify');
});
after(async () => {
  await tmp.cleanup();
});

for (const name of FAMILY_FORWARD_FIXTURES) {
  test(`${name}: a default FP8 conversion passes verify`, async () => {
    const out = join(tmp.path, name);
    await convertCheckpoint({ input: join(MODELS, name), output: out });
    const r = await verifyCheckpoints({
      original: join(MODELS, name),
      quantized: out,
      input: await readInputIds(join(MODELS, `${name}.logits.safetensors`)),
      device: testDevice(),
    });
    assert.equal(r.passed, true, r.failures.map((f) => f.message).join('; '));
    assert.deepEqual(r.notReached, []);
    assert.ok(r.summary.linearsCompared > 0);
    for (const l of r.linears) assert.ok(l.relativeError > 0.02 && l.relativeError < 0.06, `${l.module}: relative error ${l.relativeError} is not FP8-sized`);
    assert.ok(r.model.meanKl > 0 && r.model.meanKl < DEFAULT_GATES.maxKl);
  });
}

test('DeepSeek-V2 group_limited_greedy and gpt-oss top-k-then-softmax routing, by hand', () => {
  // 8 experts in 4 groups of 2. Softmax scores of these logits are proportional to e^logit; group
  // maxima rank groups 3 (expert 6), 0 (expert 1), 2, 1; topk_group 2 keeps groups 0 and 3, so
  // expert 4 (the third-largest overall) is masked and the top-3 are 6, 1, 7.
  const logits = Float32Array.of(0.1, 2.0, 0.3, 0.2, 1.5, 0.0, 3.0, 1.4);
  const v2 = routeTokens(logits, 8, { kind: 'softmax_grouped', topK: 3, nGroup: 4, topkGroup: 2, normalize: false, routedScalingFactor: 2 });
  assert.deepEqual([...v2.experts], [6, 1, 7]);
  const z = logits.reduce((acc, l) => acc + Math.exp(l), 0);
  v2.experts.forEach((e, i) => assert.ok(Math.abs(v2.weights[i]! - (2 * Math.exp(logits[e]!)) / z) < 1e-6, `weight of expert ${e}`));
  // greedy (one group) takes expert 4 instead of 7.
  const greedy = routeTokens(logits, 8, { kind: 'softmax_grouped', topK: 3, nGroup: 1, topkGroup: 1, normalize: false, routedScalingFactor: 1 });
  assert.deepEqual([...greedy.experts], [6, 1, 4]);
  // gpt-oss: top-2 of the logits, softmax over the two.
  const oss = routeTokens(logits, 8, { kind: 'topk_softmax', topK: 2 });
  assert.deepEqual([...oss.experts], [6, 1]);
  assert.ok(Math.abs(oss.weights[0]! - 1 / (1 + Math.exp(2.0 - 3.0))) < 1e-6);
  assert.ok(Math.abs(oss.weights[0]! + oss.weights[1]! - 1) < 1e-6);
});
