// ModelSpec: what the forward needs to know about a model, read once from config.json — the
// family, sizes, attention kind (grouped-query or DeepSeek MLA), rotary settings, MoE routing
// rule — validated up front so a missing field is one clear error, not a NaN three layers in.
//
// Which layers are MoE, whether a linear has a bias and whether attention has q/k norms are read
// from the tensors present (see layer-plan.ts), not from config flags: Qwen3-MoE's
// `mlp_only_layers`/`decoder_sparse_step`, DeepSeek's `first_k_dense_replace` and Llama's
// `attention_bias` all end up as "this tensor exists or not", and the tensors are what we run.

import { CheckpointError } from '../../io/errors.js';
import type { ModelConfig } from '../../io/checkpoint/checkpoint.js';
import { detectArchitecture, textConfigOf } from '../../passes/architectures.js';
import { recipeOf } from '../../passes/family-recipes.js';

export class ModelConfigError extends CheckpointError {
  constructor(message: string, errorCode: 'E_INPUT_MALFORMED' | 'E_INPUT_UNSUPPORTED' = 'E_INPUT_MALFORMED') {
    super(message, errorCode);
    this.name = 'ModelConfigError';
  }
}

/**
 * Families the forward implements. Every other family fp8q converts is refused by logits and
 * verify with its name: a forward that ran such a model as its nearest relative (Gemma 3 as
 * Llama, gpt-oss without sinks) would give numbers, not a check.
 */
export const FORWARD_FAMILIES = [
  'llama',
  'mistral',
  'qwen2',
  'qwen3',
  'mixtral',
  'qwen2_moe',
  'qwen3_moe',
  'deepseek_v2',
  'deepseek_v3',
  'glm4_moe',
  'qwen2_5_vl',
  'qwen3_vl',
  'gemma3_text',
  'gemma3',
  'mistral3',
  'qwen3_vl_moe',
  'minimax_m2',
  'gpt_oss',
] as const;
export type ForwardFamily = (typeof FORWARD_FAMILIES)[number];

function isForwardFamily(family: string): family is ForwardFamily {
  return (FORWARD_FAMILIES as readonly string[]).includes(family);
}

const FORWARD_NAMES =
  'Llama, Mistral, Qwen2, Qwen3, Mixtral, Qwen2-MoE, Qwen3-MoE, DeepSeek-V2, DeepSeek-V3, GLM-4.5, MiniMax-M2, gpt-oss; the language model on text of Qwen2.5-VL, Qwen3-VL(-MoE), Gemma 3 and Mistral 3';

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
  /**
   * DeepSeek-V2: softmax scores; `group_limited_greedy` keeps the `topk_group` groups with the
   * largest single score (`greedy`: one group); weights are the scores, renormalized when
   * `norm_topk_prob`, times `routed_scaling_factor`.
   */
  | {
      readonly kind: 'softmax_grouped';
      readonly topK: number;
      readonly nGroup: number;
      readonly topkGroup: number;
      readonly normalize: boolean;
      readonly routedScalingFactor: number;
    }
  /** gpt-oss: top-k of the router logits (router with bias), softmax over those k. */
  | { readonly kind: 'topk_softmax'; readonly topK: number }
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
  /** The router under the block: `gate`, or gpt-oss's `router`. */
  readonly router: string;
  readonly gate: string;
  readonly up: string;
  readonly down: string;
  /** Shared expert MLP under the block (`shared_experts`, `shared_expert`), if the family has one. */
  readonly shared: string | undefined;
  /** Qwen2-MoE's sigmoid gate on the shared expert. */
  readonly sharedGate: string | undefined;
}

/**
 * Where the language model's tensors are: `model` (causal LMs; Qwen2.5-VL as released),
 * `model.language_model` (transformers 5's VLM layout, Qwen3-VL as released) or
 * `language_model.model` (the original layout of Gemma 3, Mistral 3, Llama 4 releases).
 */
export interface ModuleNames {
  /** Prefix of `embed_tokens`, `layers.N`, `norm`. */
  readonly decoder: string;
  /** The output head module (absent with tied embeddings). */
  readonly lmHead: string;
}

