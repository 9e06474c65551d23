// A synthetic DeepSeek-V3-shaped BF16 checkpoint for the benchmark, at the real dimensions of one
// layer (hidden 7168, q_lora 1536, kv_lora 512, 128 heads of nope 128 / rope 64 / v 128, so
// kv_a_proj_with_mqa is 576 × 7168 and kv_b_proj 32768 × 512; experts 2048 × 7168 and 7168 × 2048)
// with fewer layers and routed experts (and a 32k vocabulary: embedding and head are copied, not
// quantized) so it fits a small machine. Experts per expert (`experts.E.gate_proj` …, the
// released layout) or fused (transformers 5.x `experts.gate_up_proj [E, 2I, H]`, `down_proj
// [E, H, I]`). Every layer is MoE (first_k_dense_replace 0). Values as synthetic-checkpoint.ts.

import type { PlannedTensor } from '../src/io/safetensors/safetensors-writer.js';
import { writeSyntheticTensors, type SyntheticCheckpoint } from './synthetic-checkpoint.js';

export interface DeepseekShape {
  readonly layers: number;
  readonly routedExperts: number;
  readonly vocab: number;
  readonly fusedExperts: boolean;
}

/** The real model's fixed dimensions (DeepSeek-V3 config.json). */
export const DEEPSEEK_V3 = {
  hidden: 7168,
  qLoraRank: 1536,
  kvLoraRank: 512,
  heads: 128,
  nope: 128,
  rope: 64,
  v: 128,
  moeIntermediate: 2048,
  sharedExperts: 1,
  /** The full model, for extrapolation: 61 layers (3 dense, 58 MoE of 256 routed experts), 671 B parameters. */
  fullParameters: 671e9,
} as const;

export const DEEPSEEK_BENCH: DeepseekShape = { layers: 3, routedExperts: 8, vocab: 32768, fusedExperts: false };

function tensorsOf(s: DeepseekShape): PlannedTensor[] {
  const d = DEEPSEEK_V3;
  const H = d.hidden;
  const I = d.moeIntermediate;
  const bf16 = (name: string, shape: number[]): PlannedTensor => ({ name, dtype: 'BF16', shape });
  const t: PlannedTensor[] = [bf16('model.embed_tokens.weight', [s.vocab, H])];
  for (let l = 0; l < s.layers; l++) {
    const p = `model.layers.${l}`;
    const a = `${p}.self_attn`;
    const m = `${p}.mlp`;
    t.push(
      bf16(`${p}.input_layernorm.weight`, [H]),
      bf16(`${a}.q_a_proj.weight`, [d.qLoraRank, H]),
      bf16(`${a}.q_a_layernorm.weight`, [d.qLoraRank]),
      bf16(`${a}.q_b_proj.weight`, [d.heads * (d.nope + d.rope), d.qLoraRank]),
      bf16(`${a}.kv_a_proj_with_mqa.weight`, [d.kvLoraRank + d.rope, H]),
      bf16(`${a}.kv_a_layernorm.weight`, [d.kvLoraRank]),
      bf16(`${a}.kv_b_proj.weight`, [d.heads * (d.nope + d.v), d.kvLoraRank]),
      bf16(`${a}.o_proj.weight`, [H, d.heads * d.v]),
      bf16(`${p}.post_attention_layernorm.weight`, [H]),
      bf16(`${m}.gate.weight`, [s.routedExperts, H]),
      bf16(`${m}.gate.e_score_correction_bias`, [s.routedExperts]),
    );
    if (s.fusedExperts) {
      t.push(bf16(`${m}.experts.gate_up_proj`, [s.routedExperts, 2 * I, H]), bf16(`${m}.experts.down_proj`, [s.routedExperts, H, I]));
    } else {
      for (let e = 0; e < s.routedExperts; e++) {
        t.push(bf16(`${m}.experts.${e}.gate_proj.weight`, [I, H]), bf16(`${m}.experts.${e}.up_proj.weight`, [I, H]), bf16(`${m}.experts.${e}.down_proj.weight`, [H, I]));
      }
    }
    t.push(
      bf16(`${m}.shared_experts.gate_proj.weight`, [I * d.sharedExperts, H]),
      bf16(`${m}.shared_experts.up_proj.weight`, [I * d.sharedExperts, H]),
      bf16(`${m}.shared_experts.down_proj.weight`, [H, I * d.sharedExperts]),
    );
  }
  t.push(bf16('model.norm.weight', [H]), bf16('lm_head.weight', [s.vocab, H]));
  return t;
}

function configOf(s: DeepseekShape): Record<string, unknown> {
  const d = DEEPSEEK_V3;
  return {
    architectures: ['DeepseekV3ForCausalLM'],
    model_type: 'deepseek_v3',
    dtype: 'bfloat16',
    hidden_size: d.hidden,
    intermediate_size: 18432,
    moe_intermediate_size: d.moeIntermediate,
    num_hidden_layers: s.layers,
    num_attention_heads: d.heads,
    num_key_value_heads: d.heads,
    q_lora_rank: d.qLoraRank,
    kv_lora_rank: d.kvLoraRank,
    qk_nope_head_dim: d.nope,
    qk_rope_head_dim: d.rope,
    v_head_dim: d.v,
    n_routed_experts: s.routedExperts,
    n_shared_experts: d.sharedExperts,
    num_experts_per_tok: Math.min(8, s.routedExperts),
    n_group: 1,
    topk_group: 1,
    first_k_dense_replace: 0,
    moe_layer_freq: 1,
    routed_scaling_factor: 2.5,
    norm_topk_prob: true,
    scoring_func: 'sigmoid',
    topk_method: 'noaux_tc',
    vocab_size: s.vocab,
    hidden_act: 'silu',
    rms_norm_eps: 1e-6,
    max_position_embeddings: 4096,
    rope_theta: 10000,
    tie_word_embeddings: false,
  };
}

/** Writes the checkpoint into `dir` (created), shards of at most `maxShardBytes`. */
export function writeSyntheticDeepseek(dir: string, shape: DeepseekShape, maxShardBytes: number, seed = 3): Promise<SyntheticCheckpoint> {
  return writeSyntheticTensors(dir, tensorsOf(shape), configOf(shape), maxShardBytes, seed);
}
