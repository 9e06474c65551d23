// ModelSpec: what the forward needs to know about a model, read once from config.json — the
// family, sizes, attention kind (grouped-query or DeepSeek MLA), rotary settings, MoE routing
// rule — validated up front so a missing field is one clear error, not a NaN three layers in.
//
// Which layers are MoE, whether a linear has a bias and whether attention has q/k norms are read
// from the tensors present (see layer-plan.ts), not from config flags: Qwen3-MoE's
// `mlp_only_layers`/`decoder_sparse_step`, DeepSeek's `first_k_dense_replace` and Llama's
// `attention_bias` all end up as "this tensor exists or not", and the tensors are what we run.

import { CheckpointError } from '../../io/errors.js';
import type { ModelConfig } from '../../io/checkpoint.js';
import { detectArchitecture, type ArchitectureFamily } from '../../passes/architectures.js';

export class ModelConfigError extends CheckpointError {
  constructor(message: string) {
    super(message);
    this.name = 'ModelConfigError';
  }
}

/** Families the forward implements (DeepSeek-V2's routing differs from V3's and is not done). */
export type ForwardFamily = Exclude<ArchitectureFamily, 'deepseek_v2'>;

export type HiddenAct = 'silu' | 'gelu' | 'gelu_tanh';

export interface RopeSpec {
  readonly type: 'default' | 'linear' | 'yarn' | 'llama3';
  readonly theta: number;
  /** Rotated dims per head. */
  readonly dim: number;
  /** DeepSeek `rope_interleave`: rotary pairs are (2i, 2i+1), de-interleaved before rotating. */
  readonly interleave: boolean;
  /** The rest of rope_parameters/rope_scaling (factor, beta_fast, …), numbers only. */
  readonly params: Readonly<Record<string, number>>;
  readonly maxPositionEmbeddings: number;
}

export interface GqaAttentionSpec {
  readonly kind: 'gqa';
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
}

export interface MlaAttentionSpec {
  readonly kind: 'mla';
  readonly heads: number;
  readonly qLoraRank: number | undefined;
  readonly kvLoraRank: number;
  readonly qkNopeHeadDim: number;
  readonly qkRopeHeadDim: number;
  readonly vHeadDim: number;
}

export type RoutingSpec =
  /** Mixtral, Qwen2/3-MoE: softmax over all experts, top-k, optionally renormalized. */
  | { readonly kind: 'softmax'; readonly topK: number; readonly normalize: boolean }
  /** DeepSeek-V3: sigmoid scores, `e_score_correction_bias` for selection only, group-limited. */
  | {
      readonly kind: 'sigmoid_grouped';
      readonly topK: number;
      readonly nGroup: number;
      readonly topkGroup: number;
      readonly normalize: boolean;
      readonly routedScalingFactor: number;
    };

export interface MoeNames {
  /** Module under the layer that holds router and experts: `mlp` or `block_sparse_moe`. */
  readonly block: string;
  readonly gate: string;
  readonly up: string;
  readonly down: string;
  /** Shared expert MLP under the block (`shared_experts`, `shared_expert`), if the family has one. */
  readonly shared: string | undefined;
  /** Qwen2-MoE's sigmoid gate on the shared expert. */
  readonly sharedGate: string | undefined;
}

export interface ModelSpec {
  readonly family: ForwardFamily;
  readonly label: string;
  readonly hiddenSize: number;
  readonly numLayers: number;
  readonly vocabSize: number;
  readonly rmsNormEps: number;
  readonly hiddenAct: HiddenAct;
  readonly tieWordEmbeddings: boolean;
  readonly attention: GqaAttentionSpec | MlaAttentionSpec;
  readonly rope: RopeSpec;
  readonly routing: RoutingSpec | undefined;
  readonly moeNames: MoeNames;
  /** Sliding attention window of a layer (keys with position > query − window), or undefined. */
  readonly slidingWindow: (layer: number) => number | undefined;
}

const ACTS: Readonly<Record<string, HiddenAct>> = {
  silu: 'silu',
  swish: 'silu',
  gelu: 'gelu',
  gelu_pytorch_tanh: 'gelu_tanh',
  gelu_new: 'gelu_tanh',
};

function num(config: ModelConfig, key: string, what = key): number {
  const v = config[key];
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new ModelConfigError(`config.json: "${what}" must be a number, got ${JSON.stringify(v)}`);
  }
  return v;
}

