// A linear's output compared with its reference inside the graph: the sums verify's metrics are
// made of (relative error, cosine, SQNR, and the floor ratio's per-block errors), reduced on the
// device so that only they leave it. A CUDA verify brought every linear's `[rows, N]` outputs (and
// its captured inputs) back to the host to compute these: ~3 s of a 12.6 s 512-token verify of an
// 8B-shaped checkpoint by the measured rates (bench/NOTES.md).
//
// Per row and per group of `bn` output columns (one row block of a block-scale weight), four
// float64 sums, stacked as `[4, rows, nb]` in COMPARISON_SUM_ORDER: Σ ref², Σ act², Σ ref·act and
// Σ (act − ref)²; `overRows`, the rows' sums added up in the graph too (`[4, 1, nb]`: a linear's
// metrics need only the whole and each group, and at 512 tokens the per-row sums were a quarter
// of what a layer sent back, bench/NOTES.md). Float64, as the host's sums are (metrics.ts): each term is then the one the host
// computes (a product of float32 values is exact in float64), and the sums differ only in their
// order. In float32 a square overflows above ~1.8e19 and vanishes below ~1e-23, and a linear with
// such outputs would look perfect.

import { DataType } from '../onnx/data-type.js';
import { attr, type Dim, type GraphBuilder, type Value } from '../onnx/graph-builder.js';
import { ceilDiv, emitCast, emitPadLastAxis, emitReshape, OpShapeError } from './types.js';

/** What each of the four `[rows, nb]` planes holds. */
export const COMPARISON_SUM_ORDER = ['ref2', 'act2', 'dot', 'err2'] as const;

/** Σ ref², Σ act², Σ ref·act and Σ (act − ref)² over `[start, end)`, in float64, in element order. */
export function comparisonTerms(reference: ArrayLike<number>, actual: ArrayLike<number>, start: number, end: number): [number, number, number, number] {
  let ref2 = 0;
  let act2 = 0;
  let dot = 0;
  let err2 = 0;
  for (let i = start; i < end; i++) {
    const x = reference[i]!;
    const y = actual[i]!;
    ref2 += x * x;
    act2 += y * y;
    dot += x * y;
    err2 += (y - x) * (y - x);
  }
  return [ref2, act2, dot, err2];
}

/** Reference implementation: the sums in float64, in the order the graph lays them out (`overRows`: each group's rows added in row order). */
export function comparisonSums(reference: Float32Array, actual: Float32Array, rows: number, bn: number, overRows = false): Float64Array {
  const n = rows > 0 ? reference.length / rows : 0;
  const nb = ceilDiv(n, bn);
  const outRows = overRows ? 1 : rows;
  const out = new Float64Array(4 * outRows * nb);
  const plane = outRows * nb;
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < nb; b++) {
      const terms = comparisonTerms(reference, actual, r * n + b * bn, r * n + Math.min(n, (b + 1) * bn));
      const at = overRows ? b : r * nb + b;
      for (let k = 0; k < 4; k++) out[k * plane + at] = out[k * plane + at]! + terms[k]!;
    }
  }
  return out;
}

/**
 * `[4, rows, nb]` float64 sums of `act` against `ref` (both `[rows, N]` float32), over groups of `bn`
 * columns, or `[4, 1, nb]` with `overRows`; the last group of an N that `bn` does not divide is
 * zero-padded (zeros add nothing).
 */
export function emitComparisonSums(g: GraphBuilder, ref: Value, act: Value, bn: number, overRows = false): Value {
  const [rows, n] = ref.shape;
  const [rowsA, nA] = act.shape;
  // The row count may be symbolic (an MoE expert's group of rows), the same in both; N may not.
  if (rows === undefined || typeof n !== 'number' || rows !== rowsA || n !== nA || ref.shape.length !== 2 || act.shape.length !== 2) {
    throw new OpShapeError(`comparison sums: reference [${ref.shape.join(', ')}] and output [${act.shape.join(', ')}] must be the same [rows, N]`);
  }
  if (!Number.isSafeInteger(bn) || bn < 1) throw new OpShapeError(`comparison sums: column group ${bn} must be a positive integer`);
  const nb = ceilDiv(n, bn);
  const shape: Dim[] = [1, rows, nb, bn];
  const target = [1, typeof rows === 'number' ? rows : -1, nb, bn];
  const grouped = (v: Value): Value => emitCast(g, emitReshape(g, emitPadLastAxis(g, v, nb * bn), target, shape), DataType.DOUBLE);
  const r = grouped(ref);
  const a = grouped(act);
  const f64 = (op: string, inputs: Value[]): Value => g.op(op, inputs, { dtype: DataType.DOUBLE, shape, name: `compare_${op.toLowerCase()}` });
  const diff = f64('Sub', [a, r]);
  // Each product summed before the next is made: one `[rows, N]` float64 product is live at a time, not four.
  const perRow = (v: Value): Value => g.op('ReduceSum', [v, g.constInt64([3])], { dtype: DataType.DOUBLE, shape: [1, rows, nb], name: 'compare_sum' }, { keepdims: attr.int(0) });
  const pairs: [Value, Value][] = [
    [r, r],
    [a, a],
    [r, a],
    [diff, diff],
  ];
  const sums = pairs.map(([x, y]) => perRow(f64('Mul', [x, y])));
  const stacked = g.op('Concat', sums, { dtype: DataType.DOUBLE, shape: [4, rows, nb], name: 'compare_sums' }, { axis: attr.int(0) });
  if (!overRows) return stacked;
  // The rows are added by a product with a row of ones: cuBLAS gives the same bits run after run on
  // one GPU, where onnxruntime's ReduceSum over the rows on CUDA did not, over the middle axis or
  // the last (H200, bench/NOTES.md).
  const count =
    typeof rows === 'number'
      ? g.constInt64([1, rows])
      : g.op(
          'Concat',
          [g.constInt64([1]), g.op('Shape', [ref], { dtype: DataType.INT64, shape: [1], name: 'compare_rows' }, { start: attr.int(0), end: attr.int(1) })],
          { dtype: DataType.INT64, shape: [2], name: 'compare_ones_shape' },
          { axis: attr.int(0) },
        );
  const ones = g.op('Expand', [g.constFloat64([1], [1, 1]), count], { dtype: DataType.DOUBLE, shape: [1, rows], name: 'compare_ones' });
  return g.op('MatMul', [ones, stacked], { dtype: DataType.DOUBLE, shape: [4, 1, nb], name: 'compare_sums_rows' });
}
