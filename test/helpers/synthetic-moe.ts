// Small synthetic MoE checkpoints for the expert-layout tests: the same expert weights written
// per expert (HF `experts.E.{gate,up,down}_proj.weight`), fused out × in (transformers 5.x
// `experts.gate_up_proj [E, 2I, H]`), or fused in × out (gpt-oss `experts.gate_up_proj
// [E, H, 2I]`). Awkward sizes on purpose: with 32x32 blocks, H = 80 and I = 48 leave edge blocks,
// and the gate/up boundary of a fused gate_up (row 48) falls inside a block.

import { float32ToBf16Bits, widenToFloat32 } from '../../src/fp8/dtypes.js';
import type { TensorData } from './checkpoint-files.js';

export const MOE = { experts: 3, hidden: 80, inter: 48, vocab: 64 } as const;

/** Deterministic BF16 values, roughly N(0, 0.05) with a few outliers so blocks differ in amax. */
export function bf16Tensor(shape: readonly number[], seed: number): TensorData {
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Uint16Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    let v = ((x & 0xffff) / 0xffff - 0.5) * 0.1;
    if ((x >>> 16) % 97 === 0) v *= 20;
    out[i] = float32ToBf16Bits(v);
  }
  return { dtype: 'BF16', shape, bytes: new Uint8Array(out.buffer) };
}

export function valuesOf(t: TensorData): Float32Array {
  return widenToFloat32(t.bytes, 'BF16');
}

/** Per-expert weights [out, in] (seeded by expert and projection), the source of every layout. */
export function expertWeights(): { gate: TensorData[]; up: TensorData[]; down: TensorData[] } {
  const { experts, hidden, inter } = MOE;
  const range = (f: (e: number) => TensorData) => Array.from({ length: experts }, (_, e) => f(e));
  return {
    gate: range((e) => bf16Tensor([inter, hidden], 100 + e)),
    up: range((e) => bf16Tensor([inter, hidden], 200 + e)),
    down: range((e) => bf16Tensor([hidden, inter], 300 + e)),
  };
}

function concatBf16(parts: readonly TensorData[], shape: readonly number[]): TensorData {
  const bytes = new Uint8Array(parts.reduce((s, p) => s + p.bytes.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    bytes.set(p.bytes, at);
    at += p.bytes.byteLength;
  }
  return { dtype: 'BF16', shape, bytes };
}

/** [rows, cols] BF16 → [cols, rows]. */
function transposeBf16(t: TensorData): TensorData {
  const [r, c] = t.shape as [number, number];
  const src = new Uint16Array(t.bytes.slice().buffer);
  const dst = new Uint16Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) dst[j * r + i] = src[i * c + j]!;
  return { dtype: 'BF16', shape: [c, r], bytes: new Uint8Array(dst.buffer) };
}

function common(prefix: string): Map<string, TensorData> {
  const { hidden, vocab, experts } = MOE;
  return new Map<string, TensorData>([
    ['model.embed_tokens.weight', bf16Tensor([vocab, hidden], 1)],
    ['lm_head.weight', bf16Tensor([vocab, hidden], 2)],
    ['model.norm.weight', bf16Tensor([hidden], 3)],
    [`${prefix}.gate.weight`, bf16Tensor([experts, hidden], 4)],
    ['model.layers.0.self_attn.o_proj.weight', bf16Tensor([hidden, hidden], 5)],
  ]);
}

export function moeConfig(modelType: string): Record<string, unknown> {
  return {
    model_type: modelType,
    hidden_size: MOE.hidden,
    moe_intermediate_size: MOE.inter,
    intermediate_size: MOE.inter,
    num_experts: MOE.experts,
    num_local_experts: MOE.experts,
    num_attention_heads: 2,
    num_hidden_layers: 1,
    vocab_size: MOE.vocab,
  };
}

const MLP = 'model.layers.0.mlp';

/** Qwen3-MoE style: `mlp.experts.E.{gate,up,down}_proj.weight`. */
export function perExpertCheckpoint(): Map<string, TensorData> {
  const w = expertWeights();
  const t = common(MLP);
  for (let e = 0; e < MOE.experts; e++) {
    t.set(`${MLP}.experts.${e}.gate_proj.weight`, w.gate[e]!);
    t.set(`${MLP}.experts.${e}.up_proj.weight`, w.up[e]!);
    t.set(`${MLP}.experts.${e}.down_proj.weight`, w.down[e]!);
  }
  return t;
}

/** transformers 5.x fused, out × in: gate_up_proj [E, 2I, H] (gate rows, then up rows), down_proj [E, H, I]. */
export function fusedOutInCheckpoint(): Map<string, TensorData> {
  const { experts, hidden, inter } = MOE;
  const w = expertWeights();
  const t = common(MLP);
  t.set(
    `${MLP}.experts.gate_up_proj`,
    concatBf16(
      w.gate.flatMap((g, e) => [g, w.up[e]!]),
      [experts, 2 * inter, hidden],
    ),
  );
  t.set(`${MLP}.experts.down_proj`, concatBf16(w.down, [experts, hidden, inter]));
  return t;
}

/** gpt-oss style fused, in × out: gate_up_proj [E, H, 2I], down_proj [E, I, H], plus 2-D biases. */
export function fusedInOutCheckpoint(): Map<string, TensorData> {
  const { experts, hidden, inter } = MOE;
  const w = expertWeights();
  const t = common(MLP);
  const gateUpT = w.gate.map((g, e) => transposeBf16(concatBf16([g, w.up[e]!], [2 * inter, hidden])));
  t.set(`${MLP}.experts.gate_up_proj`, concatBf16(gateUpT, [experts, hidden, 2 * inter]));
  t.set(`${MLP}.experts.gate_up_proj_bias`, bf16Tensor([experts, 2 * inter], 7));
  t.set(`${MLP}.experts.down_proj`, concatBf16(w.down.map(transposeBf16), [experts, inter, hidden]));
  t.set(`${MLP}.experts.down_proj_bias`, bf16Tensor([experts, hidden], 8));
  return t;
}
