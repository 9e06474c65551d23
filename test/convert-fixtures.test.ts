// `convertCheckpoint` end to end on the transformers-made fixtures (Llama, Mixtral, DeepSeek-V3)
// and on synthetic checkpoints with awkward shapes and source dtypes:
// - every quantized weight's codes and scales equal blockQuantize of the source, bit for bit;
// - dequantized weights are within half an FP8 step of the source (the bound is below);
// - kept tensors and companion files are byte-identical; config.json gains quantization_config;
// - two runs give byte-identical output; E5M2 and 64x64 blocks work; --dry-run writes nothing;
// - FP8 input, non-empty outputs without --force and NaN weights are refused with clear messages.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { blockQuantize, type BlockShape } from '../src/fp8/block-quantize.js';
import { float32ToBf16Bits, float32ToF16Bits, widenToFloat32, type FloatSourceDtype } from '../src/fp8/dtypes.js';
import { decodeTableFor, f32ToBits, type Fp8Format } from '../src/fp8/formats.js';
import { convertCheckpoint, type ConvertEvent, type ConvertSummary } from '../src/pipeline/convert-checkpoint.js';
import { CheckpointError } from '../src/io/errors.js';
import { AlreadyQuantizedError } from '../src/passes/block-scale-quantize.js';
import { listFiles, readCheckpointTensors, readJson, sha256File, writeCheckpoint, type TensorData } from './helpers/checkpoint-files.js';
import { FIXTURE_MODELS, modelDir } from './helpers/fixtures.js';
import { makeTempDir, type TempDir } from './helpers/temp-dir.js';

type FixtureName = (typeof FIXTURE_MODELS)[number];

let tmp: TempDir;
const runs = new Map<FixtureName, { a: ConvertSummary; b: ConvertSummary }>();
const outA = (m: FixtureName): string => join(tmp.path, `${m}-a`);
const outB = (m: FixtureName): string => join(tmp.path, `${m}-b`);

before(async () => {
  tmp = await makeTempDir('convert');
  for (const m of FIXTURE_MODELS) {
    const a = await convertCheckpoint({ input: modelDir(m), output: outA(m), hashShards: true });
    const b = await convertCheckpoint({ input: modelDir(m), output: outB(m) });
    runs.set(m, { a, b });
  }
});
after(async () => {
  await tmp.cleanup();
});

const FP8_PARAMS: Record<Fp8Format, { dtype: 'F8_E4M3' | 'F8_E5M2'; mantissaBits: number; minNormalExp: number }> = {
  e4m3fn: { dtype: 'F8_E4M3', mantissaBits: 3, minNormalExp: -6 },
  e5m2: { dtype: 'F8_E5M2', mantissaBits: 2, minNormalExp: -14 },
};

/**
 * Half the spacing of FP8 values around |y| (y = w / scale, a float32): 2^(e − m − 1) where 2^e ≤
 * |y| < 2^(e+1), e clamped below at the smallest normal exponent (subnormals are evenly spaced).
 * Round-to-nearest puts the code within this of y, so
 *
 *     |w − dequant(w)| ≤ scale · halfStep(w / scale) + 2^-21 · |w|
 *
 * where the second term covers the three float32 roundings on the way (w / scale, the clamp of
 * values a hair above FP8_MAX when amax / FP8_MAX rounded down, and code × scale). In the normal
 * range this is a relative error of at most 2^-(m+1): 2^-4 for E4M3, 2^-3 for E5M2.
 */
function halfStep(y: number, format: Fp8Format): number {
  const { mantissaBits, minNormalExp } = FP8_PARAMS[format];
  const biased = (f32ToBits(y) >>> 23) & 0xff;
  const e = biased === 0 ? minNormalExp : Math.max(biased - 127, minNormalExp);
  return 2 ** (e - mantissaBits - 1);
}

interface QuantCheck {
  /** Largest |w − deq| / bound seen: ≤ 1, and close to 1 (the bound is tight). */
  worstRatio: number;
}

/**
 * The output of one quantized weight against the source: codes and scales bit-exact with
 * blockQuantize (per expert for 3-D stacks), dequantization within the bound above.
 */
