// MLC LLM's BlockScaleQuantizeLinear.forward (block_scale_quantization): one token (M == 1) takes the W8A16 GEMV, more
// take the block-scale GEMM with dynamically quantized activations. With a static M the emitter
// picks the path while building; with a symbolic M it emits an ONNX If on M == 1, so one graph
// serves decode and prefill the way MLC LLM's runtime dispatch does.
//
// Bias: MLC LLM's M == 1 branch returns the GEMV result without adding the bias (only the GEMM
// branch adds it). That is a bug for any linear with a bias (Qwen2's q/k/v), and a verifier must
// not copy it: here both paths add the bias.

import { DataType } from '../onnx/data-type.js';
import { GraphBuildError, attr, type GraphBuilder, type Value } from '../onnx/graph-builder.js';
import { blockScaleGemm, emitBlockScaleGemm } from './block-scale-gemm.js';
import { dequantizeFp8GroupwiseScaledGemv, emitDequantizeFp8GroupwiseScaledGemv } from './groupwise-scaled-gemv.js';
import { OpShapeError, staticDims, type BlockGemmOptions, type BlockShape, type F32Tensor, type Fp8Tensor } from './types.js';

/** Reference implementation. */
export function blockScaleLinear(x: F32Tensor, w: Fp8Tensor, wScaleInv: F32Tensor, block: BlockShape, bias?: Float32Array): F32Tensor {
  const y = x.shape[0] === 1 ? dequantizeFp8GroupwiseScaledGemv(x, w, wScaleInv, block) : blockScaleGemm(x, w, wScaleInv, block);
  if (bias === undefined) return y;
  const n = y.shape[1]!;
  if (bias.length !== n) throw new OpShapeError(`bias has ${bias.length} elements, expected ${n}`);
  for (let i = 0; i < y.data.length; i++) y.data[i] = y.data[i]! + bias[i % n]!;
  return y;
}

/** Emits `x [M, K] → [M, N]` float32; see the module header for the dispatch. */
export function emitBlockScaleLinear(g: GraphBuilder, x: Value, w: Value, wScaleInv: Value, block: BlockShape, bias?: Value, options: BlockGemmOptions = {}): Value {
  if (x.shape.length !== 2) throw new GraphBuildError(`linear input "${x.name}" must be [M, K], got [${x.shape.join(', ')}]`);
  const m = x.shape[0]!;
  if (m === 1) return emitDequantizeFp8GroupwiseScaledGemv(g, x, w, wScaleInv, block, bias, options);
  if (typeof m === 'number') return emitBlockScaleGemm(g, x, w, wScaleInv, block, bias, options);

  const n = staticDims(w, 'weight')[0]!;
  const rows = g.op('Shape', [x], { dtype: DataType.INT64, shape: [1], name: 'm' }, { start: attr.int(0), end: attr.int(1) });
  const isSingle = g.op('Equal', [rows, g.constInt64([1])], { dtype: DataType.BOOL, shape: [1], name: 'm_is_1' });
  const gemv = g.subgraph('gemv_branch');
  gemv.output(emitDequantizeFp8GroupwiseScaledGemv(gemv, x, w, wScaleInv, block, bias, options));
  const gemm = g.subgraph('gemm_branch');
  gemm.output(emitBlockScaleGemm(gemm, x, w, wScaleInv, block, bias, options));
  return g.op(
    'If',
    [isSingle],
    { dtype: DataType.FLOAT, shape: [m, n], name: 'linear' },
    {
      then_branch: attr.graph(gemv),
      else_branch: attr.graph(gemm),
    },
  );
}
