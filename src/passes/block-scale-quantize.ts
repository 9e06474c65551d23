// The BlockScaleQuantize pass: walks the module tree and decides, module by module, what becomes
// FP8, in MLC LLM's order (opt-out → final FC / router → Linear → MoE experts), producing a
// ConvertPlan. No bytes are read here: only names, dtypes, shapes and config.json.

import { isFloatSourceDtype, isFp8Dtype } from '../fp8/dtypes.js';
import type { ModelConfig } from '../io/checkpoint/checkpoint.js';
import { detectArchitecture } from './architectures.js';
import { buildModuleTree, walkModules, type ModuleNode } from './module-tree.js';
import { plannedOutput, type ConvertPlan, type ModuleDecision, type PlanEntry, type QuantizationSettings, type QuantizedModuleKind, type SourceTensor } from './plan.js';
import { compileExcludePattern, isEmbedding, isFinalFc, isMoeRouter, type ExcludePattern } from './skip-rules.js';
import { fusedExpertAliases, planQuantizeEntry } from './fused-experts.js';
import { mlaSplitPass } from './mla-split.js';
import { stackExpertsPass } from './stack-experts.js';
import { modalityModule, recipeOf, type FamilyRecipe } from './family-recipes.js';

export type { SourceTensor } from './plan.js';

export interface PassOptions {
  readonly settings: QuantizationSettings;
  /** User --exclude patterns (plain module suffixes or `re:` regular expressions). */
  readonly exclude?: readonly string[];
  /**
   * --include patterns (same syntax): modules the architecture's recipe would keep (vision towers,
   * projectors, a family's kept projections, the generic vision/audio rule) are quantized instead.
   * --exclude, embeddings, lm_head and routers still win.
   */
  readonly include?: readonly string[];
  /** Also write MLA's w_uk / w_uv (passes/mla-split.ts). */
  readonly mlaSplit?: boolean;
  /** Write per-expert weights as one stacked [E, N, K] tensor per projection (passes/stack-experts.ts). */
  readonly stackExperts?: boolean;
}

/** The input is already quantized; converting it again would quantize FP8 codes as numbers. */
export class AlreadyQuantizedError extends Error {
  constructor(detail: string) {
    super(
      `the input is already FP8-quantized (${detail}): pass --requantize to quantize it again through its dequantized values ` +
        `(another block size or dtype), or write a BF16 copy first with \`fp8q dequant <dir> -o <bf16-dir>\`; or convert the original BF16/FP16 checkpoint`,
    );
    this.name = 'AlreadyQuantizedError';
  }
}

export function sourceModulesToNotConvert(config: ModelConfig | undefined): string[] {
  const qc = config?.['quantization_config'];
  const fromQc = typeof qc === 'object' && qc !== null ? (qc as Record<string, unknown>)['modules_to_not_convert'] : undefined;
  const list = fromQc ?? config?.['modules_to_not_convert'];
  return Array.isArray(list) ? list.filter((x): x is string => typeof x === 'string') : [];
}

/** Detect FP8 input: a quantization_config, FP8 tensors, or weight_scale_inv tensors. */
export function detectQuantizedInput(config: ModelConfig | undefined, tensors: readonly SourceTensor[]): string | undefined {
  const qc = config?.['quantization_config'];
  if (typeof qc === 'object' && qc !== null) {
    const method = (qc as Record<string, unknown>)['quant_method'];
    return `config.json has quantization_config with quant_method ${JSON.stringify(method)}`;
  }
  const fp8 = tensors.find((t) => isFp8Dtype(t.dtype));
  if (fp8) return `tensor "${fp8.name}" is ${fp8.dtype}`;
  const scale = tensors.find((t) => t.name.endsWith('.weight_scale_inv') || t.name.endsWith('.weight_scale'));
  if (scale) return `tensor "${scale.name}" is a quantization scale`;
  return undefined;
}

/**
 * An MoE expert weight: per-expert (`experts.3.w1`) or a fused stack under `experts`
 * (`experts.gate_up_proj`, 3-D). `shared_experts` / `shared_expert` are ordinary linears.
 */
function isExpertModule(path: string): boolean {
  return /(^|\.)experts(\.|$)/.test(path);
}

function moduleKind(path: string, settings: QuantizationSettings): QuantizedModuleKind {
  if (isExpertModule(path)) return 'BlockScaleQuantizeMixtralExperts';
  return settings.activationScheme === 'static' ? 'BlockScaleQuantizeLinearStaticActivation' : 'BlockScaleQuantizeLinear';
}

