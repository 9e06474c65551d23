// `fp8q convert --activation-scheme static`: every quantized linear of every fixture gets
// `<module>.activation_scale`, F32 [ceil(K/bk)] (or a 0-dim scalar with tensor granularity), equal
// to amax / 448 of the activations that reach it on the calibration tokens. The expected amax is
// computed independently: the plain TypeScript reference forward (reference-forward.ts, host loops,
// not the ONNX graphs calibration runs) with a tap on every linear's input, and the per-group max
// taken here. Also: experts no token reached fall back to the MoE block's input (checked against
// a direct host computation), the CLI flags, text calibration through the model's tokenizer, and
// the formats that cannot hold static scales.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { cp } from 'node:fs/promises';
import { join } from 'node:path';
import { isFp8Dtype, widenToFloat32, type FloatSourceDtype } from '../src/fp8/dtypes.js';
import { convertCheckpoint, type ConvertEvent } from '../src/pipeline/convert-checkpoint.js';
import { CheckpointError } from '../src/io/errors.js';
import { convertCommand } from '../src/cli/commands/convert.js';
import { UsageError } from '../src/cli/common/errors.js';
import { describeEntry } from '../src/passes/plan-describe.js';
import type { ConvertPlan } from '../src/passes/plan.js';
import type { BatchShape } from '../src/runtime/models/layer-graphs.js';
import { referenceLayer, withReferenceTap } from '../src/runtime/models/reference-forward.js';
import { ModelRunner } from '../src/runtime/models/runner.js';
import { readInputIds, writeInputIds, type TokenBatch } from '../src/runtime/models/token-ids.js';
import { readCheckpointTensors, readJson, type TensorData } from './helpers/checkpoint-files.js';
import { FIXTURE_MODELS, MODELS, modelDir } from './helpers/fixtures.js';
import { makeTempDir, type TempDir } from './helpers/temp-dir.js';
import { expectedTinyIds, writeTinyTokenizer } from './helpers/tiny-tokenizer.js';

const E4M3_MAX = 448;
/** Calibration runs the ONNX graphs, the expectation the host reference: float32 vs float64 sums (measured ≤ 1.7e-6). */
const REL_TOL = 2e-5;
/** An awkward group: 256 → 3 groups (96, 96, 64), 512 → 6, 160 → 2. */
const BLOCK = { bn: 128, bk: 96 } as const;

type FixtureName = (typeof FIXTURE_MODELS)[number];

let tmp: TempDir;
before(async () => {
  tmp = await makeTempDir('calib-convert');
});
after(() => tmp.cleanup());

function f32(t: TensorData): Float32Array {
  return widenToFloat32(t.bytes, 'F32');
}

/** max |x| per group of `bk` channels, by module, over every linear input of the reference forward. */
async function referenceGroupAmax(dir: string, batch: TokenBatch, bk: number): Promise<Map<string, { amax: Float32Array; rows: number }>> {
  const runner = await ModelRunner.open(dir);
  const stats = new Map<string, { amax: Float32Array; rows: number }>();
  try {
    const shape: BatchShape = { batch: batch.batch, seq: batch.seq };
    await withReferenceTap(
      (module, x, rows) => {
        const k = x.length / rows;
        const s = stats.get(module) ?? { amax: new Float32Array(Math.ceil(k / bk)), rows: 0 };
        for (let i = 0; i < x.length; i++) {
          const g = Math.floor((i % k) / bk);
          s.amax[g] = Math.max(s.amax[g]!, Math.abs(x[i]!));
        }
        s.rows += rows;
        stats.set(module, s);
      },
      async () => {
        let hidden = await runner.embed(batch.ids);
        for (let layer = 0; layer < runner.spec.numLayers; layer++) hidden = await referenceLayer(runner, layer, hidden, shape);
      },
    );
    return stats;
  } finally {
    await runner.close();
  }
}

function assertClose(actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= REL_TOL * Math.abs(expected), `${what}: ${actual} vs expected ${expected}`);
}

