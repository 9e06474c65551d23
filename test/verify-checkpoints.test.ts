// verifyCheckpoints on the fixtures: sound conversions pass every default gate; deliberately
// damaged ones fail and the failures name exactly the damaged linears — because each quantized
// linear is fed the original model's activations, damage in one layer does not spill into the
// per-linear metrics of any other.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';

import { convertCheckpoint } from '../src/pipeline/convert-checkpoint.js';
import { readInputIds } from '../src/runtime/models/token-ids.js';
import { DEFAULT_GATES } from '../src/runtime/verify/gates.js';
import { compareLogits, compareTensors, klDivergence } from '../src/runtime/verify/metrics.js';
import { MetricsPool } from '../src/runtime/verify/metrics-pool.js';
import { SeededRandom } from '../src/runtime/ops/random.js';
import { verifyCheckpoints, type VerifyReport } from '../src/runtime/verify/verify-checkpoints.js';
import { copyCheckpointWithEdits, scaleF32, swapPrefixes } from './helpers/checkpoint-edit.js';
import { testDevice } from './helpers/device.js';
import { FIXTURE_MODELS, MODELS, modelDir } from './helpers/fixtures.js';
import { useConvertedFixtures } from './helpers/converted-fixtures.js';

const fixtures = useConvertedFixtures('verify-checkpoints');
const converted = fixtures.converted;

async function verify(name: (typeof FIXTURE_MODELS)[number], quantized: string): Promise<VerifyReport> {
  return verifyCheckpoints({
    original: modelDir(name),
    quantized,
    input: await readInputIds(join(MODELS, `${name}.logits.safetensors`)),
    device: testDevice(),
  });
}

const QUANTIZED_LINEARS: Record<(typeof FIXTURE_MODELS)[number], number> = {
  llama: 14, // 2 layers × (4 attention + 3 MLP)
  mixtral: 32, // 2 × (4 attention + 4 experts × 3)
  deepseek_v3: 28, // 2 × 5 MLA + 3 dense MLP + (4 experts + 1 shared) × 3
};

for (const name of FIXTURE_MODELS) {
  test(`${name}: a sound FP8 conversion passes verify`, async () => {
    const r = await verify(name, converted.get(name)!);
    assert.equal(r.passed, true, r.failures.map((f) => f.message).join('; '));
    assert.equal(r.summary.linearsCompared, QUANTIZED_LINEARS[name]);
    assert.deepEqual(r.notReached, []);
    for (const l of r.linears) {
      assert.ok(l.relativeError > 0.02 && l.relativeError < 0.06, `${l.module}: relative error ${l.relativeError} is not FP8-sized`);
      assert.ok(l.cosine > 0.998 && l.sqnrDb > 24, `${l.module}: cosine ${l.cosine}, SQNR ${l.sqnrDb}`);
    }
    assert.ok(r.model.meanKl > 0 && r.model.meanKl < DEFAULT_GATES.maxKl);
    assert.equal(r.model.tokens, 48);
    // One layer at a time: the peak is far from both checkpoints together.
    assert.ok(r.peakWeightBytes < r.checkpointBytes.original, `peak ${r.peakWeightBytes} B vs ${r.checkpointBytes.original} B`);
  });
}

function failedLinears(r: VerifyReport): string[] {
  return r.failures
    .filter((f) => f.gate === 'max-layer-rel-error' || f.gate === 'max-layer-error-ratio')
    .map((f) => f.subject)
    .sort();
}

