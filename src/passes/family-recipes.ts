// Per-family convert recipes: which modules of a known architecture stay in their source dtype
// beyond the rules every model shares (embeddings, lm_head, MoE routers), why, and which official
// FP8 release (or, where there is none, which quantized release or convention) the choice was
// checked against. The generic rule for architectures fp8q does not know — keep anything under a
// vision/visual/audio/image/projector module — is here too. docs/ARCHITECTURES.md explains each.

import type { ArchitectureFamily } from './architectures.js';

export interface KeepRule {
  /** Tested against the module path (search semantics). */
  readonly pattern: RegExp;
  /** The reason recorded in the plan for each module it keeps. */
  readonly reason: string;
}

export interface FamilyRecipe {
  readonly family: ArchitectureFamily;
  /** Human name of the family ("Qwen3-VL"). */
  readonly name: string;
  /** Modules kept beyond the shared rules, checked in order. */
  readonly keeps: readonly KeepRule[];
  /** Decisions the plan states once (what is quantized and why), for --dry-run and inspect. */
  readonly notes: readonly string[];
  /** The official FP8 release (or other reference) whose kept modules this recipe matches. */
  readonly checkedAgainst: string;
}

/** A path component that names a vision tower or a multimodal projector in any VLM's layout. */
const VISION_TOWER = /(^|\.)(visual|vision_tower|vision_model)(\.|$)/;
const PROJECTOR = /(^|\.)multi_modal_projector(\.|$)/;

const visionTower = (release: string): KeepRule => ({ pattern: VISION_TOWER, reason: `vision tower (patch embedding, blocks, merger), kept as in ${release}` });
const projector = (release: string): KeepRule => ({ pattern: PROJECTOR, reason: `multimodal projector, kept as in ${release}` });

/** What every family shares, stated once beside each recipe. */
export const SHARED_RULES = 'embeddings, lm_head and MoE routers (incl. shared-expert gates) kept; e_score_correction_bias and norms copied';

