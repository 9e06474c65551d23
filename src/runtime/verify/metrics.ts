// Accuracy metrics of a quantized model against its original, in float64 on the host.
// Model level (per token over the vocabulary): KL(original ‖ quantized) from log-softmax, top-1
// agreement, relative L2 error of the logits. Tensor level (a linear's output on the same
// input): relative L2 error, cosine similarity and SQNR in dB — torchao's compute_error,
// 20·log10(‖ref‖ / ‖ref − actual‖).

import { comparisonTerms } from '../ops/comparison-sums.js';
import { LOGIT_STAT, logitStatCount, type LogitChunkStats, type LogitStat } from '../ops/logit-comparison.js';

export interface LogitMetrics {
  readonly tokens: number;
  readonly meanKl: number;
  readonly maxKl: number;
  /** Token index (row of `[B*T, vocab]`) with the largest KL. */
  readonly maxKlToken: number;
  /** Fraction of tokens whose argmax agrees. */
  readonly top1Agreement: number;
  readonly relativeError: number;
}

export interface TensorMetrics {
  readonly relativeError: number;
  readonly cosine: number;
  /** +Infinity when the outputs are identical. */
  readonly sqnrDb: number;
}

/** Index of the largest value; -1 when the row holds a NaN (no token is "the" prediction then). */
function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 0; i < row.length; i++) {
    if (Number.isNaN(row[i]!)) return -1;
    if (row[i]! > row[best]!) best = i;
  }
  return best;
}

/**
 * KL(p ‖ q) = Σ p (log p − log q) for one token's logits o (original) and q (quantized), in one
 * pass without temporaries: log p − log q = (o − q) − lse(o) + lse(q) and Σ p = 1, so
 * KL = Σ p (o − q) − lse(o) + lse(q). Two exponentials an element instead of three and two
 * log-softmax arrays (512 tokens × a 128k vocabulary is 65M elements per model).
 */
export function klDivergence(original: Float32Array, quantized: Float32Array): number {
  const n = original.length;
  let maxO = -Infinity;
  let maxQ = -Infinity;
  for (let i = 0; i < n; i++) {
    if (original[i]! > maxO) maxO = original[i]!;
    if (quantized[i]! > maxQ) maxQ = quantized[i]!;
  }
  let sumO = 0;
  let sumQ = 0;
  let cross = 0;
  for (let i = 0; i < n; i++) {
    const o = original[i]!;
    const q = quantized[i]!;
    const e = Math.exp(o - maxO);
    sumO += e;
    sumQ += Math.exp(q - maxQ);
    if (e > 0) cross += e * (o - q); // p = 0 contributes nothing, also where q = −∞
  }
  const kl = cross / sumO - (maxO + Math.log(sumO)) + (maxQ + Math.log(sumQ));
  return Math.max(0, kl);
}

/**
 * Per token of logits `[tokens, vocab]`: KL(original ‖ quantized), whether both argmaxes agree (1)
 * or not (0), and the token's comparison sums (comparisonTerms, four per token), from which the
 * logits' relative error is summed in token order: the same number however the tokens were split.
 */
export interface TokenComparison {
  readonly kl: Float64Array;
  readonly agree: Uint8Array;
  readonly terms: Float64Array;
}

/** compareLogits's per-token part (a pool of workers takes rows of tokens each). */
export function compareTokens(original: Float32Array, quantized: Float32Array, vocab: number): TokenComparison {
  const tokens = original.length / vocab;
  const kl = new Float64Array(tokens);
  const agree = new Uint8Array(tokens);
  const terms = new Float64Array(4 * tokens);
  for (let t = 0; t < tokens; t++) {
    const o = original.subarray(t * vocab, (t + 1) * vocab);
    const q = quantized.subarray(t * vocab, (t + 1) * vocab);
    kl[t] = klDivergence(o, q);
    const top = argmax(o);
    agree[t] = top >= 0 && top === argmax(q) ? 1 : 0;
    terms.set(comparisonTerms(o, q, 0, vocab), 4 * t);
  }
  return { kl, agree, terms };
}

