// MLC LLM's batched (m > 1) block-scale GEMM, the CUTLASS/Triton fp8_groupwise_scaled_gemm:
// activations are quantized per token in groups of bk with rowwise_group_quant_fp8 (into the
// weight's FP8 format), then, over the K blocks,
//   acc_f32[m, n] += (x_q[m, kb-block] · w_q[n, kb-block]ᵀ) * x_scale[m, kb] * w_scale[n / bn, kb].
//
// The graph keeps that structure instead of dequantizing both operands first, so it rounds where
// the kernels round: x_q and w_q become float32 groups [kb, M, bk] and [kb, bk, N] (zero-padded
// edge groups add nothing to a dot product), one batched MatMul gives the per-block dot products
// [kb, M, N], which are scaled by x_scale [kb, M, 1] and the block scale expanded along N
// [kb, 1, N], then ReduceSum over kb. Expanding the weight scale along N is done in the graph
// (Reshape/Expand/Slice on the [nb, kb] initializer), so the checkpoint's tensor goes in as is.
//
// The dequantized form (BlockGemmOptions.dequantizedWeight, what verify runs on CUDA) computes the
// same sum as (x_q * x_scale) · (w_q * w_scale)ᵀ: each operand dequantized in float32, one MatMul.
// It differs from the per-block form by float32 rounding only (both stay within the tests' 1e-6 of
// the float64 reference), and it holds no [kb, M, N] products: at 512 tokens those are ~1 GB a
// linear of an 8B model and most of the GPU's time.

import { decodeTableFor } from '../../fp8/index.js';
import { DataType } from '../onnx/data-type.js';
import { attr, GraphBuildError, type Dim, type GraphBuilder, type Value } from '../onnx/graph-builder.js';
import { checkBlockWeight } from './groupwise-scaled-gemv.js';
import { emitGroupedQuant, rowwiseGroupQuantFp8 } from './rowwise-group-quant-fp8.js';
import {
  ceilDiv,
  checkBlock,
  emitCast,
  emitPadLastAxis,
  emitReshape,
  emitSliceAxis,
  emitTranspose,
  fp8DataType,
  weightFp8Format,
  OpShapeError,
  staticDims,
  staticLastDim,
  type BlockGemmOptions,
  type BlockShape,
  type F32Tensor,
  type Fp8Format,
  type Fp8Tensor,
} from './types.js';

/**
 * Reference implementation. Quantization is bit-exact (rowwiseGroupQuantFp8); the per-block dot
 * products of FP8 values are exact in float64, and the scaled sum over K blocks is carried in
 * float64 and rounded once, so the graph's float32 accumulation is the only difference.
 */
export function blockScaleGemm(x: F32Tensor, w: Fp8Tensor, wScaleInv: F32Tensor, block: BlockShape): F32Tensor {
  const [m, n, k] = checkGemmOperands(x, w, wScaleInv, block);
  const kb = ceilDiv(k, block.bk);
  const { q, scale: xScale } = rowwiseGroupQuantFp8(x, block.bk, { format: w.format });
  const y = scaledBlockDotsReference(q, (r, b) => xScale.data[r * kb + b]!, w, wScaleInv, block, m, n, k);
  return { data: y, shape: [m, n] };
}

/** checkBlockWeight, and x against it: returns [M, N, K]. */
export function checkGemmOperands(x: F32Tensor, w: Fp8Tensor, wScaleInv: F32Tensor, block: BlockShape): [number, number, number] {
  const [n, k] = checkBlockWeight(w, wScaleInv, block);
  if (x.shape.length !== 2 || x.shape[1] !== k) throw new OpShapeError(`x must be [M, ${k}], got [${x.shape.join(', ')}]`);
  return [x.shape[0]!, n, k];
}

/**
 * The reference of emitScaledBlockDots, shared by the dynamic and the static GEMM: for each output,
 * over the K blocks, acc += (x_q · w_q over the block) * xScaleAt(row, block) * w_scale[i / bn, block],
 * with the dot products exact in float64 and the sum rounded once to float32.
 */
