// Convert rules of the families beyond the first nine, on tiny checkpoints transformers 5.17 wrote
// (scripts/make_family_fixtures.py; fixtures/models/README.md): VLMs keep their vision towers and
// projectors, MoE routers and shared-expert gates stay, Qwen3-Next keeps in_proj_ba, gpt-oss keeps
// its attention and quantizes in × out experts, DeepSeek-V3.2 keeps the indexer's weights_proj.
// For each: the plan (kept modules and reasons, no warnings), and the converted bytes bit-exact
// against blockQuantize of the source (in × out experts compared through their (out, in) view).
// Also: the generic vision/audio rule with --include, and logits/verify refusing families without
// a forward by name.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { blockQuantize } from '../src/fp8/block-quantize.js';
import { widenToFloat32, type FloatSourceDtype } from '../src/fp8/dtypes.js';
import { Checkpoint } from '../src/io/checkpoint/checkpoint.js';
import { convertCheckpoint } from '../src/pipeline/convert-checkpoint.js';
import { inspectCheckpoint } from '../src/pipeline/inspect/inspect-checkpoint.js';
import { quantizationConfigOf } from '../src/pipeline/convert-checkpoint.js';
import { blockScaleQuantizePass, type SourceTensor } from '../src/passes/block-scale-quantize.js';
import type { ConvertPlan } from '../src/passes/plan.js';
import { ModelConfigError } from '../src/runtime/models/config.js';
import { ModelRunner } from '../src/runtime/models/runner.js';
import { readCheckpointTensors, type TensorData } from './helpers/checkpoint-files.js';
import { MODELS } from './helpers/fixtures.js';
import { makeTempDir, type TempDir } from './helpers/temp-dir.js';

const SETTINGS = { format: 'e4m3fn', block: { bn: 128, bk: 128 }, scaleFormat: 'float', activationScheme: 'dynamic' } as const;

interface FamilyCase {
  readonly fixture: string;
  readonly family: string;
  readonly recipe: RegExp;
  /** Every kept module matches one [module, reason] pair, and every 2-D/expert module matching a pair is kept. */
  readonly keep: readonly (readonly [RegExp, RegExp])[];
  /** Modules that must be quantized (spot checks of the decisions). */
  readonly quantized: readonly string[];
  /** Fused expert tensors quantized in × out. */
  readonly inOut?: readonly string[];
}

const EMBED = [/(^|\.)embed_tokens$/, /^embedding$/] as const;
const HEAD = [/(^|\.)lm_head$/, /^final FC/] as const;
const ROUTER = (block: string) => [new RegExp(`\\.${block}\\.(gate|router|shared_expert_gate)$`), /^MoE router$/] as const;
const VISION = (tower: string) => [new RegExp(`^${tower.replace('.', '\\.')}\\.`), /^vision tower|^embedding$/] as const;
const PROJECTOR = [/(^|\.)multi_modal_projector\./, /^multimodal projector/] as const;

