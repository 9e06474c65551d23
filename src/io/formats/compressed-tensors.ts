// The compressed-tensors layout of a block-FP8 checkpoint, as llm-compressor writes it for its
// `FP8_BLOCK` scheme and vLLM's `compressed-tensors` loader reads it: writing its
// `quantization_config` from a convert plan, and reading one back.
//
// What we followed (vllm-project repositories on GitHub):
// - compressed-tensors `src/compressed_tensors/quantization/quant_scheme.py`: the FP8_BLOCK preset —
//   weights {num_bits 8, type float, strategy block, symmetric, dynamic false,
//   block_structure [128, 128]}, input_activations {num_bits 8, type float, strategy group,
//   symmetric, dynamic true, group_size 128}.
// - `quantization/quant_args.py`: every QuantizationArgs field as pydantic's model_dump writes it
//   (actorder, observer_kwargs …); static weights get observer
//   "memoryless_minmax", dynamic activations observer null. `quantization/quant_config.py`: the QuantizationConfig fields (config_groups,
//   kv_cache_scheme, format, quantization_status, global_compression_ratio, ignore).
// - llm-compressor `src/llmcompressor/entrypoints/model_free/save_utils.py` (model_free_ptq, the
//   entry point that does what `fp8q convert` does): one group "config_group_0", status
//   "compressed", and around the dump `version`, `quant_method: "compressed-tensors"` and
//   `transform_config: {}`, written with sort_keys (hence the alphabetical key order below).
//   `model_free/lifecycle.py` + compressed-tensors `config/format.py`: FP8 weights with input
//   activations are compressed as "float-quantized" (set on the group and at the top level).
// - compressed-tensors `compressors/naive_quantized/base.py` (FloatQuantizationCompressor):
//   tensors `<module>.weight` (float8_e4m3fn, original [N, K] shape) and `<module>.weight_scale`
//   ([ceil(N/bn), ceil(K/bk)]), dequantized as weight × weight_scale — the values of the hf
//   format's weight_scale_inv, which `entrypoints/convert/converters/fp8.py` (FP8Converter) renames
//   to weight_scale unchanged ("fp32 scales (V3-style) pass through unchanged").
//
// One deliberate difference: llm-compressor's own observer allocates the scale in the weight's
// dtype (quantization/lifecycle/initialize.py: BF16 for a BF16 model). fp8q keeps F32 scales, so
// the codes and scale values are bit-identical to the hf format; vLLM allocates the block scale
// parameter as float32 anyway (vllm `model_executor/layers/quantization/utils/fp8_utils.py`,
// create_fp8_scale_parameter).

import type { BlockShape } from '../../fp8/block-quantize.js';
import { QuantizationConfigError, type ActivationScheme, type QuantizedFormat } from './descriptor.js';
import type { PlannedQuantization } from './descriptor.js';

export const COMPRESSED_TENSORS_QUANT_METHOD = 'compressed-tensors';
export const COMPRESSED_TENSORS_SCALE_SUFFIX = 'weight_scale';
/** CompressionFormat of FP8 weights stored as float8_e4m3fn + scale (compressed-tensors config/format.py). */
export const FLOAT_QUANTIZED = 'float-quantized';
/** The release whose serialised schema this mirrors (memoryless_minmax became the default in PR #540). */
export const COMPRESSED_TENSORS_VERSION = '0.14.0';
/** llm-compressor model_free_ptq's group name (model_free/save_utils.py). */
export const CONFIG_GROUP_NAME = 'config_group_0';

/**
 * QuantizationArgs.model_dump(), keys sorted as llm-compressor writes them, less `scale_dtype` and
 * `zp_dtype`: fp8q's are always null (their default), and they exist only from compressed-tensors
 * 0.13, while 0.11 and 0.12 forbid unknown QuantizationArgs keys (`extra="forbid"`). Without them
 * every key written exists from 0.11.0 on (block strategy, block_structure, transform_config).
 */
export interface QuantizationArgsJson {
  actorder: null;
  block_structure: [number, number] | null;
  dynamic: boolean;
  group_size: number | null;
  num_bits: 8;
  observer: string | null;
  observer_kwargs: Record<string, never>;
  strategy: 'block' | 'group';
  symmetric: true;
  type: 'float';
}

