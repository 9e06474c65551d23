// A plain TypeScript float32 forward, the oracle the graph forward is tested against. Same
// config parsing, layer plan, weight loading, rotary tables and routing as the runner, but every
// computation is a loop on typed arrays (dot products summed in float64, rounded to float32
// once), and FP8 linears/experts use the references of MLC LLM's ops. Slow — O(weights × tokens) in
// JavaScript — and meant for tiny test models only.

import { widenToFloat32 } from '../../fp8/dtypes.js';
import { blockScaleLinear } from '../ops/block-scale-linear.js';
import { staticBlockScaleLinear } from '../ops/static-block-scale-linear.js';
import { mixtralExperts, type RoutingTensor } from '../ops/mixtral-experts.js';
import { attentionScale, type HiddenAct, type ModelSpec } from './config.js';
import { causalMask, MLA_INNER_NORM_EPS, type BatchShape } from './layer-graphs.js';
import { layerPlan, type MlpNames } from './layer-plan.js';
import { ropeTables, type RopeTables } from './rope.js';
import { groupByExpert, routeTokens, singleTokenGroups } from './routing.js';
import type { ModelRunner } from './runner.js';
import type { Fp8Linear, LinearWeight, StoredTensor, WeightScope } from './weights.js';
import { expertProjection, loadExpert, runsAsExpertsOp, type ExpertWeights } from './experts.js';

const f = Math.fround;

/** Sees every linear's input: module (per-expert names for experts), `[rows, K]` activations. */
export type ReferenceTap = (module: string, input: Float32Array, rows: number) => void;

let activeTap: ReferenceTap | undefined;

/**
 * Runs `fn` with `tap` called on the input of every linear the reference forward computes
 * (calibration tests measure activation ranges with it). Not reentrant across concurrent calls.
 */
export async function withReferenceTap<T>(tap: ReferenceTap, fn: () => Promise<T>): Promise<T> {
  const previous = activeTap;
  activeTap = tap;
  try {
    return await fn();
  } finally {
    activeTap = previous;
  }
}

function widen(t: StoredTensor): Float32Array {
  return widenToFloat32(t.bytes, t.dtype);
}

/** `x [rows, K] → [rows, N]`. */
export function referenceLinear(w: LinearWeight, x: Float32Array, rows: number, tapAs: string | false = w.module): Float32Array {
  const [n, k] = [w.weight.shape[0]!, w.weight.shape[1]!];
  if (tapAs !== false) activeTap?.(tapAs, x, rows);
  const bias = w.bias ? widen(w.bias) : undefined;
  if (w.kind === 'fp8') {
    const xt = { data: x, shape: [rows, k] };
    if (w.activationScale !== undefined) return staticBlockScaleLinear(xt, w.activationScale, w.weight, w.scaleInv, w.block, bias).data;
    return blockScaleLinear(xt, w.weight, w.scaleInv, w.block, bias).data;
  }
  const weight = widen(w.weight);
  const y = new Float32Array(rows * n);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < n; i++) {
      let acc = 0;
      for (let j = 0; j < k; j++) acc += x[r * k + j]! * weight[i * k + j]!;
      y[r * n + i] = bias ? f(f(acc) + bias[i]!) : acc;
    }
  }
  return y;
}

function rmsNorm(x: Float32Array, dim: number, weight: Float32Array, eps: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < x.length / dim; r++) {
    let ss = 0;
    for (let j = 0; j < dim; j++) ss += x[r * dim + j]! ** 2;
    const rms = f(Math.sqrt(f(f(ss / dim) + eps)));
    for (let j = 0; j < dim; j++) out[r * dim + j] = f(weight[j]! * f(x[r * dim + j]! / rms));
  }
  return out;
}

function act(v: number, kind: HiddenAct): number {
  switch (kind) {
    case 'silu':
      return v / (1 + Math.exp(-v));
    case 'gelu':
      return 0.5 * v * (1 + erf(v / Math.SQRT2));
    case 'gelu_tanh':
      return 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
  }
}

