// The arithmetic of static activation scales (docs/FORMAT.md §6), with no I/O: the running
// max |x| of a linear's input per group of `groupSize` channels, the scales it gives, and how
// often later activations exceed them (clipping).
//
//   activation_scale[g] = max over calibration tokens of amax_g(x) / FP8_MAX   (float32 division)
//
// `group` granularity keeps one scale per input group, `[ceil(K/bk)]` (MLC LLM's
// BlockScaleQuantizeLinearStaticActivation); `tensor` keeps the max over groups, one scale per
// layer (transformers' static FP8Linear). A group that stayed zero over the whole calibration set
// gets amax = 1e-10, the eps of MLC LLM's rowwise_group_quant_fp8, so its scale is finite and
// positive (never 0, which would make x / scale NaN or Inf at run time).

import { fp8FormatInfo, type Fp8Format } from '../../fp8/formats.js';
import { CheckpointError } from '../../io/errors.js';
import type { ActivationScaleGranularity } from '../../passes/activation-scales.js';

export type { ActivationScaleGranularity };

export const ACTIVATION_AMAX_EPS = 1e-10;

const MANTISSA_BITS: Readonly<Record<Fp8Format, number>> = { e4m3fn: 3, e5m2: 2 };

/**
 * |x / scale| above which the saturating clamp changes a value by more than FP8 rounding would:
 * FP8_MAX plus half the spacing of the top binade (464 for E4M3, 61440 for E5M2). A quotient of
 * 448.00003 — the calibration maximum itself, after amax / 448 rounds to float32 — rounds to 448
 * either way and is not a clipping.
 */
export function clippingThreshold(format: Fp8Format): number {
  const max = fp8FormatInfo(format).max;
  return max + 2 ** (Math.floor(Math.log2(max)) - MANTISSA_BITS[format]) / 2;
}

/** A NaN or Inf reached a linear during calibration: the scales would be meaningless. */
export class NonFiniteActivationError extends CheckpointError {
  constructor(module: string, row: number, col: number, value: number) {
    super(
      `calibration: the input of ${module} has a non-finite value (${value}) at token ${row}, channel ${col}: ` +
        'the model overflows on this calibration text in float32; check the checkpoint, or calibrate on other text',
    );
    this.name = 'NonFiniteActivationError';
  }
}

/** max |x| per group of `groupSize` channels over the rows of `x [rows, K]`. */
export function groupAmax(x: Float32Array, rows: number, k: number, groupSize: number, module: string): Float32Array {
  if (x.length !== rows * k) throw new RangeError(`${module}: activation has ${x.length} values, expected ${rows} x ${k}`);
  const groups = Math.ceil(k / groupSize);
  const amax = new Float32Array(groups);
  for (let r = 0; r < rows; r++) {
    const base = r * k;
    for (let g = 0; g < groups; g++) {
      let m = amax[g]!;
      const end = Math.min(k, (g + 1) * groupSize);
      for (let j = g * groupSize; j < end; j++) {
        const v = x[base + j]!;
        const a = v < 0 ? -v : v;
        if (a > m) m = a;
        else if (!(a <= m)) throw new NonFiniteActivationError(module, r, j, v); // NaN fails both tests
      }
      if (m === Infinity) {
        const j = x.subarray(base + g * groupSize, base + end).findIndex((v) => !Number.isFinite(v));
        throw new NonFiniteActivationError(module, r, g * groupSize + j, x[base + g * groupSize + j]!);
      }
      amax[g] = m;
    }
  }
  return amax;
}

/** Running per-group amax of one linear's input over every calibration batch. */
export class ActivationRange {
  readonly amax: Float32Array;
  /** Rows (tokens, or tokens routed to an expert) seen so far. */
  rows = 0;

  constructor(
    readonly module: string,
    readonly k: number,
    readonly groupSize: number,
  ) {
    this.amax = new Float32Array(Math.ceil(k / groupSize));
  }

  /** Folds in a batch's per-group amax (from groupAmax) covering `rows` rows. */
  merge(batchAmax: Float32Array, rows: number): void {
    if (batchAmax.length !== this.amax.length) throw new RangeError(`${this.module}: ${batchAmax.length} groups, expected ${this.amax.length}`);
    for (let g = 0; g < batchAmax.length; g++) if (batchAmax[g]! > this.amax[g]!) this.amax[g] = batchAmax[g]!;
    this.rows += rows;
  }

  add(x: Float32Array, rows: number): void {
    this.merge(groupAmax(x, rows, this.k, this.groupSize, this.module), rows);
  }
}

/** Scales from per-group amax: `[G]` (group) or `[1]` (tensor: the max over groups). */
export function activationScales(amax: Float32Array, granularity: ActivationScaleGranularity, format: Fp8Format): Float32Array {
  const max = fp8FormatInfo(format).max;
  const scale = (a: number): number => Math.fround(Math.max(a, ACTIVATION_AMAX_EPS) / max);
  if (granularity === 'group') return amax.map(scale);
  let m = 0;
  for (const a of amax) if (a > m) m = a;
  return Float32Array.of(scale(m));
}

export interface ClippingCount {
  /** Elements whose |x / scale| exceeds clippingThreshold(format). */
  readonly clipped: number;
  readonly elements: number;
}

/**
 * How many elements of `x [rows, K]` the static quantization with `scale` ([G], or one element
 * for every group) clips: x / scale computed in float32 as MLC LLM's kernel does.
 */
export function countClipped(x: Float32Array, rows: number, k: number, scale: Float32Array, groupSize: number, format: Fp8Format): ClippingCount {
  const threshold = clippingThreshold(format);
  const groups = Math.ceil(k / groupSize);
  if (scale.length !== groups && scale.length !== 1) throw new RangeError(`activation scale has ${scale.length} elements; expected ${groups} or 1`);
  let clipped = 0;
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < k; j++) {
      const s = scale.length === 1 ? scale[0]! : scale[Math.floor(j / groupSize)]!;
      const q = Math.fround(x[r * k + j]! / s);
      if (q > threshold || q < -threshold) clipped++;
    }
  }
  return { clipped, elements: rows * k };
}
