// `--format compressed-tensors`: the same FP8 codes and scale values as the hf layout
// under llm-compressor's names and config, and a config our reader (detectQuantizedFormat) reads
// back to the same settings. Differential: every fixture is converted both ways and compared.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURE_MODELS, modelDir, readAll } from './helpers/fixtures.js';
import { convertCheckpoint, type ConvertEvent } from '../src/pipeline/convert-checkpoint.js';
import { inspectCheckpoint } from '../src/pipeline/inspect/inspect-checkpoint.js';
import { applyOutputFormat, OutputFormatError } from '../src/pipeline/output-format.js';
import { detectQuantizedFormat, quantizedWeightsOf, QuantizationConfigError } from '../src/io/formats/quantized-format.js';
import { convertCommand } from '../src/cli/commands/convert.js';
import { UsageError } from '../src/cli/common/errors.js';
import type { ConvertPlan } from '../src/passes/plan.js';

type Tensor = { dtype: string; shape: readonly number[]; bytes: Uint8Array };
interface Written {
  config: Record<string, unknown>;
  tensors: Map<string, Tensor>;
  index: { weight_map: Record<string, string> } | undefined;
}

let tmp = '';
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'fp8q-ct-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function readWritten(dir: string): Promise<Written> {
  const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const files = (await readdir(dir)).filter((f) => f.endsWith('.safetensors'));
  const tensors = new Map<string, Tensor>();
  for (const f of files) for (const [name, t] of (await readAll(join(dir, f))).tensors) tensors.set(name, t);
  const indexPath = join(dir, 'model.safetensors.index.json');
  const index = (await stat(indexPath).catch(() => undefined)) ? (JSON.parse(await readFile(indexPath, 'utf8')) as Written['index']) : undefined;
  return { config, tensors, index };
}

/** The FP8_BLOCK quantization_config, written out by hand from llm-compressor's model_free output. */
function expectedCompressedTensorsConfig(ignore: readonly string[], bn = 128, bk = 128): unknown {
  return {
    config_groups: {
      config_group_0: {
        format: 'float-quantized',
        input_activations: {
          actorder: null,
          block_structure: null,
          dynamic: true,
          group_size: bk,
          num_bits: 8,
          observer: null,
          observer_kwargs: {},
          strategy: 'group',
          symmetric: true,
          type: 'float',
        },
        output_activations: null,
        targets: ['Linear'],
        weights: {
          actorder: null,
          block_structure: [bn, bk],
          dynamic: false,
          group_size: null,
          num_bits: 8,
          observer: 'memoryless_minmax',
          observer_kwargs: {},
          strategy: 'block',
          symmetric: true,
          type: 'float',
        },
      },
    },
    format: 'float-quantized',
    global_compression_ratio: null,
    ignore,
    kv_cache_scheme: null,
    quant_method: 'compressed-tensors',
    quantization_status: 'compressed',
    transform_config: {},
    version: '0.14.0',
  };
}

const ctName = (hfName: string): string => (hfName.endsWith('.weight_scale_inv') ? hfName.slice(0, -'_inv'.length) : hfName);