export function checkLogitSizes(original: Float32Array, quantized: Float32Array, vocab: number): void {
  if (original.length !== quantized.length || original.length % vocab !== 0) {
    throw new RangeError(`logits sizes differ or are not a multiple of vocab ${vocab}: ${original.length} vs ${quantized.length}`);
  }
}

/** Logits `[tokens, vocab]` of both models. */
export function compareLogits(original: Float32Array, quantized: Float32Array, vocab: number): LogitMetrics {
  checkLogitSizes(original, quantized, vocab);
  return logitMetrics(compareTokens(original, quantized, vocab));
}

/** The model-level metrics from each token's comparison, summed in token order (the same numbers however the tokens were split). */
export function logitMetrics(perToken: TokenComparison): LogitMetrics {
  const tokens = perToken.kl.length;
  const sums = [0, 0, 0, 0];
  for (let t = 0; t < tokens; t++) for (let k = 0; k < 4; k++) sums[k] = sums[k]! + perToken.terms[4 * t + k]!;
  const { relativeError } = tensorMetrics(sums[0]!, sums[1]!, sums[2]!, sums[3]!);
  let klSum = 0;
  let maxKl = -Infinity;
  let maxKlToken = 0;
  let agree = 0;
  for (let t = 0; t < tokens; t++) {
    const kl = perToken.kl[t]!;
    klSum += kl;
    // A NaN KL (NaN logits) is the worst token, not one that never counts: the report must show it.
    if (kl > maxKl || (Number.isNaN(kl) && !Number.isNaN(maxKl))) {
      maxKl = kl;
      maxKlToken = t;
    }
    agree += perToken.agree[t]!;
  }
  return { tokens, meanKl: klSum / tokens, maxKl, maxKlToken, top1Agreement: agree / tokens, relativeError };
}

export function compareTensors(reference: ArrayLike<number>, actual: ArrayLike<number>): TensorMetrics {
  if (reference.length !== actual.length) throw new RangeError(`length mismatch: ${reference.length} vs ${actual.length}`);
  return tensorMetrics(...comparisonTerms(reference, actual, 0, reference.length));
}

/** Per column block of a `[rows, n]` comparison: Σ reference² and Σ (actual − reference)², each block's terms added rows first, then columns. */
export interface BlockSums {
  readonly ref2: Float64Array;
  readonly err2: Float64Array;
}

/**
 * compareTensors of `[rows, n]` tensors (the same numbers, bit for bit: the same terms added in the
 * same order) and, in the same single pass, the sums of each group of `bn` columns.
 */
export function compareTensorsByBlocks(reference: Float32Array, actual: Float32Array, rows: number, bn: number): { metrics: TensorMetrics; blocks: BlockSums } {
  if (reference.length !== actual.length) throw new RangeError(`length mismatch: ${reference.length} vs ${actual.length}`);
  const n = rows > 0 ? reference.length / rows : 0;
  const count = Math.ceil(n / bn);
  const bRef2 = new Float64Array(count);
  const bErr2 = new Float64Array(count);
  let ref2 = 0;
  let act2 = 0;
  let dot = 0;
  let diff2 = 0;
  for (let row = 0; row < rows; row++) {
    for (let b = 0, c0 = 0; c0 < n; b++, c0 += bn) {
      let rs = bRef2[b]!;
      let es = bErr2[b]!;
      for (let i = row * n + c0, end = row * n + Math.min(n, c0 + bn); i < end; i++) {
        const r = reference[i]!;
        const a = actual[i]!;
        const sq = r * r;
        ref2 += sq;
        act2 += a * a;
        dot += r * a;
        diff2 += (r - a) * (r - a);
        rs += sq;
        // As the floor ratio has always written it (a ** 2 is not promised to be a * a).
        es += (a - r) ** 2;
      }
      bRef2[b] = rs;
      bErr2[b] = es;
    }
  }
  return { metrics: tensorMetrics(ref2, act2, dot, diff2), blocks: { ref2: bRef2, err2: bErr2 } };
}