describe('static activation scales on the fixtures', () => {
  for (const name of FIXTURE_MODELS) {
    test(`${name}: activation_scale [ceil(K/bk)] = amax / 448 of each quantized linear's input`, async () => {
      const calibration = join(MODELS, `${name}.logits.safetensors`);
      const out = join(tmp.path, `${name}-static`);
      const events: ConvertEvent[] = [];
      const summary = await convertCheckpoint({
        input: modelDir(name as FixtureName),
        output: out,
        block: BLOCK,
        activationScheme: 'static',
        calibration: { file: calibration },
        onEvent: (e) => events.push(e),
      });
      const config = await readJson(join(out, 'config.json'));
      assert.equal((config['quantization_config'] as Record<string, unknown>)['activation_scheme'], 'static');
      assert.equal(summary.tensorsQuantized, summary.calibration && 'scales' in summary.calibration ? summary.calibration.scales : -1, 'one scale per quantized linear');
      const layers = events.filter((e) => e.type === 'calibration-layer');
      assert.deepEqual(
        layers.map((e) => (e.type === 'calibration-layer' ? e.index : -1)),
        [0, 1],
        'a progress event per layer',
      );

      const tensors = await readCheckpointTensors(out);
      const expected = await referenceGroupAmax(modelDir(name as FixtureName), await readInputIds(calibration), BLOCK.bk);
      let checked = 0;
      for (const [tensorName, t] of tensors) {
        if (!tensorName.endsWith('.weight') || !isFp8Dtype(t.dtype)) continue;
        const module = tensorName.slice(0, -'.weight'.length);
        const k = t.shape[1]!;
        const scale = tensors.get(`${module}.activation_scale`);
        assert.ok(scale, `${module} has an activation_scale`);
        assert.equal(scale.dtype, 'F32');
        assert.deepEqual(scale.shape, [Math.ceil(k / BLOCK.bk)], `${module}.activation_scale shape`);
        const ref = expected.get(module);
        assert.ok(ref && ref.rows > 0, `the reference forward reached ${module}`);
        f32(scale).forEach((v, g) => assertClose(v, Math.fround(ref.amax[g]! / E4M3_MAX), `${module}.activation_scale[${g}]`));
        checked++;
      }
      assert.equal(checked, summary.tensorsQuantized);
      const stray = [...tensors.keys()].filter((n) => n.endsWith('.activation_scale') && !tensors.has(n.replace(/activation_scale$/, 'weight_scale_inv')));
      assert.deepEqual(stray, [], 'no activation_scale beside an unquantized module (lm_head, routers)');
    });
  }

  test('tensor granularity: one 0-dim scalar per linear, the max over its groups', async () => {
    const calibration = join(MODELS, 'llama.logits.safetensors');
    const group = join(tmp.path, 'llama-static');
    const tensor = join(tmp.path, 'llama-tensor');
    await convertCheckpoint({ input: modelDir('llama'), output: tensor, block: BLOCK, activationScheme: 'static', calibration: { file: calibration, granularity: 'tensor' } });
    const byGroup = await readCheckpointTensors(group);
    const byTensor = await readCheckpointTensors(tensor);
    let n = 0;
    for (const [name, t] of byTensor) {
      if (!name.endsWith('.activation_scale')) continue;
      assert.deepEqual(t.shape, [], `${name} is a scalar (transformers' FP8Linear.activation_scale)`);
      assert.equal(f32(t)[0], Math.max(...f32(byGroup.get(name)!)), `${name}: the largest group scale`);
      n++;
    }
    assert.equal(n, 14);
    assert.deepEqual(
      byTensor.get('model.layers.0.mlp.down_proj.weight')!.bytes,
      byGroup.get('model.layers.0.mlp.down_proj.weight')!.bytes,
      'weights do not depend on the activation scheme',
    );
  });

  test('experts no token reached: measured on the MoE block input, and reported', async () => {
    // One token routes to 2 of Mixtral's 4 experts per layer: the other two fall back.
    const ids = join(tmp.path, 'one-token.safetensors');
    await writeInputIds(ids, { ids: Int32Array.of(5), batch: 1, seq: 1 });
    const out = join(tmp.path, 'mixtral-one');
    const fallbacks: string[] = [];
    const summary = await convertCheckpoint({
      input: modelDir('mixtral'),
      output: out,
      activationScheme: 'static',
      calibration: { file: ids, granularity: 'tensor' },
      onEvent: (e) => {
        if (e.type === 'calibration-fallback') fallbacks.push(...e.modules);
      },
    });
    assert.equal(fallbacks.length, 12, '2 experts × 3 projections × 2 layers');
    assert.deepEqual(summary.calibration && 'fallbacks' in summary.calibration ? summary.calibration.fallbacks : [], fallbacks);
    const tensors = await readCheckpointTensors(out);
    const source = await readCheckpointTensors(modelDir('mixtral'));
    const ref = await referenceGroupAmax(modelDir('mixtral'), { ids: Int32Array.of(5), batch: 1, seq: 1 }, 1 << 30);
    const scale = (m: string): number => f32(tensors.get(`${m}.activation_scale`)!)[0]!;
    for (const layer of [0, 1]) {
      const block = `model.layers.${layer}.block_sparse_moe.experts`;
      const routed = [0, 1, 2, 3].filter((e) => ref.has(`${block}.${e}.w1`));
      const starved = [0, 1, 2, 3].filter((e) => !routed.includes(e));
      assert.equal(routed.length, 2);
      // The single token is the whole MoE input, so a starved expert's w1/w3 scale is the routed ones'.
      for (const e of starved) {
        assert.ok(fallbacks.includes(`${block}.${e}.w2`));
        for (const p of ['w1', 'w3']) assertClose(scale(`${block}.${e}.${p}`), scale(`${block}.${routed[0]}.w1`), `${block}.${e}.${p}`);
        // w2's input had the token been routed to it: silu(w1 · x) * (w3 · x), computed here.
        const x = ref.get(`${block}.${routed[0]}.w1`)!;
        assert.equal(x.rows, 1);
        const xn = await tokenInput(modelDir('mixtral'), `${block}.${routed[0]}.w1`);
        const w1 = widen(source.get(`${block}.${e}.w1.weight`)!);
        const w3 = widen(source.get(`${block}.${e}.w3.weight`)!);
        const inter = w1.length / xn.length;
        let amax = 0;
        for (let i = 0; i < inter; i++) {
          let g = 0;
          let u = 0;
          for (let j = 0; j < xn.length; j++) {
            g += w1[i * xn.length + j]! * xn[j]!;
            u += w3[i * xn.length + j]! * xn[j]!;
          }
          amax = Math.max(amax, Math.abs((g / (1 + Math.exp(-g))) * u));
        }
        assertClose(scale(`${block}.${e}.w2`), Math.fround(amax / E4M3_MAX), `${block}.${e}.w2 (fallback)`);
      }
    }
  });

  test('text calibration through the model tokenizer, from the CLI', async () => {
    const model = join(tmp.path, 'llama-with-tokenizer');
    await cp(modelDir('llama'), model, { recursive: true });
    await writeTinyTokenizer(model);
    const text = join(tmp.path, 'calib.txt');
    const lines = ['the quick brown fox', 'jumps over the lazy dog', 'in the beginning'];
    const { writeFile } = await import('node:fs/promises');
    await writeFile(text, `${lines.join('\n')}\n`);
    const out = join(tmp.path, 'llama-text');
    const summary = await convertCommand(model, {
      output: out,
      block: '128x128',
      weightDtype: 'float8_e4m3fn',
      maxShardSize: '5GB',
      quiet: true,
      activationScheme: 'static',
      calibration: text,
      calibrationSeqLen: '8',
      calibrationDevice: 'cpu',
    });
    const tokens = lines.map((l) => Math.min(8, expectedTinyIds(l).length)).reduce((a, b) => a + b, 0);
    assert.ok(summary.calibration);
    assert.equal(summary.calibration.tokens, tokens);
    assert.equal(summary.calibration.samples, 3);
    const tensors = await readCheckpointTensors(out);
    assert.deepEqual(tensors.get('model.layers.1.mlp.down_proj.activation_scale')!.shape, [4]);
    // Same ids as a token-id file: same scales.
    const idsFile = join(tmp.path, 'text-ids.safetensors');
    const ids = lines.map((l) => expectedTinyIds(l).slice(0, 8));
    assert.ok(ids.every((s) => s.length === 8));
    await writeInputIds(idsFile, { ids: Int32Array.from(ids.flat()), batch: 3, seq: 8 });
    const out2 = join(tmp.path, 'llama-ids');
    await convertCheckpoint({ input: model, output: out2, activationScheme: 'static', calibration: { file: idsFile } });
    const fromIds = await readCheckpointTensors(out2);
    for (const [n, t] of tensors) if (n.endsWith('.activation_scale')) assert.deepEqual(fromIds.get(n)!.bytes, t.bytes, n);
  });

  test('--dry-run reads the calibration set and plans the scales, writes nothing', async () => {
    const out = join(tmp.path, 'dry');
    let plan: ConvertPlan | undefined;
    const summary = await convertCheckpoint({
      input: modelDir('deepseek_v3'),
      output: out,
      dryRun: true,
      activationScheme: 'static',
      calibration: { file: join(MODELS, 'deepseek_v3.logits.safetensors'), granularity: 'tensor' },
      onEvent: (e) => {
        if (e.type === 'plan') plan = e.plan;
      },
    });
    assert.deepEqual(summary.calibration, { file: join(MODELS, 'deepseek_v3.logits.safetensors'), samples: 2, tokens: 48 });
    const scales = plan!.entries.filter((e) => e.op === 'activation-scale');
    assert.equal(scales.length, summary.tensorsQuantized);
    assert.match(describeEntry(scales[0]!), /^calibrate .*\.activation_scale F32\[\]  \(static activation scale, one per tensor/);
    assert.equal(plan!.settings.activationScheme, 'static');
    assert.equal(existsSync(out), false);
  });

  test('refusals: no calibration, calibration without static, compressed-tensors, stacked experts', async () => {
    const base = { output: join(tmp.path, 'never'), block: '128x128', weightDtype: 'float8_e4m3fn', maxShardSize: '5GB', quiet: true } as const;
    await assert.rejects(
      convertCommand(modelDir('llama'), { ...base, activationScheme: 'static' }),
      (e: Error) => e instanceof UsageError && /needs --calibration <file>/.test(e.message),
    );
    await assert.rejects(
      convertCommand(modelDir('llama'), { ...base, calibration: join(MODELS, 'llama.logits.safetensors') }),
      (e: Error) => e instanceof UsageError && /--calibration applies only to --activation-scheme static/.test(e.message),
    );
    await assert.rejects(
      convertCommand(modelDir('llama'), { ...base, activationScheme: 'static', calibration: join(MODELS, 'llama.logits.safetensors'), format: 'compressed-tensors' }),
      (e: Error) => e instanceof UsageError && /compressed-tensors/.test(e.message),
    );
    await assert.rejects(
      convertCheckpoint({
        input: modelDir('mixtral'),
        output: base.output,
        stackExperts: true,
        activationScheme: 'static',
        calibration: { file: join(MODELS, 'mixtral.logits.safetensors') },
      }),
      (e: Error) => e instanceof CheckpointError && /stacked \[E, N, K\] expert weight/.test(e.message),
    );
    await assert.rejects(convertCheckpoint({ input: modelDir('llama'), output: base.output, activationScheme: 'static' }), /pass --calibration <file>/);
  });
});

function widen(t: TensorData): Float32Array {
  return widenToFloat32(t.bytes, t.dtype as FloatSourceDtype);
}

/** The single calibration token's input to `module` in the reference forward. */
async function tokenInput(dir: string, module: string): Promise<Float32Array> {
  const runner = await ModelRunner.open(dir);
  let found: Float32Array | undefined;
  try {
    await withReferenceTap(
      (m, x) => {
        if (m === module) found = x.slice();
      },
      async () => {
        let hidden = await runner.embed([5]);
        for (let layer = 0; layer < runner.spec.numLayers; layer++) hidden = await referenceLayer(runner, layer, hidden, { batch: 1, seq: 1 });
      },
    );
  } finally {
    await runner.close();
  }
  assert.ok(found, `the reference reached ${module}`);
  return found;
}
