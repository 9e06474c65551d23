// The computations of a decoder layer as graph fragments on a ModelGraph: grouped-query attention
// (Llama, Mistral, Qwen2 with q/k/v bias, Qwen3 with q/k RMSNorm), DeepSeek MLA attention, the
// SwiGLU MLP, and the MoE combine. Activations are token-major `[B*T, H]`; attention reshapes to
// `[B, heads, T, d]`. Every linear goes through ModelGraph.linear, so the same code runs the
// original (dense) and the quantized (FP8) checkpoint.

import type { Value } from '../onnx/graph-builder.js';
import { attentionScale, type ModelSpec } from './config.js';
import type { ModelGraph } from './model-graph.js';
import type { RopeTables } from './rope.js';
import type { LinearWeight, StoredTensor } from './weights.js';

/** DeepSeek's q_a_layernorm / kv_a_layernorm are built with RMSNorm's default eps, not the config's. */
export const MLA_INNER_NORM_EPS = 1e-6;

export interface BatchShape {
  readonly batch: number;
  readonly seq: number;
}

export interface GqaWeights {
  readonly q: LinearWeight;
  readonly k: LinearWeight;
  readonly v: LinearWeight;
  readonly o: LinearWeight;
  readonly qNorm: StoredTensor | undefined;
  readonly kNorm: StoredTensor | undefined;
  /** gpt-oss: one learned logit per head that joins each query's softmax and takes no value. */
  readonly sinks?: StoredTensor | undefined;
}

export interface MlaWeights {
  readonly q: LinearWeight | undefined;
  readonly qA: LinearWeight | undefined;
  readonly qANorm: StoredTensor | undefined;
  readonly qB: LinearWeight | undefined;
  readonly kvA: LinearWeight;
  readonly kvANorm: StoredTensor;
  readonly kvB: LinearWeight;
  readonly o: LinearWeight;
}

export interface MlpWeights {
  readonly gate: LinearWeight;
  readonly up: LinearWeight;
  readonly down: LinearWeight;
}

/** Additive causal mask `[T, T]`: 0 where key j may be seen by query i, −∞ elsewhere. */
export function causalMask(seq: number, window: number | undefined): Float32Array {
  const mask = new Float32Array(seq * seq);
  for (let i = 0; i < seq; i++) {
    for (let j = 0; j < seq; j++) {
      const visible = j <= i && (window === undefined || j > i - window);
      mask[i * seq + j] = visible ? 0 : -Infinity;
    }
  }
  return mask;
}

/** Rotary embedding on `[B, h, T, d]` (transformers' apply_rotary_pos_emb, or its interleaved variant). */
export function emitRope(mg: ModelGraph, x: Value, cos: Value, sin: Value, interleave: boolean): Value {
  const [b, h, t, d] = mg.dims(x) as [number, number, number, number];
  let v = x;
  if (interleave) v = mg.reshape(mg.transpose(mg.reshape(v, [b, h, t, d / 2, 2]), [0, 1, 2, 4, 3]), [b, h, t, d]);
  const x1 = mg.slice(v, -1, 0, d / 2);
  const x2 = mg.slice(v, -1, d / 2, d);
  const rotated = mg.concat([mg.neg(x2), x1], -1);
  return mg.add(mg.mul(v, cos), mg.mul(rotated, sin));
}

/** `[B*T, heads*d]` → `[B, heads, T, d]`. */
export function toHeads(mg: ModelGraph, x: Value, shape: BatchShape, heads: number, d: number): Value {
  return mg.transpose(mg.reshape(x, [shape.batch, shape.seq, heads, d]), [0, 2, 1, 3]);
}

/**
 * softmax(q·kᵀ·scale + mask)·v over `[B, h, T, d]` queries and `[B, h, S, d]` keys/values, back to
 * `[B*T, h*dv]`; with `sinks`, softmax over [scores, sink] without the sink's column.
 */
export function emitSdpa(mg: ModelGraph, q: Value, k: Value, v: Value, scale: number, mask: Value, shape: BatchShape, sinks?: StoredTensor): Value {
  const [, h, , dv] = mg.dims(v) as [number, number, number, number];
  const keys = (mg.dims(k) as [number, number, number, number])[2];
  const scores = mg.add(mg.scale(mg.matmul(q, mg.transpose(k, [0, 1, 3, 2])), scale), mask);
  let probs: Value;
  if (sinks) {
    const sink = mg.expand(mg.reshape(mg.stored(sinks), [1, h, 1, 1]), [shape.batch, h, shape.seq, 1]);
    probs = mg.slice(mg.softmax(mg.concat([scores, sink], -1)), -1, 0, keys);
  } else probs = mg.softmax(scores);
  const out = mg.matmul(probs, v);
  return mg.reshape(mg.transpose(out, [0, 2, 1, 3]), [shape.batch * shape.seq, h * dv]);
}

