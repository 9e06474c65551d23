// Two models' logits compared inside the graph, one chunk of vocabulary columns at a time, so that
// only per-token figures leave the device and not the `[tokens, vocab]` logits themselves: at 512
// tokens and a 128k vocabulary those are 0.5 GB a model, which come back from a GPU at ~1.5 GB/s
// through onnxruntime-node (bench/NOTES.md).
//
// Per token and chunk, float64, `[tokens, logitStatCount]` in LOGIT_STAT_ORDER:
//   maxO, maxQ   each model's largest logit in the chunk
//   refO, refQ   what the chunk's exponentials are taken against: the max, or 0 where the max is
//                −∞ (a chunk of −∞ logits then adds nothing instead of NaN)
//   sumO, sumQ   Σ exp(x − ref)
//   cross        Σ exp(o − refO)·(o − q), over the elements whose exponential is not 0 (p = 0
//                adds nothing: metrics.ts's klDivergence) and whose q is not −∞ (infO)
//   infO         the largest o where q = −∞ (−∞ where none): its term is +∞ where its p is not 0,
//                which only the row's max decides (p may be 0 against it and not the chunk's)
//   argO, argQ   the first column holding the chunk's max; +∞ where none does (a NaN max)
//   targetO/Q    the logit at the token's `target` column (perplexity), where targets are given
// and, as a second output, the token's four comparison sums over the chunk (comparison-sums.ts,
// one group of all columns: `[4, tokens, 1]`). Float64 as the host's figures are: every exponent
// and difference is then the one the host computes from the same float32 logits, and only the
// order of the sums differs. verify/metrics.ts's mergeLogitChunks adds the chunks up.

import { DataType } from '../onnx/data-type.js';
import { attr, type GraphBuilder, type Value } from '../onnx/graph-builder.js';
import { emitComparisonSums } from './comparison-sums.js';
import { emitCast, OpShapeError, staticDims } from './types.js';

export const LOGIT_STAT_ORDER = ['maxO', 'refO', 'sumO', 'cross', 'infO', 'argO', 'maxQ', 'refQ', 'sumQ', 'argQ', 'targetO', 'targetQ'] as const;
export type LogitStat = (typeof LOGIT_STAT_ORDER)[number];
/** Columns of the stats output: the last two only with targets. */
export function logitStatCount(withTargets: boolean): number {
  return withTargets ? LOGIT_STAT_ORDER.length : LOGIT_STAT_ORDER.length - 2;
}
export const LOGIT_STAT: Readonly<Record<LogitStat, number>> = Object.fromEntries(LOGIT_STAT_ORDER.map((k, i) => [k, i])) as Record<LogitStat, number>;

export interface LogitComparisonValues {
  /** `[tokens, logitStatCount]` float64. */
  readonly stats: Value;
  /** `[4, tokens, 1]` float64 comparison sums (COMPARISON_SUM_ORDER). */
  readonly terms: Value;
}

/**
 * The per-token figures of `original` against `quantized` (both `[tokens, C]` float32 logits of
 * one chunk of columns); `target` `[tokens, 1]` float32 holds each token's column in the chunk
 * (any column where the token's target lies elsewhere: the host takes the chunk that holds it).
 */
