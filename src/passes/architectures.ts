// Architecture rules: which model families fp8q knows, read from config.json, and the facts about
// each that the pass needs (where MoE experts and routers live, whether attention is MLA).

import type { ModelConfig } from '../io/checkpoint.js';

export type ArchitectureFamily =
  | 'llama'
  | 'mistral'
  | 'qwen2'
  | 'qwen3'
  | 'mixtral'
  | 'qwen2_moe'
  | 'qwen3_moe'
  | 'deepseek_v2'
  | 'deepseek_v3';

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
};

export function numberField(config: ModelConfig | undefined, ...keys: string[]): number | undefined {
  for (const key of keys) {
    const v = config?.[key];
    if (typeof v === 'number' && Number.isFinite(v)) return v;
  }
  return undefined;
}

export function detectArchitecture(config: ModelConfig | undefined): ArchitectureInfo {
  const modelType = typeof config?.['model_type'] === 'string' ? (config['model_type'] as string) : undefined;
  const archs = Array.isArray(config?.['architectures']) ? (config['architectures'] as unknown[]) : [];
  const archClass = typeof archs[0] === 'string' ? archs[0] : undefined;
  const family = (modelType && MODEL_TYPES[modelType]) || (archClass && ARCHITECTURE_CLASSES[archClass]) || undefined;
  const numExperts = numberField(config, 'num_local_experts', 'num_experts', 'n_routed_experts');
  return {
    family,
    label: archClass ?? modelType ?? (config === undefined ? 'unknown (no config.json)' : 'unknown (config.json names no architecture)'),
    isMoe: numExperts !== undefined && numExperts > 0,
    isMla: numberField(config, 'kv_lora_rank') !== undefined,
    numExperts,
  };
}