for (const model of FIXTURE_MODELS) {
  test(`${model}: compressed-tensors holds the hf conversion's codes and scales, renamed, and its config round-trips`, async () => {
    const hfDir = join(tmp, `${model}-hf`);
    const ctDir = join(tmp, `${model}-ct`);
    await convertCheckpoint({ input: modelDir(model), output: hfDir });
    const summary = await convertCheckpoint({ input: modelDir(model), output: ctDir, outputFormat: 'compressed-tensors' });
    assert.equal(summary.outputFormat, 'compressed-tensors');
    assert.deepEqual(summary.warnings, []);
    const hf = await readWritten(hfDir);
    const ct = await readWritten(ctDir);

    // Tensors: the same set up to the scale's name, byte for byte.
    assert.deepEqual([...ct.tensors.keys()].sort(), [...hf.tensors.keys()].map(ctName).sort());
    assert.ok(![...ct.tensors.keys()].some((n) => n.endsWith('_scale_inv')), 'no weight_scale_inv left');
    let scales = 0;
    for (const [name, h] of hf.tensors) {
      const c = ct.tensors.get(ctName(name))!;
      assert.equal(c.dtype, h.dtype, name);
      assert.deepEqual(c.shape, h.shape, name);
      assert.ok(Buffer.from(c.bytes).equals(Buffer.from(h.bytes)), `${name}: bytes differ between formats`);
      if (name.endsWith('.weight_scale_inv')) {
        scales++;
        assert.equal(c.dtype, 'F32');
        assert.equal(ct.tensors.get(name.slice(0, -'.weight_scale_inv'.length) + '.weight')!.dtype, 'F8_E4M3');
      }
    }
    assert.ok(scales >= 14, `${model}: ${scales} scale tensors`);

    // config.json: identical apart from quantization_config, which is llm-compressor's FP8_BLOCK.
    const { quantization_config: hq, ...hRest } = hf.config;
    const { quantization_config: cq, ...cRest } = ct.config;
    assert.deepEqual(cRest, hRest);
    const notConverted = (hq as { modules_to_not_convert: string[] }).modules_to_not_convert;
    assert.ok(notConverted.includes('lm_head'));
    assert.deepEqual(cq, expectedCompressedTensorsConfig(notConverted));
    assert.deepEqual(summary.quantizationConfig, cq);

    // Round trip through our reader: the same settings, only the layout differs.
    const hfQf = detectQuantizedFormat(hf.config, hf.tensors.keys())!;
    const ctQf = detectQuantizedFormat(ct.config, ct.tensors.keys())!;
    assert.deepEqual(ctQf, {
      format: 'compressed-tensors',
      quantMethod: 'compressed-tensors',
      scaleSuffix: 'weight_scale',
      block: { bn: 128, bk: 128 },
      fmt: 'e4m3',
      scaleFormat: 'float',
      activationScheme: 'dynamic',
      ignore: notConverted,
    });
    assert.deepEqual({ ...ctQf, format: 'hf', quantMethod: 'fp8', scaleSuffix: 'weight_scale_inv' }, hfQf);
    assert.deepEqual(
      quantizedWeightsOf(ctQf, ct.tensors.keys()).map((w) => w.module),
      quantizedWeightsOf(hfQf, hf.tensors.keys()).map((w) => w.module),
    );

    const report = await inspectCheckpoint(ctDir);
    assert.deepEqual(report.quantizedFormat, ctQf);
    assert.equal(report.scales?.found, 'float');
    assert.equal(report.scales?.tensors, scales);
    assert.deepEqual(report.warnings, []);
  });
}

test('sharded compressed-tensors output: the index names weight_scale tensors and every shard has what it says', async () => {
  const out = join(tmp, 'llama-ct-sharded');
  await convertCheckpoint({ input: modelDir('llama'), output: out, outputFormat: 'compressed-tensors', maxShardBytes: 600_000 });
  const w = await readWritten(out);
  assert.ok(w.index, 'an index is written');
  const mapped = Object.keys(w.index.weight_map).sort();
  assert.deepEqual(mapped, [...w.tensors.keys()].sort());
  assert.ok(new Set(Object.values(w.index.weight_map)).size > 1, 'more than one shard');
  assert.ok(mapped.some((n) => n.endsWith('.weight_scale')) && !mapped.some((n) => n.endsWith('.weight_scale_inv')));
  assert.ok(detectQuantizedFormat(w.config, mapped));
});

test('--block 64x32 gives block_structure [64, 32], activation groups of 32, and scales on that grid', async () => {
  const out = join(tmp, 'llama-ct-64x32');
  const events: ConvertEvent[] = [];
  await convertCheckpoint({ input: modelDir('llama'), output: out, outputFormat: 'compressed-tensors', block: { bn: 64, bk: 32 }, onEvent: (e) => events.push(e) });
  const w = await readWritten(out);
  const qc = w.config['quantization_config'] as Record<string, unknown>;
  assert.deepEqual(qc, expectedCompressedTensorsConfig(qc['ignore'] as string[], 64, 32));
  assert.deepEqual(detectQuantizedFormat(w.config, w.tensors.keys())!.block, { bn: 64, bk: 32 });
  const down = w.tensors.get('model.layers.0.mlp.down_proj.weight')!; // [256, 512]
  assert.deepEqual(w.tensors.get('model.layers.0.mlp.down_proj.weight_scale')!.shape, [down.shape[0]! / 64, down.shape[1]! / 32]);
  const plan = (events.find((e) => e.type === 'plan') as { plan: ConvertPlan }).plan;
  assert.ok(
    plan.entries.filter((e) => e.op === 'quantize').every((e) => e.outputs[1]!.name.endsWith('.weight_scale')),
    'the plan event shows the written names',
  );
});