/** Abramowitz–Stegun 7.1.26 is too coarse for an oracle; this series/continued fraction is exact to ~1e-15. */
function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 3) {
    let sum = ax;
    let term = ax;
    for (let n = 1; n < 200; n++) {
      term *= (-ax * ax) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17) break;
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc continued fraction for large |x|.
  let cf = 0;
  for (let n = 60; n >= 1; n--) cf = n / 2 / (ax + cf);
  return Math.sign(x) * (1 - Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + cf));
}

function mlp(w: { gate: LinearWeight; up: LinearWeight; down: LinearWeight }, x: Float32Array, rows: number, kind: HiddenAct): Float32Array {
  const g = referenceLinear(w.gate, x, rows);
  const u = referenceLinear(w.up, x, rows);
  const a = g.map((v, i) => f(f(act(v, kind)) * u[i]!));
  return referenceLinear(w.down, a, rows);
}

/** Applies rotary embedding in place to `count` vectors of length `rope.dim` at `[pos] → offset`. */
function applyRope(v: Float32Array, offset: number, pos: number, rope: RopeTables, interleave: boolean): void {
  const d = rope.dim;
  const half = d / 2;
  const src = v.slice(offset, offset + d);
  const x = interleave ? Float32Array.from({ length: d }, (_, i) => (i < half ? src[2 * i]! : src[2 * (i - half) + 1]!)) : src;
  for (let i = 0; i < d; i++) {
    const rot = i < half ? -x[i + half]! : x[i - half]!;
    v[offset + i] = f(f(x[i]! * rope.cos[pos * d + i]!) + f(rot * rope.sin[pos * d + i]!));
  }
}

/**
 * softmax(q·kᵀ·scale + mask)·v. q/k are `[B*T, heads, dqk]`, v `[B*T, heads, dv]`, token-major
 * (head h of kv for query head h is `kvHead(h)`). Returns `[B*T, heads*dv]`.
 */
function attention(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  shape: BatchShape,
  heads: number,
  dqk: number,
  dv: number,
  kvHeads: number,
  scale: number,
  mask: Float32Array,
): Float32Array {
  const { batch, seq } = shape;
  const rep = heads / kvHeads;
  const out = new Float32Array(batch * seq * heads * dv);
  const scores = new Float64Array(seq);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < heads; h++) {
      const kh = Math.floor(h / rep);
      for (let i = 0; i < seq; i++) {
        const qOff = ((b * seq + i) * heads + h) * dqk;
        let max = -Infinity;
        for (let j = 0; j < seq; j++) {
          const kOff = ((b * seq + j) * kvHeads + kh) * dqk;
          let dot = 0;
          for (let d = 0; d < dqk; d++) dot += q[qOff + d]! * k[kOff + d]!;
          scores[j] = f(f(dot) * scale) + mask[i * seq + j]!;
          if (scores[j]! > max) max = scores[j]!;
        }
        let sum = 0;
        for (let j = 0; j < seq; j++) {
          scores[j] = Math.exp(scores[j]! - max);
          sum += scores[j]!;
        }
        const oOff = ((b * seq + i) * heads + h) * dv;
        for (let d = 0; d < dv; d++) {
          let acc = 0;
          for (let j = 0; j < seq; j++) acc += (scores[j]! / sum) * v[((b * seq + j) * kvHeads + kh) * dv + d]!;
          out[oOff + d] = acc;
        }
      }
    }
  }
  return out;
}

async function loadMlp(scope: WeightScope, names: MlpNames): Promise<{ gate: LinearWeight; up: LinearWeight; down: LinearWeight }> {
  return { gate: await scope.linear(names.gate), up: await scope.linear(names.up), down: await scope.linear(names.down) };
}

