// MoE routing on the host: router logits (computed in a graph) → each token's top-k experts and
// their weights, then the expert-sorted layout MLC LLM's MoE experts op takes (rows grouped by
// expert, `indptr` offsets) and the inverse map that brings expert outputs back to tokens.
//
// Routing is data-dependent control flow: doing it here keeps it out of the graphs (the runner
// runs each routed expert on its group of rows, then combines with the weights as data) and gives
// the reference forward the identical choice.
// Semantics follow transformers: Mixtral / Qwen-MoE softmax top-k (renormalized for Mixtral, by
// `norm_topk_prob` for Qwen); DeepSeek-V3 sigmoid scores with `e_score_correction_bias` added for
// the choice only, group-limited selection (sum of each group's top-2, keep `topk_group` groups,
// others masked to 0.0), weights from the unbiased scores, normalized (+1e-20) when
// `norm_topk_prob`, times `routed_scaling_factor`; DeepSeek-V2 softmax scores, groups ranked by
// their largest score (`group_limited_greedy`), the same normalization and scaling.

import type { RoutingSpec } from './config.js';

const f = Math.fround;

export interface TokenRouting {
  readonly tokens: number;
  readonly topK: number;
  /** `[tokens, topK]`: expert of each assignment. */
  readonly experts: Int32Array;
  /** `[tokens, topK]`: its weight. */
  readonly weights: Float32Array;
}

/** Indices of the k largest values, largest first; ties keep the lower index first. */
export function topKIndices(values: ArrayLike<number>, k: number): number[] {
  const idx = Array.from({ length: values.length }, (_, i) => i);
  idx.sort((a, b) => values[b]! - values[a]! || a - b);
  return idx.slice(0, k);
}

function softmaxRow(row: Float32Array): Float32Array {
  let max = -Infinity;
  for (const v of row) if (v > max) max = v;
  let sum = 0;
  const e = new Float64Array(row.length);
  for (let i = 0; i < row.length; i++) {
    e[i] = Math.exp(row[i]! - max);
    sum += e[i]!;
  }
  return Float32Array.from(e, (v) => v / sum);
}

/** The chosen experts' weights divided by their float32 sum (plus `epsilon`, as the model's code adds it). */
function normalized(w: readonly number[], epsilon: number): number[] {
  let sum = 0;
  for (const v of w) sum = f(sum + v);
  const denominator = epsilon === 0 ? sum : f(sum + epsilon);
  return w.map((v) => f(v / denominator));
}

function sigmoid(x: number): number {
  return f(1 / (1 + Math.exp(-x)));
}

/**
 * Routes every token. `logits` is `[tokens, experts]` float32; `bias` is DeepSeek's
 * e_score_correction_bias (required for 'sigmoid_grouped').
 */
