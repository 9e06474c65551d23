// Which block-FP8 layout a checkpoint is in, decided in one place for every reader (inspect,
// dequant, verify): from config.json's quantization_config, checked against the tensor names.
// The two layouts hold the same FP8 codes and the same scale values; they differ in the scale
// tensor's name and in the config (formats/hf-fp8.ts, formats/compressed-tensors.ts).

import type { ModelConfig } from '../checkpoint/checkpoint.js';
import { COMPRESSED_TENSORS_QUANT_METHOD, parseCompressedTensorsConfig } from './compressed-tensors.js';
import { QuantizationConfigError, type QuantizedFormat, type ScaleSuffix } from './descriptor.js';
import { fusedProjectionOfTensor } from './expert-tensor-names.js';
import { HF_FP8_QUANT_METHOD, parseHfFp8Config } from './hf-fp8.js';

export {
  CHECKPOINT_FORMATS,
  QuantizationConfigError,
  type ActivationScheme,
  type CheckpointFormat,
  type QuantizedFormat,
  type ScaleSuffix,
} from './descriptor.js';

const SCALE_SUFFIXES: readonly ScaleSuffix[] = ['weight_scale_inv', 'weight_scale'];

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function scaleTensorOf(name: string): ScaleSuffix | undefined {
  return SCALE_SUFFIXES.find((s) => name.endsWith(`.${s}`));
}

/**
 * The layout of a quantized checkpoint, or undefined for an unquantized one (no
 * quantization_config and no scale tensors). Throws QuantizationConfigError for a config fp8q
 * cannot read, and when config and tensor names disagree (a compressed-tensors config over
 * `weight_scale_inv` tensors, scales without a config …): reading such a checkpoint with either
 * convention would silently dequantize nothing.
 */
export function detectQuantizedFormat(config: ModelConfig | undefined, tensorNames: Iterable<string>): QuantizedFormat | undefined {
  const names = [...tensorNames];
  const qc = config?.['quantization_config'];
  if (qc === undefined || qc === null) {
    const scale = names.find((n) => scaleTensorOf(n) !== undefined);
    if (scale) {
      throw new QuantizationConfigError(
        `tensor "${scale}" is a block scale but config.json has no quantization_config, so the block shape is unknown: restore the config.json the checkpoint was published with`,
      );
    }
    return undefined;
  }
  if (!isRecord(qc)) throw new QuantizationConfigError(`config.json's quantization_config is ${JSON.stringify(qc)}, not an object`);
  const method = qc['quant_method'];
  let qf: QuantizedFormat;
  if (method === HF_FP8_QUANT_METHOD) qf = parseHfFp8Config(qc);
  else if (method === COMPRESSED_TENSORS_QUANT_METHOD) qf = parseCompressedTensorsConfig(qc);
  else {
    throw new QuantizationConfigError(`config.json has quant_method ${JSON.stringify(method)}; fp8q reads block-FP8 checkpoints in the "fp8" (hf) or "compressed-tensors" format`);
  }
  // Fused experts carry `<tensor>_scale_inv` (`experts.gate_up_proj_scale_inv`): a gpt-oss conversion may hold no other scale.
  const fusedSuffix = qf.scaleSuffix.replace(/^weight/, '');
  const isFusedScale = (n: string): boolean => n.endsWith(fusedSuffix) && fusedProjectionOfTensor(n.slice(0, -fusedSuffix.length)) !== undefined;
  if (!names.some((n) => n.endsWith(`.${qf.scaleSuffix}`) || isFusedScale(n))) {
    const other = names.find((n) => scaleTensorOf(n) !== undefined);
    throw new QuantizationConfigError(
      other
        ? `config.json says quant_method "${method}" (scales named "*.${qf.scaleSuffix}"), but tensor "${other}" is named for the other format: the config and the weights do not belong together`
        : `config.json says quant_method "${method}", but no tensor is named "*.${qf.scaleSuffix}": the checkpoint holds no block scales`,
    );
  }
  return qf;
}

/** The scale tensor of a quantized module (`model.layers.0.mlp.down_proj` → `….weight_scale`). */
export function scaleTensorName(modulePath: string, qf: Pick<QuantizedFormat, 'scaleSuffix'>): string {
  return `${modulePath}.${qf.scaleSuffix}`;
}

export interface QuantizedWeight {
  /** `<module>` for `<module>.weight`; the tensor name itself for fused experts stored without `.weight`. */
  readonly module: string;
  readonly weight: string;
  readonly scale: string;
}

/**
 * Every quantized weight with its scale, in name order. The scale is the weight's name plus the
 * suffix's tail (`weight` + `_scale_inv` → `weight_scale_inv`), the rule that also names fused
 * expert scales (`experts.gate_up_proj_scale_inv`, DeepSeek's fp8_cast_bf16.py and transformers
 * use it). A `<module>.<scaleSuffix>` without its `<module>.weight` is an error.
 */
export function quantizedWeightsOf(qf: Pick<QuantizedFormat, 'scaleSuffix'>, tensorNames: Iterable<string>): QuantizedWeight[] {
  const names = new Set(tensorNames);
  const tail = qf.scaleSuffix.slice('weight'.length);
  const suffix = `.${qf.scaleSuffix}`;
  const out: QuantizedWeight[] = [];
  for (const weight of [...names].sort()) {
    const scale = `${weight}${tail}`;
    if (!names.has(scale)) continue;
    out.push({ module: weight.endsWith('.weight') ? weight.slice(0, -'.weight'.length) : weight, weight, scale });
  }
  const paired = new Set(out.map((w) => w.scale));
  const orphan = [...names].sort().find((n) => n.endsWith(suffix) && !paired.has(n));
  if (orphan) throw new QuantizationConfigError(`tensor "${orphan}" has no "${orphan.slice(0, -suffix.length)}.weight" beside it: the checkpoint is incomplete`);
  return out;
}