const DECODER_PREFIXES = [
  { decoder: 'model', lmHead: 'lm_head' },
  { decoder: 'model.language_model', lmHead: 'lm_head' },
  { decoder: 'language_model.model', lmHead: 'language_model.lm_head' },
] as const;

/** The layout whose embedding the checkpoint holds (`model` when none does: the error then names model.embed_tokens). */
export function moduleNamesOf(has: (tensor: string) => boolean): ModuleNames {
  return DECODER_PREFIXES.find((p) => has(`${p.decoder}.embed_tokens.weight`)) ?? DECODER_PREFIXES[0];
}

export interface ModelSpec {
  readonly family: ForwardFamily;
  readonly label: string;
  readonly names: ModuleNames;
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
  /** The decoder-layer variant's extras (Gemma 3's), absent for the Llama-style layer. */
  readonly gemma?: GemmaSpec;
  /**
   * gpt-oss's experts: x @ W + b stored in × out, gate and up interleaved along the output, and
   * out = (clamp(up, ±limit) + 1) · g · σ(alpha · g) with g = min(gate, limit).
   */
  readonly gptOssExperts?: { readonly alpha: number; readonly limit: number };
  /**
   * Ministral 3 (`rope_parameters.llama_4_scaling_beta`): queries at position p are multiplied by
   * 1 + beta · ln(1 + ⌊p / original_max_position_embeddings⌋) after the rotary.
   */
  readonly queryPositionScale?: { readonly beta: number; readonly original: number };
}

/**
 * Gemma 3's departures from the Llama-style layer (transformers' Gemma3TextModel): RMSNorm
 * weights stored as w with the norm multiplying by (1 + w); embeddings scaled by √hidden_size;
 * attention and MLP outputs normed before their residual add, the MLP fed by
 * pre_feedforward_layernorm (read from the tensors, layer-plan.ts); query_pre_attn_scalar^-0.5
 * as the attention scale; sliding-window layers with their own rotary theta.
 */