test('llama: one weight_scale_inv ×4 fails verify and names that linear only', async () => {
  const damaged = join(fixtures.workDir(), 'llama-scale');
  await copyCheckpointWithEdits(converted.get('llama')!, damaged, (t) => scaleF32(t.get('model.layers.1.mlp.down_proj.weight_scale_inv')!, 4));
  const r = await verify('llama', damaged);
  assert.equal(r.passed, false);
  assert.deepEqual(failedLinears(r), ['model.layers.1.mlp.down_proj']);
  const bad = r.linears.find((l) => l.module === 'model.layers.1.mlp.down_proj')!;
  assert.ok(Math.abs(bad.relativeError - 3) < 0.1, `×4 scale gives relative error ≈ 3, got ${bad.relativeError}`);
  assert.ok(bad.errorRatio! >= bad.relativeError / bad.floorError! - 1e-9 && bad.errorRatio! > 50, `ratio ${bad.errorRatio}`);
  assert.match(
    r.failures.find((f) => f.gate === 'max-layer-error-ratio')!.message,
    /^model\.layers\.1\.mlp\.down_proj: relative error [23]\.\d+ is \d+\.\d+× its FP8 floor 0\.0\d+ \(the original weights re-quantized the same way\), over --max-layer-error-ratio 2$/,
  );
});

test('deepseek_v3: a ×4 scale on the edge-block kv_a_proj_with_mqa (160 rows) is found', async () => {
  const damaged = join(fixtures.workDir(), 'ds-scale');
  await copyCheckpointWithEdits(converted.get('deepseek_v3')!, damaged, (t) => scaleF32(t.get('model.layers.0.self_attn.kv_a_proj_with_mqa.weight_scale_inv')!, 4));
  const r = await verify('deepseek_v3', damaged);
  assert.deepEqual(failedLinears(r), ['model.layers.0.self_attn.kv_a_proj_with_mqa']);
});

test('mixtral: two swapped experts fail verify, naming each of their projections', async () => {
  const damaged = join(fixtures.workDir(), 'mixtral-swap');
  const block = 'model.layers.0.block_sparse_moe.experts';
  await copyCheckpointWithEdits(converted.get('mixtral')!, damaged, (t) => swapPrefixes(t, `${block}.1`, `${block}.2`));
  const r = await verify('mixtral', damaged);
  assert.equal(r.passed, false);
  assert.deepEqual(failedLinears(r), [1, 2].flatMap((e) => ['w1', 'w2', 'w3'].map((p) => `${block}.${e}.${p}`)).sort());
});

test('deepseek_v3: two swapped routed experts fail verify, naming them', async () => {
  const damaged = join(fixtures.workDir(), 'ds-swap');
  const block = 'model.layers.1.mlp.experts';
  await copyCheckpointWithEdits(converted.get('deepseek_v3')!, damaged, (t) => swapPrefixes(t, `${block}.0`, `${block}.3`));
  const r = await verify('deepseek_v3', damaged);
  assert.deepEqual(failedLinears(r), [0, 3].flatMap((e) => ['down_proj', 'gate_proj', 'up_proj'].map((p) => `${block}.${e}.${p}`)).sort());
});

test("conversions with the converter's other layouts and formats verify too", async () => {
  const variants: [(typeof FIXTURE_MODELS)[number], string, Partial<Parameters<typeof convertCheckpoint>[0]>, number][] = [
    ['llama', 'compressed-tensors (weight_scale)', { outputFormat: 'compressed-tensors' }, 0.06],
    ['llama', 'ue8m0 scales', { scaleFormat: 'ue8m0' }, 0.06],
    ['llama', 'E5M2 weights', { format: 'e5m2' }, 0.12],
    ['llama', '64×32 blocks', { block: { bn: 64, bk: 32 } }, 0.06],
    ['deepseek_v3', '--mla-split', { mlaSplit: true }, 0.06],
    ['mixtral', '--stack-experts', { stackExperts: true }, 0.06],
  ];
  for (const [name, what, options, maxError] of variants) {
    const out = join(fixtures.workDir(), `variant-${name}-${what.replace(/\W+/g, '-')}`);
    await convertCheckpoint({ input: modelDir(name), output: out, ...options });
    const r = await verify(name, out);
    assert.equal(r.passed, true, `${name} ${what}: ${r.failures.map((f) => f.message).join('; ')}`);
    // --mla-split adds w_uk and w_uv per head (4 heads, 2 layers), run as the absorbed MLA path does.
    const extra = options.mlaSplit === true ? 16 : 0;
    assert.equal(r.summary.linearsCompared, QUANTIZED_LINEARS[name] + extra, `${name} ${what}: linears compared`);
    assert.ok(r.summary.maxRelativeError < maxError, `${name} ${what}: worst relative error ${r.summary.maxRelativeError}`);
  }
});

