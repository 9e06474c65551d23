// ConvertPlan: what every source tensor becomes, as data. Built before any byte moves, printed by
// --dry-run, and executed by io/convert-checkpoint. Each entry is one operation with its sources
// and outputs, so new module kinds (MLA split, stacked experts) add entry kinds, not special cases.

import type { Dtype } from '../fp8/dtypes.js';
import type { BlockShape, ScaleFormat } from '../fp8/block-quantize.js';
import type { Fp8Format } from '../fp8/formats.js';
import { dtypeSize } from '../fp8/dtypes.js';

/** A checkpoint tensor as the passes see it: name, dtype and shape, no bytes. */
export interface SourceTensor {
  readonly name: string;
  readonly dtype: Dtype;
  readonly shape: readonly number[];
}

export interface PlannedOutput {
  readonly name: string;
  readonly dtype: Dtype;
  readonly shape: readonly number[];
  readonly byteLength: number;
}

export type QuantizedModuleKind = 'BlockScaleQuantizeLinear' | 'BlockScaleQuantizeLinearStaticActivation' | 'BlockScaleQuantizeMixtralExperts';

interface EntryBase {
  /** Source tensor names this entry reads. */
  readonly sources: readonly string[];
  readonly outputs: readonly PlannedOutput[];
}

/** Copied through byte for byte. */
export interface CopyEntry extends EntryBase {
  readonly op: 'copy';
  /** Why it is not quantized (rule name), for --dry-run and inspect. */
  readonly reason: string;
}

/** A 2-D weight [N, K] (or 3-D stacked experts [E, N, K]) → FP8 codes + weight_scale_inv. */
export interface QuantizeEntry extends EntryBase {
  readonly op: 'quantize';
  readonly module: string;
  readonly kind: QuantizedModuleKind;
}

export type { Fp8SourceRef } from '../io/formats/descriptor.js';
import type { Fp8SourceRef } from '../io/formats/descriptor.js';

/** FP8 source tensors of an entry → their scales; absent for BF16/FP16/FP32 sources. */
export type Fp8Sources = Readonly<Record<string, Fp8SourceRef>>;

/**
 * A fused expert weight stored in × out, `[E, K, N]` (gpt-oss, Llama-4: `x @ W`). Kept in its
 * stored layout; blocks run over (out, in) of the math: bk stored rows × bn stored columns, and
 * `weight_scale_inv` is `[E, ceil(N/bn), ceil(K/bk)]` like every other fp8q scale.
 */
export interface QuantizeInOutEntry extends EntryBase {
  readonly op: 'quantize-in-out';
  readonly module: string;
  readonly kind: QuantizedModuleKind;
  readonly fp8?: Fp8Sources;
}

/**
 * DeepSeek MLA (docs/FORMAT.md §4): `kv_b_proj.weight [H*(nope+v), kv_lora]` → `w_uk
 * (H, kv_lora, nope)` and `w_uv (H, v, kv_lora)` in FP8, in MLC LLM's layout. 'move-blocks':
 * the head dims align with the block, so w_uk/w_uv are the blocks of the quantized kv_b_proj,
 * moved. 'own-grid': they do not; each head's w_uk and w_uv are quantized from the source with
 * their own ceil-sized grids (see passes/mla-split.ts for the axes).
 */
export interface MlaSplitEntry extends EntryBase {
  readonly op: 'mla-split';
  /** The attention module (`model.layers.3.self_attn`). */
  readonly module: string;
  readonly heads: number;
  readonly kvLoraRank: number;
  readonly nopeHeadDim: number;
  readonly vHeadDim: number;
  readonly method: 'move-blocks' | 'own-grid';
  readonly fp8?: Fp8Sources;
}

/**
 * Per-expert 2-D weights written as one stacked `[E, N, K]` FP8 tensor (--stack-experts).
 * `parts[e]` lists expert e's source weights, concatenated along N (gate then up for gate_up_proj).
 */
