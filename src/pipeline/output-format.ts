// The output-format layer of `fp8q convert`: the pass plans in the hf layout; this turns that
// plan into the chosen layout (tensor names) and makes its quantization_config. Only names and
// config differ between layouts: the executors write the same codes and scale values either way.

import type { ConvertPlan, PlanEntry } from '../passes/plan.js';
import { CheckpointError } from '../io/errors.js';
import { compressedTensorsConfigOf, COMPRESSED_TENSORS_SCALE_SUFFIX, type CompressedTensorsQuantizationConfig } from '../io/formats/compressed-tensors.js';
import type { CheckpointFormat } from '../io/formats/descriptor.js';
import { HF_FP8_SCALE_SUFFIX, quantizationConfigOf, type QuantizationConfig } from '../io/formats/hf-fp8.js';

/** What lands in config.json's `quantization_config`. */
export type WrittenQuantizationConfig = QuantizationConfig | CompressedTensorsQuantizationConfig;

/** A setting the chosen output format cannot express (E5M2 in compressed-tensors …). */
export class OutputFormatError extends CheckpointError {
  constructor(message: string) {
    super(message);
    this.name = 'OutputFormatError';
  }
}

export interface FormattedPlan {
  readonly plan: ConvertPlan;
  readonly quantizationConfig: WrittenQuantizationConfig;
  /** Things the format cannot say about this conversion; the conversion still goes ahead. */
  readonly warnings: readonly string[];
}

/** Throws OutputFormatError when the plan's settings cannot be written in `format`. */
export function checkOutputFormat(plan: Pick<ConvertPlan, 'settings'>, format: CheckpointFormat): void {
  if (format !== 'compressed-tensors') return;
  if (plan.settings.format !== 'e4m3fn') {
    throw new OutputFormatError(
      'compressed-tensors has no E5M2 weights (num_bits 8 + type "float" means float8_e4m3fn): use --weight-dtype float8_e4m3fn, or --format hf for E5M2',
    );
  }
  if (plan.settings.activationScheme !== 'dynamic') {
    throw new OutputFormatError('compressed-tensors FP8_BLOCK has dynamic activations only (vLLM rejects static block activation scales): use --format hf');
  }
}

/** Entries that write FP8 codes beside a scale: every kind but plain copies and dequantization. */
function writesScales(entry: PlanEntry): boolean {
  return entry.op !== 'copy' && entry.op !== 'dequantize';
}

/**
 * `<module>.weight_scale_inv` → `<module>.weight_scale`. Fused expert projections stored without
 * `.weight` (`experts.gate_up_proj_scale_inv`) follow the same rule: the `_inv` goes.
 */
function renameScales(entry: PlanEntry): PlanEntry {
  if (!writesScales(entry)) return entry;
  const rename = (name: string): string =>
    name.endsWith(`.${HF_FP8_SCALE_SUFFIX}`)
      ? `${name.slice(0, -HF_FP8_SCALE_SUFFIX.length)}${COMPRESSED_TENSORS_SCALE_SUFFIX}`
      : name.endsWith('_scale_inv')
        ? name.slice(0, -'_inv'.length)
        : name;
  return { ...entry, outputs: entry.outputs.map((o) => ({ ...o, name: rename(o.name) })) };
}

export function applyOutputFormat(plan: ConvertPlan, format: CheckpointFormat): FormattedPlan {
  checkOutputFormat(plan, format);
  if (format === 'hf') return { plan, quantizationConfig: quantizationConfigOf(plan), warnings: [] };
  const mla = plan.entries.find((e) => e.op === 'mla-split');
  if (mla) {
    throw new OutputFormatError(
      `the DeepSeek MLA split (${mla.outputs.map((o) => o.name).join(', ')}) is MLC LLM's layout, which reads the hf format only; vLLM's compressed-tensors loader expects kv_b_proj whole: convert with --format hf, or without the MLA split`,
    );
  }
  const warnings: string[] = [];
  if (plan.settings.scaleFormat === 'ue8m0') {
    warnings.push(
      'compressed-tensors has no field for power-of-two scales: the weight_scale values are powers of two, but the config cannot say so (fp8q inspect finds it from the values)',
    );
  }
  const stacked = plan.entries.filter((e) => writesScales(e) && e.outputs[0]!.shape.length === 3);
  if (stacked.length > 0) {
    warnings.push(
      `${stacked.length} stacked expert weight(s) (e.g. "${stacked[0]!.outputs[0]!.name}") stay 3-D; llm-compressor splits fused experts into per-expert 2-D linears, and vLLM's compressed-tensors MoE loader expects that layout`,
    );
  }
  const formatted: ConvertPlan = { ...plan, entries: plan.entries.map(renameScales) };
  return { plan: formatted, quantizationConfig: compressedTensorsConfigOf(formatted), warnings };
}
