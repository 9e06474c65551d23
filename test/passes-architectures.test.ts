// The BlockScaleQuantize pass on the tensor-name sets of real architectures (names, shapes and
// config fields as the released checkpoints have them, fewer layers and experts), the exclusion
// patterns, the source config's modules_to_not_convert, and the modules_to_not_convert it writes.
// No bytes: the pass works on names, dtypes, shapes and config.json alone.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { quantizationConfigOf } from '../src/pipeline/convert-checkpoint.js';
import type { ModelConfig } from '../src/io/checkpoint/checkpoint.js';
import { AlreadyQuantizedError, blockScaleQuantizePass, type PassOptions, type SourceTensor } from '../src/passes/block-scale-quantize.js';
import type { ConvertPlan, QuantizationSettings, QuantizeEntry } from '../src/passes/plan.js';

const DEFAULT_SETTINGS: QuantizationSettings = { format: 'e4m3fn', block: { bn: 128, bk: 128 }, scaleFormat: 'float', activationScheme: 'dynamic' };

const t = (name: string, shape: number[], dtype: SourceTensor['dtype'] = 'BF16'): SourceTensor => ({ name, dtype, shape });

/** Embeddings, final norm and lm_head around `layers` layers built by `layer(prefix, i)`. */
function decoder(hidden: number, vocab: number, layers: number, layer: (p: string, i: number) => SourceTensor[]): SourceTensor[] {
  const out = [t('model.embed_tokens.weight', [vocab, hidden]), t('model.norm.weight', [hidden]), t('lm_head.weight', [vocab, hidden])];
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}`;
    out.push(t(`${p}.input_layernorm.weight`, [hidden]), t(`${p}.post_attention_layernorm.weight`, [hidden]), ...layer(p, i));
  }
  return out;
}

/** Llama-style attention (GQA): q/k/v/o projections, optional q/k/v biases (Qwen2) and q/k norms (Qwen3). */
function attention(p: string, hidden: number, heads: number, kvHeads: number, headDim: number, o: { bias?: boolean; qkNorm?: boolean } = {}): SourceTensor[] {
  const a = `${p}.self_attn`;
  const out = [
    t(`${a}.q_proj.weight`, [heads * headDim, hidden]),
    t(`${a}.k_proj.weight`, [kvHeads * headDim, hidden]),
    t(`${a}.v_proj.weight`, [kvHeads * headDim, hidden]),
    t(`${a}.o_proj.weight`, [hidden, heads * headDim]),
  ];
  if (o.bias) out.push(t(`${a}.q_proj.bias`, [heads * headDim]), t(`${a}.k_proj.bias`, [kvHeads * headDim]), t(`${a}.v_proj.bias`, [kvHeads * headDim]));
  if (o.qkNorm) out.push(t(`${a}.q_norm.weight`, [headDim]), t(`${a}.k_norm.weight`, [headDim]));
  return out;
}

function gatedMlp(p: string, hidden: number, inter: number): SourceTensor[] {
  return [t(`${p}.gate_proj.weight`, [inter, hidden]), t(`${p}.up_proj.weight`, [inter, hidden]), t(`${p}.down_proj.weight`, [hidden, inter])];
}

/** Per-expert HF layout: gate and up [inter, hidden], down [hidden, inter] (Mixtral: w1, w3, w2). */
function experts(p: string, count: number, hidden: number, inter: number, names = { gate: 'gate_proj', up: 'up_proj', down: 'down_proj' }): SourceTensor[] {
  const out: SourceTensor[] = [];
  for (let e = 0; e < count; e++) {
    out.push(t(`${p}.${e}.${names.gate}.weight`, [inter, hidden]), t(`${p}.${e}.${names.up}.weight`, [inter, hidden]), t(`${p}.${e}.${names.down}.weight`, [hidden, inter]));
  }
  return out;
}

/** DeepSeek MLA attention (q_lora_rank set: q_a/q_b; null, as in V2-Lite: q_proj). */
function mla(p: string, c: { hidden: number; heads: number; qLora: number | null; kvLora: number; nope: number; rope: number; v: number }): SourceTensor[] {
  const a = `${p}.self_attn`;
  const qDim = c.heads * (c.nope + c.rope);
  const out = [
    t(`${a}.kv_a_proj_with_mqa.weight`, [c.kvLora + c.rope, c.hidden]),
    t(`${a}.kv_a_layernorm.weight`, [c.kvLora]),
    t(`${a}.kv_b_proj.weight`, [c.heads * (c.nope + c.v), c.kvLora]),
    t(`${a}.o_proj.weight`, [c.hidden, c.heads * c.v]),
  ];
  if (c.qLora === null) out.push(t(`${a}.q_proj.weight`, [qDim, c.hidden]));
  else out.push(t(`${a}.q_a_proj.weight`, [c.qLora, c.hidden]), t(`${a}.q_a_layernorm.weight`, [c.qLora]), t(`${a}.q_b_proj.weight`, [qDim, c.qLora]));
  return out;
}

function runPass(config: ModelConfig | undefined, tensors: readonly SourceTensor[], options: Partial<PassOptions> = {}): ConvertPlan {
  return blockScaleQuantizePass(config, tensors, { settings: DEFAULT_SETTINGS, ...options });
}

const quantizedModules = (plan: ConvertPlan): string[] =>
  plan.modules
    .filter((m) => m.decision !== 'keep')
    .map((m) => m.module)
    .sort();
const keptModules = (plan: ConvertPlan): Record<string, string> => Object.fromEntries(plan.modules.filter((m) => m.decision === 'keep').map((m) => [m.module, m.reason]));

/**
 * Invariants of every plan: each source tensor is read by exactly one entry; copies keep name,
 * dtype and shape; each quantized weight becomes FP8 codes of its shape plus an F32 scale grid
 * beside it; every 2-D weight not quantized is an embedding or listed in notConverted.
 */
function checkPlanInvariants(plan: ConvertPlan, tensors: readonly SourceTensor[]): void {
  const readers = new Map<string, number>();
  for (const e of plan.entries) for (const s of e.sources) readers.set(s, (readers.get(s) ?? 0) + 1);
  for (const src of tensors) assert.equal(readers.get(src.name), 1, `${src.name} is read by ${readers.get(src.name) ?? 0} entries`);
  assert.equal(readers.size, tensors.length);
  const byName = new Map(tensors.map((x) => [x.name, x]));
  const { bn, bk } = plan.settings.block;
  const fp8 = plan.settings.format === 'e4m3fn' ? 'F8_E4M3' : 'F8_E5M2';
  for (const e of plan.entries) {
    const src = byName.get(e.sources[0]!)!;
    if (e.op === 'copy') {
      assert.deepEqual(e.outputs, [{ name: src.name, dtype: src.dtype, shape: src.shape, byteLength: e.outputs[0]!.byteLength }]);
      continue;
    }
    const n = src.shape[src.shape.length - 2]!;
    const k = src.shape[src.shape.length - 1]!;
    assert.equal(e.sources[0], `${e.module}.weight`);
    assert.deepEqual(
      e.outputs.map((o) => [o.name, o.dtype, o.shape]),
      [
        [src.name, fp8, src.shape],
        [`${e.module}.weight_scale_inv`, 'F32', [...src.shape.slice(0, -2), Math.ceil(n / bn), Math.ceil(k / bk)]],
      ],
      e.module,
    );
  }
  const notConverted = new Set(plan.notConverted);
  for (const m of plan.modules) {
    const notALinear = m.reason === 'embedding' || m.reason.startsWith('3-D weight outside an expert set');
    if (m.decision === 'keep' && !notALinear) assert.ok(notConverted.has(m.module), `${m.module} kept (${m.reason}) but not in notConverted`);
  }
}

function kindOf(plan: ConvertPlan, module: string): string | undefined {
  return plan.entries.find((e): e is QuantizeEntry => e.op === 'quantize' && e.module === module)?.kind;
}

interface ArchCase {
  readonly label: string;
  readonly config: ModelConfig;
  readonly tensors: SourceTensor[];
  /** Modules expected to be quantized, per layer prefix (suffixes), plus any global ones. */
  readonly quantizedPerLayer: (i: number) => string[];
  readonly layers: number;
  /** Modules kept besides lm_head and embed_tokens, with their reason. */
  readonly alsoKept: Record<string, string>;
  /** Tensors that must be copied through (biases, norms, router biases). */
  readonly copied: string[];
}

const LAYERS = 2;
const ATTN = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj'];
const MLP = ['mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'];
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

const CASES: ArchCase[] = [
  {
    label: 'Llama (Llama-3.1-8B shapes)',
    config: {
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      hidden_size: 4096,
      intermediate_size: 14336,
      num_attention_heads: 32,
      num_key_value_heads: 8,
      vocab_size: 128256,
    },
    tensors: decoder(4096, 128256, LAYERS, (p) => [...attention(p, 4096, 32, 8, 128), ...gatedMlp(`${p}.mlp`, 4096, 14336)]),
    quantizedPerLayer: () => [...ATTN, ...MLP],
    layers: LAYERS,
    alsoKept: {},
    copied: ['model.layers.0.input_layernorm.weight', 'model.norm.weight'],
  },
  {
    label: 'Mistral (Mistral-7B-v0.3 shapes)',
    config: { architectures: ['MistralForCausalLM'], model_type: 'mistral', hidden_size: 4096, intermediate_size: 14336, num_key_value_heads: 8, vocab_size: 32768 },
    tensors: decoder(4096, 32768, LAYERS, (p) => [...attention(p, 4096, 32, 8, 128), ...gatedMlp(`${p}.mlp`, 4096, 14336)]),
    quantizedPerLayer: () => [...ATTN, ...MLP],
    layers: LAYERS,
    alsoKept: {},
    copied: ['model.layers.1.post_attention_layernorm.weight'],
  },
  {
    label: 'Qwen2 (Qwen2.5-7B shapes, q/k/v biases)',
    config: {
      architectures: ['Qwen2ForCausalLM'],
      model_type: 'qwen2',
      hidden_size: 3584,
      intermediate_size: 18944,
      num_attention_heads: 28,
      num_key_value_heads: 4,
      vocab_size: 152064,
    },
    tensors: decoder(3584, 152064, LAYERS, (p) => [...attention(p, 3584, 28, 4, 128, { bias: true }), ...gatedMlp(`${p}.mlp`, 3584, 18944)]),
    quantizedPerLayer: () => [...ATTN, ...MLP],
    layers: LAYERS,
    alsoKept: {},
    copied: ['model.layers.0.self_attn.q_proj.bias', 'model.layers.0.self_attn.k_proj.bias', 'model.layers.1.self_attn.v_proj.bias'],
  },
  {
    label: 'Qwen3 (Qwen3-8B shapes, q_norm/k_norm)',
    config: { architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', hidden_size: 4096, intermediate_size: 12288, head_dim: 128, vocab_size: 151936 },
    tensors: decoder(4096, 151936, LAYERS, (p) => [...attention(p, 4096, 32, 8, 128, { qkNorm: true }), ...gatedMlp(`${p}.mlp`, 4096, 12288)]),
    quantizedPerLayer: () => [...ATTN, ...MLP],
    layers: LAYERS,
    alsoKept: {},
    copied: ['model.layers.0.self_attn.q_norm.weight', 'model.layers.1.self_attn.k_norm.weight'],
  },
  {
    label: 'Mixtral (Mixtral-8x7B shapes)',
    config: {
      architectures: ['MixtralForCausalLM'],
      model_type: 'mixtral',
      hidden_size: 4096,
      intermediate_size: 14336,
      num_local_experts: 8,
      num_experts_per_tok: 2,
      vocab_size: 32000,
    },
    tensors: decoder(4096, 32000, LAYERS, (p) => [
      ...attention(p, 4096, 32, 8, 128),
      t(`${p}.block_sparse_moe.gate.weight`, [8, 4096]),
      ...experts(`${p}.block_sparse_moe.experts`, 8, 4096, 14336, { gate: 'w1', up: 'w3', down: 'w2' }),
    ]),
    quantizedPerLayer: () => [...ATTN, ...range(8).flatMap((e) => ['w1', 'w2', 'w3'].map((w) => `block_sparse_moe.experts.${e}.${w}`))],
    layers: LAYERS,
    alsoKept: { 'model.layers.0.block_sparse_moe.gate': 'MoE router', 'model.layers.1.block_sparse_moe.gate': 'MoE router' },
    copied: [],
  },
  {
    label: 'Qwen2-MoE (Qwen1.5-MoE-A2.7B shapes: shared expert and its gate)',
    config: {
      architectures: ['Qwen2MoeForCausalLM'],
      model_type: 'qwen2_moe',
      hidden_size: 2048,
      num_experts: 60,
      moe_intermediate_size: 1408,
      shared_expert_intermediate_size: 5632,
      vocab_size: 151936,
    },
    tensors: decoder(2048, 151936, LAYERS, (p) => [
      ...attention(p, 2048, 16, 16, 128, { bias: true }),
      t(`${p}.mlp.gate.weight`, [60, 2048]),
      ...experts(`${p}.mlp.experts`, 60, 2048, 1408),
      ...gatedMlp(`${p}.mlp.shared_expert`, 2048, 5632),
      t(`${p}.mlp.shared_expert_gate.weight`, [1, 2048]),
    ]),
    quantizedPerLayer: () => [
      ...ATTN,
      ...range(60).flatMap((e) => MLP.map((m) => m.replace('mlp.', `mlp.experts.${e}.`))),
      ...MLP.map((m) => m.replace('mlp.', 'mlp.shared_expert.')),
    ],
    layers: LAYERS,
    alsoKept: Object.fromEntries(
      range(LAYERS).flatMap((i) => [
        [`model.layers.${i}.mlp.gate`, 'MoE router'],
        [`model.layers.${i}.mlp.shared_expert_gate`, 'MoE router'],
      ]),
    ),
    copied: ['model.layers.0.self_attn.q_proj.bias'],
  },
  {
    label: 'Qwen3-MoE (Qwen3-30B-A3B shapes)',
    config: { architectures: ['Qwen3MoeForCausalLM'], model_type: 'qwen3_moe', hidden_size: 2048, num_experts: 128, moe_intermediate_size: 768, head_dim: 128, vocab_size: 151936 },
    tensors: decoder(2048, 151936, LAYERS, (p) => [
      ...attention(p, 2048, 32, 4, 128, { qkNorm: true }),
      t(`${p}.mlp.gate.weight`, [128, 2048]),
      ...experts(`${p}.mlp.experts`, 128, 2048, 768),
    ]),
    quantizedPerLayer: () => [...ATTN, ...range(128).flatMap((e) => MLP.map((m) => m.replace('mlp.', `mlp.experts.${e}.`)))],
    layers: LAYERS,
    alsoKept: Object.fromEntries(range(LAYERS).map((i) => [`model.layers.${i}.mlp.gate`, 'MoE router'])),
    copied: ['model.layers.1.self_attn.q_norm.weight'],
  },
  {
    label: 'DeepSeek-V2 (DeepSeek-V2 shapes: MLA with q_lora, 160 routed + 2 shared experts, layer 0 dense)',
    config: {
      architectures: ['DeepseekV2ForCausalLM'],
      model_type: 'deepseek_v2',
      hidden_size: 5120,
      q_lora_rank: 1536,
      kv_lora_rank: 512,
      qk_nope_head_dim: 128,
      qk_rope_head_dim: 64,
      v_head_dim: 128,
      n_routed_experts: 160,
      n_shared_experts: 2,
      first_k_dense_replace: 1,
      vocab_size: 102400,
    },
    tensors: decoder(5120, 102400, LAYERS, (p, i) => [
      ...mla(p, { hidden: 5120, heads: 128, qLora: 1536, kvLora: 512, nope: 128, rope: 64, v: 128 }),
      ...(i === 0
        ? gatedMlp(`${p}.mlp`, 5120, 12288)
        : [t(`${p}.mlp.gate.weight`, [160, 5120]), ...experts(`${p}.mlp.experts`, 160, 5120, 1536), ...gatedMlp(`${p}.mlp.shared_experts`, 5120, 3072)]),
    ]),
    quantizedPerLayer: (i) => [
      'self_attn.q_a_proj',
      'self_attn.q_b_proj',
      'self_attn.kv_a_proj_with_mqa',
      'self_attn.kv_b_proj',
      'self_attn.o_proj',
      ...(i === 0 ? MLP : [...range(160).flatMap((e) => MLP.map((m) => m.replace('mlp.', `mlp.experts.${e}.`))), ...MLP.map((m) => m.replace('mlp.', 'mlp.shared_experts.'))]),
    ],
    layers: LAYERS,
    alsoKept: { 'model.layers.1.mlp.gate': 'MoE router' },
    copied: ['model.layers.0.self_attn.kv_a_layernorm.weight', 'model.layers.1.self_attn.q_a_layernorm.weight'],
  },
  {
    label: 'DeepSeek-V2-Lite (no q_lora: q_proj; 64 experts)',
    config: {
      architectures: ['DeepseekV2ForCausalLM'],
      model_type: 'deepseek_v2',
      hidden_size: 2048,
      q_lora_rank: null,
      kv_lora_rank: 512,
      n_routed_experts: 64,
      n_shared_experts: 2,
      vocab_size: 102400,
    },
    tensors: decoder(2048, 102400, LAYERS, (p, i) => [
      ...mla(p, { hidden: 2048, heads: 16, qLora: null, kvLora: 512, nope: 128, rope: 64, v: 128 }),
      ...(i === 0
        ? gatedMlp(`${p}.mlp`, 2048, 10944)
        : [t(`${p}.mlp.gate.weight`, [64, 2048]), ...experts(`${p}.mlp.experts`, 64, 2048, 1408), ...gatedMlp(`${p}.mlp.shared_experts`, 2048, 2816)]),
    ]),
    quantizedPerLayer: (i) => [
      'self_attn.q_proj',
      'self_attn.kv_a_proj_with_mqa',
      'self_attn.kv_b_proj',
      'self_attn.o_proj',
      ...(i === 0 ? MLP : [...range(64).flatMap((e) => MLP.map((m) => m.replace('mlp.', `mlp.experts.${e}.`))), ...MLP.map((m) => m.replace('mlp.', 'mlp.shared_experts.'))]),
    ],
    layers: LAYERS,
    alsoKept: { 'model.layers.1.mlp.gate': 'MoE router' },
    copied: [],
  },
  {
    label: 'DeepSeek-V3 (DeepSeek-V3 shapes: 256 experts, e_score_correction_bias, MTP layer)',
    config: {
      architectures: ['DeepseekV3ForCausalLM'],
      model_type: 'deepseek_v3',
      hidden_size: 7168,
      q_lora_rank: 1536,
      kv_lora_rank: 512,
      qk_nope_head_dim: 128,
      qk_rope_head_dim: 64,
      v_head_dim: 128,
      n_routed_experts: 256,
      n_shared_experts: 1,
      first_k_dense_replace: 3,
      num_nextn_predict_layers: 1,
      vocab_size: 129280,
    },
    tensors: [
      ...decoder(7168, 129280, LAYERS, (p, i) => [
        ...mla(p, { hidden: 7168, heads: 128, qLora: 1536, kvLora: 512, nope: 128, rope: 64, v: 128 }),
        ...(i === 0
          ? gatedMlp(`${p}.mlp`, 7168, 18432)
          : [
              t(`${p}.mlp.gate.weight`, [256, 7168]),
              t(`${p}.mlp.gate.e_score_correction_bias`, [256], 'F32'),
              ...experts(`${p}.mlp.experts`, 256, 7168, 2048),
              ...gatedMlp(`${p}.mlp.shared_experts`, 7168, 2048),
            ]),
      ]),
      // The multi-token-prediction layer of the release: its own embedding and head stay unquantized.
      t('model.layers.61.embed_tokens.weight', [129280, 7168]),
      t('model.layers.61.enorm.weight', [7168]),
      t('model.layers.61.hnorm.weight', [7168]),
      t('model.layers.61.eh_proj.weight', [7168, 14336]),
      t('model.layers.61.shared_head.head.weight', [129280, 7168]),
      t('model.layers.61.shared_head.norm.weight', [7168]),
    ],
    quantizedPerLayer: (i) => [
      'self_attn.q_a_proj',
      'self_attn.q_b_proj',
      'self_attn.kv_a_proj_with_mqa',
      'self_attn.kv_b_proj',
      'self_attn.o_proj',
      ...(i === 0 ? MLP : [...range(256).flatMap((e) => MLP.map((m) => m.replace('mlp.', `mlp.experts.${e}.`))), ...MLP.map((m) => m.replace('mlp.', 'mlp.shared_experts.'))]),
    ],
    layers: LAYERS,
    alsoKept: { 'model.layers.1.mlp.gate': 'MoE router', 'model.layers.61.embed_tokens': 'embedding', 'model.layers.61.shared_head.head': 'final FC (lm_head)' },
    copied: ['model.layers.1.mlp.gate.e_score_correction_bias', 'model.layers.61.enorm.weight'],
  },
];

describe('architectures: what is quantized and what is kept', () => {
  for (const c of CASES) {
    test(c.label, () => {
      const plan = runPass(c.config, c.tensors);
      checkPlanInvariants(plan, c.tensors);
      assert.deepEqual(plan.warnings, [], 'a known architecture converts without warnings');
      assert.equal(plan.family, c.config['model_type']);
      assert.equal(plan.architecture, (c.config['architectures'] as string[])[0]);

      const extra = c.label.startsWith('DeepSeek-V3') ? ['model.layers.61.eh_proj'] : [];
      const expected = [...range(c.layers).flatMap((i) => c.quantizedPerLayer(i).map((m) => `model.layers.${i}.${m}`)), ...extra].sort();
      assert.deepEqual(quantizedModules(plan), expected);

      assert.deepEqual(keptModules(plan), { lm_head: 'final FC (lm_head)', 'model.embed_tokens': 'embedding', ...c.alsoKept });
      const copies = new Set(plan.entries.filter((e) => e.op === 'copy').map((e) => e.sources[0]));
      for (const name of [...c.copied, 'lm_head.weight', 'model.embed_tokens.weight']) assert.ok(copies.has(name), `${name} is copied`);

      // Experts are BlockScaleQuantizeMixtralExperts; shared experts and everything else plain linears.
      for (const m of expected) {
        const kind = /\.experts\.\d+\./.test(m) ? 'BlockScaleQuantizeMixtralExperts' : 'BlockScaleQuantizeLinear';
        assert.equal(kindOf(plan, m), kind, m);
      }

      // The written config lists lm_head and every router, nothing quantized.
      const qc = quantizationConfigOf(plan);
      const routers = Object.entries(c.alsoKept)
        .filter(([, r]) => r !== 'embedding')
        .map(([m]) => m);
      assert.deepEqual([...qc.modules_to_not_convert].sort(), ['lm_head', ...routers].sort());
      assert.deepEqual(
        { ...qc, modules_to_not_convert: [] },
        { quant_method: 'fp8', fmt: 'e4m3', activation_scheme: 'dynamic', weight_block_size: [128, 128], modules_to_not_convert: [] },
      );
    });
  }

  test('the architecture is recognised from architectures[] alone or model_type alone', () => {
    const tensors = CASES[4]!.tensors; // Mixtral
    for (const config of [
      { architectures: ['MixtralForCausalLM'], num_local_experts: 8 },
      { model_type: 'mixtral', num_local_experts: 8 },
    ]) {
      const plan = runPass(config, tensors);
      assert.equal(plan.family, 'mixtral');
      assert.deepEqual(plan.warnings, []);
      assert.equal(keptModules(plan)['model.layers.0.block_sparse_moe.gate'], 'MoE router');
    }
  });

  test('DeepSeek-V3 kv_a_proj_with_mqa [576, 7168] gets a [5, 56] scale grid; kv_b_proj [32768, 512] a [256, 4] one', () => {
    const plan = runPass(CASES[9]!.config, CASES[9]!.tensors);
    const scale = (m: string) => plan.entries.find((e) => e.op === 'quantize' && e.module === m)!.outputs[1]!;
    assert.deepEqual(scale('model.layers.0.self_attn.kv_a_proj_with_mqa').shape, [5, 56]);
    assert.deepEqual(scale('model.layers.0.self_attn.kv_b_proj').shape, [256, 4]);
    assert.equal(scale('model.layers.1.mlp.experts.255.down_proj').byteLength, 56 * 16 * 4);
  });
});

describe('generic rules', () => {
  const olmo = (p: string): SourceTensor[] => [...attention(p, 2048, 16, 16, 128), ...gatedMlp(`${p}.mlp`, 2048, 8192), t(`${p}.self_attn.q_norm.weight`, [2048])];

  test('an unknown architecture converts by the generic rules, with a warning naming it', () => {
    const tensors = decoder(2048, 100352, 2, olmo);
    const plan = runPass({ architectures: ['Olmo2ForCausalLM'], model_type: 'olmo2' }, tensors);
    checkPlanInvariants(plan, tensors);
    assert.equal(plan.family, undefined);
    assert.equal(plan.warnings.length, 1);
    assert.match(plan.warnings[0]!, /architecture Olmo2ForCausalLM is not one fp8q knows .*converting by the generic rules; check the plan with --dry-run/);
    assert.equal(quantizedModules(plan).length, 2 * 7);
    assert.deepEqual(keptModules(plan), { lm_head: 'final FC (lm_head)', 'model.embed_tokens': 'embedding' });
  });

  test('no config.json: generic rules with a warning', () => {
    const tensors = decoder(2048, 100352, 1, olmo);
    const plan = runPass(undefined, tensors);
    assert.match(plan.warnings.join('\n'), /no usable config.json: converting by the generic rules/);
    assert.equal(quantizedModules(plan).length, 7);
  });

  test('gate_proj and fused gate_up_proj / qkv_proj are ordinary linears (Phi-3 names)', () => {
    const tensors = decoder(3072, 32064, 1, (p) => [
      t(`${p}.self_attn.qkv_proj.weight`, [9216, 3072]),
      t(`${p}.self_attn.o_proj.weight`, [3072, 3072]),
      t(`${p}.mlp.gate_up_proj.weight`, [16384, 3072]),
      t(`${p}.mlp.down_proj.weight`, [3072, 8192]),
    ]);
    const plan = runPass({ architectures: ['Phi3ForCausalLM'], model_type: 'phi3' }, tensors);
    assert.deepEqual(quantizedModules(plan), [
      'model.layers.0.mlp.down_proj',
      'model.layers.0.mlp.gate_up_proj',
      'model.layers.0.self_attn.o_proj',
      'model.layers.0.self_attn.qkv_proj',
    ]);
  });

  test("outside an MoE model, a module named gate is a router only with ≤ 256 outputs (MLC's rule)", () => {
    const tensors = [t('model.layers.0.mlp.gate.weight', [256, 1024]), t('model.layers.1.mlp.gate.weight', [257, 1024])];
    const plan = runPass({ model_type: 'llama' }, tensors);
    assert.deepEqual(keptModules(plan), { 'model.layers.0.mlp.gate': 'MoE router' });
    assert.deepEqual(quantizedModules(plan), ['model.layers.1.mlp.gate']);
  });

  test('other scale grids and E5M2 change the planned outputs accordingly', () => {
    const tensors = CASES[9]!.tensors.filter((x) => x.name.includes('layers.0.self_attn'));
    const plan = runPass(CASES[9]!.config, tensors, { settings: { ...DEFAULT_SETTINGS, format: 'e5m2', block: { bn: 64, bk: 32 } } });
    checkPlanInvariants(plan, tensors);
    const e = plan.entries.find((x) => x.op === 'quantize' && x.module === 'model.layers.0.self_attn.kv_a_proj_with_mqa')!;
    assert.deepEqual(
      e.outputs.map((o) => [o.dtype, o.shape]),
      [
        ['F8_E5M2', [576, 7168]],
        ['F32', [9, 224]],
      ],
    );
    assert.deepEqual(quantizationConfigOf(plan).weight_block_size, [64, 32]);
    assert.equal(quantizationConfigOf(plan).fmt, 'e5m2');
  });

  test('weights that are not float (already integer) are kept, and empty weights are kept', () => {
    const tensors = [t('model.layers.0.mlp.up_proj.weight', [128, 128], 'I8'), t('model.layers.0.mlp.down_proj.weight', [0, 128])];
    const plan = runPass({ model_type: 'llama' }, tensors);
    assert.deepEqual(keptModules(plan), { 'model.layers.0.mlp.up_proj': 'dtype I8 is not a float', 'model.layers.0.mlp.down_proj': 'empty weight' });
  });

  test('a 3-D weight that is not an expert stack (a Mamba conv1d) is kept, not quantized as experts', () => {
    const tensors = [t('model.layers.0.mixer.conv1d.weight', [8192, 1, 4]), t('model.layers.0.mixer.in_proj.weight', [18560, 4096])];
    const plan = runPass({ architectures: ['Mamba2ForCausalLM'], model_type: 'mamba2' }, tensors);
    checkPlanInvariants(plan, tensors);
    assert.deepEqual(quantizedModules(plan), ['model.layers.0.mixer.in_proj']);
    assert.ok(plan.entries.some((e) => e.op === 'copy' && e.sources[0] === 'model.layers.0.mixer.conv1d.weight'));
    assert.match(keptModules(plan)['model.layers.0.mixer.conv1d']!, /^3-D weight outside an expert set/);
    assert.deepEqual(plan.notConverted, [], 'a convolution is not a Linear a loader would look for');
  });

  test('fused 3-D expert stacks [E, N, K] get [E, ceil(N/bn), ceil(K/bk)] scales', () => {
    const tensors = [t('model.layers.0.mlp.experts.down_proj.weight', [4, 300, 200])];
    const plan = runPass({ model_type: 'qwen3_moe', num_experts: 4 }, tensors);
    checkPlanInvariants(plan, tensors);
    assert.equal(kindOf(plan, 'model.layers.0.mlp.experts.down_proj'), 'BlockScaleQuantizeMixtralExperts');
    const e = plan.entries.find((x) => x.op === 'quantize')!;
    assert.deepEqual(e.outputs[1]!.shape, [4, 3, 2]);
  });
});

describe('exclusions', () => {
  const llama = CASES[0]!;

  test('--exclude with a module suffix keeps that module in every layer and lists it', () => {
    const plan = runPass(llama.config, llama.tensors, { exclude: ['mlp.down_proj'] });
    checkPlanInvariants(plan, llama.tensors);
    const kept = keptModules(plan);
    assert.equal(kept['model.layers.0.mlp.down_proj'], 'excluded by "mlp.down_proj"');
    assert.equal(kept['model.layers.1.mlp.down_proj'], 'excluded by "mlp.down_proj"');
    assert.ok(!quantizedModules(plan).some((m) => m.endsWith('down_proj')));
    assert.equal(quantizedModules(plan).length, 2 * 6);
    assert.deepEqual([...quantizationConfigOf(plan).modules_to_not_convert].sort(), ['lm_head', 'model.layers.0.mlp.down_proj', 'model.layers.1.mlp.down_proj']);
  });

  test('a suffix matches whole path components only: up_proj does not exclude gate_up_proj, proj excludes nothing', () => {
    const tensors = [t('model.layers.0.mlp.gate_up_proj.weight', [256, 128]), t('model.layers.0.mlp.up_proj.weight', [256, 128])];
    assert.deepEqual(quantizedModules(runPass({ model_type: 'llama' }, tensors, { exclude: ['up_proj'] })), ['model.layers.0.mlp.gate_up_proj']);
    assert.equal(quantizedModules(runPass({ model_type: 'llama' }, tensors, { exclude: ['proj'] })).length, 2);
    // A prefix of the path (a whole subtree) matches too.
    assert.equal(quantizedModules(runPass({ model_type: 'llama' }, tensors, { exclude: ['model.layers.0'] })).length, 0);
  });

  test('re: patterns are regular expressions searched in the module path', () => {
    const plan = runPass(llama.config, llama.tensors, { exclude: ['re:layers\\.0\\.', 're:^model\\.layers\\.1\\.self_attn\\.[qk]_proj$'] });
    checkPlanInvariants(plan, llama.tensors);
    assert.deepEqual(quantizedModules(plan), [
      'model.layers.1.mlp.down_proj',
      'model.layers.1.mlp.gate_proj',
      'model.layers.1.mlp.up_proj',
      'model.layers.1.self_attn.o_proj',
      'model.layers.1.self_attn.v_proj',
    ]);
    assert.equal(keptModules(plan)['model.layers.0.self_attn.q_proj'], 'excluded by "re:layers\\.0\\."');
    assert.equal(keptModules(plan)['model.layers.1.self_attn.k_proj'], 'excluded by "re:^model\\.layers\\.1\\.self_attn\\.[qk]_proj$"');
  });

  test('an invalid re: pattern is an error naming it', () => {
    assert.throws(() => runPass(llama.config, llama.tensors, { exclude: ['re:(unclosed'] }), /invalid --exclude regular expression "re:\(unclosed"/);
  });

  test("the source config's modules_to_not_convert is honoured and carried into the output config", () => {
    const config = { ...llama.config, modules_to_not_convert: ['model.layers.1.self_attn', 'o_proj'] };
    const plan = runPass(config, llama.tensors);
    const kept = keptModules(plan);
    for (const m of ['q_proj', 'k_proj', 'v_proj', 'o_proj'])
      assert.equal(kept[`model.layers.1.self_attn.${m}`], m === 'o_proj' ? 'excluded by "model.layers.1.self_attn"' : 'excluded by "model.layers.1.self_attn"');
    assert.equal(kept['model.layers.0.self_attn.o_proj'], 'excluded by "o_proj"');
    assert.deepEqual(quantizedModules(plan), [
      'model.layers.0.mlp.down_proj',
      'model.layers.0.mlp.gate_proj',
      'model.layers.0.mlp.up_proj',
      'model.layers.0.self_attn.k_proj',
      'model.layers.0.self_attn.q_proj',
      'model.layers.0.self_attn.v_proj',
      'model.layers.1.mlp.down_proj',
      'model.layers.1.mlp.gate_proj',
      'model.layers.1.mlp.up_proj',
    ]);
    assert.ok(quantizationConfigOf(plan).modules_to_not_convert.includes('model.layers.1.self_attn.q_proj'));
  });
});

describe('already-quantized input is refused', () => {
  const llama = CASES[0]!;
  const refused = (re: RegExp) => (e: unknown) => e instanceof AlreadyQuantizedError && /already FP8-quantized/.test(e.message) && re.test(e.message);

  test('a quantization_config, an FP8 tensor, or a weight_scale_inv tensor each refuse', () => {
    assert.throws(() => runPass({ ...llama.config, quantization_config: { quant_method: 'fp8' } }, llama.tensors), refused(/quantization_config with quant_method "fp8"/));
    const fp8 = llama.tensors.map((x) => (x.name === 'model.layers.0.mlp.up_proj.weight' ? { ...x, dtype: 'F8_E4M3' as const } : x));
    assert.throws(() => runPass(llama.config, fp8), refused(/tensor "model.layers.0.mlp.up_proj.weight" is F8_E4M3/));
    const withScale = [...llama.tensors, t('model.layers.0.mlp.up_proj.weight_scale_inv', [112, 32], 'F32')];
    assert.throws(() => runPass(llama.config, withScale), refused(/is a quantization scale/));
  });
});