const RECIPES: Readonly<Record<ArchitectureFamily, FamilyRecipe>> = {
  llama: { family: 'llama', name: 'Llama', keeps: [], notes: [], checkedAgainst: 'no official FP8 release (shared rules)' },
  mistral: { family: 'mistral', name: 'Mistral', keeps: [], notes: [], checkedAgainst: 'no official FP8 release (shared rules)' },
  qwen2: { family: 'qwen2', name: 'Qwen2', keeps: [], notes: [], checkedAgainst: 'no official FP8 release (shared rules)' },
  qwen3: { family: 'qwen3', name: 'Qwen3', keeps: [], notes: [], checkedAgainst: 'Qwen/Qwen3-8B-FP8 (128x128; lm_head kept)' },
  mixtral: { family: 'mixtral', name: 'Mixtral', keeps: [], notes: [], checkedAgainst: 'no official FP8 release (shared rules)' },
  qwen2_moe: { family: 'qwen2_moe', name: 'Qwen2-MoE', keeps: [], notes: [], checkedAgainst: 'no official FP8 release (shared rules)' },
  qwen3_moe: { family: 'qwen3_moe', name: 'Qwen3-MoE', keeps: [], notes: [], checkedAgainst: 'Qwen/Qwen3-30B-A3B-FP8 (128x128; lm_head and mlp.gate kept)' },
  deepseek_v2: { family: 'deepseek_v2', name: 'DeepSeek-V2', keeps: [], notes: [], checkedAgainst: "no official FP8 release (rules of DeepSeek-V3's release)" },
  deepseek_v3: {
    family: 'deepseek_v3',
    name: 'DeepSeek-V3',
    keeps: [],
    notes: [],
    checkedAgainst: 'deepseek-ai/DeepSeek-V3 (native FP8, 128x128; gate, embeddings, lm_head in BF16)',
  },
  deepseek_v32: {
    family: 'deepseek_v32',
    name: 'DeepSeek-V3.2',
    keeps: [
      {
        pattern: /(^|\.)indexer\.weights_proj$/,
        reason: 'lightning-indexer head weights (one output per index head), BF16 in deepseek-ai/DeepSeek-V3.2-Exp',
      },
    ],
    notes: ['indexer: wq_b and wk quantized (FP8 in deepseek-ai/DeepSeek-V3.2-Exp), weights_proj kept, k_norm copied'],
    checkedAgainst: 'deepseek-ai/DeepSeek-V3.2-Exp (native FP8, 128x128)',
  },
  qwen2_5_vl: {
    family: 'qwen2_5_vl',
    name: 'Qwen2.5-VL',
    keeps: [visionTower("llm-compressor's Qwen2.5-VL recipes (ignore re:visual.*)")],
    notes: ['language model quantized like Qwen2; the vision tower and its merger stay BF16'],
    checkedAgainst: "no official FP8 release; llm-compressor's Qwen2.5-VL examples (vision tower ignored)",
  },
  qwen3_vl: {
    family: 'qwen3_vl',
    name: 'Qwen3-VL',
    keeps: [visionTower('Qwen/Qwen3-VL-8B-Instruct-FP8')],
    notes: ['language model quantized like Qwen3; vision tower, merger and deepstack mergers stay BF16'],
    checkedAgainst: 'Qwen/Qwen3-VL-8B-Instruct-FP8 (128x128; model.visual.* and lm_head kept)',
  },
  qwen3_vl_moe: {
    family: 'qwen3_vl_moe',
    name: 'Qwen3-VL-MoE',
    keeps: [visionTower('Qwen/Qwen3-VL-30B-A3B-Instruct-FP8')],
    notes: ['language model quantized like Qwen3-MoE (fused experts per expert); vision tower, merger and deepstack mergers stay BF16'],
    checkedAgainst: 'Qwen/Qwen3-VL-30B-A3B-Instruct-FP8 (128x128; model.visual.*, mlp.gate and lm_head kept)',
  },
  mistral3: {
    family: 'mistral3',
    name: 'Mistral 3 / Ministral 3',
    keeps: [visionTower('mistralai/Ministral-3-8B-Instruct-2512'), projector('mistralai/Ministral-3-8B-Instruct-2512')],
    notes: ['language model quantized; Pixtral vision tower and projector (patch merger included) stay BF16'],
    checkedAgainst: 'mistralai/Ministral-3-8B-Instruct-2512 (FP8; modules_to_not_convert: model.vision_tower, model.multi_modal_projector, lm_head)',
  },
  gemma3: {
    family: 'gemma3',
    name: 'Gemma 3',
    keeps: [visionTower('the other VLM releases (no official Gemma 3 FP8)'), projector('the other VLM releases (no official Gemma 3 FP8)')],
    notes: ['language model quantized; SigLIP vision tower and projector stay BF16; embeddings are tied (no lm_head tensor)'],
    checkedAgainst: 'no official FP8 release; the VLM convention of the Qwen3-VL and Ministral 3 releases',
  },
  gemma3_text: {
    family: 'gemma3_text',
    name: 'Gemma 3 (text)',
    keeps: [],
    notes: ['embeddings are tied (no lm_head tensor)'],
    checkedAgainst: 'no official FP8 release (shared rules)',
  },
  llama4: {
    family: 'llama4',
    name: 'Llama 4',
    keeps: [visionTower('the VLM releases (Qwen3-VL, Ministral 3)'), projector('the VLM releases (Qwen3-VL, Ministral 3)')],
    notes: [
      'routed experts (gate_up_proj [E, hidden, 2I], stored in × out) and shared experts quantized; router kept; vision model (patch embedding included) and projector stay BF16',
    ],
    checkedAgainst:
      "no block-FP8 release; the VLM convention (Meta's Llama-4-Maverick-17B-128E-Instruct-FP8 is per-channel compressed-tensors and was not compared module by module)",
  },
  glm4_moe: {
    family: 'glm4_moe',
    name: 'GLM-4.5 / GLM-4.6',
    keeps: [],
    notes: ['attention (q/k/v with bias), dense MLPs, routed and shared experts quantized; mlp.gate router kept, e_score_correction_bias copied'],
    checkedAgainst: 'zai-org/GLM-4.5-FP8 and zai-org/GLM-4.6-FP8 (lm_head and every mlp.gate kept)',
  },
  qwen3_next: {
    family: 'qwen3_next',
    name: 'Qwen3-Next',
    keeps: [
      {
        pattern: /(^|\.)linear_attn\.in_proj_ba$/,
        reason: "gated DeltaNet's β / decay-rate projection (2 × value heads outputs), kept as in Qwen/Qwen3-Next-80B-A3B-Instruct-FP8",
      },
    ],
    notes: [
      "gated DeltaNet: in_proj_qkvz and out_proj quantized, in_proj_ba kept (it sets the recurrent state's decay and write strength for every later token); conv1d (3-D), A_log, dt_bias and norm copied",
      'gated attention, routed and shared experts quantized; mlp.gate and shared_expert_gate kept',
    ],
    checkedAgainst: 'Qwen/Qwen3-Next-80B-A3B-Instruct-FP8 (128x128; linear_attn.in_proj_ba, mlp.gate, shared_expert_gate, lm_head kept)',
  },
  gpt_oss: {
    family: 'gpt_oss',
    name: 'gpt-oss',
    keeps: [
      {
        pattern: /(^|\.)self_attn\.(q_proj|k_proj|v_proj|o_proj)$/,
        reason: 'attention, kept as in openai/gpt-oss-120b (its quantized release quantizes only the MoE experts)',
      },
    ],
    notes: [
      'experts quantized: gate_up_proj [E, hidden, 2I] and down_proj [E, I, hidden] are stored in × out, blocks over (out, in); their biases copied',
      'self_attn (with sinks), router, embeddings and lm_head kept, as openai/gpt-oss-120b keeps them next to its MXFP4 experts',
    ],
    checkedAgainst: 'no FP8 release; openai/gpt-oss-120b (MXFP4 experts; self_attn, mlp.router, embed_tokens, lm_head not converted)',
  },
  minimax_m2: {
    family: 'minimax_m2',
    name: 'MiniMax-M2',
    keeps: [],
    notes: ['attention and experts (w1/w2/w3) quantized; block_sparse_moe.gate router kept, e_score_correction_bias copied'],
    checkedAgainst: 'MiniMaxAI/MiniMax-M2 (native FP8, 128x128; gate, e_score_correction_bias, lm_head kept)',
  },
};

export function recipeOf(family: ArchitectureFamily): FamilyRecipe {
  return RECIPES[family];
}

/**
 * Generic rule for architectures fp8q does not know: a module under a path component naming a
 * modality encoder or projector (vision_tower, visual, audio_tower, image_newline, mm_projector…)
 * is kept. Returns the topmost such component's path, the group it is reported under.
 */
export function modalityModule(modulePath: string): string | undefined {
  const parts = modulePath.split('.');
  for (let i = 0; i < parts.length; i++) {
    if (/vision|visual|audio|image|projector/i.test(parts[i]!)) return parts.slice(0, i + 1).join('.');
  }
  return undefined;
}
