// Attention with a key/value cache, for generation: the new tokens' queries attend over the keys
// and values of every earlier position, kept on the host per layer (KvCache), plus their own. A
// decode step then runs each layer on one token — one pass over the weights — instead of re-running
// the whole sequence.
//
// The cache has a fixed capacity and the graph takes all of it with an additive mask over the slots
// not yet filled, so every decode step of every layer (same shapes) builds the same graph bytes and
// runs in one cached onnxruntime session (session-cache.ts); the first step (the prompt) has no past
// and attends causally over its own tokens. Keys are cached after rotary embedding (and q/k norm),
// so a cached key never changes. MLA caches its per-head keys and values as the plain forward
// computes them (not the compressed latent): simple, and exact with respect to that forward.
//
// The projections are the uncached forward's own (layer-graphs.ts gqaProjections/mlaProjections,
// every family's variants included); this module owns only what a cache changes: which rotary rows
// and mask the new tokens get, and the keys and values kept between steps.

import type { Value } from '../onnx/graph-builder.js';
import type { HostTensor } from '../onnx/session.js';
import { attentionScale, type ModelSpec } from './config.js';
import { emitSdpa, gqaProjections, mlaProjections, repeatKv, ropeRowsAt, type BatchShape } from './layer-graphs.js';
import { ForwardGraphError, type ModelGraph } from './model-graph.js';
import type { RopeTables } from './rope.js';
import type { LayerAttention, LayerAttentionHook } from './runner.js';

/** One layer's cached keys `[heads, capacity, keyDim]` and values `[heads, capacity, valueDim]`. */
export class LayerKvCache {
  readonly keys: Float32Array;
  readonly values: Float32Array;

  constructor(
    readonly heads: number,
    readonly capacity: number,
    readonly keyDim: number,
    readonly valueDim: number,
  ) {
    this.keys = new Float32Array(heads * capacity * keyDim);
    this.values = new Float32Array(heads * capacity * valueDim);
  }

  /** Stores `count` new positions from `position` on: `k [heads, count, keyDim]`, `v [heads, count, valueDim]`. */
  write(position: number, count: number, k: Float32Array, v: Float32Array): void {
    if (position + count > this.capacity) throw new ForwardGraphError(`KV cache overflow: ${position + count} positions, capacity ${this.capacity}`);
    for (let h = 0; h < this.heads; h++) {
      this.keys.set(k.subarray(h * count * this.keyDim, (h + 1) * count * this.keyDim), (h * this.capacity + position) * this.keyDim);
      this.values.set(v.subarray(h * count * this.valueDim, (h + 1) * count * this.valueDim), (h * this.capacity + position) * this.valueDim);
    }
  }

  get bytes(): number {
    return this.keys.byteLength + this.values.byteLength;
  }
}

/** Per-layer caches of one sequence (batch 1) and how many positions are filled. */
export class KvCache {
  readonly layers: LayerKvCache[];
  /** Positions filled so far (the next token's position). */
  length = 0;

  constructor(
    readonly spec: ModelSpec,
    readonly capacity: number,
  ) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError(`KV cache capacity must be a positive integer, got ${capacity}`);
    const a = spec.attention;
    const [heads, keyDim, valueDim] = a.kind === 'gqa' ? [a.kvHeads, a.headDim, a.headDim] : [a.heads, a.qkNopeHeadDim + a.qkRopeHeadDim, a.vHeadDim];
    this.layers = Array.from({ length: spec.numLayers }, () => new LayerKvCache(heads, capacity, keyDim, valueDim));
  }

  get bytes(): number {
    return this.layers.reduce((acc, l) => acc + l.bytes, 0);
  }
}

/**
 * Additive mask `[count, past + count]` for `count` new tokens at `position`: past slot j is
 * visible when filled (j < position) and inside the sliding window; new token i′ when i′ ≤ i.
 */
export function cachedAttentionMask(position: number, count: number, past: number, window: number | undefined): Float32Array {
  const cols = past + count;
  const mask = new Float32Array(count * cols);
  for (let i = 0; i < count; i++) {
    const query = position + i;
    const inWindow = (key: number): boolean => window === undefined || key > query - window;
    for (let j = 0; j < past; j++) mask[i * cols + j] = j < position && inWindow(j) ? 0 : -Infinity;
    for (let j = 0; j < count; j++) mask[i * cols + past + j] = j <= i && inWindow(position + j) ? 0 : -Infinity;
  }
  return mask;
}

const KEY_OUTPUT = 'kv_new_keys';
const VALUE_OUTPUT = 'kv_new_values';

/**
 * The attention of one runLayer call in a cached decode: `count` new tokens at the cache's current
 * position. emit() builds the attention into the layer graph and exports the new keys and values;
 * collect() writes them into the layer's cache once the graph has run.
 */
export class CachedAttentionStep implements LayerAttentionHook {
  constructor(
    private readonly spec: ModelSpec,
    private readonly cache: LayerKvCache,
    /** This layer's rotary tables (ModelRunner.layerRope), covering at least `position + count` positions. */
    private readonly rope: RopeTables,
    private readonly position: number,
    private readonly count: number,
    private readonly window: number | undefined,
  ) {
    if (position + count > cache.capacity) throw new ForwardGraphError(`KV cache overflow: ${position + count} positions, capacity ${cache.capacity}`);
    if (position + count > rope.positions) throw new ForwardGraphError(`rotary tables cover ${rope.positions} positions, ${position + count} needed`);
  }

  emit(mg: ModelGraph, attention: LayerAttention, normed: Value): Value {
    const shape: BatchShape = { batch: 1, seq: this.count };
    const rows = ropeRowsAt(mg, this.rope, this.position, this.count);
    // The first step (no past) attends over its own tokens only; later steps over the whole cache.
    const past = this.position === 0 ? 0 : this.cache.capacity;
    const mask = mg.constF32(cachedAttentionMask(this.position, this.count, past, this.window), [this.count, past + this.count]);
    const kv =
      attention.kind === 'gqa' ? gqaProjections(mg, this.spec, attention.w, normed, shape, rows, this.rope.dim) : mlaProjections(mg, this.spec, attention.w, normed, shape, rows);
    mg.output(kv.key, KEY_OUTPUT);
    mg.output(kv.value, VALUE_OUTPUT);
    let key = kv.key;
    let value = kv.value;
    if (past > 0) {
      const c = this.cache;
      key = mg.concat([mg.constF32(c.keys, [1, c.heads, c.capacity, c.keyDim]), key], 2);
      value = mg.concat([mg.constF32(c.values, [1, c.heads, c.capacity, c.valueDim]), value], 2);
    }
    const rep = this.spec.attention.heads / kv.kvHeads;
    const sinks = attention.kind === 'gqa' ? attention.w.sinks : undefined;
    const out = emitSdpa(mg, kv.query, repeatKv(mg, key, rep), repeatKv(mg, value, rep), attentionScale(this.spec), mask, shape, sinks);
    return mg.linear(attention.w.o, out);
  }

  collect(out: Record<string, HostTensor>): void {
    const k = out[KEY_OUTPUT];
    const v = out[VALUE_OUTPUT];
    if (k?.type !== 'float32' || v?.type !== 'float32') throw new ForwardGraphError('cached attention: the graph did not return the new keys and values');
    this.cache.write(this.position, this.count, k.data, v.data);
  }
}
