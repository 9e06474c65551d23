// Real models' config.json values and tensor shapes (names and shapes as their Hub checkpoints
// have them), with fewer layers: the deployment rules depend on per-layer shapes, not on depth.
// Also writes such a checkpoint as a safetensors header over a sparse file, so a 16 GB model
// costs a few kilobytes of disk.

import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Dtype } from '../../src/fp8/dtypes.js';
import { dtypeSize } from '../../src/fp8/dtypes.js';

export interface ShapeTensor {
  readonly name: string;
  readonly dtype: Dtype;
  readonly shape: number[];
}

export interface RealModel {
  readonly name: string;
  readonly config: Record<string, unknown>;
  readonly tensors: ShapeTensor[];
}

const t = (name: string, shape: number[], dtype: Dtype = 'BF16'): ShapeTensor => ({ name, dtype, shape });

function attention(p: string, hidden: number, heads: number, kv: number, hd: number, out: ShapeTensor[]): void {
  out.push(t(`${p}.self_attn.q_proj.weight`, [heads * hd, hidden]), t(`${p}.self_attn.k_proj.weight`, [kv * hd, hidden]));
  out.push(t(`${p}.self_attn.v_proj.weight`, [kv * hd, hidden]), t(`${p}.self_attn.o_proj.weight`, [hidden, heads * hd]));
  out.push(t(`${p}.input_layernorm.weight`, [hidden]), t(`${p}.post_attention_layernorm.weight`, [hidden]));
}

function mlp(p: string, hidden: number, inter: number, out: ShapeTensor[]): void {
  out.push(t(`${p}.gate_proj.weight`, [inter, hidden]), t(`${p}.up_proj.weight`, [inter, hidden]), t(`${p}.down_proj.weight`, [hidden, inter]));
}

function llamaLike(name: string, config: Record<string, unknown>, layers: number): RealModel {
  const hidden = config['hidden_size'] as number;
  const heads = config['num_attention_heads'] as number;
  const kv = config['num_key_value_heads'] as number;
  const hd = (config['head_dim'] as number | undefined) ?? hidden / heads;
  const vocab = config['vocab_size'] as number;
  const out: ShapeTensor[] = [t('model.embed_tokens.weight', [vocab, hidden]), t('model.norm.weight', [hidden]), t('lm_head.weight', [vocab, hidden])];
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}`;
    attention(p, hidden, heads, kv, hd, out);
    if (config['model_type'] === 'qwen3_moe') {
      const experts = config['num_experts'] as number;
      out.push(t(`${p}.mlp.gate.weight`, [experts, hidden]));
      for (let e = 0; e < experts; e++) mlp(`${p}.mlp.experts.${e}`, hidden, config['moe_intermediate_size'] as number, out);
      out.push(t(`${p}.self_attn.q_norm.weight`, [hd]), t(`${p}.self_attn.k_norm.weight`, [hd]));
    } else if (config['model_type'] === 'mixtral') {
      const experts = config['num_local_experts'] as number;
      const inter = config['intermediate_size'] as number;
      out.push(t(`${p}.block_sparse_moe.gate.weight`, [experts, hidden]));
      for (let e = 0; e < experts; e++) {
        const q = `${p}.block_sparse_moe.experts.${e}`;
        out.push(t(`${q}.w1.weight`, [inter, hidden]), t(`${q}.w2.weight`, [hidden, inter]), t(`${q}.w3.weight`, [inter, hidden]));
      }
    } else {
      mlp(`${p}.mlp`, hidden, config['intermediate_size'] as number, out);
    }
  }
  return { name, config: { ...config, num_hidden_layers: layers }, tensors: out };
}

export function llama3_8b(layers = 2): RealModel {
  return llamaLike(
    'Llama-3-8B',
    { architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 4096, intermediate_size: 14336, num_attention_heads: 32, num_key_value_heads: 8, vocab_size: 128256 },
    layers,
  );
}

export function llama3_70b(layers = 2): RealModel {
  return llamaLike(
    'Llama-3-70B',
    { architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 8192, intermediate_size: 28672, num_attention_heads: 64, num_key_value_heads: 8, vocab_size: 128256 },
    layers,
  );
}

export function qwen3_30b_a3b(layers = 1): RealModel {
  return llamaLike(
    'Qwen3-30B-A3B',
    {
      architectures: ['Qwen3MoeForCausalLM'],
      model_type: 'qwen3_moe',
      hidden_size: 2048,
      intermediate_size: 6144,
      moe_intermediate_size: 768,
      num_attention_heads: 32,
      num_key_value_heads: 4,
      head_dim: 128,
      num_experts: 128,
      num_experts_per_tok: 8,
      vocab_size: 151936,
    },
    layers,
  );
}

export function qwen3_235b(layers = 1): RealModel {
  return llamaLike(
    'Qwen3-235B-A22B',
    {
      architectures: ['Qwen3MoeForCausalLM'],
      model_type: 'qwen3_moe',
      hidden_size: 4096,
      intermediate_size: 12288,
      moe_intermediate_size: 1536,
      num_attention_heads: 64,
      num_key_value_heads: 4,
      head_dim: 128,
      num_experts: 128,
      num_experts_per_tok: 8,
      vocab_size: 151936,
    },
    layers,
  );
}

export function mixtral_8x7b(layers = 1): RealModel {
  return llamaLike(
    'Mixtral-8x7B',
    {
      architectures: ['MixtralForCausalLM'],
      model_type: 'mixtral',
      hidden_size: 4096,
      intermediate_size: 14336,
      num_attention_heads: 32,
      num_key_value_heads: 8,
      num_local_experts: 8,
      vocab_size: 32000,
    },
    layers,
  );
}

/** DeepSeek-V3: layers 0..dense-1 dense MLP, the rest MoE (256 routed + 1 shared expert). */
export function deepseek_v3(layers = 4): RealModel {
  const config = {
    architectures: ['DeepseekV3ForCausalLM'],
    model_type: 'deepseek_v3',
    hidden_size: 7168,
    intermediate_size: 18432,
    moe_intermediate_size: 2048,
    num_attention_heads: 128,
    num_key_value_heads: 128,
    q_lora_rank: 1536,
    kv_lora_rank: 512,
    qk_nope_head_dim: 128,
    qk_rope_head_dim: 64,
    v_head_dim: 128,
    n_routed_experts: 256,
    n_shared_experts: 1,
    num_experts_per_tok: 8,
    first_k_dense_replace: 3,
    vocab_size: 129280,
    num_hidden_layers: layers,
  };
  const h = 7168;
  const out: ShapeTensor[] = [t('model.embed_tokens.weight', [129280, h]), t('model.norm.weight', [h]), t('lm_head.weight', [129280, h])];
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}`;
    const a = `${p}.self_attn`;
    out.push(t(`${a}.q_a_proj.weight`, [1536, h]), t(`${a}.q_a_layernorm.weight`, [1536]), t(`${a}.q_b_proj.weight`, [128 * 192, 1536]));
    out.push(t(`${a}.kv_a_proj_with_mqa.weight`, [576, h]), t(`${a}.kv_a_layernorm.weight`, [512]), t(`${a}.kv_b_proj.weight`, [128 * 256, 512]));
    out.push(t(`${a}.o_proj.weight`, [h, 128 * 128]), t(`${p}.input_layernorm.weight`, [h]), t(`${p}.post_attention_layernorm.weight`, [h]));
    if (i < 3) mlp(`${p}.mlp`, h, 18432, out);
    else {
      out.push(t(`${p}.mlp.gate.weight`, [256, h]), t(`${p}.mlp.gate.e_score_correction_bias`, [256], 'F32'));
      mlp(`${p}.mlp.shared_experts`, h, 2048, out);
      for (let e = 0; e < 256; e++) mlp(`${p}.mlp.experts.${e}`, h, 2048, out);
    }
  }
  return { name: 'DeepSeek-V3', config, tensors: out };
}