async function attentionBlock(runner: ModelRunner, scope: WeightScope, layer: number, x: Float32Array, shape: BatchShape): Promise<Float32Array> {
  const spec: ModelSpec = runner.spec;
  const plan = layerPlan(spec, runner.weights, layer);
  const tokens = shape.batch * shape.seq;
  const rope = ropeTables(spec.rope, shape.seq, runner.ropeOptions);
  const mask = causalMask(shape.seq, spec.slidingWindow(layer));
  const scale = attentionScale(spec);
  const p = plan.attention;
  if (p.kind === 'gqa' && spec.attention.kind === 'gqa') {
    const { heads, kvHeads, headDim: d } = spec.attention;
    const q = referenceLinear(await scope.linear(p.q), x, tokens);
    const k = referenceLinear(await scope.linear(p.k), x, tokens);
    const v = referenceLinear(await scope.linear(p.v), x, tokens);
    const qNorm = p.qNorm ? widen(await scope.tensor(p.qNorm)) : undefined;
    const kNorm = p.kNorm ? widen(await scope.tensor(p.kNorm)) : undefined;
    // Per head ([d]) or, MiniMax-M2's, over the whole projection ([heads × d]).
    const qn = qNorm ? rmsNorm(q, qNorm.length, qNorm, spec.rmsNormEps) : q;
    const kn = kNorm ? rmsNorm(k, kNorm.length, kNorm, spec.rmsNormEps) : k;
    for (let t = 0; t < tokens; t++) {
      const pos = t % shape.seq;
      for (let h = 0; h < heads; h++) applyRope(qn, (t * heads + h) * d, pos, rope, false);
      for (let h = 0; h < kvHeads; h++) applyRope(kn, (t * kvHeads + h) * d, pos, rope, false);
    }
    const o = attention(qn, kn, v, shape, heads, d, d, kvHeads, scale, mask);
    return referenceLinear(await scope.linear(p.o), o, tokens);
  }
  if (p.kind !== 'mla' || spec.attention.kind !== 'mla') throw new Error('attention plan and spec disagree');
  const a = spec.attention;
  const qk = a.qkNopeHeadDim + a.qkRopeHeadDim;
  let q: Float32Array;
  if (p.qA && p.qB && p.qANorm) {
    const qa = referenceLinear(await scope.linear(p.qA), x, tokens);
    q = referenceLinear(await scope.linear(p.qB), rmsNorm(qa, a.qLoraRank!, widen(await scope.tensor(p.qANorm)), MLA_INNER_NORM_EPS), tokens);
  } else q = referenceLinear(await scope.linear(p.q!), x, tokens);
  const kvWidth = a.kvLoraRank + a.qkRopeHeadDim;
  const compressed = referenceLinear(await scope.linear(p.kvA), x, tokens);
  const latent = new Float32Array(tokens * a.kvLoraRank);
  const kRot = new Float32Array(tokens * a.qkRopeHeadDim);
  for (let t = 0; t < tokens; t++) {
    latent.set(compressed.subarray(t * kvWidth, t * kvWidth + a.kvLoraRank), t * a.kvLoraRank);
    kRot.set(compressed.subarray(t * kvWidth + a.kvLoraRank, (t + 1) * kvWidth), t * a.qkRopeHeadDim);
  }
  const kv = referenceLinear(await scope.linear(p.kvB), rmsNorm(latent, a.kvLoraRank, widen(await scope.tensor(p.kvANorm)), MLA_INNER_NORM_EPS), tokens);
  const kvHead = a.qkNopeHeadDim + a.vHeadDim;
  const key = new Float32Array(tokens * a.heads * qk);
  const value = new Float32Array(tokens * a.heads * a.vHeadDim);
  for (let t = 0; t < tokens; t++) {
    const pos = t % shape.seq;
    applyRope(kRot, t * a.qkRopeHeadDim, pos, rope, spec.rope.interleave);
    for (let h = 0; h < a.heads; h++) {
      // q: nope part as is, rope part rotated in place.
      applyRope(q, (t * a.heads + h) * qk + a.qkNopeHeadDim, pos, rope, spec.rope.interleave);
      const kvOff = (t * a.heads + h) * kvHead;
      key.set(kv.subarray(kvOff, kvOff + a.qkNopeHeadDim), (t * a.heads + h) * qk);
      key.set(kRot.subarray(t * a.qkRopeHeadDim, (t + 1) * a.qkRopeHeadDim), (t * a.heads + h) * qk + a.qkNopeHeadDim);
      value.set(kv.subarray(kvOff + a.qkNopeHeadDim, kvOff + kvHead), (t * a.heads + h) * a.vHeadDim);
    }
  }
  const o = attention(q, key, value, shape, a.heads, qk, a.vHeadDim, a.heads, scale, mask);
  return referenceLinear(await scope.linear(p.o), o, tokens);
}

