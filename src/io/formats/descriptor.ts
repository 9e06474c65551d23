// What a block-FP8 checkpoint's config says, independent of how it says it: the record both
// on-disk formats (hf-fp8.ts, compressed-tensors.ts) parse into, and the error they raise. The
// entry point for readers is ../quantized-format.ts.

import type { BlockShape, ScaleFormat } from '../../fp8/block-quantize.js';
import type { Fp8Format } from '../../fp8/formats.js';
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
   * (io/formats/scale-survey.ts).
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

/**
 * Where the dequantization multipliers of an FP8 *source* tensor are (FP8 checkpoints as input).
 * The stored tensor is read as a 2-D matrix per leading index (its last two axes, rows × columns);
 * each scale covers `rowBlock` rows × `colBlock` columns of it.
 */
export interface Fp8SourceRef {
  readonly scale: string;
  readonly rowBlock: number;
  readonly colBlock: number;
  /** true: the scale grid is indexed [column block, row block] (a weight stored in × out). */
  readonly scaleTransposed: boolean;
}

/**
 * What a written `quantization_config` is made from: the settings of a convert plan and the modules
 * it keeps (a ConvertPlan is one). Declared here so the layout writers need nothing of the passes.
 */
export interface PlannedQuantization {
  readonly settings: {
    readonly format: Fp8Format;
    readonly block: BlockShape;
    readonly scaleFormat: ScaleFormat;
    readonly activationScheme: 'dynamic' | 'static';
  };
  readonly notConverted: readonly string[];
}
