// Tiny random checkpoints (transformers tensor names and config fields) for the families
// that have no transformers-made fixture: Qwen2 (q/k/v bias), Qwen3 (q/k RMSNorm), Qwen3-MoE,
// Qwen2-MoE (shared expert with a sigmoid gate), Mistral (sliding window), and DeepSeek-V3
// variants (no q_lora, yarn rope, group-limited routing).
//
// F32 by default, and norm weights 1 + noise: with BF16 embeddings and norm weights, layer 0's
// normalized activations are ratios of short-mantissa products, and x/scale lands exactly on FP8
// rounding ties often enough (measured: 1 of 1,280 values at 216.0000057, between codes 208 and
// 224) that a 1-ulp float32 difference between two correct implementations flips a code.

import { narrowFromFloat32 } from '../../src/fp8/dtypes.js';
import { SeededRandom } from '../../src/runtime/ops/random.js';
import { writeCheckpoint, type TensorData } from './checkpoint-files.js';

export type SyntheticFamily = 'qwen2' | 'qwen3' | 'qwen3_moe' | 'qwen2_moe' | 'mistral' | 'deepseek_v3';

const H = 64;
const HEADS = 4;
const KV_HEADS = 2;
const HEAD_DIM = 16;
const INTERMEDIATE = 96;
const VOCAB = 128;
const LAYERS = 2;
const EXPERTS = 8;
const MOE_INTERMEDIATE = 32;

const ARCH: Record<SyntheticFamily, string> = {
  qwen2: 'Qwen2ForCausalLM',
  qwen3: 'Qwen3ForCausalLM',
  qwen3_moe: 'Qwen3MoeForCausalLM',
  qwen2_moe: 'Qwen2MoeForCausalLM',
  mistral: 'MistralForCausalLM',
  deepseek_v3: 'DeepseekV3ForCausalLM',
};

export function syntheticConfig(family: SyntheticFamily): Record<string, unknown> {
  const base = {
    architectures: [ARCH[family]],
    model_type: family,
    hidden_size: H,
    num_hidden_layers: LAYERS,
    num_attention_heads: HEADS,
    num_key_value_heads: KV_HEADS,
    head_dim: HEAD_DIM,
    intermediate_size: INTERMEDIATE,
    vocab_size: VOCAB,
    rms_norm_eps: 1e-6,
    hidden_act: 'silu',
    max_position_embeddings: 256,
    rope_theta: 10000,
    tie_word_embeddings: family === 'qwen2',
  };
  switch (family) {
    case 'qwen3_moe':
      return { ...base, num_experts: EXPERTS, num_experts_per_tok: 2, moe_intermediate_size: MOE_INTERMEDIATE, norm_topk_prob: false, mlp_only_layers: [0] };
    case 'qwen2_moe':
      return { ...base, num_experts: EXPERTS, num_experts_per_tok: 2, moe_intermediate_size: MOE_INTERMEDIATE, shared_expert_intermediate_size: 48, norm_topk_prob: true };
    case 'mistral':
      return { ...base, sliding_window: 6 };
    case 'deepseek_v3':
      return {
        ...base,
        num_key_value_heads: HEADS,
        q_lora_rank: null,
        kv_lora_rank: 32,
        qk_nope_head_dim: 16,
        qk_rope_head_dim: 8,
        v_head_dim: 16,
        head_dim: 8,
        n_routed_experts: EXPERTS,
        n_shared_experts: 1,
        num_experts_per_tok: 2,
        n_group: 4,
        topk_group: 2,
        norm_topk_prob: true,
        routed_scaling_factor: 2.5,
        first_k_dense_replace: 1,
        moe_intermediate_size: MOE_INTERMEDIATE,
        rope_interleave: true,
        max_position_embeddings: 1024,
        rope_scaling: { type: 'yarn', factor: 4, original_max_position_embeddings: 64, mscale: 1, mscale_all_dim: 1, beta_fast: 32, beta_slow: 1 },
      };
    default:
      return base;
  }
}

