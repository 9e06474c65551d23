// --mla-split on the DeepSeek-V3 fixture (4 heads, kv_lora 128, nope 64, v 64):
// - 64x64 blocks align: w_uk/w_uv must be byte-for-byte the split of the kv_b_proj this same
//   conversion writes, split the way MLC LLM's deepseek_v2_loader.py does (reshape, split at nope,
//   transpose), codes and scales alike;
// - 128x128 blocks do not: a warning says so, and each head's w_uk/w_uv is quantized from the
//   BF16 source on its own ceil-sized grid — checked against an independent amax/scale/encode here.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { join } from 'node:path';
import { convertCheckpoint, type ConvertEvent } from '../src/pipeline/convert-checkpoint.js';
import { CheckpointError } from '../src/io/errors.js';
import { encodeE4M3 } from '../src/fp8/formats.js';
import { widenToFloat32 } from '../src/fp8/dtypes.js';
import { planMlaSplit } from '../src/passes/mla-split.js';
import { describeEntry } from '../src/passes/plan-describe.js';
import type { ConvertPlan, MlaSplitEntry } from '../src/passes/plan.js';
import { modelDir, readAll, f32 } from './helpers/fixtures.js';
import { makeTempDir, type TempDir } from './helpers/temp-dir.js';

const H = 4;
const LORA = 128;
const NOPE = 64;
const V = 64;
const ATTN = 'model.layers.1.self_attn';

interface Run {
  plan: ConvertPlan;
  warnings: string[];
  tensors: Map<string, { dtype: string; shape: readonly number[]; bytes: Uint8Array }>;
}

async function convert(tmp: TempDir, block: number, extra: { dryRun?: boolean; mlaSplit?: boolean } = {}): Promise<Run> {
  const out = join(tmp.path, `out-${block}-${extra.mlaSplit === false ? 'plain' : 'split'}${extra.dryRun ? '-dry' : ''}`);
  const warnings: string[] = [];
  let plan: ConvertPlan | undefined;
  const onEvent = (e: ConvertEvent): void => {
    if (e.type === 'warning') warnings.push(e.message);
    if (e.type === 'plan') plan = e.plan;
  };
  await convertCheckpoint({
    input: modelDir('deepseek_v3'),
    output: out,
    block: { bn: block, bk: block },
    mlaSplit: extra.mlaSplit ?? true,
    dryRun: extra.dryRun ?? false,
    onEvent,
  });
  const tensors = extra.dryRun ? new Map() : (await readAll(join(out, 'model.safetensors'))).tensors;
  return { plan: plan!, warnings, tensors };
}

/** MLC's split of kv_b_proj [H*(nope+v), L] (any element size): w_uk = part0.transpose(0,2,1), w_uv = part1. */
function splitLikeMlc<T extends Uint8Array | Float32Array>(kvb: T, h: number, nope: number, v: number, lora: number, make: (n: number) => T): { uk: T; uv: T } {
  const uk = make(h * lora * nope);
  const uv = make(h * v * lora);
  for (let head = 0; head < h; head++) {
    for (let j = 0; j < nope + v; j++) {
      for (let l = 0; l < lora; l++) {
        const x = kvb[(head * (nope + v) + j) * lora + l]!;
        if (j < nope) uk[(head * lora + l) * nope + j] = x;
        else uv[(head * v + (j - nope)) * lora + l] = x;
      }
    }
  }
  return { uk, uv };
}