export function repeatKv(mg: ModelGraph, x: Value, rep: number): Value {
  if (rep === 1) return x;
  const [b, kvh, t, d] = mg.dims(x) as [number, number, number, number];
  return mg.reshape(mg.expand(mg.reshape(x, [b, kvh, 1, t, d]), [b, kvh, rep, t, d]), [b, kvh * rep, t, d]);
}

export interface AttentionContext {
  readonly spec: ModelSpec;
  readonly shape: BatchShape;
  readonly rope: RopeTables;
  readonly window: number | undefined;
}

/** Rotary rows `[T, dim]` for the positions `first … first + T − 1` of a layer's tables. */
export interface RopeRows {
  readonly cos: Value;
  readonly sin: Value;
  /** Position of the first row (0 for a whole-sequence forward, the cache length when decoding). */
  readonly first: number;
}

/** The last mask made, for the next layer's graph: every layer of a forward takes the same one (seq² values each). */
let lastMask: { readonly seq: number; readonly window: number | undefined; readonly mask: Float32Array } | undefined;

function ropeValues(mg: ModelGraph, ctx: AttentionContext): { rows: RopeRows; mask: Value } {
  const { rope, shape } = ctx;
  if (lastMask === undefined || lastMask.seq !== shape.seq || lastMask.window !== ctx.window) {
    lastMask = { seq: shape.seq, window: ctx.window, mask: causalMask(shape.seq, ctx.window) };
  }
  return {
    rows: ropeRowsAt(mg, rope, 0, shape.seq),
    mask: mg.constF32(lastMask.mask, [shape.seq, shape.seq]),
  };
}

/** Rows `first … first + count − 1` of a layer's rotary tables as graph constants. */
export function ropeRowsAt(mg: ModelGraph, rope: RopeTables, first: number, count: number): RopeRows {
  const dim = rope.dim;
  const rows = (t: Float32Array): Float32Array => (first === 0 && t.length === count * dim ? t : t.slice(first * dim, (first + count) * dim));
  return { cos: mg.constF32(rows(rope.cos), [count, dim]), sin: mg.constF32(rows(rope.sin), [count, dim]), first };
}

/** One attention's per-head queries `[B, heads, T, dk]`, keys and values `[B, kvHeads, T, d]`, before SDPA. */
export interface QueryKeyValue {
  readonly query: Value;
  readonly key: Value;
  readonly value: Value;
  /** Heads of `key`/`value` (the cache's heads): kvHeads for GQA, heads for MLA. */
  readonly kvHeads: number;
}

/**
 * Grouped-query attention's projections of normed `x [B*T, H]`, rotary applied: q/k norms (per head,
 * or over the whole projection as MiniMax-M2 has them; Gemma's 1 + w offset), partial rotary
 * (GLM-4.5: only the first rope.dim dims of a head rotate) and Ministral 3's position-dependent
 * query scale. Shared by the whole-sequence forward and the KV-cached decode.
 */
export function gqaProjections(mg: ModelGraph, spec: ModelSpec, w: GqaWeights, x: Value, shape: BatchShape, rope: RopeRows, ropeDim: number): QueryKeyValue {
  const a = spec.attention;
  if (a.kind !== 'gqa') throw new Error('gqaProjections needs a GQA spec');
  const d = a.headDim;
  const offset = spec.gemma?.normOffset ?? 0;
  const headNorm = (v: Value, heads: number, norm: StoredTensor | undefined): Value => {
    const wide = norm !== undefined && heads > 1 && norm.shape[0] === heads * d;
    const split = mg.reshape(wide ? mg.rmsNorm(v, norm, spec.rmsNormEps, offset) : v, [shape.batch, shape.seq, heads, d]);
    return mg.transpose(norm && !wide ? mg.rmsNorm(split, norm, spec.rmsNormEps, offset) : split, [0, 2, 1, 3]);
  };
  const rotate = (v: Value): Value =>
    ropeDim === d ? emitRope(mg, v, rope.cos, rope.sin, false) : mg.concat([emitRope(mg, mg.slice(v, -1, 0, ropeDim), rope.cos, rope.sin, false), mg.slice(v, -1, ropeDim, d)], -1);
  let query = rotate(headNorm(mg.linear(w.q, x), a.heads, w.qNorm));
  const qps = spec.queryPositionScale;
  if (qps) {
    const scale = Float32Array.from({ length: shape.seq }, (_, i) => Math.fround(1 + qps.beta * Math.log(1 + Math.floor((rope.first + i) / qps.original))));
    query = mg.mul(query, mg.constF32(scale, [shape.seq, 1]));
  }
  const key = rotate(headNorm(mg.linear(w.k, x), a.kvHeads, w.kNorm));
  const value = toHeads(mg, mg.linear(w.v, x), shape, a.kvHeads, d);
  return { query, key, value, kvHeads: a.kvHeads };
}

