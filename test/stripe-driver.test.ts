// Every conversion path through the stripe driver on the worker pool (WebAssembly / fast kernels,
// FP8 requantization and dequantization in the workers) against the same driver with the reference
// kernel on the main thread (--threads 0, the oracle): byte-identical files for plain BF16/F16/F32, compressed-tensors,
// fused experts out × in and in × out, --stack-experts, --mla-split (both methods), --requantize
// of each of those outputs and dequant of each; the same NaN messages; and progress that ends at
// exactly the input bytes. Some weights are just over the in-process limit so workers run, others
// under it so the main-thread fast path runs; sizes leave edge blocks and widths that are not a
// multiple of 16 (the WebAssembly kernel's fallback).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { float32ToBf16Bits, float32ToF16Bits, widenToFloat32 } from '../src/fp8/dtypes.js';
import { convertCheckpoint, type ConvertEvent, type ConvertOptions } from '../src/pipeline/convert-checkpoint.js';
import { dequantCheckpoint } from '../src/pipeline/dequant-checkpoint.js';
import { CheckpointError } from '../src/io/errors.js';
import { listFiles, readCheckpointTensors, writeCheckpoint, type TensorData } from './helpers/checkpoint-files.js';
import { modelDir } from './helpers/fixtures.js';
import { bf16Tensor } from './helpers/synthetic-moe.js';
import { makeTempDir, type TempDir } from './helpers/temp-dir.js';

function f32Tensor(shape: readonly number[], seed: number): TensorData {
  const v = widenToFloat32(bf16Tensor(shape, seed).bytes, 'BF16');
  // Off the BF16 grid, so F32 sources are really F32.
  for (let i = 0; i < v.length; i++) v[i] = Math.fround(v[i]! * 1.0001);
  return { dtype: 'F32', shape, bytes: new Uint8Array(v.buffer) };
}

function f16Tensor(shape: readonly number[], seed: number): TensorData {
  const v = widenToFloat32(bf16Tensor(shape, seed).bytes, 'BF16');
  const out = new Uint16Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = float32ToF16Bits(v[i]!);
  return { dtype: 'F16', shape, bytes: new Uint8Array(out.buffer) };
}

const L = 'model.layers.0';

function denseCheckpoint(): Map<string, TensorData> {
  return new Map<string, TensorData>([
    ['model.embed_tokens.weight', bf16Tensor([64, 96], 1)],
    ['model.norm.weight', bf16Tensor([96], 2)],
    [`${L}.mlp.down_proj.weight`, bf16Tensor([300, 2048], 3)], // 1.2 MB BF16, width % 16 = 0: workers, WebAssembly
    [`${L}.mlp.up_proj.weight`, f16Tensor([260, 2100], 4)], // F16, odd width: workers
    [`${L}.mlp.gate_proj.weight`, f32Tensor([130, 2050], 5)], // F32: workers
    [`${L}.self_attn.q_proj.weight`, bf16Tensor([70, 90], 6)], // small: main thread
    [`${L}.self_attn.o_proj.weight`, bf16Tensor([96, 96], 7)],
  ]);
}

const MOE = { experts: 2, hidden: 2080, inter: 128 };
const EXP = `${L}.mlp.experts`;

function moeConfig(modelType: string): Record<string, unknown> {
  return {
    model_type: modelType,
    hidden_size: MOE.hidden,
    moe_intermediate_size: MOE.inter,
    intermediate_size: MOE.inter,
    num_experts: MOE.experts,
    num_local_experts: MOE.experts,
    num_attention_heads: 2,
    num_hidden_layers: 1,
    vocab_size: 64,
  };
}

function moeCommon(): Map<string, TensorData> {
  return new Map<string, TensorData>([
    ['model.embed_tokens.weight', bf16Tensor([64, MOE.hidden], 1)],
    [`${L}.mlp.gate.weight`, bf16Tensor([MOE.experts, MOE.hidden], 2)],
    [`${L}.self_attn.o_proj.weight`, bf16Tensor([64, MOE.hidden], 3)],
  ]);
}