function checkQuantized(label: string, src: TensorData, codes: TensorData, scales: TensorData, format: Fp8Format, block: BlockShape, check: QuantCheck): void {
  const { dtype } = FP8_PARAMS[format];
  assert.equal(codes.dtype, dtype, label);
  assert.deepEqual(codes.shape, src.shape, label);
  const rank = src.shape.length;
  const experts = rank === 3 ? src.shape[0]! : 1;
  const n = src.shape[rank - 2]!;
  const k = src.shape[rank - 1]!;
  const rb = Math.ceil(n / block.bn);
  const cb = Math.ceil(k / block.bk);
  assert.equal(scales.dtype, 'F32', label);
  assert.deepEqual(scales.shape, [...src.shape.slice(0, -2), rb, cb], `${label} scale shape`);
  const values = widenToFloat32(src.bytes, src.dtype as FloatSourceDtype);
  const scaleAll = new Float32Array(scales.bytes.slice().buffer);
  const decode = decodeTableFor(format);
  for (let e = 0; e < experts; e++) {
    const w = values.subarray(e * n * k, (e + 1) * n * k);
    const want = blockQuantize(w, n, k, { format, block });
    const gotCodes = codes.bytes.subarray(e * n * k, (e + 1) * n * k);
    const gotScales = scaleAll.subarray(e * rb * cb, (e + 1) * rb * cb);
    const badCode = want.codes.findIndex((c, i) => c !== gotCodes[i]);
    assert.equal(badCode, -1, `${label}[${e}]: code at [${Math.floor(badCode / k)}, ${badCode % k}] is ${gotCodes[badCode]}, blockQuantize gives ${want.codes[badCode]}`);
    const badScale = want.scaleInv.findIndex((s, i) => !Object.is(s, gotScales[i]));
    assert.equal(badScale, -1, `${label}[${e}]: scale_inv[${badScale}] is ${gotScales[badScale]}, blockQuantize gives ${want.scaleInv[badScale]}`);
    for (let r = 0; r < n; r++) {
      for (let c = 0; c < k; c++) {
        const i = r * k + c;
        const s = gotScales[Math.floor(r / block.bn) * cb + Math.floor(c / block.bk)]!;
        const x = w[i]!;
        const deq = Math.fround(decode[gotCodes[i]!]! * s);
        const stepBound = s * halfStep(Math.fround(x / s), format);
        const err = Math.abs(x - deq);
        // (assert only on failure: building a message per element would dominate the run time)
        if (!(err <= stepBound + 2 ** -21 * Math.abs(x))) assert.fail(`${label}[${e}][${r}, ${c}]: |${x} − ${deq}| = ${err} > ${stepBound}`);
        if (stepBound > 0) check.worstRatio = Math.max(check.worstRatio, err / stepBound);
      }
    }
  }
}

/** Names of 2-D weights a default convert must quantize: all but embeddings, lm_head and routers. */
function expectedQuantized(src: ReadonlyMap<string, TensorData>): string[] {
  return [...src.entries()]
    .filter(([name, t]) => t.shape.length === 2 && name.endsWith('.weight'))
    .map(([name]) => name)
    .filter((name) => name !== 'lm_head.weight' && name !== 'model.embed_tokens.weight' && !/\.(block_sparse_moe|mlp)\.gate\.weight$/.test(name))
    .sort();
}

/** Checks an output folder against its source, returns the quantized weight names. */
async function checkOutput(model: FixtureName | string, srcDir: string, outDir: string, format: Fp8Format, block: BlockShape): Promise<{ quantized: string[]; check: QuantCheck }> {
  const src = await readCheckpointTensors(srcDir);
  const out = await readCheckpointTensors(outDir);
  const quantized = [...out.keys()]
    .filter((n) => n.endsWith('.weight_scale_inv'))
    .map((n) => n.replace(/_scale_inv$/, ''))
    .sort();
  assert.deepEqual([...out.keys()].sort(), [...src.keys(), ...quantized.map((n) => `${n}_scale_inv`)].sort(), `${model}: output tensor names`);
  const check = { worstRatio: 0 };
  for (const [name, s] of src) {
    const o = out.get(name)!;
    if (quantized.includes(name)) {
      checkQuantized(`${model} ${name}`, s, o, out.get(`${name}_scale_inv`)!, format, block, check);
    } else {
      assert.equal(o.dtype, s.dtype, name);
      assert.deepEqual(o.shape, s.shape, name);
      assert.ok(Buffer.from(o.bytes).equals(Buffer.from(s.bytes)), `${model}: kept tensor ${name} is not byte-identical`);
    }
  }
  return { quantized, check };
}

const ROUTERS: Record<FixtureName, string[]> = {
  llama: [],
  mixtral: ['model.layers.0.block_sparse_moe.gate', 'model.layers.1.block_sparse_moe.gate'],
  deepseek_v3: ['model.layers.1.mlp.gate'],
};

