// FP8 checkpoints as input: `fp8q dequant` of a conversion gives back every value as exactly
// fp8 × scale_inv rounded once to the output dtype (checked against an independent rounding
// here); a transformers/Qwen3-FP8-style checkpoint (BF16 scales, no `fmt`) made from a fixture
// conversion reads, inspects and dequantizes; `convert` refuses FP8 input unless --requantize,
// which re-quantizes the float32-dequantized values with the new block size.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { join } from 'node:path';
import { convertCheckpoint, type ConvertEvent } from '../src/pipeline/convert-checkpoint.js';
import { dequantCheckpoint } from '../src/pipeline/dequant-checkpoint.js';
import { inspectCheckpoint } from '../src/pipeline/inspect/inspect-checkpoint.js';
import { CheckpointError } from '../src/io/errors.js';
import { float32ToBf16Bits, widenToFloat32 } from '../src/fp8/dtypes.js';
import { E4M3_DECODE, encodeE4M3 } from '../src/fp8/formats.js';
import { float64ToBf16Bits, float64ToF16Bits } from '../src/fp8/round-once.js';
import { AlreadyQuantizedError } from '../src/passes/block-scale-quantize.js';
import type { ConvertPlan } from '../src/passes/plan.js';
import { listFiles, readCheckpointTensors, readJson, writeCheckpoint, type TensorData } from './helpers/checkpoint-files.js';
import { f32, modelDir } from './helpers/fixtures.js';
import { makeTempDir, type TempDir } from './helpers/temp-dir.js';

const f64 = new Float64Array(1);
const f64Hi = new Uint32Array(f64.buffer);
const f32Scratch = new Float32Array(1);
const f32Bits = new Uint32Array(f32Scratch.buffer);

/** Independent reference: the exact value x rounded once to a format with `mantissa` bits and min normal exponent `emin`. */
function roundOnce(x: number, mantissa: number, emin: number): number {
  if (x === 0 || !Number.isFinite(x)) return x;
  const a = Math.abs(x);
  f64[0] = a;
  const e = ((f64Hi[1]! >>> 20) & 0x7ff) - 1023; // products of FP8 codes and scales are normal doubles
  const ulp = 2 ** (Math.max(e, emin) - mantissa);
  const q = a / ulp;
  const f = Math.floor(q);
  const d = q - f;
  const r = d > 0.5 || (d === 0.5 && f % 2 === 1) ? f + 1 : f;
  return Math.sign(x) * r * ulp;
}

function refBf16Bits(x: number): number {
  f32Scratch[0] = roundOnce(x, 7, -126);
  return f32Bits[0]! >>> 16;
}

describe('round once (fp8/round-once.ts)', () => {
  test('a float32 tie is not rounded twice', () => {
    // 1 + 2^-8 + 2^-30: float32 drops 2^-30 and lands on the BF16 tie 1 + 2^-8, which would round to 1.0.
    const x = 1 + 2 ** -8 + 2 ** -30;
    assert.equal(float32ToBf16Bits(Math.fround(x)), 0x3f80);
    assert.equal(float64ToBf16Bits(x), 0x3f81);
    assert.equal(float64ToBf16Bits(-x), 0xbf81);
    // FP16: 1 + 2^-11 is its tie.
    assert.equal(float64ToF16Bits(1 + 2 ** -11 + 2 ** -40), 0x3c01);
    assert.equal(float64ToF16Bits(1 + 2 ** -11), 0x3c00);
  });

  test('every E4M3 code times random float32 scales matches the reference rounding', () => {
    let seed = 12345;
    const rand = (): number => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    for (let i = 0; i < 400; i++) {
      const scale = Math.fround(2 ** (rand() * 40 - 30) * (1 + rand()));
      for (let code = 0; code < 256; code++) {
        const v = E4M3_DECODE[code]!;
        if (v !== v) continue;
        const x = v * scale;
        if (float64ToBf16Bits(x) !== refBf16Bits(x)) assert.fail(`code ${code} × ${scale}: ${float64ToBf16Bits(x)} ≠ ${refBf16Bits(x)}`);
      }
    }
  });
});

interface Converted {
  dir: string;
  tensors: Map<string, TensorData>;
}

async function convert(
  input: string,
  output: string,
  opts: { block?: number; requantize?: boolean; stackExperts?: boolean; mlaSplit?: boolean; warnings?: string[]; plans?: ConvertPlan[] } = {},
): Promise<Converted> {
  const onEvent = (e: ConvertEvent): void => {
    if (e.type === 'warning') opts.warnings?.push(e.message);
    if (e.type === 'plan') opts.plans?.push(e.plan);
  };
  const b = opts.block ?? 128;
  await convertCheckpoint({
    input,
    output,
    block: { bn: b, bk: b },
    requantize: opts.requantize ?? false,
    stackExperts: opts.stackExperts ?? false,
    mlaSplit: opts.mlaSplit ?? false,
    onEvent,
  });
  return { dir: output, tensors: await readCheckpointTensors(output) };
}