/** Qwen2.5-VL-7B: the Qwen2 language model plus its vision tower (intermediate 3420) and merger. */
export function qwen2_5_vl_7b(layers = 1, visionBlocks = 1): RealModel {
  const config = {
    architectures: ['Qwen2_5_VLForConditionalGeneration'],
    model_type: 'qwen2_5_vl',
    hidden_size: 3584,
    intermediate_size: 18944,
    num_attention_heads: 28,
    num_key_value_heads: 4,
    vocab_size: 152064,
    num_hidden_layers: layers,
    vision_config: { depth: 32, hidden_size: 1280, intermediate_size: 3420, num_heads: 16, out_hidden_size: 3584 },
  };
  const out: ShapeTensor[] = [t('model.embed_tokens.weight', [152064, 3584]), t('model.norm.weight', [3584]), t('lm_head.weight', [152064, 3584])];
  for (let i = 0; i < layers; i++) {
    attention(`model.layers.${i}`, 3584, 28, 4, 128, out);
    mlp(`model.layers.${i}.mlp`, 3584, 18944, out);
  }
  out.push(t('visual.patch_embed.proj.weight', [1280, 3, 2, 14, 14]));
  for (let b = 0; b < visionBlocks; b++) {
    const p = `visual.blocks.${b}`;
    out.push(
      t(`${p}.attn.qkv.weight`, [3840, 1280]),
      t(`${p}.attn.qkv.bias`, [3840]),
      t(`${p}.attn.proj.weight`, [1280, 1280]),
      t(`${p}.norm1.weight`, [1280]),
      t(`${p}.norm2.weight`, [1280]),
    );
    mlp(`${p}.mlp`, 1280, 3420, out);
  }
  out.push(t('visual.merger.ln_q.weight', [1280]), t('visual.merger.mlp.0.weight', [5120, 5120]), t('visual.merger.mlp.2.weight', [3584, 5120]));
  return { name: 'Qwen2.5-VL-7B', config, tensors: out };
}

/**
 * Writes `model` as config.json + one safetensors file whose header holds the real shapes and
 * whose data region is a hole (ftruncate): checkpoint readers validate sizes, nothing is stored.
 */
export async function writeSparseCheckpoint(dir: string, model: RealModel): Promise<void> {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const x of model.tensors) {
    const bytes = x.shape.reduce((a, b) => a * b, 1) * dtypeSize(x.dtype);
    header[x.name] = { dtype: x.dtype, shape: x.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  await writeFile(join(dir, 'config.json'), JSON.stringify(model.config, null, 2));
  const fh = await open(join(dir, 'model.safetensors'), 'w');
  try {
    await fh.write(Buffer.concat([prefix, Buffer.from(json)]));
    await fh.truncate(8 + Buffer.byteLength(json) + offset);
  } finally {
    await fh.close();
  }
}
