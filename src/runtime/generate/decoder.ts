// Token-by-token forward for generation. CachedDecoder keeps each layer's keys and values
// (cached-attention.ts), so a step runs every decoder layer once on the new token: one pass over
// the weights. RecomputingDecoder runs the whole sequence again at every step, with the plain
// forward that logits/verify use: the reference the cache is tested against, and `--no-cache`.
// Both run one decoder layer at a time through ModelRunner.runLayer, so weights are streamed layer
// by layer, or — with resident weights (weight-residency.ts) — read once and kept.

import { CachedAttentionStep, KvCache } from '../models/cached-attention.js';
import type { ModelRunner } from '../models/runner.js';

export interface TokenDecoder {
  /** Whether steps reuse cached keys/values. */
  readonly cached: boolean;
  /** Tokens fed so far. */
  readonly length: number;
  /** Most tokens this decoder can hold. */
  readonly capacity: number;
  /** Feeds `ids` after the tokens so far; returns the logits `[vocab]` after the last of them. */
  append(ids: readonly number[]): Promise<Float32Array>;
}

/** Final norm + lm_head of the last row of `hidden [rows, H]`. */
async function lastLogits(runner: ModelRunner, hidden: Float32Array, rows: number): Promise<Float32Array> {
  const h = runner.spec.hiddenSize;
  return runner.head(hidden.slice((rows - 1) * h, rows * h), 1);
}

export class CachedDecoder implements TokenDecoder {
  readonly cached = true;
  readonly cache: KvCache;

  constructor(
    private readonly runner: ModelRunner,
    readonly capacity: number,
  ) {
    this.cache = new KvCache(runner.spec, capacity);
  }

  get length(): number {
    return this.cache.length;
  }

  async append(ids: readonly number[]): Promise<Float32Array> {
    if (ids.length === 0) throw new RangeError('append needs at least one token');
    const position = this.cache.length;
    if (position + ids.length > this.capacity) throw new RangeError(`${position + ids.length} tokens exceed the decoder's capacity of ${this.capacity}`);
    const spec = this.runner.spec;
    let hidden = await this.runner.embed(ids);
    for (let i = 0; i < spec.numLayers; i++) {
      const step = new CachedAttentionStep(spec, this.cache.layers[i]!, this.runner.layerRope(this.capacity, i), position, ids.length, spec.slidingWindow(i));
      hidden = (await this.runner.runLayer(i, hidden, { batch: 1, seq: ids.length }, { attention: step })).hidden;
    }
    this.cache.length = position + ids.length;
    return lastLogits(this.runner, hidden, ids.length);
  }
}

export class RecomputingDecoder implements TokenDecoder {
  readonly cached = false;
  private readonly ids: number[] = [];

  constructor(
    private readonly runner: ModelRunner,
    readonly capacity: number,
  ) {}

  get length(): number {
    return this.ids.length;
  }

  async append(ids: readonly number[]): Promise<Float32Array> {
    if (ids.length === 0) throw new RangeError('append needs at least one token');
    if (this.ids.length + ids.length > this.capacity) throw new RangeError(`${this.ids.length + ids.length} tokens exceed the decoder's capacity of ${this.capacity}`);
    this.ids.push(...ids);
    const spec = this.runner.spec;
    const seq = this.ids.length;
    let hidden = await this.runner.embed(this.ids);
    for (let i = 0; i < spec.numLayers; i++) hidden = (await this.runner.runLayer(i, hidden, { batch: 1, seq })).hidden;
    return lastLogits(this.runner, hidden, seq);
  }
}
