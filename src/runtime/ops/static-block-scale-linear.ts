// BlockScaleQuantizeLinearStaticActivation.forward of the seed (MLC LLM, used by Ministral-3):
// activations are quantized with the calibrated `activation_scale` (static_activation_group_quant_fp8,
// group = bk) instead of per-token scales, and the block-scale GEMM takes the same scales
// broadcast to every token (broadcast_activation_scale):
//   acc_f32[m, n] += (x_q[m, kb-block] · w_q[n, kb-block]ᵀ) * activation_scale[kb] * w_scale[n / bn, kb].
// Unlike the dynamic linear there is no GEMV branch: the seed's static forward runs the GEMM for
// any number of tokens, one included. A one-element scale applies to every group (a per-tensor
// scale, as transformers stores it).

import { decodeTableFor } from '../../fp8/index.js';
import { DataType } from '../onnx/data-type.js';
import type { GraphBuilder, Value } from '../onnx/graph-builder.js';
import { checkGemmInput, emitScaledBlockDots } from './block-scale-gemm.js';
import { checkBlockWeight } from './groupwise-scaled-gemv.js';
import { emitBroadcastActivationScale, emitStaticActivationGroupQuantFp8, staticActivationGroupQuantFp8 } from './static-activation-group-quant-fp8.js';
import { ceilDiv, checkBlock, emitCast, emitPadLastAxis, emitReshape, emitTranspose, OpShapeError, type BlockShape, type F32Tensor, type Fp8Tensor, weightFp8Format } from './types.js';

/**
 * Reference implementation: quantization bit-exact (staticActivationGroupQuantFp8), per-block dot
 * products exact in float64, the scaled sum over K blocks rounded once.
 */
export function staticBlockScaleLinear(
  x: F32Tensor,
  activationScale: Float32Array,
  w: Fp8Tensor,
  wScaleInv: F32Tensor,
  block: BlockShape,
  bias?: Float32Array,
): F32Tensor {
  const [n, k] = checkBlockWeight(w, wScaleInv, block);
  if (x.shape.length !== 2 || x.shape[1] !== k) throw new OpShapeError(`x must be [M, ${k}], got [${x.shape.join(', ')}]`);
  if (bias !== undefined && bias.length !== n) throw new OpShapeError(`bias has ${bias.length} elements, expected ${n}`);
  const m = x.shape[0]!;
  const kb = ceilDiv(k, block.bk);
  const q = staticActivationGroupQuantFp8(x, activationScale, block.bk, w.format);
  const decodeX = decodeTableFor(q.format);
  const decodeW = decodeTableFor(w.format);
  const y = new Float32Array(m * n);
  for (let r = 0; r < m; r++) {
    for (let i = 0; i < n; i++) {
      let acc = 0;
      for (let b = 0; b < kb; b++) {
        let dot = 0;
        for (let j = b * block.bk; j < Math.min(k, (b + 1) * block.bk); j++) dot += decodeX[q.codes[r * k + j]!]! * decodeW[w.codes[i * k + j]!]!;
        const s = activationScale.length === 1 ? activationScale[0]! : activationScale[b]!;
        acc += dot * s * wScaleInv.data[Math.floor(i / block.bn) * kb + b]!;
      }
      y[r * n + i] = bias === undefined ? acc : Math.fround(acc) + bias[i]!;
    }
  }
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
): Value {
  checkBlock(block);
  const format = weightFp8Format(w, `weight "${w.name}"`);
  const k = checkGemmInput(x, w);
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
  return emitScaledBlockDots(g, xGroups, xScale, w, wScaleInv, block, k, bias);
}