export interface QuantizationSchemeJson {
  format: typeof FLOAT_QUANTIZED;
  input_activations: QuantizationArgsJson;
  output_activations: null;
  targets: ['Linear'];
  weights: QuantizationArgsJson;
}

export interface CompressedTensorsQuantizationConfig {
  config_groups: Record<string, QuantizationSchemeJson>;
  format: typeof FLOAT_QUANTIZED;
  global_compression_ratio: null;
  ignore: string[];
  kv_cache_scheme: null;
  quant_method: typeof COMPRESSED_TENSORS_QUANT_METHOD;
  quantization_status: 'compressed';
  transform_config: Record<string, never>;
  version: string;
}

/** The FP8_BLOCK scheme for a block shape: weights in bn×bk blocks, activations in groups of bk. */
export function fp8BlockScheme(block: BlockShape): QuantizationSchemeJson {
  return {
    format: FLOAT_QUANTIZED,
    input_activations: {
      actorder: null,
      block_structure: null,
      dynamic: true,
      // The activation group must equal the weight block's width so each K block has one
      // activation scale (the FP8Converter uses weight_block_size[-1] the same way).
      group_size: block.bk,
      num_bits: 8,
      observer: null,
      observer_kwargs: {},
      strategy: 'group',
      symmetric: true,
      type: 'float',
    },
    output_activations: null,
    targets: ['Linear'],
    weights: {
      actorder: null,
      block_structure: [block.bn, block.bk],
      dynamic: false,
      group_size: null,
      num_bits: 8,
      observer: 'memoryless_minmax',
      observer_kwargs: {},
      strategy: 'block',
      symmetric: true,
      type: 'float',
    },
  };
}

/**
 * `quantization_config` for a plan. Callers check first that the plan fits the format
 * (E4M3 weights, dynamic activations): see output-format.ts.
 */
export function compressedTensorsConfigOf(plan: PlannedQuantization): CompressedTensorsQuantizationConfig {
  return {
    config_groups: { [CONFIG_GROUP_NAME]: fp8BlockScheme(plan.settings.block) },
    format: FLOAT_QUANTIZED,
    global_compression_ratio: null,
    // compressed-tensors matches ignore entries against full module names (or `re:` patterns),
    // which is what notConverted holds; embeddings are not Linear, so they need no entry.
    ignore: [...plan.notConverted],
    kv_cache_scheme: null,
    quant_method: COMPRESSED_TENSORS_QUANT_METHOD,
    quantization_status: 'compressed',
    transform_config: {},
    version: COMPRESSED_TENSORS_VERSION,
  };
}

// ---- reading ----

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Formats whose weights are stored as plain FP8 beside a `weight_scale` (naive is the same bytes). */
const FP8_STORAGE_FORMATS = new Set([FLOAT_QUANTIZED, 'naive-quantized']);

/**
 * Preset names a config group may use instead of a scheme (`{"FP8_BLOCK": ["Linear"]}`:
 * QuantizationConfig.model_post_init expands them). Only the block preset is one fp8q reads.
 */
function expandPreset(name: string, targets: unknown): Record<string, unknown> | undefined {
  if (name.toUpperCase() !== 'FP8_BLOCK' || !Array.isArray(targets)) return undefined;
  return { ...fp8BlockScheme({ bn: 128, bk: 128 }), targets };
}

function describeArgs(w: Record<string, unknown>): string {
  const keys = ['num_bits', 'type', 'strategy', 'block_structure', 'group_size'];
  return `{${keys
    .filter((k) => w[k] !== undefined && w[k] !== null)
    .map((k) => `${k}: ${JSON.stringify(w[k])}`)
    .join(', ')}}`;
}

function parseBlockStructure(value: unknown, where: string): BlockShape {
  // Old compressed-tensors releases wrote "128x128"; quant_args.py still accepts it.
  const dims = typeof value === 'string' ? value.split('x').map((x) => Number(x)) : value;
  if (!Array.isArray(dims) || dims.length !== 2 || !dims.every((d) => Number.isSafeInteger(d) && (d as number) > 0)) {
    throw new QuantizationConfigError(`${where}: block_structure ${JSON.stringify(value)} is not two positive integers [rows, cols]`);
  }
  return { bn: dims[0] as number, bk: dims[1] as number };
}