test("mixtral --stack-experts: damage to one expert's slice of a stacked scale is named by that expert", async () => {
  const stacked = join(fixtures.workDir(), 'mixtral-stacked');
  await convertCheckpoint({ input: modelDir('mixtral'), output: stacked, stackExperts: true });
  const damaged = join(fixtures.workDir(), 'mixtral-stacked-bad');
  await copyCheckpointWithEdits(stacked, damaged, (t) => {
    const scale = t.get('model.layers.1.block_sparse_moe.experts.down_proj_scale_inv')!;
    const perExpert = scale.bytes.byteLength / 4 / scale.shape[0]!;
    const v = new Float32Array(scale.bytes.buffer, scale.bytes.byteOffset, scale.bytes.byteLength / 4);
    for (let i = 2 * perExpert; i < 3 * perExpert; i++) v[i] = v[i]! * 4;
  });
  const r = await verify('mixtral', damaged);
  assert.deepEqual(failedLinears(r), ['model.layers.1.block_sparse_moe.experts.2.w2']);
});

test('an FP8 original (a --requantize conversion): its experts are compared like its other linears, and damage to one is named', async () => {
  const requantized = join(fixtures.workDir(), 'mixtral-requantized');
  await convertCheckpoint({ input: converted.get('mixtral')!, output: requantized, requantize: true, block: { bn: 64, bk: 64 } });
  const run = async (quantized: string): Promise<VerifyReport> =>
    verifyCheckpoints({
      original: converted.get('mixtral')!,
      quantized,
      input: await readInputIds(join(MODELS, 'mixtral.logits.safetensors')),
      device: testDevice(),
    });
  const r = await run(requantized);
  assert.equal(r.passed, true, r.failures.map((f) => f.message).join('; '));
  assert.deepEqual(r.notReached, []);
  assert.equal(r.summary.linearsCompared, QUANTIZED_LINEARS.mixtral);
  const damaged = join(fixtures.workDir(), 'mixtral-requantized-bad');
  await copyCheckpointWithEdits(requantized, damaged, (t) => scaleF32(t.get('model.layers.1.block_sparse_moe.experts.3.w1.weight_scale_inv')!, 4));
  assert.deepEqual(failedLinears(await run(damaged)), ['model.layers.1.block_sparse_moe.experts.3.w1']);
});

test('static activation scales: a calibrated conversion passes; a scale 16× too small clips and is named', async () => {
  const calibrated = join(fixtures.workDir(), 'llama-static');
  await convertCheckpoint({
    input: modelDir('llama'),
    output: calibrated,
    activationScheme: 'static',
    calibration: { file: join(MODELS, 'llama.logits.safetensors') },
  });
  const sound = await verify('llama', calibrated);
  assert.equal(sound.passed, true, sound.failures.map((f) => f.message).join('; '));
  assert.equal(sound.summary.linearsCompared, QUANTIZED_LINEARS.llama);
  const damaged = join(fixtures.workDir(), 'llama-static-bad');
  await copyCheckpointWithEdits(calibrated, damaged, (t) => scaleF32(t.get('model.layers.0.mlp.up_proj.activation_scale')!, 1 / 16));
  const r = await verify('llama', damaged);
  assert.deepEqual(failedLinears(r), ['model.layers.0.mlp.up_proj']);
});

test('generated token ids: seeded, one sequence, and a sound conversion passes', async () => {
  const r = await verifyCheckpoints({ original: modelDir('llama'), quantized: converted.get('llama')!, tokens: 16, seed: 3, device: testDevice() });
  assert.deepEqual(r.input, { source: 'generated', batch: 1, seq: 16, seed: 3, description: 'random ids, 1×16 tokens, seed 3' });
  assert.equal(r.model.tokens, 16);
  assert.equal(r.passed, true);
});