describe('fixtures converted with the defaults (E4M3, 128x128)', () => {
  for (const m of FIXTURE_MODELS) {
    test(`${m}: codes and scales bit-exact, dequantized within half an FP8 step, kept tensors byte-identical`, async () => {
      const { quantized, check } = await checkOutput(m, modelDir(m), outA(m), 'e4m3fn', { bn: 128, bk: 128 });
      assert.deepEqual(quantized, expectedQuantized(await readCheckpointTensors(modelDir(m))));
      assert.ok(check.worstRatio <= 1 + 2 ** -10, `worst error/bound ${check.worstRatio}`);
      assert.ok(check.worstRatio > 0.9, `the bound is tight: worst error/bound ${check.worstRatio}`);
      const { a } = runs.get(m)!;
      assert.equal(a.tensorsQuantized, quantized.length);
      assert.equal(a.dryRun, false);
    });

    test(`${m}: config.json gains quantization_config (with fmt); every other file is copied`, async () => {
      const srcConfig = await readJson(join(modelDir(m), 'config.json'));
      const outConfig = await readJson(join(outA(m), 'config.json'));
      const { quantization_config: qc, ...rest } = outConfig;
      assert.deepEqual(rest, srcConfig, 'the rest of config.json is unchanged');
      assert.deepEqual(qc, {
        quant_method: 'fp8',
        fmt: 'e4m3',
        activation_scheme: 'dynamic',
        weight_block_size: [128, 128],
        modules_to_not_convert: ['lm_head', ...ROUTERS[m]],
      });
      assert.deepEqual(await listFiles(outA(m)), ['config.json', 'generation_config.json', 'model.safetensors']);
      assert.deepEqual(await readFile(join(outA(m), 'generation_config.json')), await readFile(join(modelDir(m), 'generation_config.json')));
    });

    test(`${m}: two runs give byte-identical output, and the summary's SHA-256 is the file's`, async () => {
      const { a, b } = runs.get(m)!;
      assert.equal(a.shards.length, 1);
      // Hashes only where asked (they cost a core at disk speed): b did not ask.
      assert.deepEqual(
        b.shards,
        a.shards.map(({ file, bytes }) => ({ file, bytes })),
      );
      assert.equal(a.shards[0]!.sha256, await sha256File(join(outA(m), 'model.safetensors')));
      assert.deepEqual(await listFiles(outB(m)), await listFiles(outA(m)));
      for (const f of await listFiles(outA(m))) assert.deepEqual(await readFile(join(outB(m), f)), await readFile(join(outA(m), f)), f);
    });
  }

  test('deepseek_v3 kv_a_proj_with_mqa (160 rows) has a [2, 2] scale grid whose second row covers rows 128–159 only', async () => {
    const src = await readCheckpointTensors(modelDir('deepseek_v3'));
    const out = await readCheckpointTensors(outA('deepseek_v3'));
    for (const layer of [0, 1]) {
      const name = `model.layers.${layer}.self_attn.kv_a_proj_with_mqa.weight`;
      assert.deepEqual(src.get(name)!.shape, [160, 256]);
      const scale = out.get(`${name}_scale_inv`)!;
      assert.deepEqual(scale.shape, [2, 2]);
      const got = new Float32Array(scale.bytes.slice().buffer);
      // Independent of blockQuantize: amax over exactly the block's elements, / 448 in float32.
      const w = widenToFloat32(src.get(name)!.bytes, 'BF16');
      for (let rb = 0; rb < 2; rb++) {
        for (let cb = 0; cb < 2; cb++) {
          let amax = 0;
          for (let r = rb * 128; r < Math.min(160, rb * 128 + 128); r++) for (let c = cb * 128; c < cb * 128 + 128; c++) amax = Math.max(amax, Math.abs(w[r * 256 + c]!));
          assert.ok(amax > 0);
          assert.ok(Object.is(got[rb * 2 + cb], Math.fround(amax / 448)), `${name} scale [${rb}, ${cb}] = ${got[rb * 2 + cb]}, want ${Math.fround(amax / 448)}`);
        }
      }
    }
  });
});