export function blockScaleQuantizePass(config: ModelConfig | undefined, tensors: readonly SourceTensor[], options: PassOptions): ConvertPlan {
  const quantizedBy = detectQuantizedInput(config, tensors);
  if (quantizedBy) throw new AlreadyQuantizedError(quantizedBy);

  const { settings } = options;
  const arch = detectArchitecture(config);
  const warnings: string[] = [];
  if (!config) warnings.push('no usable config.json: converting by the generic rules (every 2-D weight except embeddings, lm_head and routers)');
  else if (!arch.family) {
    warnings.push(`architecture ${arch.label} is not one fp8q knows (${KNOWN_FAMILIES}): converting by the generic rules; check the plan with --dry-run`);
  }
  const recipe: FamilyRecipe | undefined = arch.family ? recipeOf(arch.family) : undefined;
  const excludes: ExcludePattern[] = [...(options.exclude ?? []).map((p) => compileExcludePattern(p)), ...sourceModulesToNotConvert(config).map((p) => compileExcludePattern(p))];
  const includes: ExcludePattern[] = (options.include ?? []).map((p) => compileExcludePattern(p, '--include'));
  /** Unknown architectures: modules kept by the vision/audio/projector rule, by their topmost such module. */
  const modalityKept = new Map<string, number>();
  const byName = new Map(tensors.map((t) => [t.name, t]));
  // Fused experts stored without `.weight` (`mlp.experts.gate_up_proj`) enter the tree as `<name>.weight`.
  const aliases = fusedExpertAliases(tensors);
  for (const [alias, real] of aliases) byName.set(alias, byName.get(real)!);
  const tree = buildModuleTree([...tensors.map((t) => t.name).filter((n) => !aliases.has(`${n}.weight`)), ...aliases.keys()]);

  const entries: PlanEntry[] = [];
  const modules: ModuleDecision[] = [];
  const notConverted: string[] = [];
  const handled = new Set<string>();

  const keep = (node: ModuleNode, reason: string): void => {
    modules.push({ module: node.path, decision: 'keep', reason });
    notConverted.push(node.path);
  };

  for (const node of walkModules(tree)) {
    const weightName = node.params.get('weight');
    if (weightName === undefined) continue;
    const weight = byName.get(weightName)!;
    const rank = weight.shape.length;
    if (rank !== 2 && rank !== 3) continue; // norms, biases, scalars: copied below
    if (isEmbedding(node.path)) {
      modules.push({ module: node.path, decision: 'keep', reason: 'embedding' });
      continue;
    }
    if (rank === 3 && !isExpertModule(node.path)) {
      // Outside an expert set a 3-D weight is a convolution (Mamba's conv1d), not a Linear.
      modules.push({ module: node.path, decision: 'keep', reason: '3-D weight outside an expert set (not a Linear)' });
      continue;
    }
    const excluded = excludes.find((p) => p.matches(node.path));
    if (excluded) {
      keep(node, `excluded by "${excluded.source}"`);
      continue;
    }
    if (isFinalFc(node.path)) {
      keep(node, 'final FC (lm_head)');
      continue;
    }
    if (!includes.some((p) => p.matches(node.path))) {
      const rule = recipe?.keeps.find((r) => r.pattern.test(node.path));
      if (rule) {
        keep(node, rule.reason);
        continue;
      }
      const group = recipe === undefined ? modalityModule(node.path) : undefined;
      if (group !== undefined) {
        keep(node, `under ${group}: a vision/audio/image/projector module of an unknown architecture`);
        modalityKept.set(group, (modalityKept.get(group) ?? 0) + 1);
        continue;
      }
    }
    if (isMoeRouter(node.path, weight.shape[rank - 2]!, arch.isMoe)) {
      keep(node, 'MoE router');
      continue;
    }
    if (!isFloatSourceDtype(weight.dtype)) {
      keep(node, `dtype ${weight.dtype} is not a float`);
      continue;
    }
    if (weight.shape.some((d) => d === 0)) {
      keep(node, 'empty weight');
      continue;
    }
    const kind = moduleKind(node.path, settings);
    // Orientation of fused experts ([E, N, K] or [E, K, N]) and their scale names: passes/fused-experts.ts.
    const planned = planQuantizeEntry({
      config,
      module: node.path,
      kind,
      source: { ...weight, name: aliases.get(weightName) ?? weightName },
      suffixless: aliases.has(weightName),
      settings,
      siblings: tensors,
    });
    if (planned.warning) warnings.push(planned.warning);
    entries.push(planned.entry);
    modules.push({ module: node.path, decision: kind, reason: planned.reason });
    handled.add(aliases.get(weightName) ?? weightName);
  }
  // The quantize decisions as a plan; the sub-passes (plan → plan) rework it before the copies join.
  let plan: ConvertPlan = {
    architecture: arch.label,
    family: arch.family,
    ...(recipe ? { recipe: { name: recipe.name, checkedAgainst: recipe.checkedAgainst, notes: recipe.notes } } : {}),
    settings,
    entries,
    modules,
    notConverted,
    warnings,
  };
  if (options.stackExperts) plan = stackExpertsPass(plan, tensors);
  if (options.mlaSplit) plan = mlaSplitPass(plan, config, tensors);
  return withCopiesAndNotes(plan, tensors, options, recipe, modalityKept, handled);
}