describe('--mla-split on the DeepSeek-V3 fixture', () => {
  let tmp: TempDir;
  let aligned: Run;
  let unaligned: Run;
  before(async () => {
    tmp = await makeTempDir('mla-split');
    aligned = await convert(tmp, 64);
    unaligned = await convert(tmp, 128);
  });
  after(() => tmp.cleanup());

  test('64x64: w_uk/w_uv are the blocks of the quantized kv_b_proj, moved (codes and scales)', () => {
    assert.deepEqual(aligned.warnings, []);
    for (const layer of [0, 1]) {
      const attn = `model.layers.${layer}.self_attn`;
      const entry = aligned.plan.entries.find((e): e is MlaSplitEntry => e.op === 'mla-split' && e.module === attn);
      assert.equal(entry?.method, 'move-blocks');
      const kvb = aligned.tensors.get(`${attn}.kv_b_proj.weight`)!;
      const kvbScale = f32(aligned.tensors.get(`${attn}.kv_b_proj.weight_scale_inv`)!.bytes);
      assert.deepEqual(kvb.shape, [H * (NOPE + V), LORA]);
      const codes = splitLikeMlc(kvb.bytes, H, NOPE, V, LORA, (n) => new Uint8Array(n));
      // The scale grid splits the same way with nope/bn, v/bn and kv_lora/bk in place of the dims.
      const scales = splitLikeMlc(kvbScale, H, NOPE / 64, V / 64, LORA / 64, (n) => new Float32Array(n));
      const uk = aligned.tensors.get(`${attn}.w_uk`)!;
      const uv = aligned.tensors.get(`${attn}.w_uv`)!;
      assert.deepEqual([uk.dtype, uk.shape], ['F8_E4M3', [H, LORA, NOPE]]);
      assert.deepEqual([uv.dtype, uv.shape], ['F8_E4M3', [H, V, LORA]]);
      assert.deepEqual(aligned.tensors.get(`${attn}.w_uk_scale_inv`)!.shape, [H, LORA / 64, NOPE / 64]);
      assert.deepEqual(aligned.tensors.get(`${attn}.w_uv_scale_inv`)!.shape, [H, V / 64, LORA / 64]);
      assert.deepEqual(uk.bytes, codes.uk);
      assert.deepEqual(uv.bytes, codes.uv);
      assert.deepEqual(f32(aligned.tensors.get(`${attn}.w_uk_scale_inv`)!.bytes), scales.uk);
      assert.deepEqual(f32(aligned.tensors.get(`${attn}.w_uv_scale_inv`)!.bytes), scales.uv);
    }
  });

  test('kv_b_proj is still written, unchanged by the split', async () => {
    const plain = await convert(tmp, 64, { mlaSplit: false });
    for (const name of [`${ATTN}.kv_b_proj.weight`, `${ATTN}.kv_b_proj.weight_scale_inv`]) {
      assert.deepEqual(aligned.tensors.get(name)!.bytes, plain.tensors.get(name)!.bytes, name);
    }
    assert.equal(plain.tensors.has(`${ATTN}.w_uk`), false);
    assert.equal(aligned.tensors.size, plain.tensors.size + 8);
  });

  test('128x128: a warning names the dims, and w_uk/w_uv get their own ceil-sized grids from the BF16 source', async () => {
    assert.equal(unaligned.warnings.length, 1);
    assert.match(unaligned.warnings[0]!, /qk_nope_head_dim 64 and v_head_dim 64 not a multiple of bn 128/);
    assert.match(unaligned.warnings[0]!, /own ceil-sized grid/);
    assert.match(unaligned.warnings[0]!, /--block 64x128 would move blocks/);
    const entry = unaligned.plan.entries.find((e): e is MlaSplitEntry => e.op === 'mla-split' && e.module === ATTN)!;
    assert.equal(entry.method, 'own-grid');

    const source = (await readAll(join(modelDir('deepseek_v3'), 'model.safetensors'))).tensors.get(`${ATTN}.kv_b_proj.weight`)!;
    const values = widenToFloat32(source.bytes, 'BF16');
    const want = splitLikeMlc(values, H, NOPE, V, LORA, (n) => new Float32Array(n));
    const ukScale = unaligned.tensors.get(`${ATTN}.w_uk_scale_inv`)!;
    const uvScale = unaligned.tensors.get(`${ATTN}.w_uv_scale_inv`)!;
    // ceil(128/128) × ceil(64/128): one block per head for each, covering only the head's own part.
    assert.deepEqual(ukScale.shape, [H, 1, 1]);
    assert.deepEqual(uvScale.shape, [H, 1, 1]);
    const kvbScale = f32(unaligned.tensors.get(`${ATTN}.kv_b_proj.weight_scale_inv`)!.bytes);
    for (const [part, scaleT, codesT, per] of [
      ['w_uk', ukScale, unaligned.tensors.get(`${ATTN}.w_uk`)!, LORA * NOPE],
      ['w_uv', uvScale, unaligned.tensors.get(`${ATTN}.w_uv`)!, V * LORA],
    ] as const) {
      const scales = f32(scaleT.bytes);
      const vals = part === 'w_uk' ? want.uk : want.uv;
      for (let h = 0; h < H; h++) {
        let amax = 0;
        for (let i = h * per; i < (h + 1) * per; i++) amax = Math.max(amax, Math.abs(vals[i]!));
        const scale = Math.fround(amax / 448);
        assert.equal(scales[h], scale, `${part} head ${h} scale`);
        for (let i = h * per; i < (h + 1) * per; i++) {
          const q = Math.max(-448, Math.min(448, Math.fround(vals[i]! / scale)));
          if (codesT.bytes[i] !== encodeE4M3(q)) assert.fail(`${part} head ${h} element ${i - h * per}: code ${codesT.bytes[i]} ≠ ${encodeE4M3(q)}`);
        }
      }
      // The whole-head kv_b_proj block mixes nope and v rows: its scale is the larger of the two,
      // so at least one part per head must differ from it (a moved scale would be wrong there).
      if (part === 'w_uv') {
        const uk = f32(ukScale.bytes);
        for (let h = 0; h < H; h++) {
          assert.equal(kvbScale[h], Math.max(uk[h]!, scales[h]!));
          assert.ok(uk[h] !== scales[h], `head ${h}: w_uk and w_uv scales coincide; the test would not catch a moved scale`);
        }
      }
    }
  });

  test('--dry-run shows the split and how it is done', async () => {
    const dry = await convert(tmp, 128, { dryRun: true });
    const lines = dry.plan.entries.filter((e) => e.op === 'mla-split').map(describeEntry);
    assert.equal(lines.length, 2);
    assert.match(lines[1]!, /^mla-split model\.layers\.1\.self_attn\.w_uk F8_E4M3\[4,128,64\] \+ .*w_uk_scale_inv F32\[4,1,1\]/);
    assert.match(lines[1]!, /own ceil-sized grids/);
    const dry64 = await convert(tmp, 64, { dryRun: true });
    assert.match(describeEntry(dry64.plan.entries.find((e) => e.op === 'mla-split')!), /blocks of the quantized kv_b_proj moved/);
  });
});