test('a checkpoint of another model is refused before any layer runs', async () => {
  await assert.rejects(
    verifyCheckpoints({ original: modelDir('llama'), quantized: converted.get('mixtral')!, tokens: 4 }),
    /is not a conversion of .*architecture LlamaForCausalLM vs MixtralForCausalLM/,
  );
});

test('deviceReady: verify prepares while it is pending, starts only once it resolves, and fails with its rejection', async () => {
  const events: string[] = [];
  let resolveReady: (() => void) | undefined;
  const ready = new Promise<void>((r) => (resolveReady = r));
  const run = verifyCheckpoints({
    original: modelDir('llama'),
    quantized: converted.get('llama')!,
    tokens: 8,
    device: testDevice(),
    deviceReady: ready,
    onEvent: (e) => events.push(e.type),
  });
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(events.length, 0, 'no start before the device is ready');
  resolveReady!();
  assert.equal((await run).passed, true);
  assert.equal(events[0], 'start');

  const failed = verifyCheckpoints({
    original: modelDir('llama'),
    quantized: converted.get('llama')!,
    tokens: 8,
    device: testDevice(),
    deviceReady: Promise.reject(new Error('the probe failed')),
    onEvent: (e) => events.push(`failed ${e.type}`),
  });
  await assert.rejects(failed, /the probe failed/);
  assert.ok(!events.some((e) => e.startsWith('failed')), 'nothing ran');
});

test('metrics pool: logits split over workers, in shared memory or copied, give compareLogits bit for bit', async () => {
  const rng = new SeededRandom(7);
  const vocab = 97;
  const tokens = 11;
  const original = rng.normalArray(tokens * vocab, 3);
  const quantized = Float32Array.from(original, (v) => v + rng.normal() * 0.05);
  const expected = compareLogits(original, quantized, vocab);
  // The relative error is the whole tensor's (the per-token sums added in token order).
  assert.ok(Math.abs(expected.relativeError - compareTensors(original, quantized).relativeError) < 1e-12);
  const inShared = (a: Float32Array): Float32Array => {
    const s = new Float32Array(new SharedArrayBuffer(a.byteLength));
    s.set(a);
    return s;
  };
  const pool = new MetricsPool(3);
  try {
    assert.deepEqual(await pool.compareLogits(original, quantized, vocab), expected);
    assert.deepEqual(await pool.compareLogits(inShared(original), inShared(quantized), vocab), expected);
  } finally {
    await pool.close();
  }
});

test('metrics: KL, top-1, cosine and SQNR on hand-made values', () => {
  // KL of identical logits is 0; of [0, 0] vs [ln 3, 0]: p = (½, ½), q = (¾, ¼) → ½ ln(⅔) + ½ ln 2.
  assert.equal(klDivergence(new Float32Array([1, 2]), new Float32Array([1, 2])), 0);
  const kl = klDivergence(new Float32Array([0, 0]), new Float32Array([Math.log(3), 0]));
  assert.ok(Math.abs(kl - (0.5 * Math.log(2 / 3) + 0.5 * Math.log(2))) < 1e-7);
  const m = compareLogits(new Float32Array([0, 1, 1, 0]), new Float32Array([0, 2, 0, 1]), 2);
  assert.equal(m.top1Agreement, 0.5);
  assert.equal(m.maxKlToken, 1);
  const t = compareTensors([3, 4], [3, 4.5]);
  assert.ok(Math.abs(t.relativeError - 0.1) < 1e-12);
  assert.ok(Math.abs(t.sqnrDb - 20) < 1e-9);
  assert.ok(Math.abs(t.cosine - (9 + 18) / (5 * Math.hypot(3, 4.5))) < 1e-12);
  assert.equal(compareTensors([1, 2], [1, 2]).sqnrDb, Infinity);
});