/** The metrics from a comparison's four sums (comparisonTerms: Σref², Σact², Σref·act, Σ(act−ref)²). */
function tensorMetrics(ref2: number, act2: number, dot: number, diff2: number): TensorMetrics {
  const refNorm = Math.sqrt(ref2);
  const diffNorm = Math.sqrt(diff2);
  const relativeError = refNorm === 0 ? diffNorm : diffNorm / refNorm;
  const cosine = ref2 === 0 || act2 === 0 ? (ref2 === act2 ? 1 : 0) : dot / (refNorm * Math.sqrt(act2));
  const sqnrDb = diffNorm === 0 ? Infinity : 20 * Math.log10(refNorm / diffNorm);
  return { relativeError, cosine, sqnrDb };
}

export interface Perplexity {
  /** Next-token predictions scored: (T − 1) per row. */
  readonly predictions: number;
  /** Mean negative log-likelihood of the next token, nats. */
  readonly meanNll: number;
  /** exp(meanNll). */
  readonly perplexity: number;
}

/**
 * Perplexity of logits `[B*T, vocab]` on the ids `[B, T]` they came from: the position t of a
 * row predicts the id at t + 1 (the last position of each row predicts nothing), NLL is
 * −log softmax(logits_t)[id_{t+1}] in float64, perplexity exp(mean NLL).
 */
export function perplexity(logits: Float32Array, ids: ArrayLike<number>, batch: number, seq: number, vocab: number): Perplexity {
  if (logits.length !== batch * seq * vocab || ids.length !== batch * seq) {
    throw new RangeError(`logits [${logits.length}] and ids [${ids.length}] do not fit [${batch}, ${seq}, ${vocab}]`);
  }
  return meanNll(batch, seq, (p) => {
    const row = logits.subarray(p * vocab, (p + 1) * vocab);
    let max = -Infinity;
    for (let i = 0; i < vocab; i++) if (row[i]! > max) max = row[i]!;
    let sum = 0;
    for (let i = 0; i < vocab; i++) sum += Math.exp(row[i]! - max);
    return max + Math.log(sum) - row[ids[p + 1]!]!;
  });
}

/** perplexity from each position's NLL of the next id (`[B*T]`; the last position of a row is not read). */
export function perplexityFromNll(nll: Float64Array, batch: number, seq: number): Perplexity {
  if (nll.length !== batch * seq) throw new RangeError(`${nll.length} NLL values do not fit [${batch}, ${seq}]`);
  return meanNll(batch, seq, (p) => nll[p]!);
}

/** The ids each position's logits predict (the next id of its row; -1 for a row's last position). */
export function nextTokenTargets(ids: ArrayLike<number>, batch: number, seq: number): Int32Array {
  const targets = new Int32Array(batch * seq).fill(-1);
  for (let b = 0; b < batch; b++) for (let t = 0; t + 1 < seq; t++) targets[b * seq + t] = ids[b * seq + t + 1]!;
  return targets;
}

/** Mean NLL over every position but each row's last, in row order, and its exponential. */
function meanNll(batch: number, seq: number, nllAt: (position: number) => number): Perplexity {
  let nll = 0;
  let n = 0;
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t + 1 < seq; t++) {
      nll += nllAt(b * seq + t);
      n++;
    }
  }
  const mean = n === 0 ? NaN : nll / n;
  return { predictions: n, meanNll: mean, perplexity: Math.exp(mean) };
}

/**
 * compareTokens's figures from the logits' in-graph comparison (ops/logit-comparison.ts: each
 * chunk of columns' per-token maxima, exponential sums, argmaxes and comparison sums, chunks in
 * column order), with the same rules: KL = Σ p (o − q) − lse(o) + lse(q), at least 0, NaN where
 * either row holds a NaN; the argmax is the first column of the largest value, and no token agrees
 * whose logits hold a NaN (found from the sums of squares: a square is NaN only of a NaN). The
 * chunks' sums are rescaled to the row's max before they are added, so the figures differ from the
 * host's by rounding only. With `targets` (per token the id perplexity scores, -1 for none; the
 * chunks computed with them), each token's NLL under each model, NaN where it has no target.
 */