/** Grouped-query attention on normed `x [B*T, H]` → `[B*T, H]`. */
export function emitGqaAttention(mg: ModelGraph, ctx: AttentionContext, w: GqaWeights, x: Value): Value {
  const a = ctx.spec.attention;
  if (a.kind !== 'gqa') throw new Error('emitGqaAttention needs a GQA spec');
  const { rows, mask } = ropeValues(mg, ctx);
  const { query, key, value } = gqaProjections(mg, ctx.spec, w, x, ctx.shape, rows, ctx.rope.dim);
  const rep = a.heads / a.kvHeads;
  const out = emitSdpa(mg, query, repeatKv(mg, key, rep), repeatKv(mg, value, rep), attentionScale(ctx.spec), mask, ctx.shape, w.sinks);
  return mg.linear(w.o, out);
}

/** DeepSeek MLA's per-head queries, keys and values of normed `x` (DeepseekV3Attention.forward, no cache). */
export function mlaProjections(mg: ModelGraph, spec: ModelSpec, w: MlaWeights, x: Value, shape: BatchShape, rope: RopeRows): QueryKeyValue {
  const a = spec.attention;
  if (a.kind !== 'mla') throw new Error('mlaProjections needs an MLA spec');
  const { cos, sin } = rope;
  const qkHead = a.qkNopeHeadDim + a.qkRopeHeadDim;
  let qFlat: Value;
  if (w.qA && w.qB && w.qANorm) qFlat = mg.linear(w.qB, mg.rmsNorm(mg.linear(w.qA, x), w.qANorm, MLA_INNER_NORM_EPS));
  else if (w.q) qFlat = mg.linear(w.q, x);
  else throw new Error('MLA attention needs q_proj or q_a_proj/q_a_layernorm/q_b_proj');
  const q = toHeads(mg, qFlat, shape, a.heads, qkHead);
  const qPass = mg.slice(q, -1, 0, a.qkNopeHeadDim);
  const qRot = emitRope(mg, mg.slice(q, -1, a.qkNopeHeadDim, qkHead), cos, sin, spec.rope.interleave);

  const compressed = mg.linear(w.kvA, x);
  const kPassLatent = mg.slice(compressed, -1, 0, a.kvLoraRank);
  const kRotFlat = mg.slice(compressed, -1, a.kvLoraRank, a.kvLoraRank + a.qkRopeHeadDim);
  const kv = toHeads(mg, mg.linear(w.kvB, mg.rmsNorm(kPassLatent, w.kvANorm, MLA_INNER_NORM_EPS)), shape, a.heads, a.qkNopeHeadDim + a.vHeadDim);
  const kPass = mg.slice(kv, -1, 0, a.qkNopeHeadDim);
  const value = mg.slice(kv, -1, a.qkNopeHeadDim, a.qkNopeHeadDim + a.vHeadDim);
  const kRot1 = emitRope(mg, toHeads(mg, kRotFlat, shape, 1, a.qkRopeHeadDim), cos, sin, spec.rope.interleave);
  const kRot = mg.expand(kRot1, [shape.batch, a.heads, shape.seq, a.qkRopeHeadDim]);
  return { query: mg.concat([qPass, qRot], -1), key: mg.concat([kPass, kRot], -1), value, kvHeads: a.heads };
}

/** DeepSeek-V3 multi-head latent attention (DeepseekV3Attention.forward, no cache). */
export function emitMlaAttention(mg: ModelGraph, ctx: AttentionContext, w: MlaWeights, x: Value): Value {
  const { rows, mask } = ropeValues(mg, ctx);
  const { query, key, value } = mlaProjections(mg, ctx.spec, w, x, ctx.shape, rows);
  return mg.linear(w.o, emitSdpa(mg, query, key, value, attentionScale(ctx.spec), mask, ctx.shape));
}

/** down(act(gate(x)) * up(x)). */
export function emitMlp(mg: ModelGraph, spec: ModelSpec, w: MlpWeights, x: Value): Value {
  return mg.linear(w.down, mg.mul(mg.act(mg.linear(w.gate, x), spec.hiddenAct), mg.linear(w.up, x)));
}