function fusedOutIn(): Map<string, TensorData> {
  const t = moeCommon();
  t.set(`${EXP}.gate_up_proj`, bf16Tensor([MOE.experts, 2 * MOE.inter, MOE.hidden], 10));
  t.set(`${EXP}.down_proj`, bf16Tensor([MOE.experts, MOE.hidden, MOE.inter], 11));
  return t;
}

function fusedInOut(): Map<string, TensorData> {
  const t = moeCommon();
  t.set(`${EXP}.gate_up_proj`, bf16Tensor([MOE.experts, MOE.hidden, 2 * MOE.inter], 12));
  t.set(`${EXP}.down_proj`, bf16Tensor([MOE.experts, MOE.inter, MOE.hidden], 13));
  return t;
}

function perExpert(): Map<string, TensorData> {
  const t = moeCommon();
  for (let e = 0; e < MOE.experts; e++) {
    t.set(`${EXP}.${e}.gate_proj.weight`, bf16Tensor([MOE.inter, MOE.hidden], 20 + e));
    t.set(`${EXP}.${e}.up_proj.weight`, bf16Tensor([MOE.inter, MOE.hidden], 30 + e));
    t.set(`${EXP}.${e}.down_proj.weight`, bf16Tensor([MOE.hidden, MOE.inter], 40 + e));
  }
  return t;
}

async function filesOf(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const f of await listFiles(dir)) out.set(f, await readFile(join(dir, f)));
  return out;
}

function assertSameFiles(a: Map<string, Buffer>, b: Map<string, Buffer>, what: string): void {
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort(), `${what}: the same files`);
  for (const [f, bytes] of a) assert.ok(bytes.equals(b.get(f)!), `${what}: ${f} differs between the fast kernels and the reference kernel`);
}