export function mergeLogitChunks(
  chunks: readonly LogitChunkStats[],
  tokens: number,
  targets?: Int32Array,
): { readonly comparison: TokenComparison; readonly nll?: { readonly original: Float64Array; readonly quantized: Float64Array } } {
  const width = logitStatCount(targets !== undefined);
  for (const c of chunks) {
    if (c.stats.length !== tokens * width || c.terms.length !== 4 * tokens) {
      throw new RangeError(`logit chunk at column ${c.start}: ${c.stats.length} stats and ${c.terms.length} sums for ${tokens} tokens of ${width} figures`);
    }
  }
  const kl = new Float64Array(tokens);
  const agree = new Uint8Array(tokens);
  const terms = new Float64Array(4 * tokens);
  const nllO = new Float64Array(targets === undefined ? 0 : tokens);
  const nllQ = new Float64Array(targets === undefined ? 0 : tokens);
  const at = (c: LogitChunkStats, t: number, k: LogitStat): number => c.stats[t * width + LOGIT_STAT[k]]!;
  // The row's max, Σ exp(x − max) and (original only) the cross term, from each chunk's, rescaled.
  const side = (t: number, max: LogitStat, ref: LogitStat, sum: LogitStat): { max: number; sum: number; cross: number } => {
    let m = -Infinity;
    let inf = -Infinity;
    for (const c of chunks) {
      if (at(c, t, max) > m) m = at(c, t, max);
      if (sum === 'sumO' && at(c, t, 'infO') > inf) inf = at(c, t, 'infO');
    }
    let s = 0;
    // An element where q = −∞ adds +∞ where its p is not 0 against the row's max, as on the host.
    let cross = Math.exp(inf - m) > 0 ? Infinity : 0;
    for (const c of chunks) {
      // A chunk that adds nothing is skipped: its scale exp(ref − m) may overflow (a −∞ chunk's ref is 0).
      const cs = at(c, t, sum);
      const scale = Math.exp(at(c, t, ref) - m);
      if (cs !== 0) s += cs * scale;
      if (sum === 'sumO') {
        const cc = at(c, t, 'cross');
        if (cc !== 0) cross += cc * scale;
      }
    }
    return { max: m, sum: s, cross };
  };
  const argmax = (t: number, max: LogitStat, arg: LogitStat): number => {
    let best = -1;
    let bestValue = -Infinity;
    for (const c of chunks) {
      const a = at(c, t, arg);
      if (!(a < Infinity)) continue;
      if (best < 0 || at(c, t, max) > bestValue) {
        best = c.start + a;
        bestValue = at(c, t, max);
      }
    }
    return best;
  };
  for (let t = 0; t < tokens; t++) {
    const o = side(t, 'maxO', 'refO', 'sumO');
    const q = side(t, 'maxQ', 'refQ', 'sumQ');
    const lseO = o.max + Math.log(o.sum);
    const lseQ = q.max + Math.log(q.sum);
    kl[t] = Math.max(0, o.cross / o.sum - lseO + lseQ);
    for (const c of chunks) for (let k = 0; k < 4; k++) terms[4 * t + k] = terms[4 * t + k]! + c.terms[k * tokens + t]!;
    const top = argmax(t, 'maxO', 'argO');
    agree[t] = !Number.isNaN(terms[4 * t]!) && !Number.isNaN(terms[4 * t + 1]!) && top >= 0 && top === argmax(t, 'maxQ', 'argQ') ? 1 : 0;
    if (targets !== undefined) {
      const id = targets[t]!;
      const c = chunks.find((x) => id >= x.start && id < x.start + x.count);
      nllO[t] = c === undefined ? NaN : lseO - at(c, t, 'targetO');
      nllQ[t] = c === undefined ? NaN : lseQ - at(c, t, 'targetQ');
    }
  }
  const comparison = { kl, agree, terms };
  return targets === undefined ? { comparison } : { comparison, nll: { original: nllO, quantized: nllQ } };
}

/** Floors below this are taken as this: an error ratio over a (near) exact floor would be noise. */
export const FLOOR_EPSILON = 1e-3;

