// Clipping of static activation scales, for `fp8q verify` of a static conversion: how many of the
// values that reach each quantized linear lie beyond the range its calibration measured
// (|x / activation_scale| above FP8_MAX plus half the top FP8 step, see
// calibration/activation-ranges.ts). Measured on the original model's activations — the inputs
// each quantized linear is compared on — so a rate is pinned to its layer. Rates far above zero
// mean the calibration data did not cover what the model sees.

import { widenToFloat32, isFloatSourceDtype } from '../../fp8/dtypes.js';
import type { Fp8Format } from '../../fp8/formats.js';
import { CheckpointError } from '../../io/errors.js';
import { countClipped, type ClippingCount } from '../calibration/activation-ranges.js';
import type { ModelRunner } from '../models/runner.js';

/** The static activation scale beside `<module>.weight` (fp8q, MLC LLM, transformers; the forward reads only this name). */
export const ACTIVATION_SCALE_SUFFIX = 'activation_scale';

/** weights.ts's block when config.json names none. */
const DEFAULT_GROUP = 128;

export interface LinearClipping extends ClippingCount {
  /** clipped / elements. */
  readonly rate: number;
}

export interface ClippingSummary extends LinearClipping {
  /** Linears with a static activation scale. */
  readonly linears: number;
  readonly worst: { readonly module: string; readonly rate: number } | undefined;
}

export interface StaticActivationScale {
  /** `[G]`, or one element for a per-tensor scale. */
  readonly scale: Float32Array;
  readonly groupSize: number;
  readonly format: Fp8Format;
}

const FORMATS: Readonly<Record<string, Fp8Format>> = { F8_E4M3: 'e4m3fn', F8_E5M2: 'e5m2' };

/** The static activation scale of `module` in `runner`'s checkpoint, or undefined (dynamic). */
export async function staticActivationScaleOf(runner: ModelRunner, module: string): Promise<StaticActivationScale | undefined> {
  const ckpt = runner.checkpoint;
  const name = `${module}.${ACTIVATION_SCALE_SUFFIX}`;
  if (!ckpt.has(name)) return undefined;
  const info = ckpt.info(name);
  const weight = ckpt.has(`${module}.weight`) ? ckpt.info(`${module}.weight`) : undefined;
  const format = weight ? FORMATS[weight.dtype] : undefined;
  if (!isFloatSourceDtype(info.dtype) || weight === undefined || format === undefined || weight.shape.length !== 2) {
    throw new CheckpointError(`${ckpt.dir}: ${name} is ${info.dtype} beside a ${weight?.dtype ?? 'missing'} weight; expected a float scale of an FP8 linear`);
  }
  const scale = widenToFloat32(await ckpt.readTensor(name), info.dtype);
  const k = weight.shape[1]!;
  const groupSize = runner.weights.block?.bk ?? DEFAULT_GROUP;
  if (scale.length !== 1 && scale.length !== Math.ceil(k / groupSize)) {
    throw new CheckpointError(`${ckpt.dir}: ${name} has ${scale.length} values; expected 1 or ceil(${k} / ${groupSize}) = ${Math.ceil(k / groupSize)}`);
  }
  return { scale, groupSize, format };
}

export function linearClipping(input: Float32Array, rows: number, s: StaticActivationScale): LinearClipping {
  const k = input.length / rows;
  const c = countClipped(input, rows, k, s.scale, s.groupSize, s.format);
  return { ...c, rate: c.elements === 0 ? 0 : c.clipped / c.elements };
}

export function summarizeClipping(linears: readonly { readonly module: string; readonly clipping?: LinearClipping | undefined }[]): ClippingSummary | undefined {
  let clipped = 0;
  let elements = 0;
  let count = 0;
  let worst: { module: string; rate: number } | undefined;
  for (const l of linears) {
    if (l.clipping === undefined) continue;
    count++;
    clipped += l.clipping.clipped;
    elements += l.clipping.elements;
    if (worst === undefined || l.clipping.rate > worst.rate) worst = { module: l.module, rate: l.clipping.rate };
  }
  if (count === 0) return undefined;
  return { clipped, elements, rate: elements === 0 ? 0 : clipped / elements, linears: count, worst };
}