test('E5M2 weights cannot be written as compressed-tensors: the library and the CLI say so before writing', async () => {
  const out = join(tmp, 'never-written');
  await assert.rejects(
    convertCheckpoint({ input: modelDir('llama'), output: out, outputFormat: 'compressed-tensors', format: 'e5m2' }),
    (e: unknown) => e instanceof OutputFormatError && /no E5M2 weights.*--format hf/.test(e.message),
  );
  await assert.rejects(stat(out), { code: 'ENOENT' });
  const flags = { output: out, block: '128x128', weightDtype: 'float8_e5m2', maxShardSize: '5GB', quiet: true };
  await assert.rejects(convertCommand(modelDir('llama'), { ...flags, format: 'compressed-tensors' }), (e: unknown) => e instanceof UsageError && /E5M2/.test(e.message));
  await assert.rejects(
    convertCommand(modelDir('llama'), { ...flags, weightDtype: 'float8_e4m3fn', format: 'gguf' }),
    (e: unknown) => e instanceof UsageError && /invalid --format "gguf"/.test(e.message),
  );
  await assert.rejects(stat(out), { code: 'ENOENT' });
});

// ---- the reader on configs we did not write ----

const blockWeights = { num_bits: 8, type: 'float', strategy: 'block', symmetric: true, dynamic: false, block_structure: [128, 128] };
const groupActs = { num_bits: 8, type: 'float', strategy: 'group', symmetric: true, dynamic: true, group_size: 128 };
const ctNames = ['m.l.weight', 'm.l.weight_scale'];
const ct = (qc: Record<string, unknown>): Record<string, unknown> => ({ quantization_config: { quant_method: 'compressed-tensors', format: 'float-quantized', ...qc } });

test('detectQuantizedFormat reads the forms compressed-tensors accepts: minimal groups, presets, "NxK" strings, weight-only', () => {
  const minimal = detectQuantizedFormat(
    ct({ config_groups: { group_0: { targets: ['Linear'], weights: blockWeights, input_activations: groupActs } }, ignore: ['lm_head'] }),
    ctNames,
  )!;
  assert.deepEqual([minimal.block, minimal.activationScheme, minimal.ignore], [{ bn: 128, bk: 128 }, 'dynamic', ['lm_head']]);
  const preset = detectQuantizedFormat(ct({ config_groups: { FP8_BLOCK: ['Linear'] } }), ctNames)!;
  assert.deepEqual([preset.block, preset.activationScheme, preset.ignore], [{ bn: 128, bk: 128 }, 'dynamic', []]);
  const old = detectQuantizedFormat(ct({ config_groups: { g: { targets: ['Linear'], weights: { ...blockWeights, block_structure: '64x32' } } } }), ctNames)!;
  assert.deepEqual([old.block, old.activationScheme], [{ bn: 64, bk: 32 }, 'none']);
  // transformers writes no fmt; DeepSeek-V3.1 declares ue8m0.
  const hf = detectQuantizedFormat({ quantization_config: { quant_method: 'fp8', weight_block_size: [128, 128], scale_fmt: 'ue8m0' } }, ['a.weight', 'a.weight_scale_inv'])!;
  assert.deepEqual([hf.format, hf.fmt, hf.scaleFormat, hf.activationScheme, hf.ignore], ['hf', 'e4m3', 'ue8m0', 'dynamic', []]);
  assert.equal(detectQuantizedFormat({ model_type: 'llama' }, ['a.weight']), undefined);
  assert.equal(detectQuantizedFormat(undefined, ['a.weight']), undefined);
});

