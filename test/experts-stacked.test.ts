// MoE experts stored as 3-D tensors, and --stack-experts. One set of synthetic expert weights
// (test/helpers/synthetic-moe.ts) is written three ways — per expert, fused out × in
// (transformers 5.x), fused in × out (gpt-oss) — and converted with non-square 32x16 blocks, so a
// block grid laid over the wrong axes cannot pass: the FP8 result of every layout must be the same
// codes (transposed where stored transposed) and the same [E, ceil(N/bn), ceil(K/bk)] scales,
// and those must equal an independent per-expert block quantization.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { join } from 'node:path';
import { convertCheckpoint, type ConvertEvent } from '../src/pipeline/convert-checkpoint.js';
import { dequantCheckpoint } from '../src/pipeline/dequant-checkpoint.js';
import { encodeE4M3 } from '../src/fp8/formats.js';
import { blockScaleQuantizePass } from '../src/passes/block-scale-quantize.js';
import { fusedExpertLayout } from '../src/passes/fused-experts.js';
import type { ConvertPlan } from '../src/passes/plan.js';
import { readCheckpointTensors, readJson, writeCheckpoint, type TensorData } from './helpers/checkpoint-files.js';
import { f32, modelDir } from './helpers/fixtures.js';
import { expertWeights, fusedInOutCheckpoint, fusedOutInCheckpoint, MOE, moeConfig, perExpertCheckpoint, valuesOf } from './helpers/synthetic-moe.js';
import { makeTempDir, type TempDir } from './helpers/temp-dir.js';

const BN = 32;
const BK = 16;
const EXPERTS = 'model.layers.0.mlp.experts';
const { experts: E, hidden: H, inter: I } = MOE;

interface Converted {
  tensors: Map<string, TensorData>;
  plan: ConvertPlan;
  warnings: string[];
  dir: string;
}

async function convert(
  tmp: TempDir,
  name: string,
  source: Map<string, TensorData>,
  modelType: string,
  extra: { stackExperts?: boolean; block?: { bn: number; bk: number } } = {},
): Promise<Converted> {
  const input = join(tmp.path, name);
  await writeCheckpoint(input, source, { config: moeConfig(modelType) });
  return convertDir(input, join(tmp.path, `${name}-fp8`), extra);
}

async function convertDir(input: string, output: string, extra: { stackExperts?: boolean; block?: { bn: number; bk: number } } = {}): Promise<Converted> {
  const warnings: string[] = [];
  let plan: ConvertPlan | undefined;
  const onEvent = (e: ConvertEvent): void => {
    if (e.type === 'warning') warnings.push(e.message);
    if (e.type === 'plan') plan = e.plan;
  };
  await convertCheckpoint({ input, output, block: extra.block ?? { bn: BN, bk: BK }, stackExperts: extra.stackExperts ?? false, onEvent });
  return { tensors: await readCheckpointTensors(output), plan: plan!, warnings, dir: output };
}

/**
 * Independent reference: block-quantize the math matrix W [n, k] (out × in) with bn × bk blocks.
 * Returns codes in W's layout and scales [ceil(n/bn), ceil(k/bk)].
 */
function referenceQuantize(w: Float32Array, n: number, k: number): { codes: Uint8Array; scales: Float32Array } {
  const rb = Math.ceil(n / BN);
  const cb = Math.ceil(k / BK);
  const codes = new Uint8Array(n * k);
  const scales = new Float32Array(rb * cb);
  for (let bi = 0; bi < rb; bi++) {
    for (let bj = 0; bj < cb; bj++) {
      let amax = 0;
      for (let r = bi * BN; r < Math.min(n, (bi + 1) * BN); r++) for (let c = bj * BK; c < Math.min(k, (bj + 1) * BK); c++) amax = Math.max(amax, Math.abs(w[r * k + c]!));
      const s = Math.fround(amax / 448) || 1;
      scales[bi * cb + bj] = s;
      for (let r = bi * BN; r < Math.min(n, (bi + 1) * BN); r++) {
        for (let c = bj * BK; c < Math.min(k, (bj + 1) * BK); c++) codes[r * k + c] = encodeE4M3(Math.max(-448, Math.min(448, Math.fround(w[r * k + c]! / s))));
      }
    }
  }
  return { codes, scales };
}

