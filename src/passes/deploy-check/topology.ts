// How engines split each linear under tensor parallelism, from its module name and config.json:
// column-parallel (output rows split), row-parallel (input columns split) or replicated, and which
// linears an engine merges into one GEMM (q/k/v → qkv_proj, gate/up → gate_up_proj, MLA's
// q_a/kv_a → fused_qkv_a_proj), whose parts each need their own block alignment.

import type { ModelConfig } from '../../io/checkpoint/checkpoint.js';
import { numberField } from '../architectures.js';
import type { QuantizedLinear } from './inventory.js';

export type ParallelRole = 'column' | 'row' | 'replicated';

const COLUMN = new Set([
  'q_proj',
  'k_proj',
  'v_proj',
  'gate_proj',
  'up_proj',
  'w1',
  'w3',
  'q_b_proj',
  'kv_b_proj',
  'qkv_proj',
  'gate_up_proj',
  'query_key_value',
  'qkv',
  'fc1',
  'c_fc',
  'c_attn',
  'linear_fc1',
  'in_proj',
]);
const ROW = new Set(['o_proj', 'down_proj', 'w2', 'out_proj', 'fc2', 'c_proj', 'dense', 'proj', 'linear_fc2']);

export function leafOf(module: string): string {
  return module.slice(module.lastIndexOf('.') + 1);
}

export function parentOf(module: string): string {
  const i = module.lastIndexOf('.');
  return i < 0 ? '' : module.slice(0, i);
}

export function parallelRole(module: string): ParallelRole {
  const leaf = leafOf(module);
  if (COLUMN.has(leaf)) return 'column';
  if (ROW.has(leaf)) return 'row';
  return 'replicated';
}

/** A routed expert's weight (per-expert `experts.3.w1` or stacked `experts.gate_up_proj`); shared experts are ordinary MLPs. */
export function isRoutedExpert(module: string): boolean {
  return /(^|\.)experts(\.|$)/.test(module);
}

/** The expert set a routed expert weight belongs to (`model.layers.3.mlp.experts`). */
export function expertSetOf(module: string): string {
  const i = module.lastIndexOf('.experts');
  return module.slice(0, i + '.experts'.length);
}

/** Layer and expert indices replaced by `*`: one row per distinct kind of tensor in reports. */
export function patternOf(name: string): string {
  let p = patternCache.get(name);
  if (p === undefined) {
    // Checks run every rule over ~10^5 names per engine and TP size: compute each pattern once.
    if (patternCache.size > 1_000_000) patternCache.clear();
    p = name.replace(/\.\d+(?=\.|$)/g, '.*');
    patternCache.set(name, p);
  }
  return p;
}

const patternCache = new Map<string, string>();

export interface AttentionShape {
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
}

/** The config a module reads its attention shape from: vision towers have their own, VLMs nest the text one. */
function configFor(config: ModelConfig | undefined, module: string): ModelConfig | undefined {
  const nested = (key: string): ModelConfig | undefined => {
    const v = config?.[key];
    return typeof v === 'object' && v !== null ? (v as ModelConfig) : undefined;
  };
  if (/(^|\.)(visual|vision_tower|vision_model|vision_encoder)(\.|$)/.test(module)) return nested('vision_config');
  return nested('text_config') ?? config;
}

export function attentionShape(config: ModelConfig | undefined, module: string, qRows: number): AttentionShape | undefined {
  const c = configFor(config, module);
  const heads = numberField(c, 'num_attention_heads', 'num_heads', 'n_heads');
  if (heads === undefined || heads <= 0) return undefined;
  const kvHeads = numberField(c, 'num_key_value_heads', 'n_kv_heads') ?? heads;
  const headDim = numberField(c, 'head_dim') ?? (qRows % heads === 0 ? qRows / heads : undefined);
  if (headDim === undefined || headDim <= 0) return undefined;
  return { heads, kvHeads, headDim };
}

/** Linears an engine merges into one GEMM; parts in the engine's order. */
export interface MergedGroup {
  readonly kind: 'qkv' | 'gate_up' | 'qkv_a';
  /** The merged module's name in the engine (`…self_attn.qkv_proj`). */
  readonly merged: string;
  readonly parts: readonly QuantizedLinear[];
}

const MERGES: readonly { kind: MergedGroup['kind']; leaves: readonly string[]; merged: string }[] = [
  { kind: 'qkv', leaves: ['q_proj', 'k_proj', 'v_proj'], merged: 'qkv_proj' },
  { kind: 'gate_up', leaves: ['gate_proj', 'up_proj'], merged: 'gate_up_proj' },
  { kind: 'qkv_a', leaves: ['q_a_proj', 'kv_a_proj_with_mqa'], merged: 'fused_qkv_a_proj' },
];

/** Merged groups among non-expert linears, and the linears left on their own. */
export function mergedGroups(linears: readonly QuantizedLinear[]): { groups: MergedGroup[]; single: QuantizedLinear[] } {
  const byModule = new Map(linears.map((l) => [l.module, l]));
  const used = new Set<string>();
  const groups: MergedGroup[] = [];
  for (const l of linears) {
    if (used.has(l.module) || isRoutedExpert(l.module)) continue;
    const leaf = leafOf(l.module);
    const merge = MERGES.find((m) => m.leaves[0] === leaf);
    if (!merge) continue;
    const parent = parentOf(l.module);
    const parts = merge.leaves.map((leafName) => byModule.get(parent === '' ? leafName : `${parent}.${leafName}`));
    if (parts.some((p) => p === undefined)) continue;
    for (const p of parts) used.add(p!.module);
    groups.push({ kind: merge.kind, merged: parent === '' ? merge.merged : `${parent}.${merge.merged}`, parts: parts as QuantizedLinear[] });
  }
  return { groups, single: linears.filter((l) => !used.has(l.module) && !isRoutedExpert(l.module)) };
}

/** Merge partners of a module (for "kept in part" checks): the sibling leaves an engine fuses with it. */
export function mergePartners(module: string): { merged: string; members: string[] } | undefined {
  const leaf = leafOf(module);
  const merge = MERGES.find((m) => m.leaves.includes(leaf));
  if (!merge) return undefined;
  const parent = parentOf(module);
  const join = (x: string): string => (parent === '' ? x : `${parent}.${x}`);
  return { merged: join(merge.merged), members: merge.leaves.map(join) };
}

/** Per-expert intermediate size I of an expert weight (gate/up: N, or N/2 for a stacked gate_up; down: K). */
export function expertIntermediate(l: QuantizedLinear): { intermediate: number; side: 'gate_up' | 'down' } {
  const leaf = leafOf(l.module);
  if (leaf === 'down_proj' || leaf === 'w2') return { intermediate: l.inFeatures, side: 'down' };
  if (leaf === 'gate_up_proj') return { intermediate: l.outFeatures / 2, side: 'gate_up' };
  return { intermediate: l.outFeatures, side: 'gate_up' };
}