describe('planMlaSplit edge cases', () => {
  const settings = { format: 'e4m3fn', block: { bn: 64, bk: 64 }, scaleFormat: 'float', activationScheme: 'dynamic' } as const;
  const config = { kv_lora_rank: 128, num_attention_heads: 4, qk_nope_head_dim: 64, v_head_dim: 64 };
  const decision = [{ module: `${ATTN}.kv_b_proj`, decision: 'BlockScaleQuantizeLinear', reason: 'linear' }] as const;

  test('a kv_b_proj whose shape does not match config.json is an error naming both', () => {
    const tensors = [{ name: `${ATTN}.kv_b_proj.weight`, dtype: 'BF16', shape: [500, 128] }] as const;
    assert.throws(
      () => planMlaSplit(config, tensors, decision, settings, []),
      (e: unknown) => e instanceof CheckpointError && /\[500,128\].*num_attention_heads 4.*need \[512, 128\]/.test(e.message),
    );
  });

  test('a model without kv_lora_rank, or a kept kv_b_proj, gets a warning and no split', () => {
    const warnings: string[] = [];
    assert.deepEqual(planMlaSplit({ num_attention_heads: 4 }, [], decision, settings, warnings), []);
    assert.match(warnings[0]!, /no kv_lora_rank/);
    const kept = [{ module: `${ATTN}.kv_b_proj`, decision: 'keep', reason: 'excluded by "kv_b_proj"' }] as const;
    assert.deepEqual(planMlaSplit(config, [{ name: `${ATTN}.kv_b_proj.weight`, dtype: 'BF16', shape: [512, 128] }], kept, settings, warnings), []);
    assert.match(warnings[1]!, /kept unquantized \(excluded by "kv_b_proj"\)/);
  });
});