describe('other formats and block sizes', () => {
  test('E5M2 with 64x64 blocks: fmt "e5m2", weight_block_size [64, 64], codes bit-exact, within the E5M2 bound', async () => {
    const out = join(tmp.path, 'deepseek-e5m2-64');
    const summary = await convertCheckpoint({ input: modelDir('deepseek_v3'), output: out, format: 'e5m2', block: { bn: 64, bk: 64 } });
    const { quantized, check } = await checkOutput('deepseek_v3 e5m2', modelDir('deepseek_v3'), out, 'e5m2', { bn: 64, bk: 64 });
    assert.equal(quantized.length, summary.tensorsQuantized);
    assert.ok(check.worstRatio <= 1 + 2 ** -10 && check.worstRatio > 0.9, `worst error/bound ${check.worstRatio}`);
    const qc = (await readJson(join(out, 'config.json')))['quantization_config'] as Record<string, unknown>;
    assert.equal(qc['fmt'], 'e5m2');
    assert.deepEqual(qc['weight_block_size'], [64, 64]);
    const tensors = await readCheckpointTensors(out);
    assert.deepEqual(tensors.get('model.layers.0.self_attn.kv_a_proj_with_mqa.weight_scale_inv')!.shape, [3, 4]);
  });

  test('F16, F32 and BF16 sources with uneven shapes, a 3-D expert stack and an all-zero block', async () => {
    const dir = join(tmp.path, 'synthetic-src');
    const rand = (n: number, seed: number): Float32Array => {
      const v = new Float32Array(n);
      let x = seed;
      for (let i = 0; i < n; i++) {
        x = (x * 1103515245 + 12345) >>> 0;
        // A wide spread of magnitudes: each value ~ ±2^[-12, 3].
        v[i] = ((x & 0xffff) / 65536 - 0.5) * 2 ** (((x >>> 16) % 16) - 12);
      }
      return v;
    };
    const encode = (values: Float32Array, dtype: FloatSourceDtype): Uint8Array => {
      if (dtype === 'F32') return new Uint8Array(values.buffer.slice(0));
      const bits = new Uint16Array(values.length);
      for (let i = 0; i < values.length; i++) bits[i] = dtype === 'BF16' ? float32ToBf16Bits(values[i]!) : float32ToF16Bits(values[i]!);
      return new Uint8Array(bits.buffer);
    };
    const zeroBlock = rand(200 * 136, 7);
    for (let r = 128; r < 200; r++) for (let c = 0; c < 128; c++) zeroBlock[r * 136 + c] = 0;
    const tensors = new Map<string, TensorData>([
      ['model.layers.0.self_attn.q_proj.weight', { dtype: 'F16', shape: [200, 136], bytes: encode(zeroBlock, 'F16') }],
      ['model.layers.0.self_attn.o_proj.weight', { dtype: 'F32', shape: [129, 257], bytes: encode(rand(129 * 257, 3), 'F32') }],
      ['model.layers.0.mlp.experts.gate_up_proj.weight', { dtype: 'BF16', shape: [3, 130, 70], bytes: encode(rand(3 * 130 * 70, 5), 'BF16') }],
      ['model.layers.0.mlp.gate.weight', { dtype: 'BF16', shape: [3, 70], bytes: encode(rand(3 * 70, 9), 'BF16') }],
      ['model.layers.0.input_layernorm.weight', { dtype: 'F32', shape: [136], bytes: encode(rand(136, 11), 'F32') }],
    ]);
    await writeCheckpoint(dir, tensors, { config: { architectures: ['Qwen3MoeForCausalLM'], model_type: 'qwen3_moe', num_experts: 3 }, files: { 'tokenizer.json': '{"v": 1}' } });
    const out = join(tmp.path, 'synthetic-out');
    await convertCheckpoint({ input: dir, output: out });
    const { quantized } = await checkOutput('synthetic', dir, out, 'e4m3fn', { bn: 128, bk: 128 });
    assert.deepEqual(quantized, ['model.layers.0.mlp.experts.gate_up_proj.weight', 'model.layers.0.self_attn.o_proj.weight', 'model.layers.0.self_attn.q_proj.weight']);
    const outTensors = await readCheckpointTensors(out);
    const qScale = new Float32Array(outTensors.get('model.layers.0.self_attn.q_proj.weight_scale_inv')!.bytes.slice().buffer);
    assert.equal(qScale[2], 1, 'an all-zero block gets scale 1');
    assert.equal(await readFile(join(out, 'tokenizer.json'), 'utf8'), '{"v": 1}');
  });
});

