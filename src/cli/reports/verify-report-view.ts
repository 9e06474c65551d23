// What the verify report renderers (JUnit XML, Markdown) read: the fields of a verify report they
// use, with the optional ones a run may or may not have (text input, perplexity, tensors verify did
// not exercise, per-layer timings, the device choice), and the derived views both renderers share
// (one row per gate with its measured figure, the worst linears, number formatting). Pure: no I/O.

import type { LogitMetrics } from '../../runtime/verify/metrics.js';
import type { LinearReport, VerifySummary } from '../../runtime/verify/verify-checkpoints.js';

/** Wall time of a verify run by phase (verify-timings.ts), seconds. */
export interface VerifyTimings {
  /** Opening both checkpoints, choosing the input, embedding. */
  readonly setup: number;
  /** One entry per decoder layer: both checkpoints' layer and the probes. */
  readonly layers: readonly number[];
  /** Final norm and lm_head of both checkpoints, and the model-level metrics. */
  readonly head: number;
}

export interface ReportGateFailure {
  /** Gate name as on the command line without the dashes (`max-kl`), or another name a gate reports. */
  readonly gate: string;
  readonly subject: string;
  readonly value: number;
  readonly limit: number;
  readonly message: string;
}

/** The verify report as the renderers read it; a `VerifyReport` is one (optional fields absent). */
export interface VerifyReportView {
  readonly original: string;
  readonly quantized: string;
  readonly architecture: string;
  readonly device: string;
  readonly input: {
    /** `file` (--input-ids), `generated` (--tokens), or a text source (`text`, `dataset`, …). */
    readonly source: string;
    readonly batch: number;
    readonly seq: number;
    readonly seed?: number;
    /** Text input: what was read, in words (file name, samples, tokenizer). */
    readonly description?: string;
    readonly file?: string;
  };
  readonly model: LogitMetrics;
  /** Text input only: perplexity of each model on it; `increasePercent` in percent (1.3 = +1.3%). */
  readonly perplexity?: { readonly original: number; readonly quantized: number; readonly increasePercent: number };
  readonly linears: readonly LinearReport[];
  /** Quantized linears no activation reached (experts no token was routed to). */
  readonly notReached: readonly string[];
  /** Quantized tensors verify did not run at all; a failure unless allowed (`--allow-unverified`). */
  readonly unverified?: readonly string[];
  readonly summary: VerifySummary;
  /** Gate limits; `maxPplIncrease` is in percent, like `--max-ppl-increase`. */
  readonly gates: {
    readonly maxKl: number;
    readonly minTop1: number;
    readonly maxLayerRelError: number;
    /** Largest ratio of a linear's error to its FP8 floor (the original weights re-quantized the same way). */
    readonly maxLayerErrorRatio?: number;
    readonly maxPplIncrease?: number;
  };
  readonly failures: readonly ReportGateFailure[];
  readonly passed: boolean;
  readonly clipping?: { readonly linears: number; readonly elements: number; readonly clipped: number; readonly rate: number };
  readonly peakWeightBytes: number;
  readonly checkpointBytes: { readonly original: number; readonly quantized: number };
  readonly seconds: number;
  readonly timings?: VerifyTimings;
  readonly deviceSelection?: { readonly requested: string; readonly device: string; readonly provider?: string; readonly reason: string };
}

/** One gate of the run: its limit, what was measured against it, and its failures. */
export interface GateResult {
  /** `max-kl`, `min-top1`, `max-layer-rel-error`, `max-ppl-increase`, or a name only a failure gave. */
  readonly gate: string;
  /** The flag that sets it, when there is one. */
  readonly flag: string | undefined;
  /** What is measured, in words. */
  readonly metric: string;
  /** The limit as text, with its direction (`≤ 0.01`). */
  readonly limit: string;
  /** The figure compared with the limit as text (`2.3e-4`); for the per-linear gate the worst linear's. */
  readonly measured: string;
  readonly passed: boolean;
  readonly failures: readonly ReportGateFailure[];
}

export function sci(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  return v === 0 ? '0' : Math.abs(v) < 1e-3 ? v.toExponential(2) : v.toFixed(4);
}

export function percent(fraction: number, digits = 1): string {
  return Number.isFinite(fraction) ? `${(100 * fraction).toFixed(digits)}%` : String(fraction);
}

export function signedPercent(fraction: number): string {
  if (!Number.isFinite(fraction)) return String(fraction);
  const p = 100 * fraction;
  return `${p >= 0 ? '+' : ''}${Math.abs(p) < 0.01 && p !== 0 ? p.toExponential(1) : p.toFixed(2)}%`;
}

export function decibels(v: number): string {
  return Number.isFinite(v) ? v.toFixed(1) : v > 0 ? 'inf' : String(v);
}

export function seconds(v: number): string {
  return v < 10 ? v.toFixed(2) : v.toFixed(1);
}

