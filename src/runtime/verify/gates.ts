// Accuracy gates of `fp8q verify`: limits a sound block-scale FP8 conversion stays within and a
// broken one (a wrong scale, swapped, transposed or zeroed weights, clipping static activation
// scales) does not. Defaults come from measurements (README "Gates and why these defaults"): the
// really trained stories260K on children's stories (its domain), other English text, the
// bundled sample and random ids, and the random-initialised fixtures on their ids; E4M3 128×128,
// ue8m0, 64×64, 32×32, static activations and compressed-tensors (sound), E5M2 (sound, coarser),
// and damaged conversions.
// - Per linear, against its FP8 floor (fp8-floor.ts: the original weights re-quantized the same
//   way, on the same input): every sound dynamic conversion 1.000 (fp8q's codes are the floor's),
//   static activations 1.00–1.27; damaged ≥ 28 (a scale ×4 ≈ 70, a transposed block ≈ 70, a
//   zeroed block ≈ 28) → 2. It does not depend on the model or the text, and names the linear.
// - Per linear, absolute (a backstop, and the only per-linear gate for stacked experts, which
//   have no floor): sound E4M3 0.011–0.060, E5M2 ≤ 0.11; damaged ≥ 0.51 → 0.3.
// - Mean KL: sound E4M3 0.010–0.030 on the trained model (the fixtures 2e-4–2.4e-3), E5M2
//   ≤ 0.113; damaged ≥ 0.36 → 0.15, a backstop for damage outside the quantized linears.
// - Perplexity increase on text: sound E4M3 −0.1 to +2.1 %, E5M2 ≤ 6.4 %; damaged ≥ +48 % → 10 %.
// - Top-1 agreement: sound ≥ 0.84 on the trained model (0.66 on the random fixtures, whose
//   next-token distributions are nearly flat), damaged 0.25–0.66: it cannot tell the two apart,
//   so 0.5 only catches a model that is broken outright.
// Coverage failures (an FP8 tensor not run; a final projection, embedding or router quantized
// that fp8q keeps) are not thresholds: see coverage.ts.

export interface Gates {
  /** Largest mean (over tokens) KL(original ‖ quantized), nats. */
  readonly maxKl: number;
  /** Smallest fraction of tokens whose top-1 token agrees. */
  readonly minTop1: number;
  /** Largest relative L2 error of any quantized linear's output. */
  readonly maxLayerRelError: number;
  /** Largest ratio of a quantized linear's relative error to its FP8 floor (fp8-floor.ts). */
  readonly maxLayerErrorRatio: number;
  /** Largest perplexity increase of the quantized model over the original, percent (text input only). */
  readonly maxPplIncrease: number;
}

export const DEFAULT_GATES: Gates = {
  maxKl: 0.15,
  minTop1: 0.5,
  maxLayerRelError: 0.3,
  maxLayerErrorRatio: 2,
  maxPplIncrease: 10,
};

export type GateName = 'max-kl' | 'min-top1' | 'max-layer-rel-error' | 'max-layer-error-ratio' | 'max-ppl-increase' | 'unverified' | 'kept-module';

export interface GateFailure {
  readonly gate: GateName;
  /** `model`, or the linear module that failed. */
  readonly subject: string;
  readonly value: number;
  readonly limit: number;
  readonly message: string;
}

export interface GateInputs {
  readonly meanKl: number;
  readonly top1Agreement: number;
  readonly linears: readonly { readonly module: string; readonly relativeError: number; readonly floorError?: number; readonly errorRatio?: number }[];
  /** Perplexity increase, percent; absent when the input is not text. */
  readonly pplIncreasePercent?: number;
  /** Quantized tensors no comparison ran (coverage.ts); failures unless allowed. */
  readonly unverified?: readonly string[];
  readonly allowUnverified?: boolean;
  /** FP8 modules that the conversion should have kept in high precision (coverage.ts). */
  readonly keptModules?: readonly string[];
}

