// Rotary position embedding tables, computed on the host the way transformers' ROPE_INIT_FUNCTIONS
// and RotaryEmbedding.forward do (default, linear, yarn, llama3): inverse frequencies in float32,
// freqs = position × inv_freq in float32, emb = [freqs, freqs], cos/sin × attention_factor.
// The graphs take the tables as constants; the reference forward uses the same tables.
//
// `bf16InvFreq` rounds the inverse frequencies to bfloat16 first. That is what transformers
// computes after a model built in BF16 is upcast with `.float()`: the `inv_freq` buffer went
// through BF16 on the way (measured on the bundled fixtures: their `logits_f32` match the forward
// to ~7e-7 with it, ~5e-5 without, the error growing with position). Serving stacks and a model
// loaded directly in float32 use float32 frequencies, the default here.

import { roundToBf16 } from '../../fp8/dtypes.js';
import type { RopeSpec } from './config.js';
import { ModelConfigError } from './config.js';

const f = Math.fround;

export interface RopeTables {
  /** [T, dim] row-major; row t is position t. */
  readonly cos: Float32Array;
  readonly sin: Float32Array;
  readonly positions: number;
  readonly dim: number;
}

function defaultInvFreq(theta: number, dim: number): Float32Array {
  // torch: 1 / base ** (arange(0, dim, 2).float() / dim), all float32.
  return Float32Array.from({ length: dim / 2 }, (_, i) => f(1 / f(theta ** f((2 * i) / dim))));
}

function getMscale(scale: number, mscale = 1): number {
  return scale <= 1 ? 1 : 0.1 * mscale * Math.log(scale) + 1;
}

/** `_compute_yarn_parameters`: blends interpolated and extrapolated frequencies by a linear ramp. */
function yarn(spec: RopeSpec): { invFreq: Float32Array; attentionFactor: number } {
  const { theta: base, dim, params } = spec;
  const original = params['original_max_position_embeddings'];
  if (original === undefined) throw new ModelConfigError('config.json: yarn rope needs "original_max_position_embeddings"');
  const factor = params['factor'] ?? spec.maxPositionEmbeddings / original;
  const mscale = params['mscale'];
  const mscaleAllDim = params['mscale_all_dim'];
  let attentionFactor = params['attention_factor'];
  if (attentionFactor === undefined) {
    attentionFactor = mscale && mscaleAllDim ? getMscale(factor, mscale) / getMscale(factor, mscaleAllDim) : getMscale(factor);
  }
  const betaFast = params['beta_fast'] || 32;
  const betaSlow = params['beta_slow'] || 1;
  const truncate = params['truncate'] === undefined ? true : params['truncate'] !== 0;
  const correctionDim = (rotations: number): number => (dim * Math.log(original / (rotations * 2 * Math.PI))) / (2 * Math.log(base));
  let low = correctionDim(betaFast);
  let high = correctionDim(betaSlow);
  if (truncate) {
    low = Math.floor(low);
    high = Math.ceil(high);
  }
  low = Math.max(low, 0);
  high = Math.min(high, dim - 1);
  if (low === high) high += 0.001;
  const half = dim / 2;
  const invFreq = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const posFreq = f(base ** f((2 * i) / dim));
    const extrapolation = f(1 / posFreq);
    const interpolation = f(1 / f(factor * posFreq));
    const ramp = Math.min(1, Math.max(0, f(f(i - low) / f(high - low))));
    const extrapolationFactor = f(1 - ramp);
    invFreq[i] = f(f(interpolation * f(1 - extrapolationFactor)) + f(extrapolation * extrapolationFactor));
  }
  return { invFreq, attentionFactor };
}

/** `_compute_llama3_parameters`. */
function llama3(spec: RopeSpec): Float32Array {
  const inv = defaultInvFreq(spec.theta, spec.dim);
  const p = spec.params;
  const factor = p['factor']!;
  const lowFreqFactor = p['low_freq_factor'] ?? 1;
  const highFreqFactor = p['high_freq_factor'] ?? 4;
  const oldContext = p['original_max_position_embeddings'] ?? 8192;
  const lowWavelen = oldContext / lowFreqFactor;
  const highWavelen = oldContext / highFreqFactor;
  return inv.map((freq) => {
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) return freq;
    if (wavelen > lowWavelen) return freq / factor;
    const smooth = (oldContext / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
    return (1 - smooth) * (freq / factor) + smooth * freq;
  });
}

export function inverseFrequencies(spec: RopeSpec): { invFreq: Float32Array; attentionFactor: number } {
  switch (spec.type) {
    case 'default':
      return { invFreq: defaultInvFreq(spec.theta, spec.dim), attentionFactor: 1 };
    case 'linear': {
      const factor = spec.params['factor']!;
      return { invFreq: defaultInvFreq(spec.theta, spec.dim).map((v) => v / factor), attentionFactor: 1 };
    }
    case 'yarn':
      return yarn(spec);
    case 'llama3':
      return { invFreq: llama3(spec), attentionFactor: 1 };
  }
}

export interface RopeTableOptions {
  readonly bf16InvFreq?: boolean;
}

/** cos/sin tables for positions 0 … positions−1. */
export function ropeTables(spec: RopeSpec, positions: number, options: RopeTableOptions = {}): RopeTables {
  const computed = inverseFrequencies(spec);
  const attentionFactor = computed.attentionFactor;
  const invFreq = options.bf16InvFreq ? computed.invFreq.map(roundToBf16) : computed.invFreq;
  const dim = spec.dim;
  const half = dim / 2;
  const cos = new Float32Array(positions * dim);
  const sin = new Float32Array(positions * dim);
  for (let t = 0; t < positions; t++) {
    for (let i = 0; i < half; i++) {
      const angle = f(t * invFreq[i]!);
      const c = f(f(Math.cos(angle)) * attentionFactor);
      const s = f(f(Math.sin(angle)) * attentionFactor);
      cos[t * dim + i] = c;
      cos[t * dim + half + i] = c;
      sin[t * dim + i] = s;
      sin[t * dim + half + i] = s;
    }
  }
  return { cos, sin, positions, dim };
}