export function mebibytes(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

/** How the token ids were obtained, in words. */
export function describeInput(r: VerifyReportView): string {
  const shape = `${r.input.batch}×${r.input.seq} tokens`;
  if (r.input.description !== undefined) return `${shape}, ${r.input.description}`;
  if (r.input.source === 'file') return `${shape} from --input-ids${r.input.file !== undefined ? ` ${r.input.file}` : ''}`;
  if (r.input.source === 'generated') return `${shape}, random ids (seed ${r.input.seed ?? 0})`;
  return `${shape} (${r.input.source}${r.input.file !== undefined ? ` ${r.input.file}` : ''})`;
}

const KNOWN_GATES = ['max-layer-error-ratio', 'max-layer-rel-error', 'max-kl', 'min-top1', 'max-ppl-increase'] as const;

/**
 * Every gate of the run in a fixed order (per-linear first, as failures are), then any gate
 * only a failure names. Pass/fail comes from the report's failures, never recomputed here.
 */
export function gateResults(r: VerifyReportView): GateResult[] {
  const failuresOf = (gate: string): ReportGateFailure[] => r.failures.filter((f) => f.gate === gate);
  const result = (gate: string, metric: string, limit: string, measured: string): GateResult => {
    const failures = failuresOf(gate);
    return { gate, flag: `--${gate}`, metric, limit, measured, passed: failures.length === 0, failures };
  };
  const g = r.gates;
  const ratios = r.linears.map((l) => l.errorRatio).filter((x): x is number => x !== undefined);
  const rows: GateResult[] = [];
  if (g.maxLayerErrorRatio !== undefined) {
    rows.push(
      result(
        'max-layer-error-ratio',
        "each quantized linear's error over its FP8 floor",
        `≤ ${g.maxLayerErrorRatio}×`,
        ratios.length > 0 ? `${Math.max(...ratios).toFixed(2)}× (worst of ${ratios.length})` : 'no floor measured',
      ),
    );
  }
  rows.push(
    result(
      'max-layer-rel-error',
      'relative error of each quantized linear',
      `≤ ${g.maxLayerRelError}`,
      r.summary.linearsCompared > 0 ? `${sci(r.summary.maxRelativeError)} (worst of ${r.summary.linearsCompared})` : 'no linear compared',
    ),
    result('max-kl', 'mean KL(original ‖ quantized) per token', `≤ ${g.maxKl}`, sci(r.model.meanKl)),
    result('min-top1', 'top-1 agreement', `≥ ${g.minTop1}`, `${r.model.top1Agreement.toFixed(4)} (${percent(r.model.top1Agreement)})`),
  );
  if (g.maxPplIncrease !== undefined) {
    rows.push(result('max-ppl-increase', 'perplexity increase', `≤ ${g.maxPplIncrease}%`, r.perplexity ? signedPercent(r.perplexity.increasePercent / 100) : 'no text input'));
  }
  const known = new Set<string>(KNOWN_GATES);
  for (const f of r.failures) {
    if (known.has(f.gate)) continue;
    known.add(f.gate);
    const failures = failuresOf(f.gate);
    rows.push({ gate: f.gate, flag: undefined, metric: f.gate, limit: String(f.limit), measured: String(f.value), passed: false, failures });
  }
  return rows;
}

/** The linears with the largest relative error, worst first (NaN counts as worst). */
export function worstLinears(r: VerifyReportView, count: number): LinearReport[] {
  const key = (l: LinearReport): number => (Number.isNaN(l.relativeError) ? Infinity : l.relativeError);
  return [...r.linears].sort((a, b) => key(b) - key(a)).slice(0, count);
}

/** Failures of the per-linear gate by module, so a linear's row can say why it failed. */
/** The gates a single linear can fail: against its FP8 floor, and the absolute backstop. */
const PER_LINEAR_GATES: ReadonlySet<string> = new Set(['max-layer-error-ratio', 'max-layer-rel-error']);

export function linearFailures(r: VerifyReportView): Map<string, ReportGateFailure> {
  const out = new Map<string, ReportGateFailure>();
  for (const f of r.failures) if (PER_LINEAR_GATES.has(f.gate) && !out.has(f.subject)) out.set(f.subject, f);
  return out;
}

/** Seconds spent per compared linear: its layer's wall time shared evenly among the layer's compared linears. */
export function linearSeconds(r: VerifyReportView): (l: LinearReport) => number | undefined {
  const layers = r.timings?.layers;
  if (layers === undefined) return () => undefined;
  const perLayer = new Map<number, number>();
  for (const l of r.linears) perLayer.set(l.layer, (perLayer.get(l.layer) ?? 0) + 1);
  return (l) => {
    const t = layers[l.layer];
    return t === undefined ? undefined : t / perLayer.get(l.layer)!;
  };
}
