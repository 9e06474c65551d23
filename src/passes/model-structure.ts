// What `fp8q inspect` says about a model's structure beyond dtypes: its MLA attention (heads,
// ranks, whether kv_b_proj's blocks can move into w_uk/w_uv, whether those are present) and its
// MoE experts (sets, experts per set, per-expert or stacked, and the stacked tensors' layout);
// and, for an FP8 checkpoint, how it is quantized. From names, shapes and config.json only.

import type { ModelConfig } from '../io/checkpoint/checkpoint.js';
import { CheckpointError } from '../io/errors.js';
import { numberField } from './architectures.js';
import type { SourceTensor } from './plan.js';
import { describeFp8Input } from './fp8-input.js';
import { fusedExpertLayout, fusedProjectionOfTensor, type WeightLayout } from './fused-experts.js';
import { mlaAlignedBlock, mlaDims, mlaSplitAligned } from './mla-split.js';
import { naturalCompare } from './module-tree.js';

export interface MlaStructure {
  readonly heads: number;
  readonly kvLoraRank: number;
  readonly qLoraRank: number | null;
  readonly qkNopeHeadDim: number;
  readonly qkRopeHeadDim: number | null;
  readonly vHeadDim: number;
  /** Attention modules with a kv_b_proj. */
  readonly kvBProjLayers: number;
  /** Attention modules that already hold w_uk and w_uv. */
  readonly splitLayers: number;
  /** Whether --mla-split at 128x128 moves blocks (true) or quantizes w_uk/w_uv on their own grids. */
  readonly alignedAt128: boolean;
  /** A block size at which kv_b_proj's blocks move into w_uk/w_uv. */
  readonly alignedBlock: string;
}

export interface StackedExpertTensor {
  readonly name: string;
  readonly shape: readonly number[];
  readonly dtype: string;
  /** out_in: [E, N, K]; in_out: [E, K, N]. */
  readonly layout: WeightLayout;
}

export interface ExpertSet {
  readonly module: string;
  readonly experts: number;
  readonly storage: 'per-expert' | 'stacked';
  readonly projections: readonly string[];
  readonly stacked: readonly StackedExpertTensor[];
}

export interface ExpertStructure {
  /** Routed experts per MoE layer according to config.json. */
  readonly configExperts: number | null;
  readonly sets: readonly ExpertSet[];
}

export interface Fp8Structure {
  readonly layout: string;
  readonly fmt: string;
  readonly block: [number, number];
  readonly weights: number;
  readonly weightDtypes: readonly string[];
  readonly scaleDtypes: readonly string[];
  readonly perTensorScales: number;
}

export function describeMla(config: ModelConfig | undefined, tensors: readonly SourceTensor[]): MlaStructure | null {
  const dims = mlaDims(config);
  if (!dims) return null;
  const names = new Set(tensors.map((t) => t.name));
  const kvb = tensors.filter((t) => t.name.endsWith('self_attn.kv_b_proj.weight'));
  const split = kvb.filter((t) => {
    const attn = t.name.slice(0, -'.kv_b_proj.weight'.length);
    return names.has(`${attn}.w_uk`) && names.has(`${attn}.w_uv`);
  });
  const ok = mlaAlignedBlock(dims);
  return {
    heads: dims.heads,
    kvLoraRank: dims.kvLoraRank,
    qLoraRank: dims.qLoraRank ?? null,
    qkNopeHeadDim: dims.nopeHeadDim,
    qkRopeHeadDim: dims.ropeHeadDim ?? null,
    vHeadDim: dims.vHeadDim,
    kvBProjLayers: kvb.length,
    splitLayers: split.length,
    alignedAt128: mlaSplitAligned(dims, { bn: 128, bk: 128 }),
    alignedBlock: `${ok.bn}x${ok.bk}`,
  };
}

const PER_EXPERT_WEIGHT = /^(.*\.experts)\.(\d+)\.([^.]+)\.weight$/;