export interface StackExpertsEntry extends EntryBase {
  readonly op: 'stack-experts';
  /** The stacked tensor's name (`model.layers.1.mlp.experts.gate_up_proj`). */
  readonly module: string;
  readonly kind: 'BlockScaleQuantizeMixtralExperts';
  readonly parts: readonly (readonly string[])[];
  readonly fp8?: Fp8Sources;
}

/** An FP8 source weight dequantized to float32 and quantized again with the requested settings (--requantize). */
export interface RequantizeEntry extends EntryBase {
  readonly op: 'requantize';
  readonly module: string;
  readonly kind: QuantizedModuleKind;
  readonly fp8: Fp8Sources;
}

/** An FP8 source weight written as `fp8 × scale_inv`, rounded once to the output dtype (fp8q dequant). */
export interface DequantizeEntry extends EntryBase {
  readonly op: 'dequantize';
  /** The module whose weight this is. */
  readonly module: string;
  readonly reason: string;
  readonly fp8: Fp8Sources;
}

/**
 * `<module>.activation_scale` F32 of a quantized linear under the static activation scheme: no
 * source tensor; its values are measured on calibration data before the shards are written
 * (runtime/calibration/, passes/activation-scales.ts). Shape `[ceil(K/bk)]` (group) or `[]` (tensor).
 */
export interface ActivationScaleEntry extends EntryBase {
  readonly op: 'activation-scale';
  readonly module: string;
  readonly granularity: 'group' | 'tensor';
  /** K, the linear's input features. */
  readonly inFeatures: number;
}

export type PlanEntry = CopyEntry | QuantizeEntry | QuantizeInOutEntry | MlaSplitEntry | StackExpertsEntry | RequantizeEntry | DequantizeEntry | ActivationScaleEntry;

export interface QuantizationSettings {
  readonly format: Fp8Format;
  readonly block: BlockShape;
  readonly scaleFormat: ScaleFormat;
  readonly activationScheme: 'dynamic' | 'static';
}

export interface ModuleDecision {
  readonly module: string;
  readonly decision: QuantizedModuleKind | 'keep';
  readonly reason: string;
}

/** The family recipe a plan followed (passes/family-recipes.ts): printed by --dry-run and inspect. */
export interface PlanRecipe {
  readonly name: string;
  readonly checkedAgainst: string;
  readonly notes: readonly string[];
}

export interface ConvertPlan {
  readonly architecture: string;
  readonly family: string | undefined;
  /** Absent for architectures fp8q does not know (generic rules). */
  readonly recipe?: PlanRecipe;
  readonly settings: QuantizationSettings;
  readonly entries: readonly PlanEntry[];
  readonly modules: readonly ModuleDecision[];
  /** Module paths with a 2-D weight left unquantized (→ modules_to_not_convert). */
  readonly notConverted: readonly string[];
  readonly warnings: readonly string[];
}

export function plannedOutput(name: string, dtype: Dtype, shape: readonly number[]): PlannedOutput {
  let n = 1;
  for (const d of shape) n *= d;
  return { name, dtype, shape, byteLength: n * dtypeSize(dtype) };
}

export interface PlanTotals {
  readonly tensorsIn: number;
  readonly tensorsOut: number;
  readonly quantized: number;
  readonly kept: number;
  readonly bytesOut: number;
}

export function planTotals(plan: ConvertPlan, sourceBytes: (name: string) => number): PlanTotals & { bytesIn: number } {
  let quantized = 0;
  let kept = 0;
  let bytesOut = 0;
  let tensorsOut = 0;
  const sources = new Set<string>();
  for (const e of plan.entries) {
    if (e.op === 'copy') kept++;
    else if (e.op !== 'activation-scale') quantized++;
    for (const s of e.sources) sources.add(s);
    for (const o of e.outputs) {
      bytesOut += o.byteLength;
      tensorsOut++;
    }
  }
  let bytesIn = 0;
  for (const s of sources) bytesIn += sourceBytes(s);
  return { tensorsIn: sources.size, tensorsOut, quantized, kept, bytesOut, bytesIn };
}