/** The experts of one MoE block on the host, in MLC LLM's module semantics when all are FP8. */
async function moeBlock(runner: ModelRunner, scope: WeightScope, layer: number, x: Float32Array, tokens: number): Promise<Float32Array> {
  const spec = runner.spec;
  const plan = layerPlan(spec, runner.weights, layer);
  if (plan.mlp.kind !== 'moe') throw new Error('not a MoE layer');
  const m = plan.mlp;
  const h = spec.hiddenSize;
  const router = await scope.linear(m.router);
  const logits = referenceLinear(router, x, tokens);
  const bias = m.scoreBias ? await scope.vector(m.scoreBias) : undefined;
  const routing = routeTokens(logits, m.experts.length, spec.routing!, bias);
  const single = tokens === 1;
  const groups = single ? singleTokenGroups(routing) : groupByExpert(routing);
  const experts: ExpertWeights[] = [];
  for (const e of groups.experts) experts.push(await loadExpert(scope, m, e));
  const sorted = new Float32Array(groups.rows * h);
  for (let r = 0; r < groups.rows; r++) sorted.set(x.subarray(groups.rowToken[r]! * h, (groups.rowToken[r]! + 1) * h), r * h);
  const gated = (g: Float32Array, u: Float32Array): Float32Array => g.map((v, i) => f(f(act(v, spec.hiddenAct)) * u[i]!));
  /** Columns [c0, c1) of a row-major [rows, n] matrix. */
  const columns = (y: Float32Array, rows: number, c0: number, c1: number): Float32Array => {
    const n = y.length / rows;
    const out = new Float32Array(rows * (c1 - c0));
    for (let r = 0; r < rows; r++) out.set(y.subarray(r * n + c0, r * n + c1), r * (c1 - c0));
    return out;
  };

  // Expert by expert, as the runner runs them: an all-FP8 expert through its share of the experts
  // op (its group of rows through the block-scale GEMM, even one row; a single token through the
  // GEMV), any other its linears. So an expert's numerics do not depend on which other experts of
  // the layer received tokens.
  const routed = new Float32Array(groups.rows * h);
  experts.forEach((w, j) => {
    const s = groups.indptr[j]!;
    const e = groups.indptr[j + 1]!;
    const rows = sorted.subarray(s * h, e * h);
    let a: Float32Array;
    if (runsAsExpertsOp(w)) {
      const routing: RoutingTensor = single ? { data: [0], shape: [1, 1] } : { data: [0, e - s], shape: [2] };
      const run = (projection: 'gateUp' | 'gate' | 'up' | 'down', input: Float32Array): Float32Array => {
        const l = expertProjection(w, projection) as Fp8Linear;
        return mixtralExperts({ data: input, shape: [e - s, l.weight.shape[1]!] }, [{ w: l.weight, wScaleInv: l.scaleInv }], routing, l.block).data;
      };
      activeTap?.(w.names.gate, rows, e - s);
      activeTap?.(w.names.up, rows, e - s);
      if (w.layout === 'fused') {
        const gu = run('gateUp', rows);
        a = gated(columns(gu, e - s, 0, w.intermediate), columns(gu, e - s, w.intermediate, 2 * w.intermediate));
      } else a = gated(run('gate', rows), run('up', rows));
      activeTap?.(w.names.down, a, e - s);
      routed.set(run('down', a), s * h);
      return;
    }
    if (w.layout === 'fused') {
      activeTap?.(w.names.gate, rows, e - s);
      activeTap?.(w.names.up, rows, e - s);
      const gu = referenceLinear(w.gateUp, rows, e - s, false);
      a = gated(columns(gu, e - s, 0, w.intermediate), columns(gu, e - s, w.intermediate, 2 * w.intermediate));
    } else a = gated(referenceLinear(w.gate, rows, e - s, w.names.gate), referenceLinear(w.up, rows, e - s, w.names.up));
    routed.set(referenceLinear(w.down, a, e - s, w.names.down), s * h);
  });
  const out = new Float32Array(tokens * h);
  for (let t = 0; t < tokens; t++) {
    for (let i = 0; i < routing.topK; i++) {
      const row = groups.assignmentRow[t * routing.topK + i]!;
      const w = routing.weights[t * routing.topK + i]!;
      for (let j = 0; j < h; j++) out[t * h + j] = f(out[t * h + j]! + f(routed[row * h + j]! * w));
    }
  }
  if (m.shared) {
    const s = mlp(await loadMlp(scope, m.shared), x, tokens, spec.hiddenAct);
    const gate = m.sharedGate ? referenceLinear(await scope.linear(m.sharedGate), x, tokens) : undefined;
    for (let t = 0; t < tokens; t++) {
      const gv = gate ? f(1 / (1 + Math.exp(-gate[t]!))) : 1;
      for (let j = 0; j < h; j++) out[t * h + j] = f(out[t * h + j]! + f(gv * s[t * h + j]!));
    }
  }
  return out;
}