export function scaledBlockDotsReference(
  xq: Fp8Tensor,
  xScaleAt: (row: number, kBlock: number) => number,
  w: Fp8Tensor,
  wScaleInv: F32Tensor,
  block: BlockShape,
  m: number,
  n: number,
  k: number,
): Float32Array {
  const kb = ceilDiv(k, block.bk);
  const decodeX = decodeTableFor(xq.format);
  const decodeW = decodeTableFor(w.format);
  const y = new Float32Array(m * n);
  for (let r = 0; r < m; r++) {
    for (let i = 0; i < n; i++) {
      let acc = 0;
      for (let b = 0; b < kb; b++) {
        let dot = 0;
        for (let j = b * block.bk; j < Math.min(k, (b + 1) * block.bk); j++) {
          dot += decodeX[xq.codes[r * k + j]!]! * decodeW[w.codes[i * k + j]!]!;
        }
        acc += dot * xScaleAt(r, b) * wScaleInv.data[Math.floor(i / block.bn) * kb + b]!;
      }
      y[r * n + i] = acc;
    }
  }
  return y;
}

/** Emits `x [M, K] → [M, N]` float32 (M may be symbolic, and 1), with an optional bias `[N]`. */
export function emitBlockScaleGemm(g: GraphBuilder, x: Value, w: Value, wScaleInv: Value, block: BlockShape, bias?: Value, options: BlockGemmOptions = {}): Value {
  const { format, k } = checkGemmValues(x, w, block);

  // Activations: FP8 codes per group, seen as float32 [kb, M, bk].
  const xq = emitGroupedQuant(g, x, block.bk, format);
  const xCodes = emitCast(g, xq.clamped, fp8DataType(format), true);
  const xGroups = emitTranspose(g, emitCast(g, xCodes, DataType.FLOAT), [1, 0, 2]);
  const xScale = emitTranspose(g, xq.scale, [1, 0, 2]); // [kb, M, 1]
  return emitScaledBlockDots(g, xGroups, xScale, w, wScaleInv, block, k, bias, options);
}

/** The checks every GEMM emitter starts with: the block, the FP8 weight `[N, K]` and the input against it. */
export function checkGemmValues(x: Value, w: Value, block: BlockShape): { format: Fp8Format; k: number } {
  checkBlock(block);
  const format = weightFp8Format(w, `weight "${w.name}"`);
  const wDims = staticDims(w, 'weight');
  if (wDims.length !== 2) throw new GraphBuildError(`weight "${w.name}" must be [N, K], got [${wDims.join(', ')}]`);
  const k = wDims[1]!;
  if ((x.dtype !== DataType.FLOAT && x.dtype !== DataType.FLOAT16) || x.shape.length !== 2 || staticLastDim(x, 'GEMM input') !== k) {
    throw new GraphBuildError(`GEMM input "${x.name}" must be float [M, ${k}], got [${x.shape.join(', ')}]`);
  }
  return { format, k };
}

/**
 * The GEMM over quantized activations, shared by the dynamic (rowwise) and the static activation
 * paths: `xGroups` [kb, M, bk] float32 FP8 values (edge group zero-padded), `xScale` their scales,
 * broadcastable to [kb, M, 1]. Returns `[M, N]` float32 (+ bias).
 */
