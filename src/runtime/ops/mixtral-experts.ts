// MLC LLM's BlockScaleQuantizeMixtralExperts.forward (block_scale_quantization), the MoE expert
// projections. It dispatches on the rank of its routing tensor:
// - `indptr` [E + 1]: rows of x are sorted by expert and expert e owns rows
//   [indptr[e], indptr[e + 1]); each expert's rows go through the block-scale GEMM (activations
//   quantized per token), even a group of one row, as MLC LLM's group GEMM does;
// - `expert_indices` [1, k] (single token): each selected expert runs the W8A16 GEMV. x is
//   [1, K] for the up/gate projections (the token goes to every selected expert) or [k, K] for
//   the down projection (row i goes to expert_indices[0, i]); the result is [k, N].
//
// `mixtralExperts` is the reference. In graphs the op is emitted one expert at a time
// (`emitExpertRows`): the model runner keeps the routing on the host and runs each routed expert
// on its group of rows in a graph whose row count is symbolic, so that one graph (and one
// onnxruntime session) serves every expert of every MoE layer (models/runner.ts); a graph of the
// whole op would hold one routing and need a session per call.

import type { GraphBuilder, Value } from '../onnx/graph-builder.js';
import { blockScaleGemm, emitBlockScaleGemm } from './block-scale-gemm.js';
import { dequantizeFp8GroupwiseScaledGemv, emitDequantizeFp8GroupwiseScaledGemv } from './groupwise-scaled-gemv.js';
import { checkSize, OpShapeError, type BlockGemmOptions, type BlockShape, type F32Tensor, type Fp8Tensor } from './types.js';

export interface ExpertWeight {
  /** `[N, K]` codes. */
  readonly w: Fp8Tensor;
  /** `[ceil(N/bn), ceil(K/bk)]`. */
  readonly wScaleInv: F32Tensor;
}

export interface ExpertValues {
  readonly w: Value;
  readonly wScaleInv: Value;
}

/** Routing: `indptr` [E + 1] (grouped rows) or `expert_indices` [1, k] (single token). */
export interface RoutingTensor {
  readonly data: Int32Array | readonly number[];
  readonly shape: readonly number[];
}

type Routing = { readonly kind: 'grouped'; readonly indptr: readonly number[] } | { readonly kind: 'single'; readonly experts: readonly number[] };

function parseRouting(routing: RoutingTensor, expertCount: number, rows: number): Routing {
  const data = Array.from(routing.data);
  checkSize('routing', routing.shape, data.length);
  if (routing.shape.length === 2) {
    if (routing.shape[0] !== 1) throw new OpShapeError(`expert_indices must be [1, k], got [${routing.shape.join(', ')}]`);
    for (const e of data) {
      if (!Number.isInteger(e) || e < 0 || e >= expertCount) {
        throw new OpShapeError(`expert index ${e} is out of range for ${expertCount} experts`);
      }
    }
    if (rows !== 1 && rows !== data.length) {
      throw new OpShapeError(`single-token x must have 1 or ${data.length} rows (one per selected expert), got ${rows}`);
    }
    return { kind: 'single', experts: data };
  }
  if (routing.shape.length !== 1 || data.length !== expertCount + 1) {
    throw new OpShapeError(`indptr must be [${expertCount + 1}] for ${expertCount} experts, got [${routing.shape.join(', ')}]`);
  }
  if (data[0] !== 0) throw new OpShapeError(`indptr must start at 0, got ${data[0]}`);
  for (let e = 0; e < expertCount; e++) {
    if (!Number.isInteger(data[e + 1]) || data[e + 1]! < data[e]!) {
      throw new OpShapeError(`indptr must be non-decreasing integers, got [${data.join(', ')}]`);
    }
  }
  if (data[expertCount] !== rows) {
    throw new OpShapeError(`indptr covers ${data[expertCount]} rows but x has ${rows}`);
  }
  return { kind: 'grouped', indptr: data };
}

/** Reference implementation. */
export function mixtralExperts(x: F32Tensor, experts: readonly ExpertWeight[], routing: RoutingTensor, block: BlockShape): F32Tensor {
  checkSize('x', x.shape, x.data.length);
  if (x.shape.length !== 2) throw new OpShapeError(`x must be [T, K], got [${x.shape.join(', ')}]`);
  if (experts.length === 0) throw new OpShapeError('no experts');
  const [rows, k] = x.shape as [number, number];
  const n = experts[0]!.w.shape[0]!;
  const r = parseRouting(routing, experts.length, rows);
  const rowOf = (i: number): F32Tensor => ({ data: x.data.subarray(i * k, (i + 1) * k), shape: [1, k] });

  if (r.kind === 'single') {
    const y = new Float32Array(r.experts.length * n);
    r.experts.forEach((e, i) => {
      const expert = experts[e]!;
      const yi = dequantizeFp8GroupwiseScaledGemv(rowOf(rows === 1 ? 0 : i), expert.w, expert.wScaleInv, block);
      y.set(yi.data, i * n);
    });
    return { data: y, shape: [r.experts.length, n] };
  }

  const y = new Float32Array(rows * n);
  for (let e = 0; e < experts.length; e++) {
    const start = r.indptr[e]!;
    const end = r.indptr[e + 1]!;
    if (end === start) continue;
    const xe: F32Tensor = { data: x.data.subarray(start * k, end * k), shape: [end - start, k] };
    const expert = experts[e]!;
    y.set(blockScaleGemm(xe, expert.w, expert.wScaleInv, block).data, start * n);
  }
  return { data: y, shape: [rows, n] };
}

/**
 * One expert's rows through the op: grouped rows `[M, K]` (M may be symbolic, and 1) through the
 * block-scale GEMM, or for a single token (`single`) the W8A16 GEMV on `[1, K]`. Returns `[M, N]`.
 */
export function emitExpertRows(g: GraphBuilder, x: Value, expert: ExpertValues, block: BlockShape, single: boolean, options: BlockGemmOptions = {}): Value {
  return single
    ? emitDequantizeFp8GroupwiseScaledGemv(g, x, expert.w, expert.wScaleInv, block, undefined, options)
    : emitBlockScaleGemm(g, x, expert.w, expert.wScaleInv, block, undefined, options);
}