/** Every FP8 weight of `fp8` against its dequantized copy in `out`: exactly fp8 × scale rounded once. */
function checkDequantized(fp8: Map<string, TensorData>, out: Map<string, TensorData>, block: [number, number], outDtype: 'BF16' | 'F16'): number {
  let checked = 0;
  for (const [name, t] of fp8) {
    if (t.dtype !== 'F8_E4M3' || name.endsWith('.w_uk') || name.endsWith('.w_uv')) continue;
    const scaleT = fp8.get(`${name}_scale_inv`)!;
    const scales = scaleT.dtype === 'F32' ? f32(scaleT.bytes) : widenToFloat32(scaleT.bytes, scaleT.dtype as 'BF16');
    const got = out.get(name)!;
    assert.deepEqual([got.dtype, got.shape], [outDtype, t.shape], name);
    const bits = new Uint16Array(got.bytes.slice().buffer);
    const cols = t.shape[t.shape.length - 1]!;
    const rows = t.shape[t.shape.length - 2]!;
    const cb = Math.ceil(cols / block[1]);
    const rb = Math.ceil(rows / block[0]);
    for (let i = 0; i < t.bytes.length; i++) {
      const c = i % cols;
      const r = Math.floor(i / cols) % rows;
      const lead = Math.floor(i / (rows * cols));
      const s = scales[lead * rb * cb + Math.floor(r / block[0]) * cb + Math.floor(c / block[1])]!;
      const exact = E4M3_DECODE[t.bytes[i]!]! * s;
      const want = outDtype === 'BF16' ? refBf16Bits(exact) : float64ToF16Bits(exact);
      if (bits[i] !== want) assert.fail(`${name}[${i}]: ${bits[i]} ≠ ${want} (code ${t.bytes[i]} × scale ${s})`);
    }
    checked++;
  }
  return checked;
}