describe("the fast kernels write the reference kernel's bytes on every path", () => {
  let tmp: TempDir;
  before(async () => {
    tmp = await makeTempDir('stripe-driver');
  });
  after(() => tmp.cleanup());

  /** Converts with threads 0 and 2, asserts identical output, returns the threads-2 output folder and its progress. */
  async function both(name: string, opts: Omit<ConvertOptions, 'output' | 'threads'>): Promise<{ dir: string; bytes: number[]; total: number }> {
    const results: Map<string, Buffer>[] = [];
    const bytes: number[] = [];
    let total = -1;
    for (const threads of [0, 2]) {
      const output = join(tmp.path, `${name}-t${threads}`);
      const onEvent = (e: ConvertEvent): void => {
        if (threads === 2 && e.type === 'bytes') bytes.push(e.done);
        if (threads === 2 && e.type === 'plan') total = e.bytesTotal;
      };
      await convertCheckpoint({ ...opts, output, threads, maxShardBytes: 3e6, onEvent });
      results.push(await filesOf(output));
    }
    assertSameFiles(results[0]!, results[1]!, name);
    return { dir: join(tmp.path, `${name}-t2`), bytes, total };
  }

  async function dequantBoth(name: string, input: string): Promise<void> {
    const results: Map<string, Buffer>[] = [];
    let last = 0;
    let total = 0;
    for (const threads of [0, 2]) {
      const output = join(tmp.path, `${name}-t${threads}`);
      const summary = await dequantCheckpoint({
        input,
        output,
        threads,
        onEvent: (e) => {
          if (e.type === 'bytes') [last, total] = [e.done, e.total];
        },
      });
      assert.equal(last, summary.bytesIn, `${name}: dequant progress ends at the input bytes`);
      results.push(await filesOf(output));
    }
    assert.ok(total > 0);
    assertSameFiles(results[0]!, results[1]!, name);
  }

  function assertProgress(p: { bytes: number[]; total: number }, what: string): void {
    assert.ok(p.bytes.length > 0, `${what}: progress reported`);
    for (let i = 1; i < p.bytes.length; i++) assert.ok(p.bytes[i]! >= p.bytes[i - 1]!, `${what}: progress never goes back`);
    assert.equal(p.bytes.at(-1), p.total, `${what}: progress ends at exactly the input bytes`);
  }

  test('plain BF16/F16/F32, compressed-tensors, --requantize and dequant of the result', async () => {
    const input = join(tmp.path, 'dense');
    await writeCheckpoint(input, denseCheckpoint(), { config: { model_type: 'llama', hidden_size: 96 }, files: { 'tokenizer.json': '{}' } });
    const hf = await both('dense-hf', { input });
    assertProgress(hf, 'plain');
    await both('dense-ct', { input, outputFormat: 'compressed-tensors', block: { bn: 64, bk: 32 } });
    await both('dense-ue8m0', { input, scaleFormat: 'ue8m0', format: 'e5m2' });
    assertProgress(await both('dense-requant', { input: hf.dir, requantize: true, block: { bn: 64, bk: 32 } }), 'requantize');
    // Target blocks spanning several source blocks, power-of-two scales, E5M2; and from E5M2 codes.
    await both('dense-requant-wide', { input: hf.dir, requantize: true, block: { bn: 256, bk: 192 }, scaleFormat: 'ue8m0', format: 'e5m2' });
    await both('dense-requant-from-e5m2', { input: join(tmp.path, 'dense-ue8m0-t2'), requantize: true, block: { bn: 48, bk: 80 } });
    await dequantBoth('dense-dequant', hf.dir);
  });

  test('fused experts out × in and in × out, --stack-experts; requantize and dequant of each', async () => {
    for (const [name, tensors, type, extra] of [
      ['out-in', fusedOutIn(), 'qwen3_moe', {}],
      ['in-out', fusedInOut(), 'gpt_oss', {}],
      ['stacked', perExpert(), 'qwen3_moe', { stackExperts: true }],
    ] as const) {
      const input = join(tmp.path, name);
      await writeCheckpoint(input, tensors, { config: moeConfig(type) });
      const out = await both(`${name}-fp8`, { input, block: { bn: 32, bk: 16 }, ...extra });
      assertProgress(out, name);
      await both(`${name}-requant`, { input: out.dir, requantize: true, block: { bn: 64, bk: 64 } });
      await dequantBoth(`${name}-dequant`, out.dir);
    }
  });

  test('--mla-split, move-blocks and own-grid, from BF16 and from FP8 (--requantize)', async () => {
    const input = modelDir('deepseek_v3');
    // nope = v = 64, kv_lora 128: 64x64 blocks move, 128x128 do not.
    const moved = await both('mla-move', { input, mlaSplit: true, block: { bn: 64, bk: 64 } });
    assertProgress(moved, 'mla-split');
    await both('mla-own', { input, mlaSplit: true });
    await both('mla-requant', { input: moved.dir, requantize: true, mlaSplit: true });
    await both('mla-requant-moved', { input: moved.dir, requantize: true, mlaSplit: true, block: { bn: 64, bk: 64 } });

    // A kv_b_proj over the in-process limit, so the split's tasks run on the workers: 8 heads of
    // nope = v = 64 over kv_lora 640 (1.25 MiB BF16); 64x64 blocks move, 128x128 do not.
    const big = join(tmp.path, 'mla-big');
    const config = {
      model_type: 'deepseek_v3',
      hidden_size: 256,
      num_attention_heads: 8,
      qk_nope_head_dim: 64,
      qk_rope_head_dim: 32,
      v_head_dim: 64,
      kv_lora_rank: 640,
      vocab_size: 64,
    };
    await writeCheckpoint(
      big,
      new Map<string, TensorData>([
        ['model.embed_tokens.weight', bf16Tensor([64, 256], 1)],
        [`${L}.self_attn.kv_b_proj.weight`, bf16Tensor([8 * 128, 640], 2)],
      ]),
      { config },
    );
    const bigMoved = await both('mla-big-move', { input: big, mlaSplit: true, block: { bn: 64, bk: 64 } });
    assertProgress(bigMoved, 'mla-split on the workers');
    const split = await readCheckpointTensors(bigMoved.dir);
    assert.deepEqual(split.get(`${L}.self_attn.w_uk`)?.shape, [8, 640, 64], 'w_uk written');
    assert.deepEqual(split.get(`${L}.self_attn.w_uv`)?.shape, [8, 64, 640], 'w_uv written');
    await both('mla-big-own', { input: big, mlaSplit: true });
    await both('mla-big-requant', { input: bigMoved.dir, requantize: true, mlaSplit: true, block: { bn: 64, bk: 64 } });
  });

  test('a NaN is reported with the same message on both paths', async () => {
    const cases: [string, Map<string, TensorData>, string, Partial<ConvertOptions>][] = [];
    const stacked = perExpert();
    const up = stacked.get(`${EXP}.1.up_proj.weight`)!;
    new Uint16Array(up.bytes.buffer, up.bytes.byteOffset)[5 * MOE.hidden + 7] = float32ToBf16Bits(NaN);
    cases.push(['nan-stacked', stacked, 'qwen3_moe', { stackExperts: true }]);
    const inOut = fusedInOut();
    const gu = inOut.get(`${EXP}.gate_up_proj`)!;
    new Uint16Array(gu.bytes.buffer, gu.bytes.byteOffset)[MOE.hidden * 2 * MOE.inter + 40 * 2 * MOE.inter + 3] = float32ToBf16Bits(Infinity);
    cases.push(['nan-in-out', inOut, 'gpt_oss', {}]);
    for (const [name, tensors, type, extra] of cases) {
      const input = join(tmp.path, name);
      await writeCheckpoint(input, tensors, { config: moeConfig(type) });
      const messages: string[] = [];
      const codes: string[] = [];
      for (const threads of [0, 2]) {
        const err = await convertCheckpoint({ input, output: join(tmp.path, `${name}-out-${threads}`), threads, block: { bn: 32, bk: 16 }, ...extra }).then(
          () => undefined,
          (e: unknown) => e,
        );
        assert.ok(err instanceof CheckpointError, `${name}, threads ${threads}: ${String(err)}`);
        messages.push(err.message);
        codes.push(err.errorCode);
      }
      assert.equal(messages[1], messages[0], name);
      assert.match(messages[0]!, /non-finite value/);
      // --json's error.code: the one README gives NaN/Inf in any tensor, as a plain weight's is.
      for (const code of codes) assert.equal(code, 'E_INPUT_NONFINITE', name);
    }
    // An FP8 NaN code in a --requantize input: the codes kernel steps aside, the error is the oracle's.
    const fp8 = join(tmp.path, 'nan-fp8-src');
    await convertCheckpoint({ input: join(tmp.path, 'dense'), output: fp8, threads: 0 });
    const tensors = await readCheckpointTensors(fp8);
    tensors.get(`${L}.mlp.down_proj.weight`)!.bytes[3 * 2048 + 1000] = 0x7f;
    const bad = join(tmp.path, 'nan-fp8');
    await writeCheckpoint(bad, tensors, { config: JSON.parse(await readFile(join(fp8, 'config.json'), 'utf8')) });
    const messages: string[] = [];
    for (const threads of [0, 2]) {
      const err = await convertCheckpoint({ input: bad, output: join(tmp.path, `nan-fp8-out-${threads}`), threads, requantize: true, block: { bn: 64, bk: 64 } }).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(err instanceof CheckpointError, String(err));
      messages.push(err.message);
    }
    assert.equal(messages[1], messages[0]);
    assert.match(messages[0]!, /non-finite value \(NaN\) at \[3, 1000\]/);
  });
});
