// The engines a deployment check knows and the rules it applies for each, with the place in the
// engine's source where each rule lives. docs/ENGINES.md records the versions these were read from
// and quotes the conditions; keep the two in step.

export const ENGINES = ['vllm', 'sglang', 'mlc', 'transformers', 'deepseek'] as const;
export type EngineId = (typeof ENGINES)[number];

export const ENGINE_LABELS: Record<EngineId, string> = {
  vllm: 'vLLM (quantization "fp8" / "compressed-tensors")',
  sglang: 'SGLang (quantization "fp8")',
  mlc: 'MLC LLM (block_scale_quantization)',
  transformers: 'transformers 5.x (FineGrainedFP8)',
  deepseek: "DeepSeek-V3's inference/ code",
};

export type RuleId =
  | 'config-keys'
  | 'family'
  | 'weight-dtype'
  | 'activation-scheme'
  | 'block-size'
  | 'layout'
  | 'scale-missing'
  | 'scale-shape'
  | 'scale-dtype'
  | 'tp-even-split'
  | 'column-slice'
  | 'merged-part'
  | 'row-slice'
  | 'moe-intermediate'
  | 'expert-parallel'
  | 'mla-alignment'
  | 'kept-linear'
  | 'fused-partially-kept'
  | 'activation-groups'
  | 'tensor-names'
  | 'dequantize-rows'
  | 'expert-bias';

export interface RuleSource {
  /** File in the engine's repository. */
  readonly file: string;
  /** Class/function where the condition is raised. */
  readonly where: string;
}

