// The host-side pieces of the forward, against values worked out by hand from transformers'
// definitions: MoE routing (Mixtral softmax renormalized, Qwen top-k without renormalization,
// DeepSeek-V3 sigmoid routing where e_score_correction_bias picks experts but does not weigh
// them, group-limited), the expert-sorted layout, yarn rotary frequencies and softmax scale,
// masks, and config errors.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { CheckpointError } from '../src/io/errors.js';
import { attentionScale, ModelConfigError, modelSpecOf } from '../src/runtime/models/config.js';
import { causalMask } from '../src/runtime/models/layer-graphs.js';
import { inverseFrequencies, ropeTables } from '../src/runtime/models/rope.js';
import { groupByExpert, routeTokens } from '../src/runtime/models/routing.js';

const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));

function close(actual: ArrayLike<number>, expected: readonly number[], tol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    assert.ok(Math.abs(actual[i]! - expected[i]!) <= tol, `${what}[${i}]: ${actual[i]} vs ${expected[i]}`);
  }
}

test('softmax routing: Mixtral renormalizes the top-k weights, Qwen without norm_topk_prob does not', () => {
  const logits = new Float32Array([1, 2, 3, 4]);
  const z = Math.exp(1) + Math.exp(2) + Math.exp(3) + Math.exp(4);
  const mixtral = routeTokens(logits, 4, { kind: 'softmax', topK: 2, normalize: true });
  assert.deepEqual(Array.from(mixtral.experts), [3, 2]);
  close(mixtral.weights, [Math.exp(4) / (Math.exp(4) + Math.exp(3)), Math.exp(3) / (Math.exp(4) + Math.exp(3))], 1e-6, 'mixtral');
  const qwen = routeTokens(logits, 4, { kind: 'softmax', topK: 2, normalize: false });
  close(qwen.weights, [Math.exp(4) / z, Math.exp(3) / z], 1e-6, 'qwen');
});

test('DeepSeek-V3 routing: the score bias chooses experts, the unbiased sigmoid scores weigh them, groups limit the choice', () => {
  // Groups {0,1} {2,3} {4,5} {6,7}. Raw scores rank 0 (0.881) and 5 (0.731) first; the bias lifts 4 (0.269 → 0.969).
  const logits = new Float32Array([2, -1, 0, 0, -1, 1, -3, -3]);
  const bias = new Float32Array([0, 0, 0, 0, 0.7, 0, 0, 0]);
  const spec = { kind: 'sigmoid_grouped', topK: 2, nGroup: 4, topkGroup: 2, normalize: true, routedScalingFactor: 2.5 } as const;
  // Group scores (top-2 sums of biased scores): 1.150, 1.0, 1.700, 0.095 → groups 2 and 0 kept; top-2 of {0,1,4,5}: 4, 0.
  const r = routeTokens(logits, 8, spec, bias);
  assert.deepEqual(Array.from(r.experts), [4, 0]);
  const [s4, s0] = [sigmoid(-1), sigmoid(2)];
  close(r.weights, [(2.5 * s4) / (s4 + s0), (2.5 * s0) / (s4 + s0)], 1e-6, 'weights from unbiased scores');

  // One group only (topk_group 1): group 2 wins, so expert 0 — the highest raw score — is out.
  const one = routeTokens(logits, 8, { ...spec, topkGroup: 1 }, bias);
  assert.deepEqual(Array.from(one.experts), [4, 5]);
  const s5 = sigmoid(1);
  close(one.weights, [(2.5 * s4) / (s4 + s5), (2.5 * s5) / (s4 + s5)], 1e-6, 'one group');

  // Without norm_topk_prob the weights are the raw scores times the scaling factor.
  const raw = routeTokens(logits, 8, { ...spec, normalize: false }, bias);
  close(raw.weights, [2.5 * s4, 2.5 * s0], 1e-6, 'unnormalized');
  assert.throws(() => routeTokens(logits, 8, spec), /e_score_correction_bias/);
});

test('groupByExpert sorts assignments by expert (stable) with compact indptr and the way back', () => {
  const g = groupByExpert({ tokens: 2, topK: 2, experts: new Int32Array([1, 0, 1, 2]), weights: new Float32Array(4) });
  assert.deepEqual(g.experts, [0, 1, 2]);
  assert.deepEqual(g.indptr, [0, 1, 3, 4]);
  assert.deepEqual(Array.from(g.rowToken), [0, 0, 1, 1]);
  assert.deepEqual(Array.from(g.assignmentRow), [1, 0, 2, 3]);
});

