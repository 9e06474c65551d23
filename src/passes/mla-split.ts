// --mla-split: for every quantized `self_attn.kv_b_proj` of an MLA model (config.json has
// kv_lora_rank: DeepSeek-V2/V3 and kin), plan `self_attn.w_uk` (H, kv_lora, nope) and
// `self_attn.w_uv` (H, v, kv_lora) in FP8 with their scales (docs/FORMAT.md §4).
//
// Layout, from MLC LLM (mlc-ai/mlc-llm on GitHub):
// - python/mlc_llm/model/deepseek_v2/deepseek_v2_loader.py reshapes kv_b_proj.weight to
//   (H, nope + v, kv_lora), splits axis 1 at nope, and takes w_uk = part0.transpose(0, 2, 1),
//   w_uv = part1; the scales go the same way on the (H, (nope+v)/bn, kv_lora/bk) grid.
// - python/mlc_llm/quantization/block_scale_quantization.py declares w_uk (H, kv_lora, nope),
//   w_uv (H, v, kv_lora), w_uk_scale_inv (H, kv_lora // bk, nope // bn), w_uv_scale_inv
//   (H, v // bn, kv_lora // bk), and raises "Invalid DeepSeek model config" unless the head dims
//   are multiples of the block.
// - python/mlc_llm/op/batch_matmul.py quantized_bmm reads w (b, n, k) with scales
//   (b, n // block[0], k // block[1]): for w_uk that is (H, kv_lora/bn, nope/bk), which is the
//   declared (H, kv_lora/bk, nope/bn) only for square blocks. fp8q writes the declared shape and
//   warns for non-square blocks.
//
// kv_b_proj itself is always still written. MLC's loader builds w_uk/w_uv from
// `kv_b_proj.weight` and `kv_b_proj.weight_scale_inv` (it never reads a `w_uk` tensor), and
// transformers, vLLM and SGLang load kv_b_proj and split it after loading; so the split tensors
// are an addition for runtimes that load them pre-split, and dropping kv_b_proj would make the
// checkpoint unloadable everywhere else. (transformers lists w_uk/w_uv as unexpected keys.)
//
// Aligned (nope % bn == 0, v % bn == 0, kv_lora % bk == 0): the blocks of the quantized kv_b_proj
// move unchanged ('move-blocks'). Otherwise ('own-grid'), a moved block would hold rows of two
// parts (nope and v of one head, or two heads), so no scale of kv_b_proj is right for w_uk or
// w_uv: each is quantized from the source per head with its own ceil-sized grid — w_uk
// (kv_lora × nope) in blocks of bk rows (kv_lora) × bn columns (nope), the orientation a moved
// block has; w_uv (v × kv_lora) in bn × bk blocks — and a warning says so.

import { CheckpointError } from '../io/errors.js';
import type { ModelConfig } from '../io/checkpoint/checkpoint.js';
import { ceilDiv } from '../fp8/block-quantize.js';
import { fp8FormatInfo } from '../fp8/formats.js';
import { numberField } from './architectures.js';
import { plannedOutput, type ConvertPlan, type MlaSplitEntry, type ModuleDecision, type QuantizationSettings, type SourceTensor } from './plan.js';

export interface MlaDims {
  readonly heads: number;
  readonly kvLoraRank: number;
  readonly nopeHeadDim: number;
  readonly ropeHeadDim: number | undefined;
  readonly vHeadDim: number;
  readonly qLoraRank: number | undefined;
}

/** MLA dimensions from config.json, or undefined when it has no kv_lora_rank. */
export function mlaDims(config: ModelConfig | undefined): MlaDims | undefined {
  const kvLoraRank = numberField(config, 'kv_lora_rank');
  if (kvLoraRank === undefined) return undefined;
  const heads = numberField(config, 'num_attention_heads');
  const nope = numberField(config, 'qk_nope_head_dim');
  const v = numberField(config, 'v_head_dim');
  if (heads === undefined || nope === undefined || v === undefined) {
    throw new CheckpointError(
      `config.json has kv_lora_rank ${kvLoraRank} but lacks ${['num_attention_heads', 'qk_nope_head_dim', 'v_head_dim'].filter((k) => numberField(config, k) === undefined).join(', ')}: cannot split kv_b_proj (drop --mla-split)`,
    );
  }
  const q = config?.['q_lora_rank'];
  return {
    heads,
    kvLoraRank: kvLoraRank,
    nopeHeadDim: nope,
    ropeHeadDim: numberField(config, 'qk_rope_head_dim'),
    vHeadDim: v,
    qLoraRank: typeof q === 'number' ? q : undefined,
  };
}

/** Whether kv_b_proj's blocks can move into w_uk/w_uv at this block size. */
export function mlaSplitAligned(dims: MlaDims, block: { bn: number; bk: number }): boolean {
  return dims.nopeHeadDim % block.bn === 0 && dims.vHeadDim % block.bn === 0 && dims.kvLoraRank % block.bk === 0;
}

