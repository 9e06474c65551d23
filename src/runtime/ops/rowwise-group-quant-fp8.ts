// rowwise_group_quant_fp8: dynamic per-token activation quantization of MLC LLM's
// block_scale_quantization (block_scale_quantization.py). Per row, per group of `groupSize` along the last axis:
// amax = max(max|x|, eps), scale = amax / FP8_MAX, x_q = fp8(clamp(x / scale, -max, max)), all in
// float32 with one correctly rounded division per element (docs/FORMAT.md §2). Scales are
// [..., ceil(K/g)], or [G, ...] with `transposeScale` (the CUTLASS layout).
//
// Both a plain reference on typed arrays and the ONNX emitter live here, so they are read side
// by side. The emitter pads the last axis with zeros to whole groups: zeros never raise an amax
// (it is at least eps > 0), so the edge group covers only the real elements, as in MLC LLM.

import { encoderFor } from '../../fp8/index.js';
import { DataType } from '../onnx/data-type.js';
import { attr, GraphBuildError, type GraphBuilder, type Value } from '../onnx/graph-builder.js';
import {
  ceilDiv,
  checkSize,
  emitCast,
  emitPadLastAxis,
  emitReshape,
  emitSliceAxis,
  emitTranspose,
  fp8DataType,
  fp8Max,
  OpShapeError,
  product,
  staticLastDim,
  type F32Tensor,
  type Fp8Format,
  type Fp8Tensor,
} from './types.js';

/** MLC LLM's default: keeps an all-zero group's scale finite and positive. */
export const DEFAULT_QUANT_EPS = 1e-10;

export interface RowwiseGroupQuantOptions {
  readonly transposeScale?: boolean;
  readonly eps?: number;
  readonly format?: Fp8Format;
}

export interface RowwiseGroupQuantResult {
  readonly q: Fp8Tensor;
  readonly scale: F32Tensor;
}

/** Reference implementation. */
export function rowwiseGroupQuantFp8(x: F32Tensor, groupSize: number, options: RowwiseGroupQuantOptions = {}): RowwiseGroupQuantResult {
  const format = options.format ?? 'e4m3fn';
  const encode = encoderFor(format);
  const max = fp8Max(format);
  const eps = Math.fround(options.eps ?? DEFAULT_QUANT_EPS);
  checkSize('x', x.shape, x.data.length);
  if (x.shape.length < 1) throw new OpShapeError('rowwiseGroupQuantFp8: x must have at least one axis');
  if (!Number.isInteger(groupSize) || groupSize <= 0) throw new OpShapeError(`group size must be a positive integer, got ${groupSize}`);
  const k = x.shape[x.shape.length - 1]!;
  const rows = product(x.shape.slice(0, -1));
  const groups = ceilDiv(k, groupSize);
  const codes = new Uint8Array(rows * k);
  const scale = new Float32Array(rows * groups);

  for (let r = 0; r < rows; r++) {
    for (let gi = 0; gi < groups; gi++) {
      const start = r * k + gi * groupSize;
      const end = r * k + Math.min(k, (gi + 1) * groupSize);
      let amax = eps;
      for (let i = start; i < end; i++) {
        const a = Math.abs(x.data[i]!);
        if (a > amax) amax = a;
      }
      const s = Math.fround(amax / max);
      scale[r * groups + gi] = s;
      for (let i = start; i < end; i++) {
        const v = Math.fround(x.data[i]! / s);
        codes[i] = encode(v > max ? max : v < -max ? -max : v);
      }
    }
  }

  const scaleShape = [...x.shape.slice(0, -1), groups];
  const q: Fp8Tensor = { codes, shape: [...x.shape], format };
  if (!options.transposeScale) return { q, scale: { data: scale, shape: scaleShape } };
  const transposed = new Float32Array(scale.length);
  for (let r = 0; r < rows; r++) {
    for (let gi = 0; gi < groups; gi++) transposed[gi * rows + r] = scale[r * groups + gi]!;
  }
  return { q, scale: { data: transposed, shape: [groups, ...x.shape.slice(0, -1)] } };
}

/** Graph values of a group quantization before its groups are flattened back. */
export interface GroupedQuant {
  /** x / scale clamped to ±FP8_MAX, float32, `[..., G, g]`, zero in the padding. Not yet FP8. */
  readonly clamped: Value;
  /** `[..., G, 1]` float32. */
  readonly scale: Value;
  readonly groups: number;
}

/**
 * The shared core: pads to whole groups, reshapes to `[..., G, g]`, computes amax/scale and the
 * clamped quotients. Div is an elementwise float32 division in onnxruntime (never a reciprocal
 * multiply), which the bit-exact tests rely on.
 */