const CASES: readonly FamilyCase[] = [
  {
    fixture: 'qwen2_5_vl',
    family: 'qwen2_5_vl',
    recipe: /^Qwen2\.5-VL$/,
    keep: [EMBED, HEAD, VISION('visual')],
    quantized: ['model.layers.0.self_attn.q_proj', 'model.layers.1.mlp.down_proj'],
  },
  {
    fixture: 'qwen3_vl',
    family: 'qwen3_vl',
    recipe: /^Qwen3-VL$/,
    keep: [EMBED, HEAD, VISION('model.visual')],
    quantized: ['model.language_model.layers.0.self_attn.q_proj', 'model.language_model.layers.1.mlp.up_proj'],
  },
  {
    fixture: 'qwen3_vl_moe',
    family: 'qwen3_vl_moe',
    recipe: /^Qwen3-VL-MoE$/,
    keep: [EMBED, HEAD, VISION('model.visual'), ROUTER('mlp')],
    quantized: ['model.language_model.layers.0.mlp.experts.gate_up_proj', 'model.language_model.layers.1.mlp.experts.down_proj'],
  },
  {
    fixture: 'mistral3',
    family: 'mistral3',
    recipe: /^Mistral 3/,
    keep: [EMBED, VISION('vision_tower'), PROJECTOR],
    quantized: ['language_model.model.layers.0.self_attn.k_proj', 'language_model.model.layers.1.mlp.gate_proj'],
  },
  {
    fixture: 'gemma3',
    family: 'gemma3',
    recipe: /^Gemma 3$/,
    keep: [EMBED, VISION('vision_tower'), PROJECTOR],
    quantized: ['language_model.model.layers.0.self_attn.q_proj', 'language_model.model.layers.1.mlp.down_proj'],
  },
  { fixture: 'gemma3_text', family: 'gemma3_text', recipe: /^Gemma 3 \(text\)$/, keep: [EMBED], quantized: ['model.layers.0.self_attn.o_proj'] },
  {
    fixture: 'llama4',
    family: 'llama4',
    recipe: /^Llama 4$/,
    keep: [EMBED, HEAD, VISION('vision_model'), PROJECTOR, ROUTER('feed_forward')],
    quantized: [
      'language_model.model.layers.0.feed_forward.gate_proj',
      'language_model.model.layers.1.feed_forward.shared_expert.down_proj',
      'language_model.model.layers.1.feed_forward.experts.gate_up_proj',
    ],
    inOut: ['language_model.model.layers.1.feed_forward.experts.gate_up_proj', 'language_model.model.layers.1.feed_forward.experts.down_proj'],
  },
  {
    fixture: 'glm4_moe',
    family: 'glm4_moe',
    recipe: /^GLM-4\.5/,
    keep: [EMBED, HEAD, ROUTER('mlp')],
    quantized: ['model.layers.0.self_attn.q_proj', 'model.layers.1.mlp.experts.3.up_proj', 'model.layers.1.mlp.shared_experts.down_proj'],
  },
  {
    fixture: 'qwen3_next',
    family: 'qwen3_next',
    recipe: /^Qwen3-Next$/,
    keep: [
      EMBED,
      HEAD,
      ROUTER('mlp'),
      [/\.linear_attn\.in_proj_ba$/, /^gated DeltaNet's β \/ decay-rate projection/],
      [/\.linear_attn\.conv1d$/, /^3-D weight outside an expert set/],
    ],
    quantized: ['model.layers.0.linear_attn.in_proj_qkvz', 'model.layers.0.linear_attn.out_proj', 'model.layers.1.self_attn.q_proj', 'model.layers.1.mlp.shared_expert.up_proj'],
  },
  {
    fixture: 'gpt_oss',
    family: 'gpt_oss',
    recipe: /^gpt-oss$/,
    keep: [EMBED, HEAD, ROUTER('mlp'), [/\.self_attn\.[qkvo]_proj$/, /^attention, kept as in openai\/gpt-oss-120b/]],
    quantized: ['model.layers.0.mlp.experts.gate_up_proj', 'model.layers.1.mlp.experts.down_proj'],
    inOut: ['model.layers.0.mlp.experts.gate_up_proj', 'model.layers.0.mlp.experts.down_proj'],
  },
  {
    fixture: 'minimax_m2',
    family: 'minimax_m2',
    recipe: /^MiniMax-M2$/,
    keep: [EMBED, HEAD, ROUTER('block_sparse_moe')],
    quantized: ['model.layers.0.self_attn.q_proj', 'model.layers.1.block_sparse_moe.experts.2.w2'],
  },
  {
    fixture: 'deepseek_v2',
    family: 'deepseek_v2',
    recipe: /^DeepSeek-V2$/,
    keep: [EMBED, HEAD, ROUTER('mlp')],
    quantized: ['model.layers.0.self_attn.kv_a_proj_with_mqa', 'model.layers.1.mlp.experts.0.gate_proj'],
  },
  {
    fixture: 'deepseek_v32',
    family: 'deepseek_v32',
    recipe: /^DeepSeek-V3\.2$/,
    keep: [EMBED, HEAD, ROUTER('mlp'), [/\.indexer\.weights_proj$/, /^lightning-indexer head weights/]],
    quantized: ['model.layers.0.self_attn.indexer.wq_b', 'model.layers.0.self_attn.indexer.wk', 'model.layers.1.self_attn.q_b_proj'],
  },
];

async function planOf(fixture: string, include: readonly string[] = []): Promise<{ plan: ConvertPlan; tensors: SourceTensor[] }> {
  const ckpt = await Checkpoint.open(join(MODELS, fixture));
  try {
    const tensors = ckpt.tensorNames().map((n) => ckpt.info(n));
    return { plan: blockScaleQuantizePass(ckpt.config, tensors, { settings: SETTINGS, include }), tensors };
  } finally {
    await ckpt.close();
  }
}

describe('family convert rules on transformers-made fixtures', () => {
  for (const c of CASES) {
    test(`${c.fixture}: kept modules and their reasons`, async () => {
      const { plan } = await planOf(c.fixture);
      assert.equal(plan.family, c.family);
      assert.match(plan.recipe?.name ?? '', c.recipe);
      assert.ok((plan.recipe?.checkedAgainst ?? '').length > 0);
      assert.deepEqual(plan.warnings, [], 'a known family converts without warnings (fused experts included)');
      for (const m of plan.modules) {
        const rule = c.keep.find(([path]) => path.test(m.module));
        if (m.decision === 'keep') {
          assert.ok(rule, `${m.module} is kept (${m.reason}) but no rule of the case keeps it`);
          assert.match(m.reason, rule[1], m.module);
        } else {
          assert.equal(rule, undefined, `${m.module} should be kept but is ${m.decision}`);
        }
      }
      const quantized = new Set(plan.modules.filter((m) => m.decision !== 'keep').map((m) => m.module));
      for (const m of c.quantized) assert.ok(quantized.has(m), `${m} is quantized`);
      const inOut = plan.entries.filter((e) => e.op === 'quantize-in-out').map((e) => e.sources[0]);
      for (const m of c.inOut ?? []) assert.ok(inOut.includes(m), `${m} is quantized in × out`);
      if (!c.inOut) assert.deepEqual(inOut, [], 'no in × out experts');
      // modules_to_not_convert names every kept Linear, nothing quantized.
      const notConverted = new Set(quantizationConfigOf(plan).modules_to_not_convert);
      for (const m of plan.modules)
        if (m.decision === 'keep' && m.reason !== 'embedding' && !m.reason.startsWith('3-D')) assert.ok(notConverted.has(m.module), `${m.module} listed`);
      for (const m of quantized) assert.ok(!notConverted.has(m));
    });
  }

  test("gemma3: bare parameters inside kept subtrees are copied with the recipe's reason", async () => {
    const { plan } = await planOf('gemma3');
    const copy = plan.entries.find((e) => e.op === 'copy' && e.sources[0] === 'multi_modal_projector.mm_input_projection_weight');
    assert.ok(copy && copy.op === 'copy');
    assert.match(copy.reason, /^multimodal projector/);
  });

  test('--include quantizes what the recipe keeps; user --exclude still wins', async () => {
    const { plan } = await planOf('qwen3_vl', ['re:\\.visual\\.blocks\\.']);
    const decision = (m: string) => plan.modules.find((x) => x.module === m)?.decision;
    assert.equal(decision('model.visual.blocks.0.attn.qkv'), 'BlockScaleQuantizeLinear');
    assert.equal(decision('model.visual.merger.linear_fc1'), 'keep');
    const ckpt = await Checkpoint.open(join(MODELS, 'qwen3_vl'));
    const tensors = ckpt.tensorNames().map((n) => ckpt.info(n));
    await ckpt.close();
    const both = blockScaleQuantizePass(ckpt.config, tensors, { settings: SETTINGS, include: ['visual'], exclude: ['attn.qkv'] });
    assert.equal(both.modules.find((x) => x.module === 'model.visual.blocks.0.attn.qkv')?.reason, 'excluded by "attn.qkv"');
    assert.equal(both.modules.find((x) => x.module === 'model.visual.blocks.0.attn.proj')?.decision, 'BlockScaleQuantizeLinear');
  });
});

describe('converted family fixtures are bit-exact', () => {
  let tmp: TempDir;
  before(async () => {
    tmp = await makeTempDir('families');
  });
  after(async () => {
    await tmp.cleanup();
  });

  /** Codes and scales of one quantized tensor against blockQuantize of its (out, in) view, per expert. */
  function checkBitExact(label: string, src: TensorData, codes: TensorData, scales: TensorData, inOut: boolean): void {
    const rank = src.shape.length;
    const experts = rank === 3 ? src.shape[0]! : 1;
    const [a, b] = [src.shape[rank - 2]!, src.shape[rank - 1]!];
    const [n, k] = inOut ? [b, a] : [a, b];
    const values = widenToFloat32(src.bytes, src.dtype as FloatSourceDtype);
    const scaleAll = new Float32Array(scales.bytes.slice().buffer);
    const rb = Math.ceil(n / 128);
    const cb = Math.ceil(k / 128);
    assert.deepEqual(scales.shape, [...src.shape.slice(0, -2), rb, cb], `${label} scale shape`);
    assert.deepEqual(codes.shape, src.shape, `${label} stays in its stored layout`);
    for (let e = 0; e < experts; e++) {
      const stored = values.subarray(e * n * k, (e + 1) * n * k);
      const w = inOut ? Float32Array.from({ length: n * k }, (_, i) => stored[(i % k) * n + Math.floor(i / k)]!) : stored;
      const want = blockQuantize(w, n, k, { format: 'e4m3fn', block: { bn: 128, bk: 128 } });
      const got = codes.bytes.subarray(e * n * k, (e + 1) * n * k);
      for (let i = 0; i < n * k; i++) {
        const j = inOut ? (i % k) * n + Math.floor(i / k) : i;
        if (got[j] !== want.codes[i]) assert.fail(`${label}[${e}] code (${Math.floor(i / k)}, ${i % k}) is ${got[j]}, blockQuantize gives ${want.codes[i]}`);
      }
      const gotScales = scaleAll.subarray(e * rb * cb, (e + 1) * rb * cb);
      assert.deepEqual([...gotScales], [...want.scaleInv], `${label}[${e}] scales`);
    }
  }

  for (const c of CASES) {
    test(c.fixture, async () => {
      const srcDir = join(MODELS, c.fixture);
      const outDir = join(tmp.path, c.fixture);
      let plan: ConvertPlan | undefined;
      await convertCheckpoint({ input: srcDir, output: outDir, onEvent: (e) => (e.type === 'plan' ? (plan = e.plan) : undefined) });
      const src = await readCheckpointTensors(srcDir);
      const out = await readCheckpointTensors(outDir);
      const inOut = new Set(plan!.entries.filter((e) => e.op === 'quantize-in-out').map((e) => e.sources[0]));
      const quantized = [...out.keys()].filter((x) => x.endsWith('_scale_inv')).map((x) => x.replace(/_scale_inv$/, ''));
      assert.equal(quantized.length, plan!.entries.filter((e) => e.op === 'quantize' || e.op === 'quantize-in-out').length);
      for (const [name, s] of src) {
        const o = out.get(name)!;
        if (quantized.includes(name)) checkBitExact(`${c.fixture} ${name}`, s, o, out.get(`${name}_scale_inv`)!, inOut.has(name));
        else assert.ok(Buffer.from(o.bytes).equals(Buffer.from(s.bytes)), `${name} kept byte for byte`);
      }
      // inspect reads the output back as FP8 (gpt-oss's holds only fused experts' `*_scale_inv`).
      const report = await inspectCheckpoint(outDir);
      assert.equal(report.quantizedFormat?.block.bn, 128, `${c.fixture}: ${report.warnings.join('; ')}`);
      assert.equal(report.recipe?.name !== undefined, true);
    });
  }
});

describe('generic rules for unknown multimodal architectures', () => {
  const t = (name: string, shape: number[]): SourceTensor => ({ name, dtype: 'BF16', shape });
  const tensors = [
    t('model.embed_tokens.weight', [512, 128]),
    t('model.layers.0.self_attn.q_proj.weight', [128, 128]),
    t('model.vision_tower.encoder.layers.0.mlp.fc1.weight', [64, 32]),
    t('model.vision_tower.encoder.layers.0.mlp.fc2.weight', [32, 64]),
    t('model.audio_tower.layers.0.fc1.weight', [64, 32]),
    t('model.mm_projector.0.weight', [128, 32]),
    t('model.image_newline', [128]),
    t('lm_head.weight', [512, 128]),
  ];
  const config = { architectures: ['Phi4MultimodalForCausalLM'], model_type: 'phi4_multimodal' };

  test('modules under vision/audio/image/projector components are kept, and the warning lists them', () => {
    const plan = blockScaleQuantizePass(config, tensors, { settings: SETTINGS });
    const kept = plan.modules.filter((m) => m.decision === 'keep').map((m) => m.module);
    assert.deepEqual(kept.sort(), [
      'lm_head',
      'model.audio_tower.layers.0.fc1',
      'model.embed_tokens',
      'model.mm_projector.0',
      'model.vision_tower.encoder.layers.0.mlp.fc1',
      'model.vision_tower.encoder.layers.0.mlp.fc2',
    ]);
    assert.equal(plan.recipe, undefined);
    assert.equal(plan.warnings.length, 2);
    assert.match(plan.warnings[0]!, /Phi4MultimodalForCausalLM is not one fp8q knows/);
    assert.equal(
      plan.warnings[1],
      'kept in the source dtype as vision/audio/image/projector modules of an unknown architecture: model.audio_tower (1 module), model.mm_projector (1 module), model.vision_tower (2 modules); pass --include <pattern> to quantize them',
    );
  });

  test('--include quantizes them; an invalid --include regex names the flag', () => {
    const plan = blockScaleQuantizePass(config, tensors, { settings: SETTINGS, include: ['vision_tower', 're:mm_projector'] });
    const kept = plan.modules.filter((m) => m.decision === 'keep').map((m) => m.module);
    assert.deepEqual(kept.sort(), ['lm_head', 'model.audio_tower.layers.0.fc1', 'model.embed_tokens']);
    assert.match(plan.warnings[1]!, /model\.audio_tower \(1 module\); pass --include/);
    assert.throws(() => blockScaleQuantizePass(config, tensors, { settings: SETTINGS, include: ['re:('] }), /invalid --include regular expression "re:\("/);
  });
});

describe('logits and verify refuse families without a forward, by name', () => {
  for (const [fixture, name] of [
    ['qwen3_next', 'Qwen3-Next'],
    ['llama4', 'Llama 4'],
    ['deepseek_v32', 'DeepSeek-V3.2'],
  ] as const) {
    test(fixture, async () => {
      await assert.rejects(
        ModelRunner.open(join(MODELS, fixture)),
        (e: unknown) =>
          e instanceof ModelConfigError &&
          e.message.includes(`is a ${name} model (family ${fixture})`) &&
          /has no forward for it, so logits and verify cannot run it/.test(e.message) &&
          // A well-formed checkpoint fp8q cannot run, not a broken one.
          e.errorCode === 'E_INPUT_UNSUPPORTED',
      );
    });
  }
});