test('detectQuantizedFormat refuses what it cannot read, naming the group, the tensor or the method', () => {
  const refuses = (config: Record<string, unknown> | undefined, names: string[], message: RegExp): void => {
    assert.throws(
      () => detectQuantizedFormat(config, names),
      (e: unknown) => e instanceof QuantizationConfigError && message.test(e.message),
      String(message),
    );
  };
  const int4 = { num_bits: 4, type: 'int', strategy: 'group', group_size: 128, symmetric: true };
  refuses(
    ct({ config_groups: { group_0: { targets: ['Linear'], weights: int4 } } }),
    ctNames,
    /config_groups\.group_0 has weights \{num_bits: 4, type: "int", strategy: "group", group_size: 128\}; fp8q reads block FP8 only/,
  );
  refuses(ct({ config_groups: { g: { targets: ['Linear'], weights: { ...blockWeights, strategy: 'channel', block_structure: null } } } }), ctNames, /strategy: "channel"/);
  refuses(ct({ config_groups: {} }), ctNames, /no config_groups/);
  refuses(ct({ format: 'pack-quantized', config_groups: { g: { targets: ['Linear'], weights: blockWeights } } }), ctNames, /stored as "pack-quantized"/);
  refuses(
    ct({ config_groups: { a: { targets: ['re:.*q_proj'], weights: blockWeights }, b: { targets: ['Linear'], weights: { ...blockWeights, block_structure: [64, 64] } } } }),
    ctNames,
    /uses block 64x64 but another group uses 128x128/,
  );
  refuses(
    ct({ config_groups: { g: { targets: ['Linear'], weights: { ...blockWeights, block_structure: [128] } } } }),
    ctNames,
    /block_structure \[128\] is not two positive integers/,
  );
  refuses(
    ct({ config_groups: { g: { targets: ['Linear'], weights: blockWeights } } }),
    ['m.l.weight', 'm.l.weight_scale_inv'],
    /tensor "m\.l\.weight_scale_inv" is named for the other format/,
  );
  refuses({ quantization_config: { quant_method: 'fp8', weight_block_size: [128, 128] } }, ctNames, /tensor "m\.l\.weight_scale" is named for the other format/);
  refuses({ quantization_config: { quant_method: 'fp8', weight_block_size: [128, 128] } }, ['m.l.weight'], /no tensor is named "\*\.weight_scale_inv"/);
  refuses({ quantization_config: { quant_method: 'fp8' } }, ['a.weight_scale_inv'], /weight_block_size undefined; fp8q reads block-scale checkpoints only/);
  refuses({ quantization_config: { quant_method: 'fp8', weight_block_size: [128, 128], fmt: 'e3m4' } }, ['a.weight_scale_inv'], /fmt "e3m4"/);
  refuses(
    { quantization_config: { quant_method: 'awq', bits: 4 } },
    ['a.qweight'],
    /quant_method "awq"; fp8q reads block-FP8 checkpoints in the "fp8" \(hf\) or "compressed-tensors" format/,
  );
  refuses({ model_type: 'llama' }, ['a.weight', 'a.weight_scale'], /tensor "a\.weight_scale" is a block scale but config\.json has no quantization_config/);
  assert.throws(() => quantizedWeightsOf({ scaleSuffix: 'weight_scale' }, ['a.weight_scale']), /tensor "a\.weight_scale" has no "a\.weight" beside it/);
});

// ---- the output-format layer on plans the fixtures do not produce ----

function planOf(entries: ConvertPlan['entries']): ConvertPlan {
  return {
    architecture: 'Synthetic',
    family: undefined,
    settings: { format: 'e4m3fn', block: { bn: 128, bk: 128 }, scaleFormat: 'float', activationScheme: 'dynamic' },
    entries,
    modules: [],
    notConverted: ['lm_head'],
    warnings: [],
  };
}