/** One decoder layer on the host: hidden `[B*T, H]` → `[B*T, H]`. */
export async function referenceLayer(runner: ModelRunner, layer: number, hidden: Float32Array, shape: BatchShape): Promise<Float32Array> {
  const spec = runner.spec;
  const tokens = shape.batch * shape.seq;
  const h = spec.hiddenSize;
  const scope = runner.weights.scope();
  try {
    const plan = layerPlan(spec, runner.weights, layer);
    const xn = rmsNorm(hidden, h, widen(await scope.tensor(plan.inputNorm)), spec.rmsNormEps);
    const attn = await attentionBlock(runner, scope, layer, xn, shape);
    const h1 = hidden.map((v, i) => f(v + attn[i]!));
    const xn2 = rmsNorm(h1, h, widen(await scope.tensor(plan.postAttentionNorm)), spec.rmsNormEps);
    const out = plan.mlp.kind === 'dense' ? mlp(await loadMlp(scope, plan.mlp), xn2, tokens, spec.hiddenAct) : await moeBlock(runner, scope, layer, xn2, tokens);
    return h1.map((v, i) => f(v + out[i]!));
  } finally {
    scope.close();
  }
}

/** Final norm and head on the host: logits `[tokens, vocab]`. */
export async function referenceHead(runner: ModelRunner, hidden: Float32Array, tokens: number): Promise<Float32Array> {
  const spec = runner.spec;
  const scope = runner.weights.scope();
  try {
    const { decoder, lmHead } = spec.names;
    const normed = rmsNorm(hidden, spec.hiddenSize, widen(await scope.tensor(`${decoder}.norm.weight`)), spec.rmsNormEps);
    const head = runner.weights.hasLinear(lmHead) ? lmHead : `${decoder}.embed_tokens`;
    return referenceLinear(await scope.linear(head), normed, tokens);
  } finally {
    scope.close();
  }
}

/** Logits `[B*T, vocab]` of `runner`'s checkpoint, computed on the host. */
export async function referenceForward(runner: ModelRunner, ids: ArrayLike<number>, shape: BatchShape): Promise<Float32Array> {
  // Gemma 3's norms and rotary are in the graph forward only; a Llama-style answer would be wrong, not a reference.
  if (runner.spec.gemma || runner.spec.gptOssExperts) throw new Error(`the reference forward has no ${runner.spec.family} variant`);
  const qps = runner.spec.queryPositionScale;
  if (qps && shape.seq > qps.original) throw new Error(`the reference forward has no llama_4_scaling_beta query scale (needed past ${qps.original} tokens)`);
  let hidden = await runner.embed(ids);
  for (let layer = 0; layer < runner.spec.numLayers; layer++) hidden = await referenceLayer(runner, layer, hidden, shape);
  return referenceHead(runner, hidden, shape.batch * shape.seq);
}
