// Fused (stacked) MoE expert weights: 3-D tensors `[E, …]` holding every expert of a layer, and
// which of their axes are the (out, in) of the math. The block grid must run over (out, in), so
// the orientation decides which stored axis gets bn and which bk.
//
// What real checkpoints and loaders do (read in huggingface/transformers on GitHub):
// - transformers 5.x `MixtralExperts` (models/mixtral/modeling_mixtral.py; the default of
//   `@use_experts_implementation`, is_transposed=False): `gate_up_proj` (E, 2*intermediate, hidden)
//   and `down_proj` (E, hidden, intermediate), used as `F.linear(x, W[e])`, i.e. [E, N, K] out × in.
//   `conversion_mapping.py` builds exactly these from per-expert tensors for mixtral
//   (w1 + w3 → gate_up_proj, w2 → down_proj), qwen2_moe/qwen3_moe/deepseek_v2/v3/… (gate_proj +
//   up_proj → gate_up_proj, concatenated along dim 1, down_proj → down_proj). Its fine-grained FP8
//   experts keep that orientation: `gate_up_proj` (E, 2I, H) with `gate_up_proj_scale_inv`
//   (E, ceil(2I/bn), ceil(H/bk)) (integrations/finegrained_fp8.py FP8Expert).
// - transformers `GptOssExperts` (models/gpt_oss/modeling_gpt_oss.py): `gate_up_proj`
//   (E, hidden, 2*expert_dim), `down_proj` (E, expert_dim, hidden), used as `x @ W[e]` / torch.bmm:
//   [E, K, N] in × out (is_transposed=True; gate and up interleaved along N).
// - transformers `Llama4TextExperts` (models/llama4/modeling_llama4.py): `gate_up_proj`
//   (E, hidden, 2*expert_dim), `down_proj` (E, expert_dim, hidden), torch.bmm(x, W): [E, K, N].
// - MLC LLM `MixtralExperts` (python/mlc_llm/nn/expert.py): weight (E, out_features, in_features).
//
// Rule: the shape decides when config.json's sizes tell the two orientations apart; otherwise the
// family's convention (gpt-oss, Llama-4: in × out; everything else: transformers' out × in).

import { ceilDiv } from '../fp8/block-quantize.js';
import { fp8FormatInfo } from '../fp8/formats.js';
import type { ModelConfig } from '../io/checkpoint/checkpoint.js';
import { fusedProjectionOfTensor, type FusedProjection } from '../io/formats/expert-tensor-names.js';
import { numberField } from './architectures.js';
import { plannedOutput, type PlanEntry, type QuantizationSettings, type QuantizedModuleKind, type SourceTensor } from './plan.js';

export type WeightLayout = 'out_in' | 'in_out';

export { FUSED_EXPERT_PROJECTIONS, fusedProjectionOfTensor } from '../io/formats/expert-tensor-names.js';

/** Model types whose fused experts are stored in × out ([E, K, N]), and where that is written. */
const IN_OUT_FAMILIES: Readonly<Record<string, string>> = {
  gpt_oss: 'transformers GptOssExperts stores gate_up_proj [E, hidden, 2*expert_dim] and applies x @ W',
  llama4: 'transformers Llama4TextExperts stores gate_up_proj [E, hidden, 2*expert_dim] and applies torch.bmm(x, W)',
  llama4_text: 'transformers Llama4TextExperts stores gate_up_proj [E, hidden, 2*expert_dim] and applies torch.bmm(x, W)',
};

export interface FusedExpertLayout {
  readonly layout: WeightLayout;
  /** Set when the orientation was assumed rather than read from shapes: a warning for the plan. */
  readonly assumption?: string;
}

function textConfig(config: ModelConfig | undefined): ModelConfig | undefined {
  const tc = config?.['text_config'];
  return typeof tc === 'object' && tc !== null && !Array.isArray(tc) ? (tc as ModelConfig) : config;
}

/** (out, in) of one projection from config.json's sizes, when it has them. */
function projectionDims(config: ModelConfig | undefined, projection: FusedProjection): [number, number] | undefined {
  const c = textConfig(config);
  const hidden = numberField(c, 'hidden_size');
  const inter = numberField(c, 'moe_intermediate_size', 'expert_intermediate_size', 'intermediate_size');
  if (hidden === undefined || inter === undefined) return undefined;
  switch (projection) {
    case 'gate_up_proj':
      return [2 * inter, hidden];
    case 'gate_proj':
    case 'up_proj':
      return [inter, hidden];
    case 'down_proj':
      return [hidden, inter];
  }
}

export function modelType(config: ModelConfig | undefined): string | undefined {
  const t = config?.['model_type'];
  return typeof t === 'string' ? t : undefined;
}

/** The orientation config.json's sizes prove for `[E, A, B]`, or undefined when they cannot tell. */
function layoutByShape(config: ModelConfig | undefined, projection: FusedProjection, shape: readonly number[]): WeightLayout | undefined {
  const dims = projectionDims(config, projection);
  const [a, b] = [shape[1]!, shape[2]!];
  const outIn = dims !== undefined && a === dims[0] && b === dims[1];
  const inOut = dims !== undefined && a === dims[1] && b === dims[0];
  return outIn === inOut ? undefined : outIn ? 'out_in' : 'in_out';
}

/**
 * The orientation a sibling of `tensor` in the same expert set proves by its shape: when hidden =
 * 2 × intermediate, gate_up_proj is square per expert, but down_proj `[E, hidden, I]` or `[E, I, hidden]`
 * still tells how this checkpoint stores its experts (transformers 5 writes Qwen3-VL-MoE out × in,
 * its original release in × out).
 */