describe('what convert writes, and refuses', () => {
  test('--dry-run reports the plan and writes nothing at all', async () => {
    const parent = join(tmp.path, 'dry');
    await mkdir(parent);
    const events: ConvertEvent['type'][] = [];
    const summary = await convertCheckpoint({ input: modelDir('mixtral'), output: join(parent, 'out'), dryRun: true, onEvent: (e) => events.push(e.type) });
    assert.deepEqual(await readdir(parent), []);
    assert.equal(summary.dryRun, true);
    assert.deepEqual(summary.shards, []);
    assert.equal(summary.tensorsQuantized, runs.get('mixtral')!.a.tensorsQuantized);
    assert.ok(events.includes('plan'));
    assert.ok(!events.includes('bytes'));
  });

  test('converting an FP8 output again is refused with a message saying what to convert instead', async () => {
    const out = join(tmp.path, 'again');
    await assert.rejects(convertCheckpoint({ input: outA('llama'), output: out }), (e: unknown) => {
      assert.ok(e instanceof AlreadyQuantizedError);
      assert.match(e.message, /already FP8-quantized \(config.json has quantization_config with quant_method "fp8"\)/);
      assert.match(e.message, /convert the original BF16\/FP16 checkpoint/);
      return true;
    });
    // Without the config's quantization_config, the FP8 tensors still give it away.
    const stripped = join(tmp.path, 'stripped');
    await mkdir(stripped);
    const { quantization_config: _qc, ...config } = await readJson(join(outA('llama'), 'config.json'));
    await writeFile(join(stripped, 'config.json'), JSON.stringify(config));
    await writeFile(join(stripped, 'model.safetensors'), await readFile(join(outA('llama'), 'model.safetensors')));
    await assert.rejects(convertCheckpoint({ input: stripped, output: out }), (e: unknown) => e instanceof AlreadyQuantizedError && /tensor "[^"]+" is F8_E4M3/.test(e.message));
    await assert.rejects(readdir(out), { code: 'ENOENT' });
  });

  test('a non-empty output folder is refused without --force and replaced with it', async () => {
    const out = join(tmp.path, 'occupied');
    await mkdir(out);
    // An earlier checkpoint (--force replaces only a checkpoint folder).
    await writeFile(join(out, 'config.json'), '{}');
    await writeFile(join(out, 'old.txt'), 'old');
    await assert.rejects(
      convertCheckpoint({ input: modelDir('llama'), output: out }),
      (e: unknown) => e instanceof CheckpointError && /output folder .*occupied is not empty: pass --force to replace it/.test(e.message),
    );
    assert.deepEqual((await readdir(out)).sort(), ['config.json', 'old.txt']);
    await convertCheckpoint({ input: modelDir('llama'), output: out, force: true });
    assert.deepEqual(await listFiles(out), ['config.json', 'generation_config.json', 'model.safetensors']);
    assert.deepEqual(await readFile(join(out, 'model.safetensors')), await readFile(join(outA('llama'), 'model.safetensors')));
    // No staging or backup folder is left beside it.
    assert.deepEqual(
      (await readdir(tmp.path)).filter((f) => f.includes('fp8q-tmp')),
      [],
    );
    // An empty existing folder needs no --force.
    const empty = join(tmp.path, 'empty-out');
    await mkdir(empty);
    await convertCheckpoint({ input: modelDir('llama'), output: empty });
    assert.ok((await readdir(empty)).includes('model.safetensors'));
  });

  test('a NaN in a weight is an error naming the tensor and position, and leaves no output', async () => {
    const dir = join(tmp.path, 'nan-src');
    const values = new Float32Array(4 * 8).fill(0.5);
    values[13] = NaN;
    await writeCheckpoint(dir, new Map([['model.layers.0.mlp.up_proj.weight', { dtype: 'F32', shape: [4, 8], bytes: new Uint8Array(values.buffer) }]]), {
      config: { model_type: 'llama' },
    });
    const out = join(tmp.path, 'nan-out');
    await assert.rejects(
      convertCheckpoint({ input: dir, output: out }),
      (e: unknown) =>
        e instanceof CheckpointError && /tensor "model.layers.0.mlp.up_proj.weight" \(F32\[4,8\]\) has a non-finite value \(NaN\) at \[1, 5\].*--allow-nonfinite/.test(e.message),
    );
    await assert.rejects(readdir(out), { code: 'ENOENT' });
    assert.deepEqual(
      (await readdir(tmp.path)).filter((f) => f.includes('fp8q-tmp')),
      [],
    );
    await convertCheckpoint({ input: dir, output: out, allowNonFinite: true });
    await rm(out, { recursive: true });
  });
});
