// What the block scales of an FP8 checkpoint actually are: reads every scale tensor (1/16384 of
// the weights at 128x128 blocks: ~40 MB for a 671B model) and says whether all of them are
// powers of two (UE8M0) or plain float scales. compressed-tensors cannot declare UE8M0, and an
// hf config can declare it falsely, so the values are the only reliable witness.

import { isFloatSourceDtype, widenToFloat32 } from '../../fp8/dtypes.js';
import type { ScaleFormat } from '../../fp8/block-quantize.js';
import { firstNonPowerOfTwo } from '../../fp8/scale-format.js';
import type { Checkpoint } from '../checkpoint/checkpoint.js';
import { CheckpointError } from '../errors.js';
import { quantizedWeightsOf, type QuantizedFormat } from './quantized-format.js';

export interface NonPowerOfTwoScale {
  readonly tensor: string;
  /** Position in the scale tensor ([row block, column block], or [expert, …] for stacked experts). */
  readonly at: readonly number[];
  readonly value: number;
}

export interface ScaleSurvey {
  /** What the config declares (compressed-tensors: always 'float'). */
  readonly declared: ScaleFormat;
  /** What the values are: 'ue8m0' when every scale of every tensor is a power of two. */
  readonly found: ScaleFormat;
  readonly tensors: number;
  readonly values: number;
  /** Scale tensors holding at least one value that is not a power of two. */
  readonly nonPowerOfTwoTensors: number;
  readonly firstNonPowerOfTwo: NonPowerOfTwoScale | null;
  /** Scales that are NaN, ±Inf, 0 or negative: every value of their block dequantizes to garbage. */
  readonly unusable: number;
  readonly firstUnusable: NonPowerOfTwoScale | null;
}

/** NaN/Inf/≤ 0 scales of the given scale tensors, and the first one; a block scale must be a positive finite number. */
export async function findUnusableScales(ckpt: Checkpoint, scales: Iterable<string>): Promise<{ count: number; first: NonPowerOfTwoScale | null }> {
  let count = 0;
  let first: NonPowerOfTwoScale | null = null;
  for (const scale of scales) {
    const info = ckpt.info(scale);
    if (!isFloatSourceDtype(info.dtype)) continue;
    const f = widenToFloat32(await ckpt.readTensor(scale), info.dtype);
    for (let i = 0; i < f.length; i++) {
      const v = f[i]!;
      if (v > 0 && v !== Infinity) continue;
      count++;
      first ??= { tensor: scale, at: unflatten(i, info.shape), value: v };
    }
  }
  return { count, first };
}

/** The warning (inspect) or error text (dequant) for unusable scales. */
export function describeUnusableScales(u: { count: number; first: NonPowerOfTwoScale | null }): string | undefined {
  if (u.count === 0 || !u.first) return undefined;
  return `${u.count} block scale(s) are NaN, Inf, zero or negative (first: ${u.first.tensor}${JSON.stringify(u.first.at)} = ${u.first.value}): those blocks dequantize to NaN/Inf/0; the checkpoint is damaged`;
}

export async function surveyScales(ckpt: Checkpoint, qf: QuantizedFormat): Promise<ScaleSurvey> {
  let values = 0;
  let badTensors = 0;
  let first: NonPowerOfTwoScale | null = null;
  const weights = quantizedWeightsOf(qf, ckpt.tensorNames());
  for (const { scale } of weights) {
    const info = ckpt.info(scale);
    if (!isFloatSourceDtype(info.dtype)) {
      throw new CheckpointError(`scale tensor "${scale}" is ${info.dtype}; block scales are F32 (or BF16/F16), so this checkpoint is not one fp8q reads`);
    }
    const f = widenToFloat32(await ckpt.readTensor(scale), info.dtype);
    values += f.length;
    const i = firstNonPowerOfTwo(f);
    if (i >= 0) {
      badTensors++;
      first ??= { tensor: scale, at: unflatten(i, info.shape), value: f[i]! };
    }
  }
  const unusable = await findUnusableScales(
    ckpt,
    weights.map((w) => w.scale),
  );
  return {
    unusable: unusable.count,
    firstUnusable: unusable.first,
    declared: qf.scaleFormat,
    found: weights.length > 0 && badTensors === 0 ? 'ue8m0' : 'float',
    tensors: weights.length,
    values,
    nonPowerOfTwoTensors: badTensors,
    firstNonPowerOfTwo: first,
  };
}

function unflatten(index: number, shape: readonly number[]): number[] {
  const at: number[] = [];
  for (let d = shape.length - 1; d >= 0; d--) {
    at.unshift(index % shape[d]!);
    index = Math.floor(index / shape[d]!);
  }
  return at;
}

/** The warning inspect and verify give when a config declares UE8M0 but the values disagree. */
export function ue8m0Mismatch(survey: ScaleSurvey): string | undefined {
  if (survey.declared !== 'ue8m0' || survey.nonPowerOfTwoTensors === 0) return undefined;
  const f = survey.firstNonPowerOfTwo!;
  return (
    `config.json declares scale_fmt "ue8m0" but ${survey.nonPowerOfTwoTensors} of ${survey.tensors} scale tensors hold values that are not powers of two ` +
    `(first: ${f.tensor}[${f.at.join(', ')}] = ${f.value}); runtimes that trust the declaration (DeepGEMM, MX-style UE8M0 kernels) will dequantize these blocks wrongly`
  );
}