test("yarn rotary: DeepSeek-V3's parameters keep high frequencies, divide low ones by the factor, and scale the softmax by mscale²", () => {
  const params = { rope_theta: 10000, factor: 40, original_max_position_embeddings: 4096, beta_fast: 32, beta_slow: 1, mscale: 1, mscale_all_dim: 1 };
  const rope = { type: 'yarn', theta: 10000, dim: 64, interleave: true, params, maxPositionEmbeddings: 163840 } as const;
  const plain = inverseFrequencies({ ...rope, type: 'default' }).invFreq;
  const { invFreq, attentionFactor } = inverseFrequencies(rope);
  // Correction range: floor(64·ln(4096/(32·2π)) / (2·ln 10000)) = 10, ceil(64·ln(4096/2π) / (2·ln 10000)) = 23.
  for (let i = 0; i <= 10; i++) assert.ok(Math.abs(invFreq[i]! / plain[i]! - 1) < 1e-6, `dim ${i} kept`);
  for (let i = 23; i < 32; i++) assert.ok(Math.abs((invFreq[i]! * 40) / plain[i]! - 1) < 1e-6, `dim ${i} interpolated`);
  assert.ok(invFreq[16]! < plain[16]! && invFreq[16]! > plain[16]! / 40, 'dims in the ramp are blended');
  assert.equal(attentionFactor, 1, 'mscale / mscale_all_dim = 1');

  const spec = modelSpecOf(
    {
      model_type: 'deepseek_v3',
      hidden_size: 64,
      num_attention_heads: 4,
      num_hidden_layers: 1,
      vocab_size: 16,
      kv_lora_rank: 32,
      q_lora_rank: null,
      qk_nope_head_dim: 128,
      qk_rope_head_dim: 64,
      v_head_dim: 128,
      max_position_embeddings: 163840,
      rope_scaling: { type: 'yarn', ...params },
    },
    'test',
  );
  const mscale = 0.1 * Math.log(40) + 1;
  assert.ok(Math.abs(attentionScale(spec) / (192 ** -0.5 * mscale * mscale) - 1) < 1e-12);
  assert.equal(spec.rope.type, 'yarn');
  assert.equal(spec.rope.interleave, true, 'rope_interleave defaults to true for DeepSeek-V3');
});

test('default rotary tables: cos/sin of position × 1/θ^(2i/d), halves repeated', () => {
  const t = ropeTables({ type: 'default', theta: 10000, dim: 8, interleave: false, params: {}, maxPositionEmbeddings: 64 }, 3);
  const freq1 = 1 / 10000 ** (2 / 8);
  assert.ok(Math.abs(t.cos[2 * 8 + 1]! - Math.cos(2 * freq1)) < 1e-6);
  assert.ok(Math.abs(t.sin[2 * 8 + 5]! - Math.sin(2 * freq1)) < 1e-6);
  assert.equal(t.cos[0], 1);
  assert.equal(t.sin[3], 0);
});

test('causal masks: future keys hidden; a sliding window hides keys at or beyond the window', () => {
  const full = causalMask(3, undefined);
  assert.deepEqual(Array.from(full), [0, -Infinity, -Infinity, 0, 0, -Infinity, 0, 0, 0]);
  const windowed = causalMask(4, 2);
  assert.deepEqual(Array.from(windowed.subarray(12, 16)), [-Infinity, -Infinity, 0, 0]);
});

test('config errors name the problem: unsupported architecture, missing fields', () => {
  assert.throws(
    () => modelSpecOf({ model_type: 'gpt2', architectures: ['GPT2LMHeadModel'] }, '/m'),
    (e: unknown) => e instanceof ModelConfigError && e instanceof CheckpointError && /GPT2LMHeadModel has no forward in fp8q/.test(e.message),
  );
  assert.throws(() => modelSpecOf({ model_type: 'llama', num_attention_heads: 4 }, '/m'), /"hidden_size" must be a number/);
  assert.throws(() => modelSpecOf(undefined, '/m'), /no readable config\.json/);
  assert.throws(
    () => modelSpecOf({ model_type: 'llama', hidden_size: 64, num_attention_heads: 4, num_hidden_layers: 1, vocab_size: 8, rope_scaling: { type: 'longrope' } }, '/m'),
    /rope type "longrope" is not supported/,
  );
});