export function emitScaledBlockDots(
  g: GraphBuilder,
  xGroups: Value,
  xScale: Value,
  w: Value,
  wScaleInv: Value,
  block: BlockShape,
  k: number,
  bias?: Value,
  options: BlockGemmOptions = {},
): Value {
  const n = staticDims(w, 'weight')[0]!;
  const [nb, kb] = staticDims(wScaleInv, 'weight scale');
  if (wScaleInv.shape.length !== 2 || nb !== ceilDiv(n, block.bn) || kb !== ceilDiv(k, block.bk)) {
    throw new GraphBuildError(`weight scale "${wScaleInv.name}" is [${wScaleInv.shape.join(', ')}], expected [${ceilDiv(n, block.bn)}, ${ceilDiv(k, block.bk)}]`);
  }
  const m = xGroups.shape[1]!;
  const { bk, bn } = block;
  if (options.dequantizedWeight !== undefined) return emitDequantizedProduct(g, xGroups, xScale, options.dequantizedWeight, [m, n, k, kb!, bk], bias);

  // Weights: [N, K] codes → float32 [kb, bk, N] (constant-folded).
  const wPadded = emitPadLastAxis(g, emitCast(g, w, DataType.FLOAT), kb! * bk);
  const wGroups = emitTranspose(g, emitReshape(g, wPadded, [n, kb!, bk], [n, kb!, bk]), [1, 2, 0]);

  // Weight scale [nb, kb] → [kb, 1, N]: repeat each row block bn times along N, cut at N.
  const sT = emitReshape(g, emitTranspose(g, emitCast(g, wScaleInv, DataType.FLOAT), [1, 0]), [kb!, nb!, 1], [kb!, nb!, 1]);
  const sExpanded = g.op('Expand', [sT, g.constInt64([kb!, nb!, bn])], { dtype: DataType.FLOAT, shape: [kb!, nb!, bn], name: 'w_scale_expand' });
  const sRows = emitSliceAxis(g, emitReshape(g, sExpanded, [kb!, nb! * bn], [kb!, nb! * bn]), 1, n);
  const wScale = emitReshape(g, sRows, [kb!, 1, n], [kb!, 1, n]);

  const dots = g.op('MatMul', [xGroups, wGroups], { dtype: DataType.FLOAT, shape: [kb!, m, n], name: 'block_dots' });
  const scaledX = g.op('Mul', [dots, xScale], { dtype: DataType.FLOAT, shape: [kb!, m, n], name: 'block_dots_xs' });
  const scaled = g.op('Mul', [scaledX, wScale], { dtype: DataType.FLOAT, shape: [kb!, m, n], name: 'block_dots_ws' });
  const y = g.op(
    'ReduceSum',
    [scaled, g.constInt64([0])],
    { dtype: DataType.FLOAT, shape: [m, n], name: 'gemm' },
    {
      keepdims: attr.int(0),
    },
  );
  if (bias === undefined) return y;
  return g.op('Add', [y, emitCast(g, bias, DataType.FLOAT)], { dtype: DataType.FLOAT, shape: [m, n], name: 'gemm_bias' });
}

/**
 * The dequantized form: x_q * x_scale as float32 `[M, K]` (groups back in row order, the edge
 * group's padding cut) times the dequantized weight `[N, K]`ᵀ, one Gemm, bias included.
 */
function emitDequantizedProduct(g: GraphBuilder, xGroups: Value, xScale: Value, weight: Value, [m, n, k, kb, bk]: [Dim, number, number, number, number], bias?: Value): Value {
  const wDims = staticDims(weight, 'dequantized weight');
  if (wDims.length !== 2 || wDims[0] !== n || wDims[1] !== k) {
    throw new GraphBuildError(`dequantized weight "${weight.name}" is [${weight.shape.join(', ')}], expected [${n}, ${k}]`);
  }
  const scaled = g.op('Mul', [xGroups, xScale], { dtype: DataType.FLOAT, shape: [kb, m, bk], name: 'x_dequant' });
  const rows = emitReshape(g, emitTranspose(g, scaled, [1, 0, 2]), [0, kb * bk], [m, kb * bk]);
  const x = emitSliceAxis(g, rows, 1, k);
  const inputs = bias === undefined ? [x, weight] : [x, weight, emitCast(g, bias, DataType.FLOAT)];
  return g.op('Gemm', inputs, { dtype: DataType.FLOAT, shape: [m, n], name: 'gemm' }, { transB: attr.int(1) });
}