function largestPowerOfTwoDividing(n: number, cap: number): number {
  let p = 1;
  while (p * 2 <= cap && n % (p * 2) === 0) p *= 2;
  return p;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/** A block size (≤ 128 per side) whose blocks move: bn divides nope and v, bk divides kv_lora. */
export function mlaAlignedBlock(dims: MlaDims): { bn: number; bk: number } {
  return { bn: largestPowerOfTwoDividing(gcd(dims.nopeHeadDim, dims.vHeadDim), 128), bk: largestPowerOfTwoDividing(dims.kvLoraRank, 128) };
}

/**
 * The --mla-split sub-pass: a plan with an mla-split entry (w_uk / w_uv) appended for every
 * quantized kv_b_proj of `plan`.
 */
export function mlaSplitPass(plan: ConvertPlan, config: ModelConfig | undefined, tensors: readonly SourceTensor[]): ConvertPlan {
  const warnings = [...plan.warnings];
  const split = planMlaSplit(config, tensors, plan.modules, plan.settings, warnings);
  return { ...plan, entries: [...plan.entries, ...split], warnings };
}

/** The mla-split entries for the quantized kv_b_proj among `modules`; warnings go to `warnings`. */
export function planMlaSplit(
  config: ModelConfig | undefined,
  tensors: readonly SourceTensor[],
  modules: readonly ModuleDecision[],
  settings: QuantizationSettings,
  warnings: string[],
): MlaSplitEntry[] {
  const dims = mlaDims(config);
  if (!dims) {
    warnings.push('--mla-split: config.json has no kv_lora_rank (not an MLA model); nothing to split');
    return [];
  }
  const { heads, kvLoraRank: lora, nopeHeadDim: nope, vHeadDim: v } = dims;
  const { bn, bk } = settings.block;
  const aligned = mlaSplitAligned(dims, settings.block);
  const fp8 = fp8FormatInfo(settings.format).dtype;
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const entries: MlaSplitEntry[] = [];
  for (const m of modules) {
    if (!m.module.endsWith('self_attn.kv_b_proj')) continue;
    const attn = m.module.slice(0, -'.kv_b_proj'.length);
    if (m.decision === 'keep') {
      warnings.push(`--mla-split: ${m.module} is kept unquantized (${m.reason}), so no FP8 w_uk/w_uv are written for ${attn}`);
      continue;
    }
    const weight = byName.get(`${m.module}.weight`);
    if (!weight) continue;
    if (weight.shape.length !== 2 || weight.shape[0] !== heads * (nope + v) || weight.shape[1] !== lora) {
      throw new CheckpointError(
        `--mla-split: "${weight.name}" is ${JSON.stringify(weight.shape)}, but config.json's num_attention_heads ${heads}, qk_nope_head_dim ${nope}, ` +
          `v_head_dim ${v} and kv_lora_rank ${lora} need [${heads * (nope + v)}, ${lora}]: the config does not describe this checkpoint`,
      );
    }
    entries.push({
      op: 'mla-split',
      module: attn,
      heads,
      kvLoraRank: lora,
      nopeHeadDim: nope,
      vHeadDim: v,
      method: aligned ? 'move-blocks' : 'own-grid',
      sources: [weight.name],
      outputs: [
        plannedOutput(`${attn}.w_uk`, fp8, [heads, lora, nope]),
        plannedOutput(`${attn}.w_uk_scale_inv`, 'F32', [heads, ceilDiv(lora, bk), ceilDiv(nope, bn)]),
        plannedOutput(`${attn}.w_uv`, fp8, [heads, v, lora]),
        plannedOutput(`${attn}.w_uv_scale_inv`, 'F32', [heads, ceilDiv(v, bn), ceilDiv(lora, bk)]),
      ],
    });
  }
  if (entries.length > 0 && !aligned) {
    const ok = mlaAlignedBlock(dims);
    const misfits = [...(nope % bn !== 0 ? [`qk_nope_head_dim ${nope}`] : []), ...(v % bn !== 0 ? [`v_head_dim ${v}`] : [])].join(' and ');
    const why = [...(misfits ? [`${misfits} not a multiple of bn ${bn}`] : []), ...(lora % bk !== 0 ? [`kv_lora_rank ${lora} not a multiple of bk ${bk}`] : [])].join('; ');
    warnings.push(
      `--mla-split at ${bn}x${bk}: ${why}, so kv_b_proj's blocks cannot move into w_uk/w_uv; each head's w_uk (kv_lora × nope, blocks ${bk}x${bn}) and w_uv (v × kv_lora, blocks ${bn}x${bk}) ` +
        `is quantized from the source with its own ceil-sized grid instead. MLC LLM refuses this block size for DeepSeek ("Invalid DeepSeek model config"); ` +
        `--block ${ok.bn}x${ok.bk} would move blocks`,
    );
  }
  if (entries.length > 0 && bn !== bk) {
    warnings.push(
      `--mla-split with non-square ${bn}x${bk} blocks: w_uk_scale_inv is written [H, kv_lora/bk, nope/bn] (MLC's declared parameter shape), ` +
        `but MLC's quantized_bmm reads w_uk's scales as [H, kv_lora/bn, nope/bk]; the two agree only for square blocks`,
    );
  }
  return entries;
}