export function describeExperts(config: ModelConfig | undefined, tensors: readonly SourceTensor[]): ExpertStructure | null {
  const perExpert = new Map<string, { experts: Set<number>; projections: Set<string> }>();
  const stacked = new Map<string, StackedExpertTensor[]>();
  for (const t of tensors) {
    const m = PER_EXPERT_WEIGHT.exec(t.name);
    if (m) {
      const set = perExpert.get(m[1]!) ?? { experts: new Set<number>(), projections: new Set<string>() };
      set.experts.add(Number(m[2]));
      set.projections.add(m[3]!);
      perExpert.set(m[1]!, set);
      continue;
    }
    const projection = t.shape.length === 3 ? fusedProjectionOfTensor(t.name) : undefined;
    if (!projection) continue;
    const container = t.name.slice(0, t.name.lastIndexOf('.experts.') + '.experts'.length);
    const list = stacked.get(container) ?? [];
    list.push({ name: t.name, shape: t.shape, dtype: t.dtype, layout: fusedExpertLayout(config, t.name, projection, t.shape, tensors).layout });
    stacked.set(container, list);
  }
  const sets: ExpertSet[] = [
    ...[...perExpert].map(([module, s]) => ({
      module,
      experts: s.experts.size,
      storage: 'per-expert' as const,
      projections: [...s.projections].sort(),
      stacked: [],
    })),
    ...[...stacked].map(([module, list]) => ({
      module,
      experts: list[0]!.shape[0]!,
      storage: 'stacked' as const,
      projections: list
        .map(
          (x) =>
            x.name
              .split('.')
              .filter((p) => p !== 'weight')
              .pop()!,
        )
        .sort(),
      stacked: list,
    })),
  ].sort((a, b) => naturalCompare(a.module, b.module));
  const configExperts = numberField(config, 'n_routed_experts', 'num_local_experts', 'num_experts') ?? null;
  if (sets.length === 0 && configExperts === null) return null;
  return { configExperts, sets };
}

/** How an FP8 checkpoint is quantized; a malformed one adds a warning instead (inspect reports, it does not fail). */
export function describeFp8(config: ModelConfig | undefined, tensors: readonly SourceTensor[], warnings: string[]): Fp8Structure | null {
  try {
    const input = describeFp8Input(config, tensors);
    if (!input) return null;
    return {
      layout: input.layoutLabel,
      fmt: input.format.fmt,
      block: [input.format.block.bn, input.format.block.bk],
      weights: input.weights.size,
      weightDtypes: input.weightDtypes,
      scaleDtypes: input.scaleDtypes,
      perTensorScales: input.perTensor,
    };
  } catch (e) {
    if (!(e instanceof CheckpointError)) throw e;
    warnings.push(e.message);
    return null;
  }
}

/** One-line summaries for the inspect table. */
export function structureLines(mla: MlaStructure | null, experts: ExpertStructure | null, fp8: Fp8Structure | null): string[] {
  const lines: string[] = [];
  if (fp8) {
    lines.push(
      `  FP8: ${fp8.weights} weights (${fp8.weightDtypes.join('/')}), ${fp8.scaleDtypes.join('/')} scales, block ${fp8.block.join('x')}, fmt ${fp8.fmt}; ${fp8.layout}` +
        (fp8.perTensorScales > 0 ? `; ${fp8.perTensorScales} with one scale per tensor` : ''),
    );
  }
  if (mla) {
    lines.push(
      `  MLA: ${mla.heads} heads, kv_lora_rank ${mla.kvLoraRank}, q_lora_rank ${mla.qLoraRank ?? 'none'}, qk_nope ${mla.qkNopeHeadDim}, qk_rope ${mla.qkRopeHeadDim ?? '?'}, v ${mla.vHeadDim}; ` +
        `kv_b_proj in ${mla.kvBProjLayers} layers, w_uk/w_uv in ${mla.splitLayers}; --mla-split ${mla.alignedAt128 ? 'moves blocks at 128x128' : `needs ${mla.alignedBlock} to move blocks (own grids at 128x128)`}`,
    );
  }
  if (experts) {
    const groups = new Map<string, number>();
    for (const s of experts.sets) {
      const key =
        s.storage === 'stacked'
          ? `${s.experts} experts stacked: ${s.stacked.map((t) => `${t.name.split('.experts.').pop()} ${t.dtype}[${t.shape.join(',')}] ${t.layout === 'out_in' ? '(out × in)' : '(in × out)'}`).join(', ')}`
          : `${s.experts} experts per-expert: ${s.projections.join(', ')}`;
      groups.set(key, (groups.get(key) ?? 0) + 1);
    }
    lines.push(`  MoE: ${experts.configExperts ?? '?'} routed experts per layer (config); ${experts.sets.length} expert sets`);
    for (const [k, n] of groups) lines.push(`    ${n} × ${k}`);
  }
  return lines;
}

export interface ModelStructure {
  readonly mla: MlaStructure | null;
  readonly experts: ExpertStructure | null;
  readonly fp8: Fp8Structure | null;
}

/** All three descriptions; what cannot be described becomes a warning. */
export function describeStructure(config: ModelConfig | undefined, tensors: readonly SourceTensor[], warnings: string[]): ModelStructure {
  let mla: MlaStructure | null = null;
  try {
    mla = describeMla(config, tensors);
  } catch (e) {
    if (!(e instanceof CheckpointError)) throw e;
    warnings.push(e.message);
  }
  return { mla, experts: describeExperts(config, tensors), fp8: describeFp8(config, tensors, warnings) };
}