/**
 * Failed gates, per-linear ones first (in layer order): a damaged linear is the cause, the
 * model-level KL and top-1 failures it brings are consequences, and the first failure is what
 * the CLI's one-line error names.
 */
export function evaluateGates(inputs: GateInputs, gates: Gates): GateFailure[] {
  const failures: GateFailure[] = [];
  const bad = (v: number): boolean => !Number.isFinite(v);
  for (const module of inputs.keptModules ?? []) {
    failures.push({
      gate: 'kept-module',
      subject: module,
      value: 1,
      limit: 0,
      message:
        `${module}: stored in FP8, but the original keeps it in high precision and fp8q never quantizes final projections, embeddings or MoE routers ` +
        '(they cost accuracy for little memory): convert again without quantizing it',
    });
  }
  for (const l of inputs.linears) {
    // One failure per linear: against its floor where it has one, else (or also) the absolute limit.
    if (l.errorRatio !== undefined && (bad(l.errorRatio) || l.errorRatio > gates.maxLayerErrorRatio)) {
      failures.push({
        gate: 'max-layer-error-ratio',
        subject: l.module,
        value: l.errorRatio,
        limit: gates.maxLayerErrorRatio,
        message:
          `${l.module}: relative error ${fmt(l.relativeError)} is ${fmt(l.errorRatio)}× its FP8 floor ${fmt(l.floorError ?? NaN)} ` +
          `(the original weights re-quantized the same way), over --max-layer-error-ratio ${gates.maxLayerErrorRatio}`,
      });
    } else if (bad(l.relativeError) || l.relativeError > gates.maxLayerRelError) {
      failures.push({
        gate: 'max-layer-rel-error',
        subject: l.module,
        value: l.relativeError,
        limit: gates.maxLayerRelError,
        message: `${l.module}: relative error ${fmt(l.relativeError)} exceeds --max-layer-rel-error ${gates.maxLayerRelError}`,
      });
    }
  }
  if (inputs.pplIncreasePercent !== undefined && (bad(inputs.pplIncreasePercent) || inputs.pplIncreasePercent > gates.maxPplIncrease)) {
    failures.push({
      gate: 'max-ppl-increase',
      subject: 'model',
      value: inputs.pplIncreasePercent,
      limit: gates.maxPplIncrease,
      message: `model: perplexity increase ${fmt(inputs.pplIncreasePercent)}% exceeds --max-ppl-increase ${gates.maxPplIncrease}%`,
    });
  }
  if (bad(inputs.meanKl) || inputs.meanKl > gates.maxKl) {
    failures.push({
      gate: 'max-kl',
      subject: 'model',
      value: inputs.meanKl,
      limit: gates.maxKl,
      message: `model: mean KL(original ‖ quantized) ${fmt(inputs.meanKl)} exceeds --max-kl ${gates.maxKl}`,
    });
  }
  if (bad(inputs.top1Agreement) || inputs.top1Agreement < gates.minTop1) {
    failures.push({
      gate: 'min-top1',
      subject: 'model',
      value: inputs.top1Agreement,
      limit: gates.minTop1,
      message: `model: top-1 agreement ${fmt(inputs.top1Agreement)} is below --min-top1 ${gates.minTop1}`,
    });
  }
  const unverified = inputs.unverified ?? [];
  if (unverified.length > 0 && inputs.allowUnverified !== true) {
    failures.push({
      gate: 'unverified',
      subject: unverified[0]!,
      value: unverified.length,
      limit: 0,
      message:
        `${unverified.length} quantized tensor(s) were not run, so nothing checked them: ${unverified.slice(0, 3).join(', ')}${unverified.length > 3 ? ', …' : ''} ` +
        '(more tokens reach more experts; --allow-unverified accepts this)',
    });
  }
  return failures;
}

function fmt(v: number): string {
  return Number.isFinite(v) ? (Math.abs(v) < 1e-3 && v !== 0 ? v.toExponential(3) : v.toFixed(4)) : String(v);
}