function activationSchemeOf(input: unknown, where: string): ActivationScheme {
  if (input === null || input === undefined) return 'none';
  if (!isRecord(input)) throw new QuantizationConfigError(`${where}: input_activations is not an object`);
  if (input['type'] !== 'float' || input['num_bits'] !== 8) {
    throw new QuantizationConfigError(`${where}: input_activations ${describeArgs(input)} are not FP8; fp8q reads FP8 activations or none`);
  }
  const dynamic = input['dynamic'];
  if (dynamic === true) return 'dynamic';
  if (dynamic === false || dynamic === undefined) return 'static';
  throw new QuantizationConfigError(`${where}: input_activations.dynamic ${JSON.stringify(dynamic)} is not a scheme fp8q reads (true or false)`);
}

/**
 * Reads a `compressed-tensors` quantization_config whose quantized groups are all block FP8
 * with one block shape. Anything else (int4, NVFP4, per-channel FP8, several block shapes) is a
 * QuantizationConfigError naming the group.
 */
export function parseCompressedTensorsConfig(qc: Readonly<Record<string, unknown>>): QuantizedFormat {
  const where = 'quantization_config (quant_method "compressed-tensors")';
  const groups = qc['config_groups'];
  if (!isRecord(groups) || Object.keys(groups).length === 0) {
    throw new QuantizationConfigError(`${where} has no config_groups: not a quantized checkpoint fp8q can read`);
  }
  const topFormat = qc['format'];
  let block: BlockShape | undefined;
  let activationScheme: ActivationScheme | undefined;
  for (const [name, raw] of Object.entries(groups)) {
    const gWhere = `${where}, config_groups.${name}`;
    const group = isRecord(raw) ? raw : expandPreset(name, raw);
    if (!group) throw new QuantizationConfigError(`${gWhere} is neither a scheme nor the FP8_BLOCK preset`);
    const w = group['weights'];
    if (!isRecord(w)) throw new QuantizationConfigError(`${gWhere} quantizes no weights; fp8q reads block-FP8 weight checkpoints only`);
    if (w['num_bits'] !== 8 || w['type'] !== 'float' || w['strategy'] !== 'block') {
      throw new QuantizationConfigError(`${gWhere} has weights ${describeArgs(w)}; fp8q reads block FP8 only (num_bits 8, type "float", strategy "block")`);
    }
    if (w['symmetric'] === false) throw new QuantizationConfigError(`${gWhere} has asymmetric weights; block FP8 is symmetric`);
    const format = group['format'] ?? topFormat;
    if (typeof format === 'string' && !FP8_STORAGE_FORMATS.has(format)) {
      throw new QuantizationConfigError(`${gWhere} is stored as "${format}"; fp8q reads "${FLOAT_QUANTIZED}" (FP8 weight + weight_scale)`);
    }
    const b = parseBlockStructure(w['block_structure'], gWhere);
    if (block && (block.bn !== b.bn || block.bk !== b.bk)) {
      throw new QuantizationConfigError(`${gWhere} uses block ${b.bn}x${b.bk} but another group uses ${block.bn}x${block.bk}; fp8q reads one block shape per checkpoint`);
    }
    block = b;
    const a = activationSchemeOf(group['input_activations'], gWhere);
    if (activationScheme && activationScheme !== a) {
      throw new QuantizationConfigError(`${gWhere} quantizes activations "${a}" but another group "${activationScheme}"; fp8q reads one scheme per checkpoint`);
    }
    activationScheme = a;
  }
  const ignore = qc['ignore'];
  return {
    format: 'compressed-tensors',
    quantMethod: COMPRESSED_TENSORS_QUANT_METHOD,
    scaleSuffix: COMPRESSED_TENSORS_SCALE_SUFFIX,
    block: block!,
    // num_bits 8 + type float is float8_e4m3fn in compressed-tensors (QuantizationArgs.pytorch_dtype).
    fmt: 'e4m3',
    scaleFormat: 'float',
    activationScheme: activationScheme!,
    ignore: Array.isArray(ignore) ? ignore.filter((x): x is string => typeof x === 'string') : [],
  };
}
