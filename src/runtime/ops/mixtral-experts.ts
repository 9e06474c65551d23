// MLC LLM's BlockScaleQuantizeMixtralExperts.forward (block_scale_quantization), the MoE expert projections. Like the
// seed, it dispatches on the rank of its routing tensor:
// - `indptr` [E + 1]: rows of x are sorted by expert and expert e owns rows
//   [indptr[e], indptr[e + 1]); each expert's rows go through the block-scale GEMM (activations
//   quantized per token), even a group of one row, as MLC LLM's group GEMM does;
// - `expert_indices` [1, k] (single token): each selected expert runs the W8A16 GEMV. x is
//   [1, K] for the up/gate projections (the token goes to every selected expert) or [k, K] for
//   the down projection (row i goes to expert_indices[0, i]); the result is [k, N].
//
// The graph takes the routing as host data and is built per call: a data-dependent group GEMM
// would need Loop/Scan over int64 inputs, and verification knows its routing when it builds the
// graph. Experts enter as per-expert [N, K] initializers: onnxruntime 1.29 has no FP8 Gather or
// Slice, so stacked [E, N, K] weights are split on the host (views, no copies).
//
// `emitExpertRows` is one expert's share of the op — its group of rows through the GEMM, or the
// single token through the GEMV. The model runner calls it expert by expert, with the group's row
// count left symbolic, so that one graph (and one onnxruntime session) serves every expert of
// every MoE layer instead of a graph per routing (models/runner.ts).

import { DataType } from '../onnx/data-type.js';
import { attr, GraphBuildError, littleEndianBytes, type GraphBuilder, type Value } from '../onnx/graph-builder.js';
import { blockScaleGemm, emitBlockScaleGemm } from './block-scale-gemm.js';
import { dequantizeFp8GroupwiseScaledGemv, emitDequantizeFp8GroupwiseScaledGemv } from './groupwise-scaled-gemv.js';
import { checkSize, emitSliceAxis, fp8DataType, OpShapeError, product, staticLastDim, type BlockShape, type F32Tensor, type Fp8Tensor } from './types.js';

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

/** Per-expert views of stacked `[E, N, K]` codes and `[E, nb, kb]` scales (no copies). */
export function splitStackedExperts(w: Fp8Tensor, wScaleInv: F32Tensor): ExpertWeight[] {
  checkSize('stacked expert weight', w.shape, w.codes.length);
  checkSize('stacked expert scale', wScaleInv.shape, wScaleInv.data.length);
  if (w.shape.length !== 3 || wScaleInv.shape.length !== 3 || w.shape[0] !== wScaleInv.shape[0]) {
    throw new OpShapeError(`stacked experts need weight [E, N, K] and scale [E, nb, kb], got [${w.shape.join(', ')}] and [${wScaleInv.shape.join(', ')}]`);
  }
  const experts = w.shape[0]!;
  const wSize = product(w.shape.slice(1));
  const sSize = product(wScaleInv.shape.slice(1));
  return Array.from({ length: experts }, (_, e) => ({
    w: { codes: w.codes.subarray(e * wSize, (e + 1) * wSize), shape: w.shape.slice(1), format: w.format },
    wScaleInv: { data: wScaleInv.data.subarray(e * sSize, (e + 1) * sSize), shape: wScaleInv.shape.slice(1) },
  }));
}

/** Adds each expert's weight and scale as initializers `<prefix>.<e>.weight` / `.weight_scale_inv`. */
export function addExpertInitializers(g: GraphBuilder, prefix: string, experts: readonly ExpertWeight[]): ExpertValues[] {
  return experts.map((expert, e) => ({
    w: g.initializer(`${prefix}.${e}.weight`, fp8DataType(expert.w.format), expert.w.shape, expert.w.codes),
    wScaleInv: g.initializer(`${prefix}.${e}.weight_scale_inv`, DataType.FLOAT, expert.wScaleInv.shape, littleEndianBytes(expert.wScaleInv.data)),
  }));
}

type Routing = { readonly kind: 'grouped'; readonly indptr: readonly number[] } | { readonly kind: 'single'; readonly experts: readonly number[] };

function parseRouting(routing: RoutingTensor, expertCount: number, rows: number | string): Routing {
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

function emitRows(g: GraphBuilder, x: Value, start: number, end: number): Value {
  if (start === 0 && x.shape[0] === end) return x;
  const shape = [end - start, ...x.shape.slice(1)];
  if (start === 0) return emitSliceAxis(g, x, 0, end);
  return g.op('Slice', [x, g.constInt64([start]), g.constInt64([end]), g.constInt64([0])], {
    dtype: x.dtype,
    shape,
    name: `${x.name}_rows`,
  });
}

/**
 * One expert's rows through the op: grouped rows `[M, K]` (M may be symbolic, and 1) through the
 * block-scale GEMM, or for a single token (`single`) the W8A16 GEMV on `[1, K]`. Returns `[M, N]`.
 */
export function emitExpertRows(g: GraphBuilder, x: Value, expert: ExpertValues, block: BlockShape, single: boolean): Value {
  return single ? emitDequantizeFp8GroupwiseScaledGemv(g, x, expert.w, expert.wScaleInv, block) : emitBlockScaleGemm(g, x, expert.w, expert.wScaleInv, block);
}

/** Emits the experts' forward for one routing (see the module header); returns `[T or k, N]`. */
export function emitMixtralExperts(g: GraphBuilder, x: Value, experts: readonly ExpertValues[], routing: RoutingTensor, block: BlockShape): Value {
  if (x.shape.length !== 2 || typeof x.shape[0] !== 'number') {
    throw new GraphBuildError(`experts input "${x.name}" needs a static [T, K] shape (the graph is built per routing)`);
  }
  if (experts.length === 0) throw new GraphBuildError('no experts');
  staticLastDim(x, 'experts input');
  const rows = x.shape[0];
  const n = experts[0]!.w.shape[0]!;
  const r = parseRouting(routing, experts.length, rows);

  const parts: Value[] = [];
  if (r.kind === 'single') {
    r.experts.forEach((e, i) => {
      const row = rows === 1 ? x : emitRows(g, x, i, i + 1);
      parts.push(emitExpertRows(g, row, experts[e]!, block, true));
    });
  } else {
    for (let e = 0; e < experts.length; e++) {
      const start = r.indptr[e]!;
      const end = r.indptr[e + 1]!;
      if (end === start) continue;
      parts.push(emitExpertRows(g, emitRows(g, x, start, end), experts[e]!, block, false));
    }
  }
  if (parts.length === 0) throw new GraphBuildError('routing selects no rows');
  const outRows = r.kind === 'single' ? r.experts.length : rows;
  if (parts.length === 1) return parts[0]!;
  return g.op('Concat', parts, { dtype: DataType.FLOAT, shape: [outRows, n], name: 'experts' }, { axis: attr.int(0) });
}
