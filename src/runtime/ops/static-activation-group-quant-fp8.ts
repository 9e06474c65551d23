// static_activation_group_quant_fp8 and broadcast_activation_scale: the static activation scheme
// of MLC LLM's block_scale_quantization (docs/FORMAT.md §6). Activations are quantized with calibrated per-input-group
// scales, x_q = fp8(clamp(x / activation_scale[j / group_size])), and the same scales are
// broadcast to the per-token layout the block-scale GEMM takes. A one-element scale applies to
// every group (checkpoints may store a scalar that runtimes broadcast).

import { encoderFor } from '../../fp8/index.js';
import { DataType } from '../onnx/data-type.js';
import { attr, GraphBuildError, type GraphBuilder, type Value } from '../onnx/graph-builder.js';
import { emitClampedQuotient, emitFloatGroups, emitGroupsToFp8 } from './rowwise-group-quant-fp8.js';
import { ceilDiv, checkSize, emitCast, emitReshape, fp8Max, OpShapeError, product, staticLastDim, type F32Tensor, type Fp8Format, type Fp8Tensor } from './types.js';

function checkScaleLength(length: number, groups: number): void {
  if (length !== groups && length !== 1) {
    throw new OpShapeError(`activation scale has ${length} elements; expected ${groups} (one per input group) or 1`);
  }
}

/** Reference implementation. */
export function staticActivationGroupQuantFp8(x: F32Tensor, activationScale: Float32Array, groupSize: number, format: Fp8Format = 'e4m3fn'): Fp8Tensor {
  checkSize('x', x.shape, x.data.length);
  const k = x.shape[x.shape.length - 1]!;
  const groups = ceilDiv(k, groupSize);
  checkScaleLength(activationScale.length, groups);
  const encode = encoderFor(format);
  const max = fp8Max(format);
  const rows = product(x.shape.slice(0, -1));
  const codes = new Uint8Array(x.data.length);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < k; j++) {
      const s = activationScale.length === 1 ? activationScale[0]! : activationScale[Math.floor(j / groupSize)]!;
      const v = Math.fround(x.data[r * k + j]! / s);
      codes[r * k + j] = encode(v > max ? max : v < -max ? -max : v);
    }
  }
  return { codes, shape: [...x.shape], format };
}

/** Emits the quantization; returns FP8 codes with the shape of `x`. */
export function emitStaticActivationGroupQuantFp8(g: GraphBuilder, x: Value, activationScale: Value, groupSize: number, format: Fp8Format = 'e4m3fn'): Value {
  const k = staticLastDim(x, 'quantized input');
  const groups = ceilDiv(k, groupSize);
  const scaleLength = activationScale.shape.reduce<number>((n, d) => (typeof d === 'number' ? n * d : NaN), 1);
  if (!Number.isNaN(scaleLength)) checkScaleLength(scaleLength, groups);
  const grouped = emitFloatGroups(g, x, groupSize, groups);
  // [G, 1] (or [1, 1] for a scalar scale) broadcasts over [..., G, g].
  const scaleColumn = emitReshape(g, emitCast(g, activationScale, DataType.FLOAT), [-1, 1], [scaleLength === 1 ? 1 : groups, 1]);
  return emitGroupsToFp8(g, emitClampedQuotient(g, grouped, scaleColumn, fp8Max(format)), k, format);
}

/** Reference: `s` [G] → `(*x.shape[:-1], G)`, last two axes swapped when `transpose`. */
export function broadcastActivationScale(x: { readonly shape: readonly number[] }, s: Float32Array, transpose: boolean): F32Tensor {
  const xShape = x.shape;
  if (transpose && xShape.length < 2) throw new OpShapeError('broadcastActivationScale: transpose needs x of rank ≥ 2');
  const groups = s.length;
  const shape = [...xShape.slice(0, -1), groups];
  const rows = product(xShape.slice(0, -1));
  const data = new Float32Array(rows * groups);
  for (let r = 0; r < rows; r++) data.set(s, r * groups);
  if (!transpose) return { data, shape };
  // Swap the last two axes: [..., R, G] → [..., G, R].
  const inner = shape[shape.length - 2]!;
  const batches = rows / inner;
  const out = new Float32Array(data.length);
  for (let b = 0; b < batches; b++) {
    for (let i = 0; i < inner; i++) {
      for (let j = 0; j < groups; j++) out[b * inner * groups + j * inner + i] = data[b * inner * groups + i * groups + j]!;
    }
  }
  const tShape = [...shape];
  tShape[tShape.length - 1] = inner;
  tShape[tShape.length - 2] = groups;
  return { data: out, shape: tShape };
}

/** Emits the broadcast; leading dims of `x` may be symbolic (taken from Shape(x) at run time). */
export function emitBroadcastActivationScale(g: GraphBuilder, x: Value, s: Value, transpose: boolean): Value {
  const rank = x.shape.length;
  if (s.shape.length !== 1 || typeof s.shape[0] !== 'number') {
    throw new GraphBuildError(`activation scale "${s.name}" must be 1-D with a static length, got [${s.shape.join(', ')}]`);
  }
  if (transpose && rank < 2) throw new GraphBuildError('broadcast activation scale: transpose needs x of rank ≥ 2');
  const groups = s.shape[0];
  const ones = Array.from({ length: rank - 1 }, () => 1);
  const reshaped = emitReshape(g, s, [...ones, groups], [...ones, groups]);
  const lead = g.op(
    'Shape',
    [x],
    { dtype: DataType.INT64, shape: [rank - 1], name: 'x_lead_shape' },
    {
      start: attr.int(0),
      end: attr.int(-1),
    },
  );
  const target = g.op(
    'Concat',
    [lead, g.constInt64([groups])],
    { dtype: DataType.INT64, shape: [rank], name: 'scale_shape' },
    {
      axis: attr.int(0),
    },
  );
  const outShape = [...x.shape.slice(0, -1), groups];
  const expanded = g.op('Expand', [reshaped, target], { dtype: s.dtype, shape: outShape, name: 'scale_broadcast' });
  if (!transpose) return expanded;
  const perm = Array.from({ length: rank }, (_, i) => i);
  perm[rank - 1] = rank - 2;
  perm[rank - 2] = rank - 1;
  const tShape = perm.map((p) => outShape[p]!);
  return g.op('Transpose', [expanded], { dtype: s.dtype, shape: tShape, name: 'scale_broadcast_t' }, { perm: attr.ints(perm) });
}