function int(config: ModelConfig, key: string): number {
  const v = num(config, key);
  if (!Number.isSafeInteger(v) || v <= 0) throw new ModelConfigError(`config.json: "${key}" must be a positive integer, got ${v}`);
  return v;
}

function optInt(config: ModelConfig, key: string): number | undefined {
  const v = config[key];
  return v === undefined || v === null ? undefined : int(config, key);
}

function optNum(config: ModelConfig, key: string, fallback: number): number {
  const v = config[key];
  return v === undefined || v === null ? fallback : num(config, key);
}

function bool(config: ModelConfig, key: string, fallback: boolean): boolean {
  const v = config[key];
  return typeof v === 'boolean' ? v : fallback;
}

function record(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

/**
 * transformers 5 writes `rope_parameters: {rope_theta, rope_type, …}`; older configs have a
 * top-level `rope_theta` and `rope_scaling: {type|rope_type, factor, …}`. Both are read.
 */
function ropeSpec(config: ModelConfig, dim: number, interleave: boolean): RopeSpec {
  const merged = { ...record(config['rope_scaling']), ...record(config['rope_parameters']) };
  const typeRaw = merged['rope_type'] ?? merged['type'] ?? 'default';
  const type = typeRaw === 'default' || typeRaw === 'linear' || typeRaw === 'yarn' || typeRaw === 'llama3' ? typeRaw : undefined;
  if (type === undefined) {
    throw new ModelConfigError(`config.json: rope type "${String(typeRaw)}" is not supported by the forward (default, linear, yarn, llama3 are)`);
  }
  const params: Record<string, number> = {};
  for (const [k, v] of Object.entries(merged)) if (typeof v === 'number' && Number.isFinite(v)) params[k] = v;
  const theta = params['rope_theta'] ?? optNum(config, 'rope_theta', 10000);
  const partial = params['partial_rotary_factor'] ?? optNum(config, 'partial_rotary_factor', 1);
  if (partial !== 1) throw new ModelConfigError(`config.json: partial_rotary_factor ${partial} is not supported by the forward`);
  if (type !== 'default' && params['factor'] === undefined && type !== 'yarn') {
    throw new ModelConfigError(`config.json: rope type "${type}" needs a "factor"`);
  }
  return { type, theta, dim, interleave, params, maxPositionEmbeddings: optNum(config, 'max_position_embeddings', 2048) };
}

function slidingWindowOf(config: ModelConfig, family: ForwardFamily, numLayers: number): (layer: number) => number | undefined {
  const window = config['sliding_window'];
  if (typeof window !== 'number' || !(window > 0)) return () => undefined;
  const layerTypes = config['layer_types'];
  if (Array.isArray(layerTypes) && layerTypes.length === numLayers) {
    return (layer) => (layerTypes[layer] === 'sliding_attention' ? window : undefined);
  }
  if (family === 'mistral' || family === 'mixtral') return () => window;
  // Qwen2/3 families: sliding only with use_sliding_window, from max_window_layers on.
  if (config['use_sliding_window'] !== true) return () => undefined;
  const from = optNum(config, 'max_window_layers', 0);
  return (layer) => (layer >= from ? window : undefined);
}

function routingSpec(config: ModelConfig, family: ForwardFamily): RoutingSpec | undefined {
  switch (family) {
    case 'mixtral':
      return { kind: 'softmax', topK: int(config, 'num_experts_per_tok'), normalize: true };
    case 'qwen2_moe':
    case 'qwen3_moe':
      return { kind: 'softmax', topK: int(config, 'num_experts_per_tok'), normalize: bool(config, 'norm_topk_prob', false) };
    case 'deepseek_v3': {
      const experts = optInt(config, 'n_routed_experts');
      if (experts === undefined) return undefined;
      const nGroup = optInt(config, 'n_group') ?? 1;
      if (experts % nGroup !== 0) throw new ModelConfigError(`config.json: n_routed_experts ${experts} is not a multiple of n_group ${nGroup}`);
      return {
        kind: 'sigmoid_grouped',
        topK: int(config, 'num_experts_per_tok'),
        nGroup,
        topkGroup: optInt(config, 'topk_group') ?? 1,
        normalize: bool(config, 'norm_topk_prob', true),
        routedScalingFactor: optNum(config, 'routed_scaling_factor', 1),
      };
    }
    default:
      return undefined;
  }
}

function moeNames(family: ForwardFamily): MoeNames {
  if (family === 'mixtral') return { block: 'block_sparse_moe', gate: 'w1', up: 'w3', down: 'w2', shared: undefined, sharedGate: undefined };
  if (family === 'deepseek_v3') return { block: 'mlp', gate: 'gate_proj', up: 'up_proj', down: 'down_proj', shared: 'shared_experts', sharedGate: undefined };
  if (family === 'qwen2_moe') {
    return { block: 'mlp', gate: 'gate_proj', up: 'up_proj', down: 'down_proj', shared: 'shared_expert', sharedGate: 'shared_expert_gate' };
  }
  return { block: 'mlp', gate: 'gate_proj', up: 'up_proj', down: 'down_proj', shared: undefined, sharedGate: undefined };
}

export function modelSpecOf(config: ModelConfig | undefined, where: string): ModelSpec {
  if (config === undefined) throw new ModelConfigError(`${where}: no readable config.json; the forward needs the model's config`);
  const arch = detectArchitecture(config);
  if (arch.family === undefined || arch.family === 'deepseek_v2') {
    throw new ModelConfigError(
      `${where}: architecture ${arch.label} has no forward in fp8q (supported: Llama, Mistral, Qwen2, Qwen3, Mixtral, ` +
        `Qwen2-MoE, Qwen3-MoE, DeepSeek-V3)`,
    );
  }
  const family = arch.family;
  const hiddenSize = int(config, 'hidden_size');
  const heads = int(config, 'num_attention_heads');
  const numLayers = int(config, 'num_hidden_layers');
  const actName = typeof config['hidden_act'] === 'string' ? config['hidden_act'] : 'silu';
  const hiddenAct = ACTS[actName];
  if (hiddenAct === undefined) throw new ModelConfigError(`config.json: hidden_act "${actName}" is not supported by the forward`);

  let attention: GqaAttentionSpec | MlaAttentionSpec;
  let rope: RopeSpec;
  if (family === 'deepseek_v3') {
    attention = {
      kind: 'mla',
      heads,
      qLoraRank: optInt(config, 'q_lora_rank'),
      kvLoraRank: int(config, 'kv_lora_rank'),
      qkNopeHeadDim: int(config, 'qk_nope_head_dim'),
      qkRopeHeadDim: int(config, 'qk_rope_head_dim'),
      vHeadDim: int(config, 'v_head_dim'),
    };
    if (attention.qkRopeHeadDim % 2 !== 0) throw new ModelConfigError('config.json: qk_rope_head_dim must be even');
    rope = ropeSpec(config, attention.qkRopeHeadDim, bool(config, 'rope_interleave', true));
  } else {
    const kvHeads = optInt(config, 'num_key_value_heads') ?? heads;
    if (heads % kvHeads !== 0) throw new ModelConfigError(`config.json: num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`);
    const headDim = optInt(config, 'head_dim') ?? hiddenSize / heads;
    if (!Number.isInteger(headDim) || headDim % 2 !== 0) throw new ModelConfigError(`config.json: head dim ${headDim} must be an even integer`);
    attention = { kind: 'gqa', heads, kvHeads, headDim };
    rope = ropeSpec(config, headDim, false);
  }

  return {
    family,
    label: arch.label,
    hiddenSize,
    numLayers,
    vocabSize: int(config, 'vocab_size'),
    rmsNormEps: optNum(config, 'rms_norm_eps', 1e-6),
    hiddenAct,
    tieWordEmbeddings: bool(config, 'tie_word_embeddings', false),
    attention,
    rope,
    routing: routingSpec(config, family),
    moeNames: moeNames(family),
    slidingWindow: slidingWindowOf(config, family, numLayers),
  };
}

/** DeepSeek's yarn_get_mscale. */
export function yarnGetMscale(scale: number, mscale = 1): number {
  return scale <= 1 ? 1 : 0.1 * mscale * Math.log(scale) + 1;
}

/**
 * Softmax scale of attention: head_dim^-0.5, and for MLA under a non-default rope type with
 * `mscale_all_dim`, times mscale² (DeepseekV3Attention.__init__).
 */
export function attentionScale(spec: ModelSpec): number {
  const a = spec.attention;
  if (a.kind === 'gqa') return a.headDim ** -0.5;
  let scale = (a.qkNopeHeadDim + a.qkRopeHeadDim) ** -0.5;
  const mscaleAllDim = spec.rope.params['mscale_all_dim'];
  const factor = spec.rope.params['factor'];
  if (spec.rope.type !== 'default' && mscaleAllDim && factor !== undefined) {
    const m = yarnGetMscale(factor, mscaleAllDim);
    scale *= m * m;
  }
  return scale;
}
