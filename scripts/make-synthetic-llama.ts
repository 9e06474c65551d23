// Writes a synthetic Llama checkpoint (BF16, random weights, transformers' layout and config) of
// any size, for timing `fp8q convert` and `fp8q verify` on models too large to commit. The
// default is TinyLlama's shape: hidden 2048, 22 layers, intermediate 5632, 32 heads / 4 KV
// heads, vocab 32000 — 1.10 B parameters, 2.2 GB. Sharded at about 1 GB with an index, as
// transformers saves it.
//
//   node --import tsx scripts/make-synthetic-llama.ts --out <dir> [--layers 22] [--hidden 2048]
//     [--intermediate 5632] [--vocab 32000] [--heads 32] [--kv-heads 4] [--seed 1]
//
// Weights are uniform with std 0.02 (embeddings std 1, lm_head std 0.03, so the logits are not
// flat and top-1 agreement means something); norms are ones. Deterministic per seed.

import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { SafetensorsWriter } from '../src/io/safetensors/safetensors-writer.js';

const { values } = parseArgs({
  options: {
    out: { type: 'string' },
    layers: { type: 'string', default: '22' },
    hidden: { type: 'string', default: '2048' },
    intermediate: { type: 'string', default: '5632' },
    vocab: { type: 'string', default: '32000' },
    heads: { type: 'string', default: '32' },
    'kv-heads': { type: 'string', default: '4' },
    seed: { type: 'string', default: '1' },
  },
});
if (values.out === undefined) throw new Error('--out <dir> is required');
const out = values.out;
const L = Number(values.layers);
const H = Number(values.hidden);
const I = Number(values.intermediate);
const V = Number(values.vocab);
const heads = Number(values.heads);
const kvHeads = Number(values['kv-heads']);
const headDim = H / heads;
const SHARD_BYTES = 1e9;

interface Spec {
  readonly name: string;
  readonly shape: readonly number[];
  /** Uniform std; 0 means all ones (norm weights). */
  readonly std: number;
}

const specs: Spec[] = [{ name: 'model.embed_tokens.weight', shape: [V, H], std: 1 }];
for (let l = 0; l < L; l++) {
  const p = `model.layers.${l}`;
  specs.push(
    { name: `${p}.input_layernorm.weight`, shape: [H], std: 0 },
    { name: `${p}.self_attn.q_proj.weight`, shape: [heads * headDim, H], std: 0.02 },
    { name: `${p}.self_attn.k_proj.weight`, shape: [kvHeads * headDim, H], std: 0.02 },
    { name: `${p}.self_attn.v_proj.weight`, shape: [kvHeads * headDim, H], std: 0.02 },
    { name: `${p}.self_attn.o_proj.weight`, shape: [H, heads * headDim], std: 0.02 },
    { name: `${p}.post_attention_layernorm.weight`, shape: [H], std: 0 },
    { name: `${p}.mlp.gate_proj.weight`, shape: [I, H], std: 0.02 },
    { name: `${p}.mlp.up_proj.weight`, shape: [I, H], std: 0.02 },
    { name: `${p}.mlp.down_proj.weight`, shape: [H, I], std: 0.02 },
  );
}
specs.push({ name: 'model.norm.weight', shape: [H], std: 0 }, { name: 'lm_head.weight', shape: [V, H], std: 0.03 });

const count = (s: Spec): number => s.shape.reduce((a, b) => a * b, 1);

// Deal tensors to shards in order, a new shard once ~1 GB is reached.
const shards: Spec[][] = [[]];
let shardBytes = 0;
for (const s of specs) {
  if (shardBytes > 0 && shardBytes + count(s) * 2 > SHARD_BYTES) {
    shards.push([]);
    shardBytes = 0;
  }
  shards[shards.length - 1]!.push(s);
  shardBytes += count(s) * 2;
}

/** xorshift32 → uniform bf16 in [-a, a] with std `std`, written in place. */
function fillBf16(target: Uint16Array, std: number, state: { s: number }): void {
  if (std === 0) {
    target.fill(0x3f80); // 1.0
    return;
  }
  const a = std * Math.sqrt(3);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  let s = state.s;
  for (let i = 0; i < target.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    f[0] = (((s >>> 0) / 4294967296) * 2 - 1) * a;
    const bits = u[0]!;
    target[i] = (bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16;
  }
  state.s = s;
}

await mkdir(out, { recursive: true });
const names = shards.map((_, i) => `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`);
const weightMap: Record<string, string> = {};
const state = { s: (Number(values.seed) * 2654435761) >>> 0 || 1 };
const CHUNK = 1 << 24; // elements per write: 32 MB of bf16
let total = 0;
for (let i = 0; i < shards.length; i++) {
  const path = join(out, names[i]!);
  const writer = await SafetensorsWriter.create(
    path,
    shards[i]!.map((s) => ({ name: s.name, dtype: 'BF16' as const, shape: s.shape })),
    { format: 'pt' },
  );
  for (const s of shards[i]!) {
    const n = count(s);
    for (let at = 0; at < n; at += CHUNK) {
      const chunk = new Uint16Array(Math.min(CHUNK, n - at));
      fillBf16(chunk, s.std, state);
      await writer.write(s.name, new Uint8Array(chunk.buffer), at * 2);
    }
    weightMap[s.name] = names[i]!;
    total += n;
  }
  await writer.finish();
}
await writeFile(join(out, 'model.safetensors.index.json'), `${JSON.stringify({ metadata: { total_size: total * 2 }, weight_map: weightMap }, null, 2)}\n`);
await writeFile(
  join(out, 'config.json'),
  `${JSON.stringify(
    {
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      hidden_size: H,
      intermediate_size: I,
      num_hidden_layers: L,
      num_attention_heads: heads,
      num_key_value_heads: kvHeads,
      head_dim: headDim,
      vocab_size: V,
      max_position_embeddings: 2048,
      rms_norm_eps: 1e-5,
      rope_theta: 10000,
      hidden_act: 'silu',
      tie_word_embeddings: false,
      torch_dtype: 'bfloat16',
      bos_token_id: 1,
      eos_token_id: 2,
    },
    null,
    2,
  )}\n`,
);
process.stdout.write(`${out}: ${(total / 1e9).toFixed(3)} B parameters, ${shards.length} shards, ${((total * 2) / 1e9).toFixed(2)} GB\n`);