/** Completes a plan: notes on --exclude and kept modality modules, the tied lm_head, and a copy entry for every tensor not in `handled` (quantized). */
function withCopiesAndNotes(
  plan: ConvertPlan,
  tensors: readonly SourceTensor[],
  options: PassOptions,
  recipe: FamilyRecipe | undefined,
  modalityKept: ReadonlyMap<string, number>,
  handled: ReadonlySet<string>,
): ConvertPlan {
  const warnings = [...plan.warnings];
  const notConverted = [...plan.notConverted];
  const entries = [...plan.entries];
  const { modules } = plan;
  warnings.push(...unmatchedExcludes(options.exclude ?? [], modules, tensors));
  if (modalityKept.size > 0) {
    const groups = [...modalityKept].map(([g, n]) => `${g} (${n} module${n === 1 ? '' : 's'})`).join(', ');
    warnings.push(`kept in the source dtype as vision/audio/image/projector modules of an unknown architecture: ${groups}; pass --include <pattern> to quantize them`);
  }

  // Tied embeddings (no head tensor): loaders still build an lm_head Linear, sharing the embedding's
  // weight, and would create it as FP8 (with a scale the checkpoint does not have) unless it is listed.
  const moduleOf = (name: string): string => name.slice(0, name.lastIndexOf('.'));
  const tied = tensors.some((t) => isEmbedding(moduleOf(t.name))) && !tensors.some((t) => isFinalFc(moduleOf(t.name)));
  if (tied && !notConverted.includes('lm_head')) {
    notConverted.push('lm_head');
  }

  const reasons = new Map(modules.map((m) => [m.module, m.reason]));
  for (const t of tensors) {
    if (handled.has(t.name)) continue;
    entries.push({ op: 'copy', reason: copyReason(t, reasons, recipe), sources: [t.name], outputs: [plannedOutput(t.name, t.dtype, t.shape)] });
  }

  return { ...plan, entries, notConverted, warnings };
}

/** --exclude patterns that match no module of the checkpoint: a typo would otherwise go unnoticed. */
export function unmatchedExcludes(patterns: readonly string[], modules: readonly ModuleDecision[], tensors: readonly SourceTensor[]): string[] {
  const paths = new Set(modules.map((m) => m.module));
  for (const t of tensors) if (t.name.includes('.')) paths.add(t.name.slice(0, t.name.lastIndexOf('.')));
  const out: string[] = [];
  for (const source of patterns) {
    const p = compileExcludePattern(source);
    if ([...paths].some((path) => p.matches(path))) continue;
    const hint = /\.(weight|bias)$/.test(source) ? `; drop "${source.slice(source.lastIndexOf('.'))}": patterns name modules, not tensors` : '';
    out.push(`--exclude "${source}" matched no module, so it had no effect (patterns are a module path or its dotted suffix, e.g. mlp.down_proj, or re:<regex>${hint})`);
  }
  return out;
}

function copyReason(t: SourceTensor, moduleReasons: ReadonlyMap<string, string>, recipe: FamilyRecipe | undefined): string {
  if (t.shape.length < 2) return t.shape.length === 1 ? '1-D' : 'scalar';
  const module = t.name.slice(0, t.name.lastIndexOf('.'));
  const decided = moduleReasons.get(module);
  if (decided !== undefined) return decided;
  // A bare parameter inside a kept subtree (Gemma 3's multi_modal_projector.mm_input_projection_weight).
  const rule = recipe?.keeps.find((r) => r.pattern.test(module));
  return rule ? rule.reason : 'not a module weight';
}

const KNOWN_FAMILIES =
  'Llama, Mistral, Qwen2/3, Mixtral, Qwen2/3-MoE, DeepSeek-V2/V3/V3.2, Qwen2.5-VL, Qwen3-VL(-MoE), Mistral 3, Gemma 3, Llama 4, GLM-4.5, Qwen3-Next, gpt-oss, MiniMax-M2';
