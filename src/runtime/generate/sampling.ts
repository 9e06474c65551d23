// Choosing the next token from a step's logits: greedy (arg-max, the lowest id on a tie), or
// sampling at a temperature with optional nucleus (top-p) truncation from a seeded generator, so
// that a seed gives the same tokens on every run and machine. Also the log-probability of a token
// under the model's own distribution (temperature 1), which generate reports per step.

import { SeededRandom } from '../ops/random.js';

export interface SamplingOptions {
  /** 0: greedy. */
  readonly temperature: number;
  /** Keep the smallest set of most likely tokens whose probability reaches this (1: all). */
  readonly topP: number;
  readonly seed: number;
}

export const GREEDY: SamplingOptions = { temperature: 0, topP: 1, seed: 0 };

export function isGreedy(o: SamplingOptions): boolean {
  return o.temperature === 0;
}

/** Index of the largest logit; the first one on a tie. */
export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  return best;
}

/** log softmax(logits)[id], in float64. */
export function logProbability(logits: ArrayLike<number>, id: number): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  return logits[id]! - max - Math.log(sum);
}

export class TokenSampler {
  private readonly random: SeededRandom;

  constructor(readonly options: SamplingOptions) {
    if (!(options.temperature >= 0) || !Number.isFinite(options.temperature)) throw new RangeError(`temperature must be ≥ 0, got ${options.temperature}`);
    if (!(options.topP > 0 && options.topP <= 1)) throw new RangeError(`top-p must be in (0, 1], got ${options.topP}`);
    this.random = new SeededRandom(options.seed);
  }

  next(logits: ArrayLike<number>): number {
    if (isGreedy(this.options)) return argmax(logits);
    const t = this.options.temperature;
    let max = -Infinity;
    for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
    const weights = new Float64Array(logits.length);
    let sum = 0;
    for (let i = 0; i < logits.length; i++) sum += weights[i] = Math.exp((logits[i]! - max) / t);
    // Most likely first; ties by id so the order (and the draw) does not depend on the sort.
    const order = Array.from({ length: logits.length }, (_, i) => i).sort((a, b) => weights[b]! - weights[a]! || a - b);
    let kept = order.length;
    if (this.options.topP < 1) {
      let cumulative = 0;
      for (let i = 0; i < order.length; i++) {
        cumulative += weights[order[i]!]! / sum;
        if (cumulative >= this.options.topP) {
          kept = i + 1;
          break;
        }
      }
    }
    let keptSum = 0;
    for (let i = 0; i < kept; i++) keptSum += weights[order[i]!]!;
    let r = this.random.next() * keptSum;
    for (let i = 0; i < kept; i++) {
      r -= weights[order[i]!]!;
      if (r < 0) return order[i]!;
    }
    return order[kept - 1]!;
  }
}