function concat(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The expected FP8 codes ([E, N, K]) and scales ([E, ceil(N/bn), ceil(K/bk)]) of gate_up and down. */
function expected(): Record<'gate_up_proj' | 'down_proj', { codes: Uint8Array; scales: Float32Array; n: number; k: number }> {
  const w = expertWeights();
  const gateUp = Array.from({ length: E }, (_, e) => referenceQuantize(concat([valuesOf(w.gate[e]!), valuesOf(w.up[e]!)]), 2 * I, H));
  const down = Array.from({ length: E }, (_, e) => referenceQuantize(valuesOf(w.down[e]!), H, I));
  const pack = (qs: { codes: Uint8Array; scales: Float32Array }[], n: number, k: number) => ({
    codes: Uint8Array.from(qs.flatMap((q) => [...q.codes])),
    scales: Float32Array.from(qs.flatMap((q) => [...q.scales])),
    n,
    k,
  });
  return { gate_up_proj: pack(gateUp, 2 * I, H), down_proj: pack(down, H, I) };
}

/** [E, a, b] codes → [E, b, a]. */
function transpose3(codes: Uint8Array, a: number, b: number): Uint8Array {
  const out = new Uint8Array(codes.length);
  for (let e = 0; e < codes.length / (a * b); e++) {
    for (let i = 0; i < a; i++) for (let j = 0; j < b; j++) out[e * a * b + j * a + i] = codes[e * a * b + i * b + j]!;
  }
  return out;
}

async function readDequantized(tmp: TempDir, dir: string, name: string): Promise<Map<string, TensorData>> {
  const out = join(tmp.path, name);
  await dequantCheckpoint({ input: dir, output: out });
  return readCheckpointTensors(out);
}

describe('fused and stacked experts', () => {
  let tmp: TempDir;
  const want = expected();
  let outIn: Converted;
  let inOut: Converted;
  let stacked: Converted;
  before(async () => {
    tmp = await makeTempDir('experts');
    outIn = await convert(tmp, 'fused-out-in', fusedOutInCheckpoint(), 'qwen3_moe');
    inOut = await convert(tmp, 'fused-in-out', fusedInOutCheckpoint(), 'gpt_oss');
    stacked = await convert(tmp, 'per-expert', perExpertCheckpoint(), 'qwen3_moe', { stackExperts: true });
  });
  after(() => tmp.cleanup());

  test('fused out × in [E, N, K] (transformers 5.x): per-expert blocks over (N, K), [E, ceil(N/bn), ceil(K/bk)] scales', () => {
    assert.deepEqual(outIn.warnings, []);
    for (const proj of ['gate_up_proj', 'down_proj'] as const) {
      const { codes, scales, n, k } = want[proj];
      const w = outIn.tensors.get(`${EXPERTS}.${proj}`)!;
      const s = outIn.tensors.get(`${EXPERTS}.${proj}_scale_inv`)!;
      assert.deepEqual([w.dtype, w.shape], ['F8_E4M3', [E, n, k]], proj);
      assert.deepEqual([s.dtype, s.shape], ['F32', [E, Math.ceil(n / BN), Math.ceil(k / BK)]], proj);
      assert.deepEqual(w.bytes, codes, proj);
      assert.deepEqual(f32(s.bytes), scales, proj);
    }
    assert.deepEqual(
      outIn.plan.entries.filter((e) => e.op !== 'copy').map((e) => e.op),
      ['quantize', 'quantize', 'quantize'],
    );
  });

  test('fused in × out [E, K, N] (gpt-oss): stored layout kept, blocks still over (out, in)', async () => {
    assert.ok(!inOut.warnings.some((w) => /assumed|following the shape/.test(w)), inOut.warnings.join('\n'));
    for (const proj of ['gate_up_proj', 'down_proj'] as const) {
      const { codes, scales, n, k } = want[proj];
      const w = inOut.tensors.get(`${EXPERTS}.${proj}`)!;
      const s = inOut.tensors.get(`${EXPERTS}.${proj}_scale_inv`)!;
      assert.deepEqual([w.dtype, w.shape], ['F8_E4M3', [E, k, n]], proj);
      assert.deepEqual(s.shape, [E, Math.ceil(n / BN), Math.ceil(k / BK)], proj);
      assert.deepEqual(w.bytes, transpose3(codes, n, k), proj);
      assert.deepEqual(f32(s.bytes), scales, proj);
    }
    // The 2-D fused biases are not weights: copied in BF16.
    assert.equal(inOut.tensors.get(`${EXPERTS}.gate_up_proj_bias`)!.dtype, 'BF16');
    assert.deepEqual(
      inOut.plan.entries.filter((e) => e.op === 'quantize-in-out').map((e) => e.outputs[0]!.name),
      [`${EXPERTS}.down_proj`, `${EXPERTS}.gate_up_proj`],
    );
    const qc = (await readJson(join(inOut.dir, 'config.json')))['quantization_config'] as { modules_to_not_convert: string[] };
    assert.ok(!qc.modules_to_not_convert.some((m) => m.includes('experts')), JSON.stringify(qc));
  });

  test('dequant reads both fused layouts back with the right scale grid (in × out = out × in, transposed)', async () => {
    const a = await readDequantized(tmp, outIn.dir, 'deq-out-in');
    const b = await readDequantized(tmp, inOut.dir, 'deq-in-out');
    for (const proj of ['gate_up_proj', 'down_proj'] as const) {
      const { n, k } = want[proj];
      const x = a.get(`${EXPERTS}.${proj}`)!;
      const y = b.get(`${EXPERTS}.${proj}`)!;
      assert.deepEqual([x.dtype, x.shape, y.shape], ['BF16', [E, n, k], [E, k, n]]);
      const xs = new Uint16Array(x.bytes.slice().buffer);
      const ys = new Uint16Array(y.bytes.slice().buffer);
      for (let e = 0; e < E; e++) {
        for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) if (xs[(e * n + i) * k + j] !== ys[(e * k + j) * n + i]) assert.fail(`${proj}[${e}, ${i}, ${j}]`);
      }
    }
  });

  test('--stack-experts writes per-expert weights as the fused out × in tensors, byte for byte', () => {
    for (const name of [`${EXPERTS}.gate_up_proj`, `${EXPERTS}.gate_up_proj_scale_inv`, `${EXPERTS}.down_proj`, `${EXPERTS}.down_proj_scale_inv`]) {
      assert.deepEqual(stacked.tensors.get(name), outIn.tensors.get(name), name);
    }
    assert.deepEqual(
      [...stacked.tensors.keys()].filter((n) => /experts\.\d/.test(n)),
      [],
    );
    assert.deepEqual([...stacked.tensors.keys()].sort(), [...outIn.tensors.keys()].sort());
    const stacks = stacked.plan.entries.filter((e) => e.op === 'stack-experts');
    assert.equal(stacks.length, 2);
    assert.deepEqual(
      stacked.plan.modules
        .filter((m) => m.module.startsWith(EXPERTS))
        .map((m) => m.module)
        .sort(),
      [`${EXPERTS}.down_proj`, `${EXPERTS}.gate_up_proj`],
    );
  });

  test('--stack-experts on the Mixtral fixture: w1 + w3 → gate_up_proj, w2 → down_proj', async () => {
    const plain = await convertDir(modelDir('mixtral'), join(tmp.path, 'mixtral-plain'), { block: { bn: 128, bk: 128 } });
    const st = await convertDir(modelDir('mixtral'), join(tmp.path, 'mixtral-stacked'), { block: { bn: 128, bk: 128 }, stackExperts: true });
    const moe = 'model.layers.1.block_sparse_moe.experts';
    const gu = st.tensors.get(`${moe}.gate_up_proj`)!;
    const gus = st.tensors.get(`${moe}.gate_up_proj_scale_inv`)!;
    assert.deepEqual(gu.shape, [4, 512, 256]);
    assert.deepEqual(gus.shape, [4, 4, 2]);
    assert.deepEqual(st.tensors.get(`${moe}.down_proj_scale_inv`)!.shape, [4, 2, 2]);
    // 256 rows per part is a multiple of bn, so each part's blocks are exactly the per-expert ones.
    for (let e = 0; e < 4; e++) {
      const half = 256 * 256;
      assert.deepEqual(gu.bytes.subarray(2 * e * half, (2 * e + 1) * half), plain.tensors.get(`${moe}.${e}.w1.weight`)!.bytes, `expert ${e} gate`);
      assert.deepEqual(gu.bytes.subarray((2 * e + 1) * half, (2 * e + 2) * half), plain.tensors.get(`${moe}.${e}.w3.weight`)!.bytes, `expert ${e} up`);
      const s = f32(gus.bytes).subarray(e * 8, (e + 1) * 8);
      assert.deepEqual(s, concat([f32(plain.tensors.get(`${moe}.${e}.w1.weight_scale_inv`)!.bytes), f32(plain.tensors.get(`${moe}.${e}.w3.weight_scale_inv`)!.bytes)]));
    }
    assert.equal(st.tensors.has(`${moe}.0.w1.weight`), false);
    assert.equal(st.tensors.get('model.layers.1.block_sparse_moe.gate.weight')!.dtype, 'BF16');
  });
});

