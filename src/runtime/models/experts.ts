// One routed expert's weights as a layer runs them, whatever the checkpoint layout: separate
// per-expert linears (`experts.E.gate_proj`/`w1` …) or stacked tensors (`experts.gate_up_proj`
// [E, 2I, K] with gate rows first, `experts.down_proj` [E, H, I]). Stacked gate/up run as one
// fused [2I, K] linear — its block grid may straddle the gate/up boundary, so it cannot be split
// into two block-scale linears — and the output columns are split after. Reports and probes keep
// the per-expert module names (`names`), so a stacked conversion is compared expert by expert
// with its per-expert original.

import { isFp8Dtype } from '../../fp8/dtypes.js';
import type { Checkpoint } from '../../io/checkpoint/checkpoint.js';
import type { MlpNames, MoePlan } from './layer-plan.js';
import type { LinearWeight, StoredTensor, WeightScope } from './weights.js';

/**
 * gpt-oss's stacked experts: gate and up interleaved along gate_up's output (gate = even
 * columns), and per-expert biases added after the (bias-free) linears, so that verify compares
 * the linears themselves.
 */
export interface GptOssExpertExtras {
  readonly gateUpBias: StoredTensor | undefined;
  readonly downBias: StoredTensor | undefined;
}

export type ExpertWeights =
  | { readonly layout: 'separate'; readonly names: MlpNames; readonly gate: LinearWeight; readonly up: LinearWeight; readonly down: LinearWeight }
  | {
      readonly layout: 'fused';
      readonly names: MlpNames;
      readonly gateUp: LinearWeight;
      readonly down: LinearWeight;
      readonly intermediate: number;
      readonly gptOss?: GptOssExpertExtras;
    };

export async function loadExpert(scope: WeightScope, plan: MoePlan, expert: number): Promise<ExpertWeights> {
  const names = plan.experts[expert]!;
  if (plan.stacked) {
    const { gateUp: gu, down: dn, inOut } = plan.stacked;
    const gateUp = await scope.stackedExpert(gu, expert, inOut);
    const down = await scope.stackedExpert(dn, expert, inOut);
    const intermediate = gateUp.weight.shape[0]! / 2;
    if (!inOut) return { layout: 'fused', names, gateUp, down, intermediate };
    const gptOss = { gateUpBias: await scope.stackedBias(`${gu}_bias`, expert), downBias: await scope.stackedBias(`${dn}_bias`, expert) };
    return { layout: 'fused', names, gateUp, down, intermediate, gptOss };
  }
  const load = async (module: string): Promise<LinearWeight> => dynamicActivations(await scope.linear(module));
  return { layout: 'separate', names, gate: await load(names.gate), up: await load(names.up), down: await load(names.down) };
}

/**
 * MLC's BlockScaleQuantizeMixtralExperts has no static variant: experts quantize their
 * activations per token even when the checkpoint carries per-expert activation scales.
 */
function dynamicActivations(w: LinearWeight): LinearWeight {
  if (w.kind !== 'fp8' || w.activationScale === undefined) return w;
  const { activationScale: _ignored, ...rest } = w;
  return rest;
}

/** A projection of an expert in its layout ('gateUp' for fused, 'gate'/'up' for separate). */
export function expertProjection(w: ExpertWeights, projection: 'gateUp' | 'gate' | 'up' | 'down'): LinearWeight {
  if (projection === 'down') return w.down;
  if (w.layout === 'fused' && projection === 'gateUp') return w.gateUp;
  if (w.layout === 'separate' && projection !== 'gateUp') return w[projection];
  throw new Error(`${w.names.gate}: no ${projection} projection in the ${w.layout} layout`);
}

export function expertLinears(w: ExpertWeights): LinearWeight[] {
  return w.layout === 'fused' ? [w.gateUp, w.down] : [w.gate, w.up, w.down];
}

/**
 * Whether the expert runs as MLC LLM's experts op (all its linears FP8: a group of rows through the
 * block-scale GEMM even for one row) rather than as its linears (BlockScaleLinear's GEMV for one
 * row). The forward, verify's probes and the reference forward decide it per expert, this way.
 */
export function runsAsExpertsOp(w: ExpertWeights): boolean {
  return expertLinears(w).every((l) => l.kind === 'fp8');
}

const PER_EXPERT = /^(.*\.experts)\.(\d+)\.([^.]+)$/;
const STACKED_OF: Readonly<Record<string, string>> = {
  gate_proj: 'gate_up_proj',
  gate_up_proj: 'gate_up_proj',
  w1: 'gate_up_proj',
  up_proj: 'gate_up_proj',
  w3: 'gate_up_proj',
  down_proj: 'down_proj',
  w2: 'down_proj',
};

/**
 * The tensor that holds `module`'s weight: `<module>.weight`, or for a per-expert name whose
 * checkpoint stacks its experts, the stacked tensor. Undefined when neither exists.
 */
export function weightTensorOf(ckpt: Checkpoint, module: string): string | undefined {
  if (ckpt.has(`${module}.weight`)) return `${module}.weight`;
  const m = PER_EXPERT.exec(module);
  const stacked = m ? STACKED_OF[m[3]!] : undefined;
  if (m === null || stacked === undefined) return undefined;
  const name = `${m[1]}.${stacked}`;
  return ckpt.has(name) ? name : undefined;
}

export function isFp8Module(ckpt: Checkpoint, module: string): boolean {
  const tensor = weightTensorOf(ckpt, module);
  return tensor !== undefined && isFp8Dtype(ckpt.info(tensor).dtype);
}