export type LinearMetrics = TensorMetrics & { readonly floorError?: number; readonly errorRatio?: number };

/**
 * A linear's metrics against its reference and, when its floor probe ran (or its own output stands
 * for it), floorError (whole output) and errorRatio: the largest ratio
 * over the whole output and each group of `bn` output columns (one row block of the weight), so
 * damage to one block of a large matrix is not averaged away by the blocks around it (a zeroed
 * 128×128 block of a 4096×4096 weight moves the whole output's error by ~25 %, its row block's ~4×).
 */
export function linearMetrics(reference: Float32Array, actual: Float32Array, floor: Float32Array | undefined, rows: number, bn: number | undefined): LinearMetrics {
  const n = rows > 0 ? reference.length / rows : 0;
  const perBlock = floor !== undefined && bn !== undefined && n > bn;
  // One pass over the output gives its metrics and its blocks' sums (at 512 tokens these passes
  // were a third of a CUDA verify's time, bench/NOTES.md).
  const { metrics, blocks } = perBlock ? compareTensorsByBlocks(reference, actual, rows, bn) : { metrics: compareTensors(reference, actual), blocks: undefined };
  if (floor === undefined) return metrics;
  // The module's own output standing in for its floor (a floor equal to the stored linear): the
  // floor's sums are the output's.
  const same = floor === actual;
  const floorSums = same ? { metrics, blocks } : perBlock ? compareTensorsByBlocks(reference, floor, rows, bn) : { metrics: compareTensors(reference, floor), blocks: undefined };
  return withFloor(metrics, blocks, floorSums.metrics, floorSums.blocks);
}

/** `metrics` with its floor's error and the error ratio, over the whole output and, given both blocks' sums, each block. */
function withFloor(metrics: TensorMetrics, blocks: BlockSums | undefined, floor: TensorMetrics, floorBlocks: BlockSums | undefined): LinearMetrics {
  const floorError = floor.relativeError;
  let ratio = metrics.relativeError / Math.max(floorError, FLOOR_EPSILON);
  if (blocks !== undefined && floorBlocks !== undefined) {
    for (let b = 0; b < blocks.ref2.length; b++) {
      const ref2 = blocks.ref2[b]!;
      if (ref2 === 0) continue;
      const blockFloor = Math.max(Math.sqrt(floorBlocks.err2[b]! / ref2), FLOOR_EPSILON);
      ratio = Math.max(ratio, Math.sqrt(blocks.err2[b]! / ref2) / blockFloor);
    }
  }
  return { ...metrics, floorError, errorRatio: ratio };
}

/**
 * linearMetrics from the comparison sums a graph computed (ops/comparison-sums.ts: `[4, rows, nb]`
 * float64, per row and group of output columns, or `[4, 1, nb]` already added over the rows), added up here. `floor`: 'output' where
 * the stored linear is its own floor (the floor check found its codes and scales), undefined where
 * no floor applies; the groups are then the floor ratio's row blocks when `perBlock`.
 */
export function linearMetricsFromSums(sums: Float64Array | Float32Array, rows: number, nb: number, floor: 'output' | undefined, perBlock: boolean): LinearMetrics {
  const plane = rows * nb;
  if (sums.length !== 4 * plane) throw new RangeError(`comparison sums: ${sums.length} values, expected 4 × ${rows} × ${nb}`);
  const total = [0, 0, 0, 0];
  const bRef2 = new Float64Array(nb);
  const bErr2 = new Float64Array(nb);
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < nb; b++) {
      const at = r * nb + b;
      for (let k = 0; k < 4; k++) total[k]! += sums[k * plane + at]!;
      bRef2[b]! += sums[at]!;
      bErr2[b]! += sums[3 * plane + at]!;
    }
  }
  const metrics = tensorMetrics(total[0]!, total[1]!, total[2]!, total[3]!);
  if (floor === undefined) return metrics;
  const blocks = perBlock ? { ref2: bRef2, err2: bErr2 } : undefined;
  return withFloor(metrics, blocks, metrics, blocks);
}