describe('fp8q dequant and FP8 input', () => {
  let tmp: TempDir;
  let ds: Converted;
  let qwenStyle: string;
  before(async () => {
    tmp = await makeTempDir('fp8-input');
    // 128x128 on the DeepSeek fixture: kv_a_proj_with_mqa (160 rows) has ceil-sized edge blocks.
    ds = await convert(modelDir('deepseek_v3'), join(tmp.path, 'ds-fp8'), { mlaSplit: true });
    // A transformers / Qwen3-FP8-style copy: the same FP8 codes, scales stored BF16 (each F32 scale
    // rounded to BF16), and a quantization_config without `fmt` or `modules_to_not_convert`.
    qwenStyle = join(tmp.path, 'ds-fp8-bf16-scales');
    const tensors = new Map<string, TensorData>();
    for (const [name, t] of ds.tensors) {
      if (t.dtype === 'F32' && name.endsWith('_scale_inv')) {
        const v = f32(t.bytes);
        tensors.set(name, { dtype: 'BF16', shape: t.shape, bytes: new Uint8Array(Uint16Array.from(v, (x) => float32ToBf16Bits(x)).buffer) });
      } else tensors.set(name, t);
    }
    const config = await readJson(join(ds.dir, 'config.json'));
    config['quantization_config'] = { quant_method: 'fp8', activation_scheme: 'dynamic', weight_block_size: [128, 128] };
    await writeCheckpoint(qwenStyle, tensors, { config, shards: 2 });
  });
  after(() => tmp.cleanup());

  test('dequant of a conversion: every value is fp8 × scale_inv rounded once to BF16; scales and quantization_config gone', async () => {
    const out = join(tmp.path, 'ds-bf16');
    const summary = await dequantCheckpoint({ input: ds.dir, output: out });
    const tensors = await readCheckpointTensors(out);
    assert.equal(checkDequantized(ds.tensors, tensors, [128, 128], 'BF16'), 28);
    assert.equal(summary.tensorsDequantized, 28);
    // The output holds exactly the source model's tensor names (scales and derived w_uk/w_uv dropped).
    const source = await readCheckpointTensors(modelDir('deepseek_v3'));
    assert.deepEqual([...tensors.keys()].sort(), [...source.keys()].sort());
    for (const [name, t] of source) if (ds.tensors.get(name)!.dtype === 'BF16') assert.deepEqual(tensors.get(name), t, name);
    const config = await readJson(join(out, 'config.json'));
    assert.equal(config['quantization_config'], undefined);
    assert.equal(config['dtype'], 'bfloat16');
    assert.deepEqual(await listFiles(out), ['config.json', 'generation_config.json', 'model.safetensors']);
    assert.match(summary.warnings.join('\n'), /4 MLA w_uk\/w_uv tensors are derived from kv_b_proj/);
    // And it is close to the original weights (the FP8 error, nothing else).
    const a = widenToFloat32(tensors.get('model.layers.1.self_attn.kv_a_proj_with_mqa.weight')!.bytes, 'BF16');
    const b = widenToFloat32(source.get('model.layers.1.self_attn.kv_a_proj_with_mqa.weight')!.bytes, 'BF16');
    let num = 0;
    let den = 0;
    for (let i = 0; i < a.length; i++) {
      num += (a[i]! - b[i]!) ** 2;
      den += b[i]! ** 2;
    }
    assert.ok(Math.sqrt(num / den) < 0.05, `relative L2 error ${Math.sqrt(num / den)}`);
  });

  test('dequant --dtype float16 rounds once to FP16', async () => {
    const out = join(tmp.path, 'ds-f16');
    await dequantCheckpoint({ input: ds.dir, output: out, dtype: 'float16' });
    assert.equal(checkDequantized(ds.tensors, await readCheckpointTensors(out), [128, 128], 'F16'), 28);
    assert.equal((await readJson(join(out, 'config.json')))['dtype'], 'float16');
  });

  test('a transformers / Qwen3-FP8-style checkpoint (BF16 scales, no fmt, sharded) inspects and dequantizes', async () => {
    const report = await inspectCheckpoint(qwenStyle);
    assert.deepEqual(report.warnings, []);
    assert.equal(report.fp8?.weights, 32);
    assert.deepEqual(report.fp8?.scaleDtypes, ['BF16']);
    assert.deepEqual(report.fp8?.block, [128, 128]);
    assert.match(report.fp8!.layout, /Qwen3-FP8 style \(BF16 scales, no fmt\)/);
    assert.equal(report.mla?.splitLayers, 2);
    assert.deepEqual(
      report.experts?.sets.map((s) => [s.module, s.storage, s.experts]),
      [['model.layers.1.mlp.experts', 'per-expert', 4]],
    );
    const out = join(tmp.path, 'qwen-style-bf16');
    await dequantCheckpoint({ input: qwenStyle, output: out });
    const src = await readCheckpointTensors(qwenStyle);
    assert.equal(checkDequantized(src, await readCheckpointTensors(out), [128, 128], 'BF16'), 28);
    const deepseek = await inspectCheckpoint(ds.dir);
    assert.match(deepseek.fp8!.layout, /DeepSeek-V3 \/ fp8q \(F32 scales\)/);
  });

  test('convert refuses FP8 input without --requantize, naming both ways forward', async () => {
    await assert.rejects(
      convertCheckpoint({ input: qwenStyle, output: join(tmp.path, 'refused') }),
      (e: unknown) => e instanceof AlreadyQuantizedError && /--requantize/.test(e.message) && /fp8q dequant/.test(e.message),
    );
  });

  test('convert --requantize --block 64x64 re-quantizes the float32-dequantized values', async () => {
    const warnings: string[] = [];
    const plans: ConvertPlan[] = [];
    const re = await convert(qwenStyle, join(tmp.path, 'requant-64'), { block: 64, requantize: true, warnings, plans });
    assert.match(warnings[0]!, /--requantize: 32 FP8 weights \(hf fp8, Qwen3-FP8 style.*blocks 128x128\) are dequantized to float32/);
    assert.match(warnings.join('\n'), /4 MLA w_uk\/w_uv tensors of the input are derived/);
    assert.ok(plans[0]!.entries.some((e) => e.op === 'requantize'));
    const qc = (await readJson(join(re.dir, 'config.json')))['quantization_config'] as Record<string, unknown>;
    assert.deepEqual(qc['weight_block_size'], [64, 64]);
    assert.equal(qc['fmt'], 'e4m3');
    const src = await readCheckpointTensors(qwenStyle);
    for (const name of ['model.layers.1.self_attn.kv_a_proj_with_mqa.weight', 'model.layers.0.mlp.down_proj.weight']) {
      const t = src.get(name)!;
      const scales = widenToFloat32(src.get(`${name}_scale_inv`)!.bytes, 'BF16');
      const [n, k] = t.shape as [number, number];
      const values = Float32Array.from(t.bytes, (code, i) =>
        Math.fround(E4M3_DECODE[code]! * scales[Math.floor(Math.floor(i / k) / 128) * Math.ceil(k / 128) + Math.floor((i % k) / 128)]!),
      );
      const gotCodes = re.tensors.get(name)!.bytes;
      const gotScales = f32(re.tensors.get(`${name}_scale_inv`)!.bytes);
      assert.deepEqual(re.tensors.get(`${name}_scale_inv`)!.shape, [Math.ceil(n / 64), Math.ceil(k / 64)]);
      for (let bi = 0; bi < Math.ceil(n / 64); bi++) {
        for (let bj = 0; bj < Math.ceil(k / 64); bj++) {
          let amax = 0;
          for (let r = bi * 64; r < Math.min(n, bi * 64 + 64); r++) for (let c = bj * 64; c < bj * 64 + 64; c++) amax = Math.max(amax, Math.abs(values[r * k + c]!));
          const s = Math.fround(amax / 448);
          assert.equal(gotScales[bi * Math.ceil(k / 64) + bj], s, `${name} block [${bi}, ${bj}]`);
          for (let r = bi * 64; r < Math.min(n, bi * 64 + 64); r++) {
            for (let c = bj * 64; c < bj * 64 + 64; c++) {
              const want = encodeE4M3(Math.max(-448, Math.min(448, Math.fround(values[r * k + c]! / s))));
              if (gotCodes[r * k + c] !== want) assert.fail(`${name}[${r}, ${c}]: ${gotCodes[r * k + c]} ≠ ${want}`);
            }
          }
        }
      }
    }
    // Kept modules stay as the input had them (BF16), and no input scale survives under an old grid.
    assert.equal(re.tensors.get('lm_head.weight')!.dtype, 'BF16');
    assert.equal(re.tensors.has('model.layers.1.self_attn.w_uk'), false);
  });

  test('convert --requantize --stack-experts turns per-expert FP8 experts into stacked ones', async () => {
    const mixFp8 = await convert(modelDir('mixtral'), join(tmp.path, 'mixtral-fp8'));
    const re = await convert(mixFp8.dir, join(tmp.path, 'mixtral-restacked'), { requantize: true, stackExperts: true });
    const moe = 'model.layers.1.block_sparse_moe.experts';
    assert.deepEqual(re.tensors.get(`${moe}.gate_up_proj`)!.shape, [4, 512, 256]);
    assert.deepEqual(re.tensors.get(`${moe}.gate_up_proj_scale_inv`)!.shape, [4, 4, 2]);
    // Same 128x128 grid: each 128x128 block's amax is 448 × its old scale, so the codes come back unchanged.
    for (let e = 0; e < 4; e++) {
      assert.deepEqual(re.tensors.get(`${moe}.gate_up_proj`)!.bytes.subarray(2 * e * 65536, (2 * e + 1) * 65536), mixFp8.tensors.get(`${moe}.${e}.w1.weight`)!.bytes);
    }
    const report = await inspectCheckpoint(re.dir);
    assert.deepEqual(
      report.experts?.sets.map((s) => [s.module, s.storage, s.projections]),
      [0, 1].map((l) => [`model.layers.${l}.block_sparse_moe.experts`, 'stacked', ['down_proj', 'gate_up_proj']]),
    );
  });

  test('an FP8 weight without its scale, or a scale of the wrong grid, is an error naming the tensor', async () => {
    const broken = new Map(ds.tensors);
    broken.delete('model.layers.0.mlp.up_proj.weight_scale_inv');
    const dir = join(tmp.path, 'no-scale');
    await writeCheckpoint(dir, broken, { config: await readJson(join(ds.dir, 'config.json')) });
    await assert.rejects(
      dequantCheckpoint({ input: dir, output: join(tmp.path, 'no-scale-out') }),
      (e: unknown) =>
        e instanceof CheckpointError && /"model\.layers\.0\.mlp\.up_proj\.weight" is F8_E4M3 but has no "model\.layers\.0\.mlp\.up_proj\.weight_scale_inv"/.test(e.message),
    );
    const wrongBlock = join(tmp.path, 'wrong-block');
    const config = await readJson(join(ds.dir, 'config.json'));
    (config['quantization_config'] as Record<string, unknown>)['weight_block_size'] = [64, 64];
    await writeCheckpoint(wrongBlock, ds.tensors, { config });
    await assert.rejects(
      dequantCheckpoint({ input: wrongBlock, output: join(tmp.path, 'wrong-block-out') }),
      (e: unknown) => e instanceof CheckpointError && /with 64x64 blocks needs \[.*\]: the block size in config.json does not match the tensors/.test(e.message),
    );
    // Nothing was left behind by the failed runs.
    assert.deepEqual(
      (await listFiles(tmp.path)).filter((f) => f.includes('-out')),
      [],
    );
    assert.ok((await readFile(join(ds.dir, 'config.json'), 'utf8')).includes('"fmt": "e4m3"'));
  });
});