test('applyOutputFormat renames every scale (fused experts too), warns on stacked experts, refuses the MLA split', () => {
  const out = (name: string, dtype: 'F8_E4M3' | 'F32' | 'BF16', shape: number[]) => ({
    name,
    dtype,
    shape,
    byteLength: shape.reduce((a, b) => a * b, 1) * (dtype === 'F32' ? 4 : dtype === 'BF16' ? 2 : 1),
  });
  const plan = planOf([
    { op: 'copy', reason: 'final FC (lm_head)', sources: ['lm_head.weight'], outputs: [out('lm_head.weight', 'BF16', [8, 8])] },
    {
      op: 'quantize',
      module: 'model.layers.0.mlp.experts',
      kind: 'BlockScaleQuantizeMixtralExperts',
      sources: ['model.layers.0.mlp.experts.gate_up_proj'],
      outputs: [out('model.layers.0.mlp.experts.gate_up_proj', 'F8_E4M3', [4, 256, 128]), out('model.layers.0.mlp.experts.gate_up_proj_scale_inv', 'F32', [4, 2, 1])],
    },
    {
      op: 'quantize',
      module: 'model.layers.0.self_attn.o_proj',
      kind: 'BlockScaleQuantizeLinear',
      sources: ['model.layers.0.self_attn.o_proj.weight'],
      outputs: [out('model.layers.0.self_attn.o_proj.weight', 'F8_E4M3', [128, 128]), out('model.layers.0.self_attn.o_proj.weight_scale_inv', 'F32', [1, 1])],
    },
  ]);
  const hf = applyOutputFormat(plan, 'hf');
  assert.equal(hf.plan, plan, "hf is the pass's own layout");
  assert.equal((hf.quantizationConfig as { quant_method: string }).quant_method, 'fp8');
  const ct = applyOutputFormat(plan, 'compressed-tensors');
  assert.deepEqual(
    ct.plan.entries.flatMap((e) => e.outputs.map((o) => o.name)),
    [
      'lm_head.weight',
      'model.layers.0.mlp.experts.gate_up_proj',
      'model.layers.0.mlp.experts.gate_up_proj_scale',
      'model.layers.0.self_attn.o_proj.weight',
      'model.layers.0.self_attn.o_proj.weight_scale',
    ],
  );
  assert.deepEqual(plan.entries[2]!.outputs[1]!.name, 'model.layers.0.self_attn.o_proj.weight_scale_inv', 'the input plan is not mutated');
  assert.equal(ct.warnings.length, 1);
  assert.match(ct.warnings[0]!, /1 stacked expert weight\(s\) \(e\.g\. "model\.layers\.0\.mlp\.experts\.gate_up_proj"\) stay 3-D/);

  const mla = planOf([
    {
      op: 'mla-split',
      module: 'model.layers.0.self_attn',
      heads: 4,
      kvLoraRank: 128,
      nopeHeadDim: 64,
      vHeadDim: 64,
      method: 'own-grid',
      sources: ['model.layers.0.self_attn.kv_b_proj.weight'],
      outputs: [out('model.layers.0.self_attn.w_uk', 'F8_E4M3', [4, 128, 64]), out('model.layers.0.self_attn.w_uk_scale_inv', 'F32', [4, 1, 1])],
    },
  ]);
  assert.throws(
    () => applyOutputFormat(mla, 'compressed-tensors'),
    (e: unknown) => e instanceof OutputFormatError && /MLA split \(model\.layers\.0\.self_attn\.w_uk, .*--format hf/.test(e.message),
  );
  assert.doesNotThrow(() => applyOutputFormat(mla, 'hf'));
});

test('quantizedWeightsOf pairs each weight with its scale, fused experts included, and ignores activation scales', () => {
  const hfNames = ['a.weight', 'a.weight_scale_inv', 'a.activation_scale', 'e.gate_up_proj', 'e.gate_up_proj_scale_inv', 'n.weight'];
  assert.deepEqual(quantizedWeightsOf({ scaleSuffix: 'weight_scale_inv' }, hfNames), [
    { module: 'a', weight: 'a.weight', scale: 'a.weight_scale_inv' },
    { module: 'e.gate_up_proj', weight: 'e.gate_up_proj', scale: 'e.gate_up_proj_scale_inv' },
  ]);
  const ctNames = ['a.weight', 'a.weight_scale', 'a.input_scale', 'attn.k_scale', 'e.gate_up_proj', 'e.gate_up_proj_scale'];
  assert.deepEqual(
    quantizedWeightsOf({ scaleSuffix: 'weight_scale' }, ctNames).map((w) => w.scale),
    ['a.weight_scale', 'e.gate_up_proj_scale'],
  );
});
