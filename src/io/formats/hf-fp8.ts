// The HF / DeepSeek "fp8" block format's `quantization_config` (docs/FORMAT.md §1): writing it from
// a convert plan and reading it back. Tensors: `<module>.weight` FP8 and `<module>.weight_scale_inv`
// F32, the dequantization multiplier per block. Read by transformers' fine-grained FP8, vLLM and
// SGLang's `fp8` method, and MLC LLM (which requires `fmt`).

import type { ScaleFormat } from '../../fp8/block-quantize.js';
import { fp8FormatInfo } from '../../fp8/formats.js';
import { QuantizationConfigError, type QuantizedFormat } from './descriptor.js';
import type { PlannedQuantization } from './descriptor.js';

export const HF_FP8_QUANT_METHOD = 'fp8';
export const HF_FP8_SCALE_SUFFIX = 'weight_scale_inv';

export interface QuantizationConfig {
  quant_method: 'fp8';
  fmt: 'e4m3' | 'e5m2';
  activation_scheme: 'dynamic' | 'static';
  weight_block_size: [number, number];
  modules_to_not_convert: string[];
  /** Present only for power-of-two scales (DeepSeek-V3.1 style); absent means plain float scales. */
  scale_fmt?: 'ue8m0';
}

export function quantizationConfigOf(plan: PlannedQuantization): QuantizationConfig {
  const { settings } = plan;
  const qc: QuantizationConfig = {
    quant_method: 'fp8',
    fmt: fp8FormatInfo(settings.format).fmt,
    activation_scheme: settings.activationScheme,
    weight_block_size: [settings.block.bn, settings.block.bk],
    modules_to_not_convert: [...plan.notConverted],
  };
  if (settings.scaleFormat === 'ue8m0') qc.scale_fmt = 'ue8m0';
  return qc;
}

/**
 * Reads an `fp8` quantization_config. Only `weight_block_size` is required: transformers writes
 * no `fmt` (e4m3 is meant), and DeepSeek-V3's own config has no `modules_to_not_convert`.
 */
export function parseHfFp8Config(qc: Readonly<Record<string, unknown>>): QuantizedFormat {
  const where = 'quantization_config (quant_method "fp8")';
  const wbs = qc['weight_block_size'];
  if (!Array.isArray(wbs) || wbs.length !== 2 || !wbs.every((d) => Number.isSafeInteger(d) && (d as number) > 0)) {
    throw new QuantizationConfigError(
      `${where} has weight_block_size ${JSON.stringify(wbs)}; fp8q reads block-scale checkpoints only (expected two positive integers, e.g. [128, 128])`,
    );
  }
  const fmt = qc['fmt'] ?? 'e4m3';
  if (fmt !== 'e4m3' && fmt !== 'e5m2') throw new QuantizationConfigError(`${where} has fmt ${JSON.stringify(fmt)}; expected "e4m3" or "e5m2"`);
  const scaleFmt = qc['scale_fmt'];
  let scaleFormat: ScaleFormat = 'float';
  if (scaleFmt === 'ue8m0') scaleFormat = 'ue8m0';
  else if (scaleFmt !== undefined && scaleFmt !== null && scaleFmt !== 'float') {
    throw new QuantizationConfigError(`${where} has scale_fmt ${JSON.stringify(scaleFmt)}; fp8q knows "ue8m0" (power-of-two scales) or none`);
  }
  const scheme = qc['activation_scheme'] ?? 'dynamic';
  if (scheme !== 'dynamic' && scheme !== 'static') {
    throw new QuantizationConfigError(`${where} has activation_scheme ${JSON.stringify(scheme)}; expected "dynamic" or "static"`);
  }
  const ignore = qc['modules_to_not_convert'];
  return {
    format: 'hf',
    quantMethod: HF_FP8_QUANT_METHOD,
    scaleSuffix: HF_FP8_SCALE_SUFFIX,
    block: { bn: wbs[0] as number, bk: wbs[1] as number },
    fmt,
    scaleFormat,
    activationScheme: scheme,
    ignore: Array.isArray(ignore) ? ignore.filter((x): x is string => typeof x === 'string') : [],
  };
}
