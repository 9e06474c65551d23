// The static activation scheme in the plan: one `activation-scale` entry beside every quantized
// 2-D linear, named `<module>.activation_scale`, F32. What readers expect (looked up in their
// sources):
//   - MLC LLM `BlockScaleQuantizeLinearStaticActivation` (quantization/block_scale_quantization.py):
//     `activation_scale` float32 `[ceil(in_features / block_size[1])]`, 1-D (its
//     static_activation_group_quant_fp8 asserts ndim == 1 and indexes scale[j // group]). Its
//     `BlockScaleQuantizeMixtralExperts` has no activation scale: experts quantize dynamically.
//   - transformers 5 fine-grained FP8 (integrations/finegrained_fp8.py): `FP8Linear` under
//     `activation_scheme: "static"` has `activation_scale`, a 0-dim float32 scalar, used as
//     `(input / scale).clamp(...)`; `FP8Experts` has `gate_up_proj_activation_scale` /
//     `down_proj_activation_scale`, one scalar per expert.
//   - vLLM `fp8` (layers/quantization/fp8.py): a per-tensor static scale is `input_scale`, and
//     block-quantized weights refuse static activations (`if self.block_quant: assert not
//     self.act_q_static`), so no vLLM loader reads block FP8 with static scales.
//   - compressed-tensors (quantization/lifecycle/initialize.py): static `input_activations` give
//     `input_scale` `[1]` (strategy tensor) or `[ceil(K/group_size)]` (group), in the weight's
//     dtype; fp8q's compressed-tensors output keeps dynamic activations (pipeline/output-format.ts).
// So: granularity 'group' writes `[ceil(K/bk)]` (MLC), 'tensor' writes a 0-dim scalar
// (transformers). Experts get per-expert scales too (measured on their routed tokens), for
// runtimes that quantize expert activations statically; MLC's experts module ignores them.

import { CheckpointError } from '../io/errors.js';
import type { ActivationScaleEntry, ConvertPlan, PlanEntry } from './plan.js';
import { plannedOutput } from './plan.js';

export type ActivationScaleGranularity = ActivationScaleEntry['granularity'];

export const ACTIVATION_SCALE_SUFFIX = 'activation_scale';

/** A plan the static scheme cannot annotate (stacked experts …), with what to do instead. */
export class StaticActivationPlanError extends CheckpointError {
  constructor(message: string) {
    super(message);
    this.name = 'StaticActivationPlanError';
  }
}

function scaleEntry(module: string, inFeatures: number, granularity: ActivationScaleGranularity, bk: number): ActivationScaleEntry {
  const shape = granularity === 'group' ? [Math.ceil(inFeatures / bk)] : [];
  return {
    op: 'activation-scale',
    module,
    granularity,
    inFeatures,
    sources: [],
    outputs: [plannedOutput(`${module}.${ACTIVATION_SCALE_SUFFIX}`, 'F32', shape)],
  };
}

/** Entries whose activation scale the forward can measure: 2-D linears (per-expert included). */
function linearOf(e: PlanEntry): { module: string; inFeatures: number } | undefined {
  if (e.op !== 'quantize' && e.op !== 'requantize') return undefined;
  const w = e.outputs[0]!;
  return w.shape.length === 2 ? { module: e.module, inFeatures: w.shape[1]! } : undefined;
}

/**
 * Adds an activation-scale entry for every quantized 2-D linear of `plan`. MLA's w_uk / w_uv are
 * skipped: MLC's absorbed attention multiplies them in einsums, not through a quantized linear,
 * and they carry no activation scale there.
 */
export function withActivationScaleEntries(plan: ConvertPlan, granularity: ActivationScaleGranularity): ConvertPlan {
  const stacked = plan.entries.find(
    (e) => e.op === 'stack-experts' || e.op === 'quantize-in-out' || ((e.op === 'quantize' || e.op === 'requantize') && e.outputs[0]!.shape.length !== 2),
  );
  if (stacked) {
    throw new StaticActivationPlanError(
      `static activation scales are measured per 2-D linear; "${stacked.outputs[0]!.name}" is a stacked [E, N, K] expert weight ` +
        '(--stack-experts, or a checkpoint with fused experts): convert without --stack-experts, or with --activation-scheme dynamic',
    );
  }
  const added: PlanEntry[] = [];
  for (const e of plan.entries) {
    const linear = linearOf(e);
    if (linear) added.push(scaleEntry(linear.module, linear.inFeatures, granularity, plan.settings.block.bk));
  }
  return { ...plan, settings: { ...plan.settings, activationScheme: 'static' }, entries: [...plan.entries, ...added] };
}

/** The modules of a plan's activation-scale entries, with their input features. */
export function activationScaleTargets(plan: ConvertPlan): { module: string; inFeatures: number }[] {
  return plan.entries.filter((e): e is ActivationScaleEntry => e.op === 'activation-scale').map((e) => ({ module: e.module, inFeatures: e.inFeatures }));
}