export function emitGroupedQuant(g: GraphBuilder, x: Value, groupSize: number, format: Fp8Format, eps = DEFAULT_QUANT_EPS): GroupedQuant {
  if (x.dtype !== DataType.FLOAT && x.dtype !== DataType.FLOAT16) {
    throw new GraphBuildError(`rowwise group quant: x "${x.name}" must be float32 or float16`);
  }
  if (x.shape.length < 1) throw new GraphBuildError(`rowwise group quant: x "${x.name}" must have at least one axis`);
  const k = staticLastDim(x, 'quantized input');
  const groups = ceilDiv(k, groupSize);
  const lead = x.shape.slice(0, -1);
  const max = fp8Max(format);
  // MLC LLM takes amax and divides in float32 whatever the model dtype (`astype("float32")`).
  const grouped = emitFloatGroups(g, x, groupSize, groups);
  const abs = g.op('Abs', [grouped], { dtype: DataType.FLOAT, shape: grouped.shape, name: 'abs' });
  const scaleShape = [...lead, groups, 1];
  const amaxRaw = g.op(
    'ReduceMax',
    [abs, g.constInt64([-1])],
    { dtype: DataType.FLOAT, shape: scaleShape, name: 'amax' },
    {
      keepdims: attr.int(1),
    },
  );
  const amax = g.op('Max', [amaxRaw, g.constFloat32([eps], [])], { dtype: DataType.FLOAT, shape: scaleShape, name: 'amax_eps' });
  const scale = g.op('Div', [amax, g.constFloat32([max], [])], { dtype: DataType.FLOAT, shape: scaleShape, name: 'scale' });
  return { clamped: emitClampedQuotient(g, grouped, scale, max), scale, groups };
}

/**
 * The grouping every group quant shares (this module's and static-activation-group-quant-fp8.ts):
 * x as float32, its last axis zero-padded to `groups` whole groups, reshaped to `[..., G, g]`.
 */
export function emitFloatGroups(g: GraphBuilder, x: Value, groupSize: number, groups: number): Value {
  const lead = x.shape.slice(0, -1);
  const padded = emitPadLastAxis(g, emitCast(g, x, DataType.FLOAT), groups * groupSize);
  // Reshape's 0 copies the input dim, so leading dims may stay symbolic.
  return emitReshape(g, padded, [...lead.map(() => 0), groups, groupSize], [...lead, groups, groupSize]);
}

/** `grouped / scale` (an elementwise float32 Div), clamped to ±FP8_MAX: the quotients before the FP8 cast. */
export function emitClampedQuotient(g: GraphBuilder, grouped: Value, scale: Value, max: number): Value {
  const quotient = g.op('Div', [grouped, scale], { dtype: DataType.FLOAT, shape: grouped.shape, name: 'x_div_scale' });
  return g.op('Clip', [quotient, g.constFloat32([-max], []), g.constFloat32([max], [])], {
    dtype: DataType.FLOAT,
    shape: grouped.shape,
    name: 'x_clamped',
  });
}

/** Clamped quotients `[..., G, g]` → FP8 codes `[..., K]`: flatten the groups, cut the padding, cast. */
export function emitGroupsToFp8(g: GraphBuilder, clamped: Value, k: number, format: Fp8Format): Value {
  const lead = clamped.shape.slice(0, -2);
  const width = (clamped.shape[clamped.shape.length - 2] as number) * (clamped.shape[clamped.shape.length - 1] as number);
  const flat = emitReshape(g, clamped, [...lead.map(() => 0), width], [...lead, width]);
  // Slice before the FP8 cast: onnxruntime has no FP8 Slice.
  return emitCast(g, emitSliceAxis(g, flat, -1, k), fp8DataType(format), true);
}

/** Emits the quantization; returns FP8 codes `[..., K]` and float32 scales. */
export function emitRowwiseGroupQuantFp8(g: GraphBuilder, x: Value, groupSize: number, options: RowwiseGroupQuantOptions = {}): { q: Value; scale: Value } {
  const format = options.format ?? 'e4m3fn';
  const k = staticLastDim(x, 'quantized input');
  const lead = x.shape.slice(0, -1);
  const { clamped, scale, groups } = emitGroupedQuant(g, x, groupSize, format, options.eps);
  const q = emitGroupsToFp8(g, clamped, k, format);
  const scale2 = emitReshape(g, scale, [...lead.map(() => 0), groups], [...lead, groups]);
  if (!options.transposeScale) return { q, scale: scale2 };
  const rank = scale2.shape.length;
  const perm = [rank - 1, ...Array.from({ length: rank - 1 }, (_, i) => i)];
  return { q, scale: emitTranspose(g, scale2, perm) };
}
