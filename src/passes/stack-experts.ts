// --stack-experts: per-expert HF weights (`experts.E.gate_proj` / `experts.E.w1` …) written as one
// stacked FP8 tensor per projection of each expert set, `[E, N, K]` with `[E, ceil(N/bn),
// ceil(K/bk)]` scales (BlockScaleQuantizeMixtralExperts' layout).
//
// Names: transformers 5.x's checkpoint conversion (src/transformers/conversion_mapping.py,
// huggingface/transformers) is the loader that reads stacked experts by name: for mixtral it
// merges `experts.*.w1` + `experts.*.w3` into `experts.gate_up_proj` (MergeModulelist(dim=0),
// Concatenate(dim=1): gate rows then up rows per expert) and `experts.*.w2` into
// `experts.down_proj`; qwen2_moe, qwen3_moe, deepseek_v2/v3, olmoe, glm4_moe … do the same from
// `gate_proj` + `up_proj` / `down_proj`. Its FP8 experts name the scales `gate_up_proj_scale_inv`
// and `down_proj_scale_inv` (integrations/finegrained_fp8.py). A checkpoint whose keys already are
// these names loads without conversion, so fp8q writes `<experts>.gate_up_proj` [E, 2I, H] and
// `<experts>.down_proj` [E, H, I] with `_scale_inv` beside them. vLLM/SGLang's `w13_weight` /
// `w2_weight` are the same stacks but are their in-memory parameter names, built from per-expert
// checkpoint tensors by `expert_params_mapping`; no checkpoint is expected to hold them, so fp8q
// does not write them. The experts container keeps its source path (Mixtral's
// `block_sparse_moe.experts`; transformers 5 calls that module `mlp`, a rename fp8q does not do).
//
// A set is stacked only when every expert 0..E-1 has the projection, all with one shape, all
// quantized, and the experts carry no other parameters (a per-expert bias would be left behind).

import { ceilDiv } from '../fp8/block-quantize.js';
import { fp8FormatInfo } from '../fp8/formats.js';
import { naturalCompare } from './module-tree.js';
import {
  plannedOutput,
  type ConvertPlan,
  type ModuleDecision,
  type PlanEntry,
  type QuantizationSettings,
  type QuantizeEntry,
  type SourceTensor,
  type StackExpertsEntry,
} from './plan.js';

/** Per-expert projection names → their role (transformers' conversion_mapping: w1 gate, w3 up, w2 down). */
const ROLE: Readonly<Record<string, 'gate' | 'up' | 'down'>> = {
  gate_proj: 'gate',
  w1: 'gate',
  up_proj: 'up',
  w3: 'up',
  down_proj: 'down',
  w2: 'down',
};

const PER_EXPERT = /^(.*\.experts)\.(\d+)\.([^.]+)$/;

interface ExpertSet {
  readonly container: string;
  /** projection name → expert index → its quantize entry. */
  readonly projections: Map<string, Map<number, QuantizeEntry>>;
}

/**
 * The --stack-experts sub-pass: a plan whose per-expert quantize entries (and their module
 * decisions) are replaced by one stack-experts entry per projection of each stackable expert set.
 * `tensors` are the checkpoint's, to see parameters an expert carries besides its weights.
 */
export function stackExpertsPass(plan: ConvertPlan, tensors: readonly SourceTensor[]): ConvertPlan {
  const warnings = [...plan.warnings];
  const stacking = stackPerExpertWeights(plan.entries, plan.modules, tensors, plan.settings, warnings);
  return { ...plan, ...stacking, warnings };
}