describe('expert layout decisions', () => {
  test('shapes decide when config sizes tell the orientations apart; the family decides when they cannot', () => {
    const cfg = (t: string, hidden: number, inter: number) => ({ model_type: t, hidden_size: hidden, intermediate_size: inter });
    assert.deepEqual(fusedExpertLayout(cfg('gpt_oss', 80, 48), 'x.experts.gate_up_proj', 'gate_up_proj', [3, 80, 96]), { layout: 'in_out' });
    assert.deepEqual(fusedExpertLayout(cfg('mixtral', 80, 48), 'x.experts.gate_up_proj', 'gate_up_proj', [3, 96, 80]), { layout: 'out_in' });
    // Square down_proj (hidden == intermediate): only the family can tell.
    assert.deepEqual(fusedExpertLayout(cfg('gpt_oss', 64, 64), 'x.experts.down_proj', 'down_proj', [3, 64, 64]), { layout: 'in_out' });
    assert.deepEqual(fusedExpertLayout(cfg('qwen3_moe', 64, 64), 'x.experts.down_proj', 'down_proj', [3, 64, 64]), { layout: 'out_in' });
    const unknown = fusedExpertLayout(cfg('somemoe', 64, 64), 'x.experts.down_proj', 'down_proj', [3, 64, 64]);
    assert.equal(unknown.layout, 'out_in');
    assert.match(unknown.assumption!, /cannot tell \[E, out, in\] from \[E, in, out\]; assumed \[E, out, in\]/);
    // A gpt-oss tensor that the sizes say is out × in: the shape wins, with a note.
    const contradicted = fusedExpertLayout(cfg('gpt_oss', 80, 48), 'x.experts.gate_up_proj', 'gate_up_proj', [3, 96, 80]);
    assert.equal(contradicted.layout, 'out_in');
    assert.match(contradicted.assumption!, /following the shape/);
  });

  test('--stack-experts leaves a set per-expert (with a warning) when a stack would drop a bias', () => {
    const t = (name: string, shape: number[]) => ({ name, dtype: 'BF16' as const, shape });
    const tensors = [0, 1].flatMap((e) => [
      t(`m.experts.${e}.gate_proj.weight`, [32, 16]),
      t(`m.experts.${e}.up_proj.weight`, [32, 16]),
      t(`m.experts.${e}.down_proj.weight`, [16, 32]),
      t(`m.experts.${e}.down_proj.bias`, [16]),
    ]);
    const plan = blockScaleQuantizePass({ model_type: 'qwen3_moe', num_experts: 2 }, tensors, {
      settings: { format: 'e4m3fn', block: { bn: 16, bk: 16 }, scaleFormat: 'float', activationScheme: 'dynamic' },
      stackExperts: true,
    });
    assert.equal(plan.entries.filter((e) => e.op === 'stack-experts').length, 0);
    assert.equal(plan.entries.filter((e) => e.op === 'quantize').length, 6);
    assert.match(plan.warnings.join('\n'), /m\.experts stays per-expert: its experts have other parameters \(m\.experts\.0\.down_proj\.bias/);
  });
});
