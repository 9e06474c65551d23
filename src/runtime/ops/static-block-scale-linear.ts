// MLC LLM's BlockScaleQuantizeLinearStaticActivation.forward (block_scale_quantization, used by Ministral-3):
// activations are quantized with the calibrated `activation_scale` (static_activation_group_quant_fp8,
// group = bk) instead of per-token scales, and the block-scale GEMM takes the same scales
// broadcast to every token (broadcast_activation_scale):
//   acc_f32[m, n] += (x_q[m, kb-block] · w_q[n, kb-block]ᵀ) * activation_scale[kb] * w_scale[n / bn, kb].
// Unlike the dynamic linear there is no GEMV branch: MLC LLM's static forward runs the GEMM for
// any number of tokens, one included. A one-element scale applies to every group (a per-tensor
// scale, as transformers stores it).

import { DataType } from '../onnx/data-type.js';
import type { GraphBuilder, Value } from '../onnx/graph-builder.js';
import { checkGemmOperands, checkGemmValues, emitScaledBlockDots, scaledBlockDotsReference } from './block-scale-gemm.js';
import { emitBroadcastActivationScale, emitStaticActivationGroupQuantFp8, staticActivationGroupQuantFp8 } from './static-activation-group-quant-fp8.js';
import { ceilDiv, emitCast, emitPadLastAxis, emitReshape, emitTranspose, OpShapeError, type BlockGemmOptions, type BlockShape, type F32Tensor, type Fp8Tensor } from './types.js';

/**
 * Reference implementation: quantization bit-exact (staticActivationGroupQuantFp8), per-block dot
 * products exact in float64, the scaled sum over K blocks rounded once.
 */
export function staticBlockScaleLinear(x: F32Tensor, activationScale: Float32Array, w: Fp8Tensor, wScaleInv: F32Tensor, block: BlockShape, bias?: Float32Array): F32Tensor {
  const [m, n, k] = checkGemmOperands(x, w, wScaleInv, block);
  if (bias !== undefined && bias.length !== n) throw new OpShapeError(`bias has ${bias.length} elements, expected ${n}`);
  const q = staticActivationGroupQuantFp8(x, activationScale, block.bk, w.format);
  const scaleOf = (_row: number, b: number): number => (activationScale.length === 1 ? activationScale[0]! : activationScale[b]!);
  const y = scaledBlockDotsReference(q, scaleOf, w, wScaleInv, block, m, n, k);
  // y holds each sum rounded once to float32; the bias is added to that, as the graph's Add does.
  if (bias !== undefined) for (let i = 0; i < y.length; i++) y[i] = y[i]! + bias[i % n]!;
  return { data: y, shape: [m, n] };
}

/** Emits `x [M, K] → [M, N]` float32 with `activationScale` `[ceil(K/bk)]` (or `[1]`) and an optional bias. */
export function emitStaticBlockScaleLinear(
  g: GraphBuilder,
  x: Value,
  activationScale: Value,
  w: Value,
  wScaleInv: Value,
  block: BlockShape,
  bias?: Value,
  options: BlockGemmOptions = {},
): Value {
  const { format, k } = checkGemmValues(x, w, block);
  const kb = ceilDiv(k, block.bk);
  const m = x.shape[0]!;
  // x_q [M, K] → float32 groups [kb, M, bk] (FP8 has no Pad: pad after the cast back).
  const codes = emitStaticActivationGroupQuantFp8(g, x, activationScale, block.bk, format);
  const padded = emitPadLastAxis(g, emitCast(g, codes, DataType.FLOAT), kb * block.bk);
  const xGroups = emitTranspose(g, emitReshape(g, padded, [0, kb, block.bk], [m, kb, block.bk]), [1, 0, 2]);
  // broadcast_activation_scale(x, s, transpose=True): [G, M] (the CUTLASS layout), as [G, M, 1].
  const scaleT = emitBroadcastActivationScale(g, x, emitCast(g, activationScale, DataType.FLOAT), true);
  const groups = activationScale.shape[0] as number;
  const xScale = emitReshape(g, scaleT, [groups, 0, 1], [groups, m, 1]);
  return emitScaledBlockDots(g, xGroups, xScale, w, wScaleInv, block, k, bias, options);
}