export function emitLogitComparison(g: GraphBuilder, original: Value, quantized: Value, target?: Value): LogitComparisonValues {
  const [tokens, cols] = staticDims(original, 'original logits');
  const [tq, cq] = staticDims(quantized, 'quantized logits');
  if (original.shape.length !== 2 || tokens !== tq || cols !== cq) {
    throw new OpShapeError(`logit comparison: original [${original.shape.join(', ')}] and quantized [${quantized.shape.join(', ')}] must be the same [tokens, C]`);
  }
  if (cols! > 2 ** 24) throw new OpShapeError(`logit comparison: a chunk of ${cols} columns; column indices beyond 2^24 are not exact as float32`);
  const t = tokens!;
  const c = cols!;
  const column: Value[] = [];
  const f = (op: string, inputs: Value[], dtype: DataType, shape: readonly number[], attrs: Parameters<GraphBuilder['op']>[3] = {}): Value =>
    g.op(op, inputs, { dtype, shape, name: `logit_${op.toLowerCase()}` }, attrs);
  const reduce = (op: string, v: Value, dtype: DataType): Value => f(op, [v, g.constInt64([1])], dtype, [t, 1], { keepdims: attr.int(1) });
  const toDouble = (v: Value): Value => emitCast(g, v, DataType.DOUBLE);
  const zeroD = toDouble(g.constFloat32([0], []));
  const minusInf = g.constFloat32([-Infinity], []);
  const index = g.constFloat32(
    Float32Array.from({ length: c }, (_, i) => i),
    [c],
    'logit_columns',
  );
  const plusInf = g.constFloat32([Infinity], []);
  const side = (x: Value): { max: Value; ref: Value; sum: Value; exp: Value; xd: Value; arg: Value } => {
    const max = reduce('ReduceMax', x, DataType.FLOAT);
    const ref = f('Where', [f('Equal', [max, minusInf], DataType.BOOL, [t, 1]), g.constFloat32([0], []), max], DataType.FLOAT, [t, 1]);
    const xd = toDouble(x);
    const exp = f('Exp', [f('Sub', [xd, toDouble(ref)], DataType.DOUBLE, [t, c])], DataType.DOUBLE, [t, c]);
    const sum = reduce('ReduceSum', exp, DataType.DOUBLE);
    // The first column equal to the max: metrics.ts's argmax keeps the first of equal values.
    const arg = reduce('ReduceMin', f('Where', [f('Equal', [x, max], DataType.BOOL, [t, c]), index, plusInf], DataType.FLOAT, [t, c]), DataType.FLOAT);
    return { max, ref, sum, exp, xd, arg };
  };
  const o = side(original);
  const q = side(quantized);
  const weighted = f('Mul', [o.exp, f('Sub', [o.xd, q.xd], DataType.DOUBLE, [t, c])], DataType.DOUBLE, [t, c]);
  const qInf = f('Equal', [quantized, minusInf], DataType.BOOL, [t, c]);
  const counted = f('Where', [f('Greater', [o.exp, zeroD], DataType.BOOL, [t, c]), weighted, zeroD], DataType.DOUBLE, [t, c]);
  const cross = reduce('ReduceSum', f('Where', [qInf, zeroD, counted], DataType.DOUBLE, [t, c]), DataType.DOUBLE);
  const infO = reduce('ReduceMax', f('Where', [qInf, original, minusInf], DataType.FLOAT, [t, c]), DataType.FLOAT);
  column.push(toDouble(o.max), toDouble(o.ref), o.sum, cross, toDouble(infO), toDouble(o.arg), toDouble(q.max), toDouble(q.ref), q.sum, toDouble(q.arg));
  if (target !== undefined) {
    const at = emitCast(g, target, DataType.INT64);
    for (const x of [original, quantized]) column.push(toDouble(f('GatherElements', [x, at], DataType.FLOAT, [t, 1], { axis: attr.int(1) })));
  }
  const stats = g.op('Concat', column, { dtype: DataType.DOUBLE, shape: [t, column.length], name: 'logit_stats' }, { axis: attr.int(1) });
  return { stats, terms: emitComparisonSums(g, original, quantized, c) };
}

/** One chunk's figures as a run returns them: columns `[start, start + count)` of the vocabulary. */
export interface LogitChunkStats {
  readonly start: number;
  readonly count: number;
  /** `[tokens, logitStatCount]`, LOGIT_STAT_ORDER. */
  readonly stats: Float64Array;
  /** `[4, tokens, 1]`, COMPARISON_SUM_ORDER. */
  readonly terms: Float64Array;
}
