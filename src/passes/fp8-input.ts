// FP8 checkpoints as input: which tensors are FP8 weights, where each one's scale is and how its
// block grid lies, from names, shapes, dtypes and config.json (no bytes). The layouts met in the
// wild differ only in details this records:
// - DeepSeek-V3's release: F8_E4M3 `<m>.weight` + F32 `<m>.weight_scale_inv`, quantization_config
//   {quant_method "fp8", fmt "e4m3", weight_block_size [128, 128]} — also what fp8q writes.
// - Qwen3-FP8 (e.g. Qwen3-32B-FP8): the same with BF16 scales (vLLM's HabanaAI fork PR #2141;
//   lmdeploy PR #4276 met F16 scales in Qwen3-4B-Instruct-2507-FP8).
// - transformers' fine-grained FP8 output: no `fmt` in the config; fused experts, where present,
//   are `experts.gate_up_proj` + `experts.gate_up_proj_scale_inv` (scale = tensor name +
//   `_scale_inv`, the rule DeepSeek's fp8_cast_bf16.py uses too).
// Block sizes and the scale suffix come from io/formats/quantized-format.ts (hf or compressed-tensors).

import type { Dtype } from '../fp8/dtypes.js';
import { isFp8Dtype } from '../fp8/dtypes.js';
import type { ModelConfig } from '../io/checkpoint/checkpoint.js';
import { detectQuantizedFormat, QuantizationConfigError, type QuantizedFormat } from '../io/formats/quantized-format.js';
import { fusedExpertLayout, fusedProjectionOfTensor } from './fused-experts.js';
import type { Fp8SourceRef, SourceTensor } from './plan.js';

export interface Fp8Input {
  readonly format: QuantizedFormat;
  /** FP8 weight tensor → its scale and block grid. */
  readonly weights: ReadonlyMap<string, Fp8SourceRef>;
  readonly scaleTensors: ReadonlySet<string>;
  /** Static activation scales of quantized modules (dropped when the weights leave FP8). */
  readonly activationScales: ReadonlySet<string>;
  readonly weightDtypes: readonly Dtype[];
  readonly scaleDtypes: readonly Dtype[];
  /** Whose layout this looks like, for inspect. */
  readonly layoutLabel: string;
  /** Tensors whose scale grid is per tensor (one scale) rather than per block. */
  readonly perTensor: number;
}

function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** The MLA split's w_uk (H, kv_lora, nope) has bk rows × bn columns per block (passes/mla-split.ts). */
function isTransposedBlockTensor(name: string): boolean {
  return name.endsWith('.w_uk');
}

/**
 * Describes an FP8 checkpoint, or returns undefined for an unquantized one. Throws
 * QuantizationConfigError (a CheckpointError) for an FP8 weight without a scale, a scale without
 * an FP8 weight, or FP8 tensors without a quantization_config.
 */
export function describeFp8Input(config: ModelConfig | undefined, tensors: readonly SourceTensor[]): Fp8Input | undefined {
  const format = detectQuantizedFormat(
    config,
    tensors.map((t) => t.name),
  );
  const fp8Tensors = tensors.filter((t) => isFp8Dtype(t.dtype));
  if (!format) {
    if (fp8Tensors.length === 0) return undefined;
    throw new QuantizationConfigError(
      `tensor "${fp8Tensors[0]!.name}" is ${fp8Tensors[0]!.dtype} but config.json has no quantization_config: the block size of its scales is unknown`,
    );
  }
  const byName = new Map(tensors.map((t) => [t.name, t]));
  // `weight_scale_inv` = `weight` + `_scale_inv`: the same tail serves fused tensors without `.weight`.
  const tail = format.scaleSuffix.slice('weight'.length);
  const { bn, bk } = format.block;
  const weights = new Map<string, Fp8SourceRef>();
  const scaleTensors = new Set<string>();
  let perTensor = 0;
  for (const t of fp8Tensors) {
    const scaleName = `${t.name}${tail}`;
    const scale = byName.get(scaleName);
    if (!scale) {
      throw new QuantizationConfigError(`tensor "${t.name}" is ${t.dtype} but has no "${scaleName}" beside it: its values cannot be recovered (the checkpoint is incomplete)`);
    }
    scaleTensors.add(scaleName);
    const rank = t.shape.length;
    const rows = rank >= 2 ? t.shape[rank - 2]! : 1;
    const cols = t.shape[rank - 1] ?? 1;
    const lead = rank > 2 ? elementCount(t.shape.slice(0, -2)) : 1;
    let ref: Fp8SourceRef;
    if (elementCount(scale.shape) === lead && (rows > bn || cols > bk)) {
      // One scale per matrix: a per-tensor (or per-expert) scale, as some exporters write.
      ref = { scale: scaleName, rowBlock: rows, colBlock: cols, scaleTransposed: false };
      perTensor++;
    } else if (isTransposedBlockTensor(t.name)) {
      ref = { scale: scaleName, rowBlock: bk, colBlock: bn, scaleTransposed: false };
    } else {
      const projection = rank === 3 ? fusedProjectionOfTensor(t.name) : undefined;
      const inOut = projection !== undefined && fusedExpertLayout(config, t.name, projection, t.shape, tensors).layout === 'in_out';
      ref = inOut ? { scale: scaleName, rowBlock: bk, colBlock: bn, scaleTransposed: true } : { scale: scaleName, rowBlock: bn, colBlock: bk, scaleTransposed: false };
    }
    weights.set(t.name, ref);
  }
  for (const t of tensors) {
    if (!t.name.endsWith(tail) || scaleTensors.has(t.name)) continue;
    const base = byName.get(t.name.slice(0, -tail.length));
    if (base && !isFp8Dtype(base.dtype)) {
      throw new QuantizationConfigError(`tensor "${t.name}" is a block scale, but "${base.name}" beside it is ${base.dtype}, not FP8: the checkpoint mixes formats`);
    }
  }
  const activationScales = new Set<string>();
  for (const t of tensors) {
    const m = /^(.*)\.(activation_scale|input_scale)$/.exec(t.name);
    if (m && weights.has(`${m[1]}.weight`)) activationScales.add(t.name);
  }
  const scaleDtypes = [...new Set([...scaleTensors].map((s) => byName.get(s)!.dtype))].sort();
  const weightDtypes = [...new Set(fp8Tensors.map((t) => t.dtype))].sort();
  return { format, weights, scaleTensors, activationScales, weightDtypes, scaleDtypes, layoutLabel: layoutLabel(config, format, scaleDtypes), perTensor };
}

function layoutLabel(config: ModelConfig | undefined, format: QuantizedFormat, scaleDtypes: readonly Dtype[]): string {
  if (format.format === 'compressed-tensors') return `compressed-tensors (llm-compressor), ${scaleDtypes.join('/')} weight_scale`;
  const qc = config?.['quantization_config'] as Record<string, unknown> | undefined;
  const noFmt = qc !== undefined && qc['fmt'] === undefined;
  const who =
    scaleDtypes.length === 1 && scaleDtypes[0] === 'F32'
      ? noFmt
        ? "transformers' fine-grained FP8 (F32 scales, no fmt)"
        : 'DeepSeek-V3 / fp8q (F32 scales)'
      : scaleDtypes.includes('BF16') || scaleDtypes.includes('F16')
        ? `Qwen3-FP8 style (${scaleDtypes.join('/')} scales${noFmt ? ', no fmt' : ''})`
        : `${scaleDtypes.join('/')} scales`;
  return `hf fp8, ${who}`;
}