function layoutBySibling(
  config: ModelConfig | undefined,
  tensor: string,
  siblings: readonly { readonly name: string; readonly shape: readonly number[] }[],
): WeightLayout | undefined {
  const container = tensor.slice(0, tensor.lastIndexOf('.experts.') + '.experts.'.length);
  for (const s of siblings) {
    if (s.name === tensor || s.shape.length !== 3 || !s.name.startsWith(container)) continue;
    const projection = fusedProjectionOfTensor(s.name);
    const layout = projection ? layoutByShape(config, projection, s.shape) : undefined;
    if (layout) return layout;
  }
  return undefined;
}

/** Orientation of a fused expert tensor `[E, A, B]` named `tensor`; `siblings` (the checkpoint's tensors) settle a square one. */
export function fusedExpertLayout(
  config: ModelConfig | undefined,
  tensor: string,
  projection: FusedProjection,
  shape: readonly number[],
  siblings: readonly { readonly name: string; readonly shape: readonly number[] }[] = [],
): FusedExpertLayout {
  const family = modelType(config);
  const familyRule = family !== undefined ? IN_OUT_FAMILIES[family] : undefined;
  const familyLayout: WeightLayout = familyRule ? 'in_out' : 'out_in';
  const byShape = layoutByShape(config, projection, shape) ?? layoutBySibling(config, tensor, siblings);
  if (byShape !== undefined) {
    const outIn = byShape === 'out_in';
    const layout: WeightLayout = outIn ? 'out_in' : 'in_out';
    if (familyRule !== undefined && layout !== familyLayout) {
      return {
        layout,
        assumption: `${tensor} ${JSON.stringify(shape)} is ${layout === 'out_in' ? '[E, out, in]' : '[E, in, out]'} by config.json's sizes, although ${familyRule}; following the shape`,
      };
    }
    return { layout };
  }
  if (familyRule !== undefined) return { layout: 'in_out' };
  if (family !== undefined && FAMILIES_OUT_IN.has(family)) return { layout: 'out_in' };
  return {
    layout: 'out_in',
    assumption:
      `${tensor} ${JSON.stringify(shape)}: config.json's sizes cannot tell [E, out, in] from [E, in, out]; assumed [E, out, in] ` +
      `(transformers' MixtralExperts layout) — blocks are bn over axis 1 and bk over axis 2`,
  };
}

/** Families whose fused experts (transformers 5.x conversion_mapping) are [E, out, in]. */
const FAMILIES_OUT_IN = new Set(['mixtral', 'qwen2_moe', 'qwen3_moe', 'deepseek_v2', 'deepseek_v3', 'minimax', 'olmoe', 'phimoe', 'qwen3_next', 'glm4_moe']);

/**
 * Fused expert tensors stored without a `.weight` suffix (`mlp.experts.gate_up_proj`), keyed by a
 * virtual `<name>.weight`, so the pass sees them as modules with a weight like any Linear.
 */
export function fusedExpertAliases(tensors: readonly { readonly name: string; readonly shape: readonly number[] }[]): Map<string, string> {
  const aliases = new Map<string, string>();
  for (const t of tensors) {
    if (t.shape.length === 3 && !t.name.endsWith('.weight') && fusedProjectionOfTensor(t.name)) aliases.set(`${t.name}.weight`, t.name);
  }
  return aliases;
}

export interface QuantizeEntryRequest {
  readonly config: ModelConfig | undefined;
  readonly module: string;
  readonly kind: QuantizedModuleKind;
  /** The real tensor name. */
  readonly source: SourceTensor;
  /** True for a fused tensor without `.weight`: its scale is `<name>_scale_inv` (transformers' FP8 experts). */
  readonly suffixless: boolean;
  readonly settings: QuantizationSettings;
  /** The checkpoint's tensors: a sibling's shape settles a square fused tensor's orientation. */
  readonly siblings?: readonly { readonly name: string; readonly shape: readonly number[] }[];
}

/**
 * The quantize entry of one weight: [N, K] and [E, N, K] → QuantizeEntry; a fused [E, K, N]
 * (in × out) → QuantizeInOutEntry. Scales are always [E?, ceil(N/bn), ceil(K/bk)].
 */
export function planQuantizeEntry(req: QuantizeEntryRequest): { entry: PlanEntry; reason: string; warning?: string } {
  const { source, settings } = req;
  const shape = source.shape;
  const rank = shape.length;
  const { bn, bk } = settings.block;
  const fp8 = fp8FormatInfo(settings.format).dtype;
  const scaleName = req.suffixless ? `${source.name}_scale_inv` : `${req.module}.weight_scale_inv`;
  const projection = rank === 3 ? fusedProjectionOfTensor(source.name) : undefined;
  let layout: WeightLayout = 'out_in';
  let warning: string | undefined;
  if (projection) {
    const decided = fusedExpertLayout(req.config, source.name, projection, shape, req.siblings);
    layout = decided.layout;
    warning = decided.assumption;
  }
  const lead = rank === 3 ? [shape[0]!] : [];
  const n = layout === 'in_out' ? shape[rank - 1]! : shape[rank - 2]!;
  const k = layout === 'in_out' ? shape[rank - 2]! : shape[rank - 1]!;
  const outputs = [plannedOutput(source.name, fp8, shape), plannedOutput(scaleName, 'F32', [...lead, ceilDiv(n, bn), ceilDiv(k, bk)])];
  const common = { module: req.module, kind: req.kind, sources: [source.name], outputs };
  const extra = warning ? { warning } : {};
  if (layout === 'in_out') return { entry: { op: 'quantize-in-out', ...common }, reason: 'stacked experts, stored in × out', ...extra };
  return { entry: { op: 'quantize', ...common }, reason: rank === 3 ? 'stacked experts' : 'linear', ...extra };
}