/** Writes a random checkpoint of `family` into `dir`; returns its config. */
export async function writeSyntheticModel(dir: string, family: SyntheticFamily, seed = 1, dtype: 'F32' | 'BF16' = 'F32'): Promise<Record<string, unknown>> {
  const rng = new SeededRandom(seed);
  const tensors = new Map<string, TensorData>();
  const add = (name: string, shape: number[], std = 0.08, mean = 0): void => {
    const n = shape.reduce((a, b) => a * b, 1);
    const values = Float32Array.from({ length: n }, () => mean + rng.normal() * std);
    tensors.set(name, { dtype, shape, bytes: narrowFromFloat32(values, dtype) });
  };
  const norm = (name: string, dim: number): void => add(name, [dim], 0.1, 1);
  const mlp = (prefix: string, inter: number): void => {
    add(`${prefix}.gate_proj.weight`, [inter, H]);
    add(`${prefix}.up_proj.weight`, [inter, H]);
    add(`${prefix}.down_proj.weight`, [H, inter]);
  };
  const config = syntheticConfig(family);
  add('model.embed_tokens.weight', [VOCAB, H], 1);
  norm('model.norm.weight', H);
  if (config['tie_word_embeddings'] !== true) add('lm_head.weight', [VOCAB, H]);
  for (let l = 0; l < LAYERS; l++) {
    const p = `model.layers.${l}`;
    norm(`${p}.input_layernorm.weight`, H);
    norm(`${p}.post_attention_layernorm.weight`, H);
    if (family === 'deepseek_v3') {
      add(`${p}.self_attn.q_proj.weight`, [HEADS * 24, H]);
      add(`${p}.self_attn.kv_a_proj_with_mqa.weight`, [32 + 8, H]);
      norm(`${p}.self_attn.kv_a_layernorm.weight`, 32);
      add(`${p}.self_attn.kv_b_proj.weight`, [HEADS * 32, 32]);
      add(`${p}.self_attn.o_proj.weight`, [H, HEADS * 16]);
    } else {
      add(`${p}.self_attn.q_proj.weight`, [HEADS * HEAD_DIM, H]);
      add(`${p}.self_attn.k_proj.weight`, [KV_HEADS * HEAD_DIM, H]);
      add(`${p}.self_attn.v_proj.weight`, [KV_HEADS * HEAD_DIM, H]);
      add(`${p}.self_attn.o_proj.weight`, [H, HEADS * HEAD_DIM]);
      if (family === 'qwen2') {
        add(`${p}.self_attn.q_proj.bias`, [HEADS * HEAD_DIM], 0.3);
        add(`${p}.self_attn.k_proj.bias`, [KV_HEADS * HEAD_DIM], 0.3);
        add(`${p}.self_attn.v_proj.bias`, [KV_HEADS * HEAD_DIM], 0.3);
      }
      if (family === 'qwen3' || family === 'qwen3_moe') {
        norm(`${p}.self_attn.q_norm.weight`, HEAD_DIM);
        norm(`${p}.self_attn.k_norm.weight`, HEAD_DIM);
      }
    }
    const moe = (family === 'qwen3_moe' || family === 'qwen2_moe' || family === 'deepseek_v3') && !(family !== 'qwen2_moe' && l === 0);
    if (!moe) {
      mlp(`${p}.mlp`, INTERMEDIATE);
      continue;
    }
    add(`${p}.mlp.gate.weight`, [EXPERTS, H], 0.3);
    for (let e = 0; e < EXPERTS; e++) mlp(`${p}.mlp.experts.${e}`, MOE_INTERMEDIATE);
    if (family === 'deepseek_v3') {
      add(`${p}.mlp.gate.e_score_correction_bias`, [EXPERTS], 0.05);
      mlp(`${p}.mlp.shared_experts`, MOE_INTERMEDIATE);
    }
    if (family === 'qwen2_moe') {
      mlp(`${p}.mlp.shared_expert`, 48);
      add(`${p}.mlp.shared_expert_gate.weight`, [1, H], 0.3);
    }
  }
  await writeCheckpoint(dir, tensors, { config });
  return config;
}
