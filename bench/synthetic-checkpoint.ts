// A synthetic Llama-8B-shaped BF16 checkpoint for the benchmark: real layer shapes (4096x4096,
// 1024x4096, 14336x4096, 4096x14336), a 131072x4096 embedding and lm_head (1 GiB each: Llama 3's
// 128256 vocabulary rounded up to 2^17 so the largest tensor is a full GiB), sharded with an
// index. Values are a random pool of N(0, 0.02)-like BF16 words reused at rotating offsets:
// writing 4+ GiB of per-element Math.random() would take longer than the benchmark itself.

import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { float32ToBf16Bits } from '../src/fp8/dtypes.js';
import { SafetensorsWriter, type PlannedTensor } from '../src/io/safetensors/safetensors-writer.js';

export interface SyntheticShape {
  readonly layers: number;
  readonly hidden: number;
  readonly intermediate: number;
  readonly kvHidden: number;
  readonly vocab: number;
}

export const LLAMA_8B_LIKE: SyntheticShape = { layers: 5, hidden: 4096, intermediate: 14336, kvHidden: 1024, vocab: 131072 };

export interface SyntheticCheckpoint {
  readonly dir: string;
  readonly bytes: number;
  readonly tensors: number;
  readonly largestTensorBytes: number;
  readonly shards: number;
}

/** Random pool size: a prime number of words so successive tensors start at different phases. */
const POOL_WORDS = 4_194_301;
const WRITE_CHUNK_BYTES = 8 * 1024 * 1024;

function tensorsOf(s: SyntheticShape): PlannedTensor[] {
  const t: PlannedTensor[] = [{ name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [s.vocab, s.hidden] }];
  for (let l = 0; l < s.layers; l++) {
    const p = `model.layers.${l}`;
    t.push(
      { name: `${p}.input_layernorm.weight`, dtype: 'BF16', shape: [s.hidden] },
      { name: `${p}.self_attn.q_proj.weight`, dtype: 'BF16', shape: [s.hidden, s.hidden] },
      { name: `${p}.self_attn.k_proj.weight`, dtype: 'BF16', shape: [s.kvHidden, s.hidden] },
      { name: `${p}.self_attn.v_proj.weight`, dtype: 'BF16', shape: [s.kvHidden, s.hidden] },
      { name: `${p}.self_attn.o_proj.weight`, dtype: 'BF16', shape: [s.hidden, s.hidden] },
      { name: `${p}.post_attention_layernorm.weight`, dtype: 'BF16', shape: [s.hidden] },
      { name: `${p}.mlp.gate_proj.weight`, dtype: 'BF16', shape: [s.intermediate, s.hidden] },
      { name: `${p}.mlp.up_proj.weight`, dtype: 'BF16', shape: [s.intermediate, s.hidden] },
      { name: `${p}.mlp.down_proj.weight`, dtype: 'BF16', shape: [s.hidden, s.intermediate] },
    );
  }
  t.push({ name: 'model.norm.weight', dtype: 'BF16', shape: [s.hidden] }, { name: 'lm_head.weight', dtype: 'BF16', shape: [s.vocab, s.hidden] });
  return t;
}

function bytesOf(t: PlannedTensor): number {
  return t.shape.reduce((a, b) => a * b, 1) * 2;
}

/** BF16 words of roughly N(0, 0.02), from a seeded generator (the bench is reproducible). */
function randomPool(seed: number): Uint16Array {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return ((z ^ (z >>> 14)) >>> 0) / 4294967296;
  };
  const pool = new Uint16Array(POOL_WORDS * 2);
  for (let i = 0; i < POOL_WORDS; i++) {
    // Sum of four uniforms: bell-shaped, cheap, with the occasional larger outlier per block.
    const g = (next() + next() + next() + next() - 2) * 0.035;
    pool[i] = float32ToBf16Bits(g);
  }
  pool.copyWithin(POOL_WORDS, 0, POOL_WORDS); // doubled, so any window of POOL_WORDS is contiguous
  return pool;
}

/** Writes the Llama-shaped checkpoint into `dir` (created), shards of at most `maxShardBytes`. */
export function writeSyntheticCheckpoint(dir: string, shape: SyntheticShape, maxShardBytes: number, seed = 1): Promise<SyntheticCheckpoint> {
  return writeSyntheticTensors(dir, tensorsOf(shape), configOf(shape), maxShardBytes, seed);
}

/** Writes BF16 `tensors` (pool values) and `config` into `dir` (created), shards of at most `maxShardBytes`. */
export async function writeSyntheticTensors(
  dir: string,
  tensors: readonly PlannedTensor[],
  config: Record<string, unknown>,
  maxShardBytes: number,
  seed = 1,
): Promise<SyntheticCheckpoint> {
  await mkdir(dir, { recursive: true });
  const shards: PlannedTensor[][] = [];
  let current: PlannedTensor[] = [];
  let currentBytes = 0;
  for (const t of tensors) {
    if (current.length > 0 && currentBytes + bytesOf(t) > maxShardBytes) {
      shards.push(current);
      current = [];
      currentBytes = 0;
    }
    current.push(t);
    currentBytes += bytesOf(t);
  }
  shards.push(current);

  const pool = randomPool(seed);
  const poolBytes = new Uint8Array(pool.buffer);
  const weightMap: Record<string, string> = {};
  let total = 0;
  let phase = 0;
  for (let i = 0; i < shards.length; i++) {
    const file = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
    const writer = await SafetensorsWriter.create(join(dir, file), shards[i]!, { format: 'pt' });
    for (const t of shards[i]!) {
      const length = bytesOf(t);
      for (let done = 0; done < length; ) {
        const n = Math.min(WRITE_CHUNK_BYTES, length - done, POOL_WORDS * 2);
        const start = (phase % POOL_WORDS) * 2;
        await writer.write(t.name, poolBytes.subarray(start, start + n), done);
        done += n;
        phase += 7919 + n / 2;
      }
      weightMap[t.name] = file;
      total += length;
    }
    await writer.finish();
  }
  await writeFile(join(dir, 'model.safetensors.index.json'), `${JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2)}\n`);
  await writeFile(join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  await writeFile(join(dir, 'generation_config.json'), `${JSON.stringify({ bos_token_id: 1, eos_token_id: 2 }, null, 2)}\n`);
  return { dir, bytes: total, tensors: tensors.length, largestTensorBytes: Math.max(...tensors.map(bytesOf)), shards: shards.length };
}

function configOf(s: SyntheticShape): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    dtype: 'bfloat16',
    hidden_size: s.hidden,
    intermediate_size: s.intermediate,
    num_attention_heads: s.hidden / 128,
    num_key_value_heads: s.kvHidden / 128,
    head_dim: 128,
    num_hidden_layers: s.layers,
    vocab_size: s.vocab,
    hidden_act: 'silu',
    rms_norm_eps: 1e-5,
    max_position_embeddings: 8192,
    rope_theta: 500000,
    tie_word_embeddings: false,
  };
}