export interface GemmaSpec {
  readonly normOffset: 1;
  readonly embedScale: number;
  readonly queryScale: number;
  /** Rotary of the sliding-window layers. */
  readonly localRope: RopeSpec;
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
function ropeSpec(config: ModelConfig, headDim: number, interleave: boolean, allowPartial = false): RopeSpec {
  const merged = { ...record(config['rope_scaling']), ...record(config['rope_parameters']) };
  const typeRaw = merged['rope_type'] ?? merged['type'] ?? 'default';
  const type = typeRaw === 'default' || typeRaw === 'linear' || typeRaw === 'yarn' || typeRaw === 'llama3' ? typeRaw : undefined;
  if (type === undefined) {
    throw new ModelConfigError(`config.json: rope type "${String(typeRaw)}" is not supported by the forward (default, linear, yarn, llama3 are)`);
  }
  const params: Record<string, number> = {};
  for (const [k, v] of Object.entries(merged)) if (typeof v === 'number' && Number.isFinite(v)) params[k] = v;
  // yarn's `truncate` (gpt-oss: false) is the one boolean the tables need.
  if (typeof merged['truncate'] === 'boolean') params['truncate'] = merged['truncate'] ? 1 : 0;
  const theta = params['rope_theta'] ?? optNum(config, 'rope_theta', 10000);
  const partial = params['partial_rotary_factor'] ?? optNum(config, 'partial_rotary_factor', 1);
  // GLM-4.5 rotates the first head_dim × partial_rotary_factor dims of each head and passes the rest.
  const dim = allowPartial ? Math.trunc(headDim * partial) : headDim;
  if ((!allowPartial && partial !== 1) || !(partial > 0 && partial <= 1) || dim % 2 !== 0) {
    throw new ModelConfigError(`config.json: partial_rotary_factor ${partial} is not supported by the forward`);
  }
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
  if (family === 'mistral' || family === 'mixtral' || family === 'mistral3') return () => window;
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
    case 'qwen3_vl_moe':
      // Qwen3VLMoeTextTopKRouter always renormalizes the top-k probabilities.
      return { kind: 'softmax', topK: int(config, 'num_experts_per_tok'), normalize: true };
    case 'deepseek_v2': {
      const experts = optInt(config, 'n_routed_experts');
      if (experts === undefined) return undefined;
      const method = config['topk_method'] ?? 'greedy';
      if (method !== 'greedy' && method !== 'group_limited_greedy') {
        throw new ModelConfigError(`config.json: topk_method "${String(method)}" is not supported by the forward (greedy, group_limited_greedy are)`);
      }
      const grouped = method === 'group_limited_greedy';
      const nGroup = grouped ? int(config, 'n_group') : 1;
      if (experts % nGroup !== 0) throw new ModelConfigError(`config.json: n_routed_experts ${experts} is not a multiple of n_group ${nGroup}`);
      return {
        kind: 'softmax_grouped',
        topK: int(config, 'num_experts_per_tok'),
        nGroup,
        topkGroup: grouped ? int(config, 'topk_group') : 1,
        normalize: bool(config, 'norm_topk_prob', false),
        routedScalingFactor: optNum(config, 'routed_scaling_factor', 1),
      };
    }
    case 'gpt_oss':
      return { kind: 'topk_softmax', topK: int(config, 'num_experts_per_tok') };
    case 'minimax_m2':
      // Rotary: head_dim × partial_rotary_factor like transformers 5.17, which does not read the
      // release config's `rotary_dim` either. MiniMaxM2TopKRouter: sigmoid scores, e_score_correction_bias for the choice, weights renormalized; no groups, no scaling.
      return { kind: 'sigmoid_grouped', topK: int(config, 'num_experts_per_tok'), nGroup: 1, topkGroup: 1, normalize: true, routedScalingFactor: 1 };
    case 'deepseek_v3':
    case 'glm4_moe': {
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
  // gpt-oss: stacked gate_up_proj (gate and up interleaved) and down_proj; each expert is compared as one gate_up linear.
  if (family === 'gpt_oss') return { block: 'mlp', router: 'router', gate: 'gate_up_proj', up: 'gate_up_proj', down: 'down_proj', shared: undefined, sharedGate: undefined };
  if (family === 'mixtral' || family === 'minimax_m2')
    return { block: 'block_sparse_moe', router: 'gate', gate: 'w1', up: 'w3', down: 'w2', shared: undefined, sharedGate: undefined };
  if (family === 'deepseek_v3' || family === 'deepseek_v2' || family === 'glm4_moe')
    return { block: 'mlp', router: 'gate', gate: 'gate_proj', up: 'up_proj', down: 'down_proj', shared: 'shared_experts', sharedGate: undefined };
  if (family === 'qwen2_moe') {
    return { block: 'mlp', router: 'gate', gate: 'gate_proj', up: 'up_proj', down: 'down_proj', shared: 'shared_expert', sharedGate: 'shared_expert_gate' };
  }
  return { block: 'mlp', router: 'gate', gate: 'gate_proj', up: 'up_proj', down: 'down_proj', shared: undefined, sharedGate: undefined };
}

export function modelSpecOf(config: ModelConfig | undefined, where: string, has: (tensor: string) => boolean = () => false): ModelSpec {
  if (config === undefined) throw new ModelConfigError(`${where}: no readable config.json; the forward needs the model's config`);
  const arch = detectArchitecture(config);
  const top = config;
  if (arch.family === undefined) {
    throw new ModelConfigError(`${where}: architecture ${arch.label} has no forward in fp8q (supported: ${FORWARD_NAMES})`, 'E_INPUT_UNSUPPORTED');
  }
  if (!isForwardFamily(arch.family)) {
    throw new ModelConfigError(
      `${where}: ${arch.label} is a ${recipeOf(arch.family).name} model (family ${arch.family}); fp8q converts it but has no forward for it, ` +
        `so logits and verify cannot run it (forwards: ${FORWARD_NAMES}); compare the converted checkpoint in transformers or vLLM instead`,
      'E_INPUT_UNSUPPORTED',
    );
  }
  const family = arch.family;
  // A VLM's language model is described by its text_config (the multimodal rotary of Qwen-VL
  // reduces to the plain one on text: every token's temporal, height and width positions are equal).
  config = textConfigOf(config)!;
  const hiddenSize = int(config, 'hidden_size');
  const heads = int(config, 'num_attention_heads');
  const numLayers = int(config, 'num_hidden_layers');
  const actField = config['hidden_act'] ?? config['hidden_activation'];
  const actName = typeof actField === 'string' ? actField : 'silu';
  const hiddenAct = ACTS[actName];
  if (hiddenAct === undefined) throw new ModelConfigError(`config.json: hidden_act "${actName}" is not supported by the forward`);

  let attention: GqaAttentionSpec | MlaAttentionSpec;
  let rope: RopeSpec;
  if (family === 'deepseek_v3' || family === 'deepseek_v2') {
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
    rope = family === 'gemma3' || family === 'gemma3_text' ? gemmaRopes(config, headDim).global : ropeSpec(config, headDim, false, true);
  }

  return {
    family,
    label: arch.label,
    names: moduleNamesOf(has),
    hiddenSize,
    numLayers,
    vocabSize: int(config, 'vocab_size'),
    rmsNormEps: optNum(config, 'rms_norm_eps', 1e-6),
    hiddenAct,
    tieWordEmbeddings: typeof top['tie_word_embeddings'] === 'boolean' ? (top['tie_word_embeddings'] as boolean) : bool(config, 'tie_word_embeddings', false),
    attention,
    rope,
    routing: routingSpec(config, family),
    moeNames: moeNames(family),
    slidingWindow: slidingWindowOf(config, family, numLayers),
    ...(family === 'gemma3' || family === 'gemma3_text' ? { gemma: gemmaSpec(config, hiddenSize, attention) } : {}),
    ...queryPositionScaleOf(rope),
    ...(family === 'gpt_oss' ? { gptOssExperts: { alpha: 1.702, limit: optNum(config, 'swiglu_limit', 7) } } : {}),
  };
}

function queryPositionScaleOf(rope: RopeSpec): { queryPositionScale?: { beta: number; original: number } } {
  const beta = rope.params['llama_4_scaling_beta'];
  if (beta === undefined) return {};
  const original = rope.params['original_max_position_embeddings'];
  if (original === undefined) throw new ModelConfigError('config.json: llama_4_scaling_beta needs rope_parameters.original_max_position_embeddings');
  return { queryPositionScale: { beta, original } };
}

/**
 * Gemma 3's rotary is per layer type: transformers 5 writes `rope_parameters: {full_attention,
 * sliding_attention}`; older configs `rope_theta` (+ `rope_scaling`) for full layers and
 * `rope_local_base_freq` for sliding ones.
 */
function gemmaRopes(config: ModelConfig, headDim: number): { global: RopeSpec; local: RopeSpec } {
  const rp = record(config['rope_parameters']);
  const max = config['max_position_embeddings'];
  if (typeof rp['full_attention'] === 'object' && typeof rp['sliding_attention'] === 'object') {
    return {
      global: ropeSpec({ rope_parameters: rp['full_attention'], max_position_embeddings: max }, headDim, false),
      local: ropeSpec({ rope_parameters: rp['sliding_attention'], max_position_embeddings: max }, headDim, false),
    };
  }
  return {
    global: ropeSpec(config, headDim, false),
    local: ropeSpec({ rope_theta: optNum(config, 'rope_local_base_freq', 10000), max_position_embeddings: max }, headDim, false),
  };
}

function gemmaSpec(config: ModelConfig, hiddenSize: number, attention: GqaAttentionSpec | MlaAttentionSpec): GemmaSpec {
  for (const key of ['attn_logit_softcapping', 'final_logit_softcapping']) {
    if (config[key] !== undefined && config[key] !== null) throw new ModelConfigError(`config.json: ${key} is not supported by the forward`);
  }
  if (attention.kind !== 'gqa') throw new ModelConfigError('config.json: Gemma 3 attention must be grouped-query');
  return {
    normOffset: 1,
    embedScale: Math.fround(Math.sqrt(hiddenSize)),
    queryScale: optNum(config, 'query_pre_attn_scalar', attention.headDim) ** -0.5,
    localRope: gemmaRopes(config, attention.headDim).local,
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
  if (spec.gemma) return spec.gemma.queryScale;
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
