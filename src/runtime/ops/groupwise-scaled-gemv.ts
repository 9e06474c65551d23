// dequantize_float8_groupwise_scaled_gemv: MLC LLM's single-token (m = 1) path. Weights are
// dequantized, w[n, k] = fp8(w)[n, k] * scale_inv[n / bn, k / bk] in float32, and the activations
// are NOT quantized (W8A16): y = x · wᵀ.
//
// The graph dequantizes as Cast(fp8 → float) × scale (never DequantizeLinear, which onnxruntime's
// CUDA provider does not run on FP8) and uses Gemm(transB = 1). Weight and scale are
// initializers, so onnxruntime folds the dequantization into one float32 weight at session
// creation: four bytes per weight element in memory, acceptable for verification.
//
// MLC LLM asserts x is [1, K]; both versions here accept [M, K] and treat every row as its own
// GEMV, which the MoE single-token path needs (one row per selected expert). A float16 x is
// widened and the result is float32 (MLC LLM computes in the model dtype; float32 is the more
// accurate yardstick for a verifier).

import { decodeTableFor } from '../../fp8/index.js';
import { DataType } from '../onnx/data-type.js';
import { attr, GraphBuildError, type GraphBuilder, type Value } from '../onnx/graph-builder.js';
import {
  ceilDiv,
  checkBlock,
  checkSize,
  emitCast,
  emitBlockViews,
  weightFp8Format,
  OpShapeError,
  staticDims,
  staticLastDim,
  type BlockGemmOptions,
  type BlockShape,
  type F32Tensor,
  type Fp8Tensor,
} from './types.js';

/** Checks a weight/scale pair against docs/FORMAT.md §1 and returns [N, K]. */
export function checkBlockWeight(w: Fp8Tensor, wScaleInv: F32Tensor, block: BlockShape): [number, number] {
  checkBlock(block);
  checkSize('weight', w.shape, w.codes.length);
  checkSize('weight_scale_inv', wScaleInv.shape, wScaleInv.data.length);
  if (w.shape.length !== 2) throw new OpShapeError(`weight must be [N, K], got [${w.shape.join(', ')}]`);
  const [n, k] = w.shape as [number, number];
  const expected = [ceilDiv(n, block.bn), ceilDiv(k, block.bk)];
  if (wScaleInv.shape.length !== 2 || wScaleInv.shape[0] !== expected[0] || wScaleInv.shape[1] !== expected[1]) {
    throw new OpShapeError(
      `weight_scale_inv is [${wScaleInv.shape.join(', ')}], expected [${expected.join(', ')}] for weight [${n}, ${k}] ` + `in [${block.bn}, ${block.bk}] blocks`,
    );
  }
  return [n, k];
}

function checkInput(x: F32Tensor, k: number): number {
  checkSize('x', x.shape, x.data.length);
  if (x.shape.length !== 2 || x.shape[1] !== k) {
    throw new OpShapeError(`x must be [M, ${k}], got [${x.shape.join(', ')}]`);
  }
  return x.shape[0]!;
}

/** Reference implementation; sums in float64 and rounds each output once. */
export function dequantizeFp8GroupwiseScaledGemv(x: F32Tensor, w: Fp8Tensor, wScaleInv: F32Tensor, block: BlockShape): F32Tensor {
  const [n, k] = checkBlockWeight(w, wScaleInv, block);
  const m = checkInput(x, k);
  const decode = decodeTableFor(w.format);
  const kb = ceilDiv(k, block.bk);
  const dequantized = new Float32Array(n * k);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < k; j++) {
      const s = wScaleInv.data[Math.floor(i / block.bn) * kb + Math.floor(j / block.bk)]!;
      dequantized[i * k + j] = Math.fround(decode[w.codes[i * k + j]!]! * s);
    }
  }
  const y = new Float32Array(m * n);
  for (let r = 0; r < m; r++) {
    for (let i = 0; i < n; i++) {
      let acc = 0;
      for (let j = 0; j < k; j++) acc += x.data[r * k + j]! * dequantized[i * k + j]!;
      y[r * n + i] = acc;
    }
  }
  return { data: y, shape: [m, n] };
}

/** Dequantized float32 weight `[N, K]` of an FP8 weight value and its block scales. */
export function emitDequantizeBlockWeight(g: GraphBuilder, w: Value, wScaleInv: Value, block: BlockShape): Value {
  checkBlock(block);
  weightFp8Format(w, `weight "${w.name}"`);
  const dims = staticDims(w, 'weight');
  if (dims.length !== 2) throw new GraphBuildError(`weight "${w.name}" must be [N, K], got [${dims.join(', ')}]`);
  const view = emitBlockViews(g, w, wScaleInv, block);
  return view.unblock(g.op('Mul', [view.blocks, view.scales], { dtype: DataType.FLOAT, shape: view.blocks.shape, name: `${w.name}_dequant` }));
}

/** Emits `x [M, K] → [M, N]` float32, with an optional float32 bias `[N]`. */
export function emitDequantizeFp8GroupwiseScaledGemv(
  g: GraphBuilder,
  x: Value,
  w: Value,
  wScaleInv: Value,
  block: BlockShape,
  bias?: Value,
  options: BlockGemmOptions = {},
): Value {
  if ((x.dtype !== DataType.FLOAT && x.dtype !== DataType.FLOAT16) || x.shape.length !== 2) {
    throw new GraphBuildError(`GEMV input "${x.name}" must be float [M, K], got [${x.shape.join(', ')}]`);
  }
  const weight = options.dequantizedWeight ?? emitDequantizeBlockWeight(g, w, wScaleInv, block);
  const [n, k] = weight.shape as [number, number];
  if (staticLastDim(x, 'GEMV input') !== k) {
    throw new GraphBuildError(`GEMV input "${x.name}" has K = ${String(x.shape[1])}, weight "${w.name}" has K = ${k}`);
  }
  const x32 = emitCast(g, x, DataType.FLOAT);
  const inputs = bias === undefined ? [x32, weight] : [x32, weight, emitCast(g, bias, DataType.FLOAT)];
  return g.op('Gemm', inputs, { dtype: DataType.FLOAT, shape: [x.shape[0]!, n], name: 'gemv' }, { transB: attr.int(1) });
}