export function routeTokens(logits: Float32Array, expertCount: number, spec: RoutingSpec, bias?: Float32Array): TokenRouting {
  const tokens = logits.length / expertCount;
  const k = spec.topK;
  if (!Number.isInteger(tokens)) throw new RangeError(`router logits (${logits.length}) are not a multiple of ${expertCount} experts`);
  if (k > expertCount) throw new RangeError(`num_experts_per_tok ${k} exceeds ${expertCount} experts`);
  const experts = new Int32Array(tokens * k);
  const weights = new Float32Array(tokens * k);
  for (let t = 0; t < tokens; t++) {
    const row = logits.subarray(t * expertCount, (t + 1) * expertCount);
    let chosen: number[];
    let w: number[];
    if (spec.kind === 'topk_softmax') {
      chosen = topKIndices(row, k);
      w = [...softmaxRow(Float32Array.from(chosen, (e) => row[e]!))];
    } else if (spec.kind === 'softmax_grouped') {
      const p = softmaxRow(row);
      const perGroup = expertCount / spec.nGroup;
      const groupMax = Array.from({ length: spec.nGroup }, (_, gi) => Math.max(...p.subarray(gi * perGroup, (gi + 1) * perGroup)));
      const keptGroups = new Set(topKIndices(groupMax, spec.topkGroup));
      chosen = topKIndices(
        p.map((v, e) => (keptGroups.has(Math.floor(e / perGroup)) ? v : 0)),
        k,
      );
      w = chosen.map((e) => p[e]!);
      if (spec.normalize) w = normalized(w, 1e-20);
      w = w.map((v) => f(v * spec.routedScalingFactor));
    } else if (spec.kind === 'softmax') {
      const p = softmaxRow(row);
      chosen = topKIndices(p, k);
      w = chosen.map((e) => p[e]!);
      if (spec.normalize) w = normalized(w, 0);
    } else {
      if (bias === undefined || bias.length !== expertCount) {
        throw new RangeError(`sigmoid routing needs e_score_correction_bias [${expertCount}]`);
      }
      const scores = Float32Array.from(row, sigmoid);
      const choice = scores.map((s, e) => f(s + bias[e]!));
      const perGroup = expertCount / spec.nGroup;
      const groupScores = Array.from({ length: spec.nGroup }, (_, gi) => {
        const group = choice.subarray(gi * perGroup, (gi + 1) * perGroup);
        return topKIndices(group, Math.min(2, perGroup)).reduce((acc, i) => f(acc + group[i]!), 0);
      });
      const keptGroups = new Set(topKIndices(groupScores, spec.topkGroup));
      const masked = choice.map((v, e) => (keptGroups.has(Math.floor(e / perGroup)) ? v : 0));
      chosen = topKIndices(masked, k);
      w = chosen.map((e) => scores[e]!);
      if (spec.normalize) w = normalized(w, 1e-20);
      w = w.map((v) => f(v * spec.routedScalingFactor));
    }
    for (let i = 0; i < k; i++) {
      experts[t * k + i] = chosen[i]!;
      weights[t * k + i] = w[i]!;
    }
  }
  return { tokens, topK: k, experts, weights };
}

/** Assignments grouped by expert, in the layout of MLC LLM's `indptr`. */
export interface ExpertGroups {
  /** Experts that received at least one row, ascending. */
  readonly experts: readonly number[];
  /** `[experts.length + 1]` offsets into the sorted rows (compact: one entry per listed expert). */
  readonly indptr: readonly number[];
  /** Token of each sorted row. */
  readonly rowToken: Int32Array;
  /** `[tokens * topK]`: the sorted row of assignment (t, i). */
  readonly assignmentRow: Int32Array;
  readonly rows: number;
  /** True for a single token's top-k slots in routing order (MLC LLM's expert_indices path). */
  readonly single?: boolean;
}

/** Stable sort of the assignments by expert (tokens stay in order within an expert). */
export function groupByExpert(routing: TokenRouting): ExpertGroups {
  const n = routing.tokens * routing.topK;
  const order = Array.from({ length: n }, (_, a) => a);
  order.sort((a, b) => routing.experts[a]! - routing.experts[b]! || a - b);
  const experts: number[] = [];
  const indptr: number[] = [0];
  const rowToken = new Int32Array(n);
  const assignmentRow = new Int32Array(n);
  order.forEach((assignment, row) => {
    const e = routing.experts[assignment]!;
    if (experts.length === 0 || experts[experts.length - 1] !== e) {
      if (experts.length > 0) indptr.push(row);
      experts.push(e);
    }
    rowToken[row] = Math.floor(assignment / routing.topK);
    assignmentRow[assignment] = row;
  });
  indptr.push(n);
  return { experts, indptr, rowToken, assignmentRow, rows: n };
}

/**
 * A single token's assignments as groups: its k experts in top-k order, one row each (MLC LLM's
 * expert_indices path), not sorted by expert.
 */
export function singleTokenGroups(routing: TokenRouting): ExpertGroups {
  const k = routing.topK;
  return {
    experts: Array.from(routing.experts),
    indptr: Array.from({ length: k + 1 }, (_, i) => i),
    rowToken: new Int32Array(k),
    assignmentRow: Int32Array.from({ length: k }, (_, i) => i),
    rows: k,
    single: true,
  };
}