/** Where each engine raises each rule (only pairs that exist). */
export const RULE_SOURCES: Record<EngineId, Partial<Record<RuleId, RuleSource>>> = {
  vllm: {
    'config-keys': { file: 'vllm/model_executor/layers/quantization/fp8.py', where: 'Fp8Config.from_config' },
    'activation-scheme': { file: 'vllm/model_executor/layers/quantization/fp8.py', where: 'Fp8Config.__init__' },
    'weight-dtype': { file: 'vllm/model_executor/layers/quantization/utils/fp8_utils.py', where: 'create_fp8_weight_parameter (float8_e4m3fn)' },
    'scale-missing': { file: 'vllm/model_executor/layers/quantization/fp8.py', where: 'Fp8LinearMethod.create_weights (weight_scale_inv)' },
    'scale-shape': { file: 'vllm/model_executor/parameter.py', where: 'BlockQuantScaleParameter.load_* (shape assert)' },
    'scale-dtype': { file: 'vllm/model_executor/layers/quantization/utils/fp8_utils.py', where: 'create_fp8_scale_parameter' },
    'tp-even-split': { file: 'vllm/distributed/utils.py', where: 'divide (ensure_divisibility)' },
    'column-slice': { file: 'vllm/model_executor/layers/quantization/utils/fp8_utils.py', where: 'validate_fp8_block_shape (from Fp8LinearMethod.create_weights)' },
    'merged-part': { file: 'vllm/model_executor/layers/quantization/utils/fp8_utils.py', where: 'validate_fp8_block_shape (merged: every part but the last)' },
    'row-slice': { file: 'vllm/model_executor/layers/quantization/utils/fp8_utils.py', where: 'validate_fp8_block_shape (row parallel)' },
    'moe-intermediate': { file: 'vllm/model_executor/layers/quantization/fp8.py', where: 'Fp8MoEMethod.create_weights' },
    'kept-linear': { file: 'vllm/model_executor/layers/quantization/fp8.py', where: 'Fp8Config.get_quant_method → utils/quant_utils.py is_layer_skipped' },
    'fused-partially-kept': { file: 'vllm/model_executor/layers/quantization/utils/quant_utils.py', where: 'is_layer_skipped ("Detected some but not all shards")' },
    layout: { file: 'vllm/model_executor/layers/quantization/compressed_tensors/compressed_tensors.py', where: 'CompressedTensorsConfig (block strategy)' },
  },
  sglang: {
    'config-keys': { file: 'python/sglang/srt/layers/quantization/fp8.py', where: 'Fp8Config.from_config' },
    'activation-scheme': { file: 'python/sglang/srt/layers/quantization/fp8.py', where: 'Fp8Config.__init__' },
    'weight-dtype': { file: 'python/sglang/srt/layers/quantization/fp8.py', where: 'Fp8LinearMethod.create_weights (float8_e4m3fn)' },
    'scale-missing': { file: 'python/sglang/srt/layers/quantization/fp8.py', where: 'Fp8LinearMethod.create_weights (weight_scale_inv)' },
    'scale-shape': { file: 'python/sglang/srt/layers/parameter.py', where: 'BlockQuantScaleParameter loaders (shape assert)' },
    'scale-dtype': { file: 'python/sglang/srt/layers/quantization/fp8.py', where: 'Fp8LinearMethod.create_weights' },
    'tp-even-split': { file: 'python/sglang/srt/distributed/utils.py', where: 'divide' },
    'column-slice': { file: 'python/sglang/srt/layers/quantization/fp8_utils.py', where: 'validate_fp8_block_shape' },
    'merged-part': { file: 'python/sglang/srt/layers/quantization/fp8_utils.py', where: 'validate_fp8_block_shape (merged: every part but the last)' },
    'row-slice': { file: 'python/sglang/srt/layers/quantization/fp8_utils.py', where: 'validate_fp8_block_shape (row parallel)' },
    'moe-intermediate': { file: 'python/sglang/srt/layers/quantization/fp8.py', where: 'Fp8MoEMethod.create_weights' },
    'kept-linear': { file: 'python/sglang/srt/layers/quantization/fp8.py', where: 'Fp8Config.from_config (ignored_layers, modules_to_not_convert) → is_layer_skipped' },
    'fused-partially-kept': { file: 'python/sglang/srt/layers/quantization/utils.py', where: 'is_layer_skipped' },
    layout: { file: 'python/sglang/srt/layers/quantization/fp8.py', where: 'Fp8Config (quant_method "fp8" only)' },
  },
  mlc: {
    'config-keys': { file: 'python/mlc_llm/model/qwen3/qwen3_model.py, deepseek_v2/deepseek_v2_model.py', where: 'Qwen3Config / DeepseekV2Config.__post_init__' },
    family: { file: 'python/mlc_llm/model/*/…_model.py', where: 'model configs that read quantization_config.weight_block_size' },
    'activation-scheme': { file: 'python/mlc_llm/model/qwen3/qwen3_model.py, deepseek_v2/deepseek_v2_model.py', where: '__post_init__ (activation_scheme == "dynamic")' },
    'weight-dtype': { file: 'python/mlc_llm/model/qwen3/qwen3_model.py', where: '__post_init__ (fmt == "e4m3")' },
    layout: { file: 'python/mlc_llm/model/qwen3/qwen3_model.py', where: '__post_init__ (quant_method == "fp8")' },
    'scale-missing': { file: 'python/mlc_llm/quantization/block_scale_quantization.py', where: 'BlockScaleQuantizeLinear.__init__ (weight_scale_inv)' },
    'scale-shape': { file: 'python/mlc_llm/quantization/block_scale_quantization.py', where: 'BlockScaleQuantizeLinear.__init__' },
    'scale-dtype': { file: 'python/mlc_llm/model/qwen3/qwen3_loader.py', where: 'add_weight_and_scale_mapping (astype float32)' },
    'tp-even-split': { file: 'python/mlc_llm/model/qwen3_moe/qwen3_moe_model.py, deepseek_v2_model.py', where: 'MLP/MoE/attention __init__ ("Cannot split … evenly")' },
    'column-slice': { file: 'python/mlc_llm/quantization/block_scale_quantization.py', where: 'BlockScaleQuantizeLinear.from_linear (shard segs // block)' },
    'merged-part': {
      file: 'python/mlc_llm/model/qwen3/qwen3_loader.py (and the other loaders), block_scale_quantization.py',
      where: 'add_weight_and_scale_mapping (np.concatenate of per-part scales); BlockScaleQuantizeLinear.from_linear (shard segs // block)',
    },
    'row-slice': { file: 'python/mlc_llm/quantization/block_scale_quantization.py', where: 'BlockScaleQuantizeLinear.from_linear (scale sharded with the weight)' },
    'moe-intermediate': {
      file: 'python/mlc_llm/model/qwen3_moe/qwen3_moe_loader.py, block_scale_quantization.py',
      where: 'per-expert gate/up concatenation; BlockScaleQuantizeMixtralExperts.from_mixtral_experts (segs // block)',
    },
    'mla-alignment': {
      file: 'python/mlc_llm/quantization/block_scale_quantization.py',
      where: 'BlockScaleQuantize.quantize_model._Mutator.visit_module ("Invalid DeepSeek model config")',
    },
    'kept-linear': { file: 'python/mlc_llm/quantization/block_scale_quantization.py', where: '_Mutator.visit_module (every nn.Linear but is_final_fc / is_moe_gate)' },
  },
  transformers: {
    'config-keys': { file: 'src/transformers/utils/quantization_config.py', where: 'FineGrainedFP8Config.post_init' },
    'activation-scheme': { file: 'src/transformers/utils/quantization_config.py', where: 'FineGrainedFP8Config.post_init' },
    'weight-dtype': { file: 'src/transformers/quantizers/quantizer_finegrained_fp8.py', where: 'create_quantized_param ("Expect quantized weights")' },
    layout: { file: 'src/transformers/utils/quantization_config.py', where: 'CompressedTensorsConfig (needs compressed-tensors ≥ 0.11)' },
    'expert-bias': { file: 'src/transformers/integrations/finegrained_fp8.py', where: 'FP8Experts.__init__ ("FP8Experts does not support bias for now")' },
    'scale-missing': { file: 'src/transformers/integrations/finegrained_fp8.py', where: 'FP8Linear.__init__ (weight_scale_inv)' },
    'scale-shape': { file: 'src/transformers/integrations/finegrained_fp8.py', where: 'FP8Linear.__init__' },
    'scale-dtype': { file: 'src/transformers/integrations/finegrained_fp8.py', where: 'FP8Linear.__init__ (float32)' },
    'tp-even-split': { file: 'src/transformers/quantizers/quantizer_finegrained_fp8.py', where: 'update_tp_plan (local_colwise / local_rowwise)' },
    'column-slice': { file: 'src/transformers/quantizers/quantizer_finegrained_fp8.py', where: 'update_tp_plan (weight_scale_inv split like the weight)' },
    'row-slice': { file: 'src/transformers/quantizers/quantizer_finegrained_fp8.py', where: 'update_tp_plan (weight_scale_inv split like the weight)' },
    'activation-groups': { file: 'src/transformers/integrations/finegrained_fp8.py', where: 'act_quant (assert x.shape[-1] % block_size == 0)' },
    'kept-linear': {
      file: 'src/transformers/quantizers/quantizer_finegrained_fp8.py',
      where: '_process_model_before_weight_loading → replace_with_fp8_linear (modules_to_not_convert)',
    },
    'dequantize-rows': { file: 'src/transformers/integrations/finegrained_fp8.py', where: 'dequantize=True path' },
  },
  deepseek: {
    family: { file: 'inference/model.py', where: 'Transformer (DeepSeek-V3 only)' },
    'block-size': { file: 'inference/model.py', where: 'block_size = 128 (module global)' },
    'weight-dtype': { file: 'inference/model.py', where: 'Linear.dtype = torch.float8_e4m3fn' },
    'activation-scheme': { file: 'inference/generate.py', where: 'load_model (strict: no activation scales)' },
    layout: { file: 'inference/convert.py', where: 'main (renames weight_scale_inv → scale)' },
    'scale-missing': { file: 'inference/model.py', where: 'Linear.__init__ (scale)' },
    'scale-shape': { file: 'inference/model.py', where: 'Linear.__init__ (scale [ceil(N/128), ceil(K/128)])' },
    'tp-even-split': { file: 'inference/convert.py', where: 'main ("Dimension … must be divisible by" mp, weight and scale)' },
    'column-slice': { file: 'inference/model.py', where: 'ColumnParallelLinear (scale rows sharded with the weight by convert.py)' },
    'row-slice': { file: 'inference/kernel.py', where: 'act_quant (last dim % block_size)' },
    'expert-parallel': { file: 'inference/model.py', where: 'MoE.__init__ (n_routed_experts % world_size) and convert.py' },
    'kept-linear': { file: 'inference/model.py', where: 'Linear (FP8 with a scale unless it is the head)' },
    'tensor-names': { file: 'inference/convert.py', where: 'mapping ("Key … not found in mapping")' },
  },
};

export function ruleSource(engine: EngineId, rule: RuleId): string {
  const s = RULE_SOURCES[engine][rule];
  return s ? `${s.file} ${s.where}` : '';
}

export function parseEngines(text: string): EngineId[] {
  const out: EngineId[] = [];
  for (const raw of text.split(',')) {
    const e = raw.trim().toLowerCase();
    if (e === '') continue;
    const found = ENGINES.find((x) => x === e);
    if (!found) throw new Error(`unknown engine "${raw.trim()}": expected ${ENGINES.join(', ')}`);
    if (!out.includes(found)) out.push(found);
  }
  if (out.length === 0) throw new Error(`no engine given: expected a comma-separated list of ${ENGINES.join(', ')}`);
  return out;
}
