// ConvertPlan: what every source tensor becomes, as data. Built before any byte moves, printed by
// --dry-run, and executed by io/convert-checkpoint. Each entry is one operation with its sources
// and outputs, so new module kinds (MLA split, stacked experts) add entry kinds, not special cases.

import type { Dtype } from '../fp8/dtypes.js';
import type { BlockShape, ScaleFormat } from '../fp8/block-quantize.js';
import type { Fp8Format } from '../fp8/formats.js';
import { dtypeSize } from '../fp8/dtypes.js';

export interface PlannedOutput {
  readonly name: string;
  readonly dtype: Dtype;
  readonly shape: readonly number[];
  readonly byteLength: number;
}

export type QuantizedModuleKind =
  | 'BlockScaleQuantizeLinear'
  | 'BlockScaleQuantizeLinearStaticActivation'
  | 'BlockScaleQuantizeMixtralExperts';

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

export type PlanEntry = CopyEntry | QuantizeEntry;

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

export interface ConvertPlan {
  readonly architecture: string;
  readonly family: string | undefined;
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
    else quantized++;
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
