// What a block-FP8 checkpoint's config says, independent of how it says it: the record both
// on-disk formats (hf-fp8.ts, compressed-tensors.ts) parse into, and the error they raise. The
// entry point for readers is ../quantized-format.ts.

import type { BlockShape, ScaleFormat } from '../../fp8/block-quantize.js';
import { CheckpointError } from '../errors.js';

/** The two on-disk layouts fp8q writes and reads. */
export type CheckpointFormat = 'hf' | 'compressed-tensors';

export const CHECKPOINT_FORMATS: readonly CheckpointFormat[] = ['hf', 'compressed-tensors'];

/** Name of the per-block scale tensor beside `<module>.weight`. Same values in both formats. */
export type ScaleSuffix = 'weight_scale_inv' | 'weight_scale';

/** How activations are quantized at run time; 'none' is weight-only (W8A16). */
export type ActivationScheme = 'dynamic' | 'static' | 'none';

export interface QuantizedFormat {
  readonly format: CheckpointFormat;
  /** `quant_method` in config.json: "fp8" or "compressed-tensors". */
  readonly quantMethod: string;
  readonly scaleSuffix: ScaleSuffix;
  readonly block: BlockShape;
  readonly fmt: 'e4m3' | 'e5m2';
  /**
   * The scale format the config DECLARES. compressed-tensors has no field for it, so its
   * checkpoints always declare 'float'; to learn what the scales are, look at their values
   * (io/scale-survey.ts).
   */
  readonly scaleFormat: ScaleFormat;
  readonly activationScheme: ActivationScheme;
  /** Modules left unquantized: `modules_to_not_convert` (hf) or `ignore` (compressed-tensors; may hold `re:` patterns). */
  readonly ignore: readonly string[];
}

/** A quantization_config fp8q cannot read (another method, another scheme, or malformed). */
export class QuantizationConfigError extends CheckpointError {
  constructor(message: string) {
    super(message);
    this.name = 'QuantizationConfigError';
  }
}