function stackPerExpertWeights(
  entries: readonly PlanEntry[],
  modules: readonly ModuleDecision[],
  tensors: readonly SourceTensor[],
  settings: QuantizationSettings,
  warnings: string[],
): { entries: readonly PlanEntry[]; modules: readonly ModuleDecision[] } {
  const sets = new Map<string, ExpertSet>();
  for (const e of entries) {
    if (e.op !== 'quantize') continue;
    const m = PER_EXPERT.exec(e.module);
    if (!m) continue;
    const [, container, index, projection] = m as unknown as [string, string, string, string];
    let set = sets.get(container);
    if (!set) sets.set(container, (set = { container, projections: new Map() }));
    let byExpert = set.projections.get(projection);
    if (!byExpert) set.projections.set(projection, (byExpert = new Map()));
    byExpert.set(Number(index), e);
  }
  if (sets.size === 0) warnings.push('--stack-experts had no effect: the checkpoint has no per-expert MoE weights to stack');
  const fp8 = fp8FormatInfo(settings.format).dtype;
  const { bn, bk } = settings.block;
  const replaced = new Set<QuantizeEntry>();
  const stacked: StackExpertsEntry[] = [];
  const decisions: ModuleDecision[] = [];

  for (const set of [...sets.values()].sort((a, b) => naturalCompare(a.container, b.container))) {
    const refuse = (why: string): void => {
      warnings.push(`--stack-experts: ${set.container} stays per-expert: ${why}`);
    };
    const expertCount = Math.max(...[...set.projections.values()].map((m) => m.size));
    const extras = tensors.filter((t) => t.name.startsWith(`${set.container}.`) && PER_EXPERT.test(t.name.slice(0, t.name.lastIndexOf('.'))) && !t.name.endsWith('.weight'));
    if (extras.length > 0) {
      refuse(`its experts have other parameters (${extras[0]!.name}…) that a stacked weight would leave behind`);
      continue;
    }
    const keptExpert = modules.find((d) => d.decision === 'keep' && d.module.startsWith(`${set.container}.`));
    if (keptExpert) {
      refuse(`${keptExpert.module} is kept unquantized (${keptExpert.reason})`);
      continue;
    }
    const unknown = [...set.projections.keys()].filter((p) => ROLE[p] === undefined);
    if (unknown.length > 0) {
      refuse(`projection ${unknown.join(', ')} has no stacked name fp8q knows (gate_proj/up_proj/down_proj, w1/w3/w2)`);
      continue;
    }
    const byRole = new Map<string, string>();
    for (const p of set.projections.keys()) byRole.set(ROLE[p]!, p);
    const groups: { name: string; projections: string[] }[] = [];
    if (byRole.has('gate') !== byRole.has('up')) {
      refuse('it has a gate projection without an up projection (or the reverse)');
      continue;
    }
    if (byRole.has('gate')) groups.push({ name: 'gate_up_proj', projections: [byRole.get('gate')!, byRole.get('up')!] });
    if (byRole.has('down')) groups.push({ name: 'down_proj', projections: [byRole.get('down')!] });

    const planned: StackExpertsEntry[] = [];
    let problem: string | undefined;
    for (const g of groups) {
      const parts: string[][] = [];
      let k: number | undefined;
      let n = 0;
      for (let e = 0; e < expertCount && !problem; e++) {
        const row: string[] = [];
        let rows = 0;
        for (const p of g.projections) {
          const entry = set.projections.get(p)!.get(e);
          if (!entry) {
            problem = `expert ${e} has no ${p}`;
            break;
          }
          const shape = entry.outputs[0]!.shape;
          if (shape.length !== 2) problem = `${entry.sources[0]} is ${shape.length}-D`;
          else if (k !== undefined && shape[1] !== k) problem = `${entry.sources[0]} has ${shape[1]} columns, expert 0 has ${k}`;
          k ??= shape[1];
          rows += shape[0]!;
          row.push(entry.sources[0]!);
          replaced.add(entry);
        }
        if (!problem && e > 0 && rows !== n) problem = `expert ${e}'s ${g.projections.join(' + ')} has ${rows} rows, expert 0 has ${n}`;
        n = rows;
        parts.push(row);
      }
      if (problem) break;
      const name = `${set.container}.${g.name}`;
      planned.push({
        op: 'stack-experts',
        module: name,
        kind: 'BlockScaleQuantizeMixtralExperts',
        parts,
        sources: parts.flat(),
        outputs: [plannedOutput(name, fp8, [expertCount, n, k!]), plannedOutput(`${name}_scale_inv`, 'F32', [expertCount, ceilDiv(n, bn), ceilDiv(k!, bk)])],
      });
    }
    if (problem) {
      for (const p of set.projections.values()) for (const e of p.values()) replaced.delete(e);
      refuse(problem);
      continue;
    }
    stacked.push(...planned);
    for (const s of planned) {
      decisions.push({
        module: s.module,
        decision: 'BlockScaleQuantizeMixtralExperts',
        reason: `stacked from ${expertCount} experts' ${s.parts[0]!.map((x) => x.split('.').slice(-2, -1)[0]).join(' + ')} (--stack-experts)`,
      });
    }
  }

  if (replaced.size === 0) return { entries, modules };
  const replacedModules = new Set([...replaced].map((e) => e.module));
  const kept = entries.filter((e) => !(e.op === 'quantize' && replaced.has(e)));
  const keptDecisions = modules.filter((d) => !replacedModules.has(d.module));
  return { entries: [...kept, ...stacked], modules: [...keptDecisions, ...decisions] };
}
