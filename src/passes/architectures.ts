// Architecture rules: which model families fp8q knows, read from config.json, and the facts about
// each that the pass needs (where MoE experts and routers live, whether attention is MLA).

import type { ModelConfig } from '../io/checkpoint/checkpoint.js';

export type ArchitectureFamily =
  | 'llama'
  | 'mistral'
  | 'qwen2'
  | 'qwen3'
  | 'mixtral'
  | 'qwen2_moe'
  | 'qwen3_moe'
  | 'deepseek_v2'
  | 'deepseek_v3'
  | 'deepseek_v32'
  | 'qwen2_5_vl'
  | 'qwen3_vl'
  | 'qwen3_vl_moe'
  | 'mistral3'
  | 'gemma3'
  | 'gemma3_text'
  | 'llama4'
  | 'glm4_moe'
  | 'qwen3_next'
  | 'gpt_oss'
  | 'minimax_m2';

export interface ArchitectureInfo {
  /** undefined: not a family fp8q knows; the generic rules apply. */
  readonly family: ArchitectureFamily | undefined;
  /** What config.json called it (architectures[0] or model_type), for messages. */
  readonly label: string;
  readonly isMoe: boolean;
  readonly isMla: boolean;
  readonly numExperts: number | undefined;
}

const MODEL_TYPES: Record<string, ArchitectureFamily> = {
  llama: 'llama',
  mistral: 'mistral',
  qwen2: 'qwen2',
  qwen3: 'qwen3',
  mixtral: 'mixtral',
  qwen2_moe: 'qwen2_moe',
  qwen3_moe: 'qwen3_moe',
  deepseek_v2: 'deepseek_v2',
  deepseek_v3: 'deepseek_v3',
  deepseek_v32: 'deepseek_v32',
  qwen2_5_vl: 'qwen2_5_vl',
  qwen3_vl: 'qwen3_vl',
  qwen3_vl_moe: 'qwen3_vl_moe',
  mistral3: 'mistral3',
  gemma3: 'gemma3',
  gemma3_text: 'gemma3_text',
  llama4: 'llama4',
  llama4_text: 'llama4',
  glm4_moe: 'glm4_moe',
  qwen3_next: 'qwen3_next',
  gpt_oss: 'gpt_oss',
  minimax_m2: 'minimax_m2',
};

const ARCHITECTURE_CLASSES: Record<string, ArchitectureFamily> = {
  LlamaForCausalLM: 'llama',
  MistralForCausalLM: 'mistral',
  Qwen2ForCausalLM: 'qwen2',
  Qwen3ForCausalLM: 'qwen3',
  MixtralForCausalLM: 'mixtral',
  Qwen2MoeForCausalLM: 'qwen2_moe',
  Qwen3MoeForCausalLM: 'qwen3_moe',
  DeepseekV2ForCausalLM: 'deepseek_v2',
  DeepseekV3ForCausalLM: 'deepseek_v3',
  DeepseekV32ForCausalLM: 'deepseek_v32',
  Qwen2_5_VLForConditionalGeneration: 'qwen2_5_vl',
  Qwen3VLForConditionalGeneration: 'qwen3_vl',
  Qwen3VLMoeForConditionalGeneration: 'qwen3_vl_moe',
  Mistral3ForConditionalGeneration: 'mistral3',
  Gemma3ForConditionalGeneration: 'gemma3',
  Gemma3ForCausalLM: 'gemma3_text',
  Llama4ForConditionalGeneration: 'llama4',
  Llama4ForCausalLM: 'llama4',
  Glm4MoeForCausalLM: 'glm4_moe',
  Qwen3NextForCausalLM: 'qwen3_next',
  GptOssForCausalLM: 'gpt_oss',
  MiniMaxM2ForCausalLM: 'minimax_m2',
};

export function numberField(config: ModelConfig | undefined, ...keys: string[]): number | undefined {
  for (const key of keys) {
    const v = config?.[key];
    if (typeof v === 'number' && Number.isFinite(v)) return v;
  }
  return undefined;
}

/** A vision-language model's `text_config` (the language model's sizes), else the config itself. */
export function textConfigOf(config: ModelConfig | undefined): ModelConfig | undefined {
  const tc = config?.['text_config'];
  return typeof tc === 'object' && tc !== null && !Array.isArray(tc) ? (tc as ModelConfig) : config;
}

export function detectArchitecture(config: ModelConfig | undefined): ArchitectureInfo {
  const modelType = typeof config?.['model_type'] === 'string' ? (config['model_type'] as string) : undefined;
  const archs = Array.isArray(config?.['architectures']) ? (config['architectures'] as unknown[]) : [];
  const archClass = typeof archs[0] === 'string' ? archs[0] : undefined;
  const family = (modelType && MODEL_TYPES[modelType]) || (archClass && ARCHITECTURE_CLASSES[archClass]) || undefined;
  const expertKeys = ['num_local_experts', 'num_experts', 'n_routed_experts'];
  const numExperts = numberField(config, ...expertKeys) ?? numberField(textConfigOf(config), ...expertKeys);
  return {
    family,
    label: archClass ?? modelType ?? (config === undefined ? 'unknown (no config.json)' : 'unknown (config.json names no architecture)'),
    isMoe: numExperts !== undefined && numExperts > 0,
    isMla: numberField(config, 'kv_lora_rank') !== undefined,
    numExperts,
  };
}
