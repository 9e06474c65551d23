// The BlockScaleQuantize pass: walks the module tree and decides, module by module, what becomes
// FP8, in MLC LLM's order (opt-out → final FC / router → Linear → MoE experts), producing a
// ConvertPlan. No bytes are read here: only names, dtypes, shapes and config.json.

import { ceilDiv } from '../fp8/block-quantize.js';
import { isFloatSourceDtype, isFp8Dtype, type Dtype } from '../fp8/dtypes.js';
import { fp8FormatInfo } from '../fp8/formats.js';
import type { ModelConfig } from '../io/checkpoint.js';
import { detectArchitecture } from './architectures.js';
import { buildModuleTree, walkModules, type ModuleNode } from './module-tree.js';
import {
  plannedOutput,
  type ConvertPlan,
  type ModuleDecision,
  type PlanEntry,
  type QuantizationSettings,
  type QuantizedModuleKind,
} from './plan.js';
import { compileExcludePattern, isEmbedding, isFinalFc, isMoeRouter, type ExcludePattern } from './skip-rules.js';

export interface SourceTensor {
  readonly name: string;
  readonly dtype: Dtype;
  readonly shape: readonly number[];
}

export interface PassOptions {
  readonly settings: QuantizationSettings;
  /** User --exclude patterns (plain module suffixes or `re:` regular expressions). */
  readonly exclude?: readonly string[];
}

/** The input is already quantized; converting it again would quantize FP8 codes as numbers. */
export class AlreadyQuantizedError extends Error {
  constructor(detail: string) {
    super(`the input is already FP8-quantized (${detail}); convert the original BF16/FP16 checkpoint instead`);
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

function moduleKind(path: string, settings: QuantizationSettings): QuantizedModuleKind {
  if (/(^|\.)experts\.\d+(\.|$)/.test(path) || /(^|\.)experts$/.test(path)) return 'BlockScaleQuantizeMixtralExperts';
  return settings.activationScheme === 'static' ? 'BlockScaleQuantizeLinearStaticActivation' : 'BlockScaleQuantizeLinear';
}

export function blockScaleQuantizePass(
  config: ModelConfig | undefined,
  tensors: readonly SourceTensor[],
  options: PassOptions,
): ConvertPlan {
  const quantizedBy = detectQuantizedInput(config, tensors);
  if (quantizedBy) throw new AlreadyQuantizedError(quantizedBy);

  const { settings } = options;
  const arch = detectArchitecture(config);
  const warnings: string[] = [];
  if (!config) warnings.push('no usable config.json: converting by the generic rules (every 2-D weight except embeddings, lm_head and routers)');
  else if (!arch.family) {
    warnings.push(`architecture ${arch.label} is not one fp8q knows (Llama, Mistral, Qwen2/3, Mixtral, Qwen2/3-MoE, DeepSeek-V2/V3): converting by the generic rules; check the plan with --dry-run`);
  }
  const excludes: ExcludePattern[] = [
    ...(options.exclude ?? []).map(compileExcludePattern),
    ...sourceModulesToNotConvert(config).map(compileExcludePattern),
  ];
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const tree = buildModuleTree(tensors.map((t) => t.name));
  const fmt = fp8FormatInfo(settings.format);
  const { bn, bk } = settings.block;

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
    const excluded = excludes.find((p) => p.matches(node.path));
    if (excluded) {
      keep(node, `excluded by "${excluded.source}"`);
      continue;
    }
    if (isFinalFc(node.path)) {
      keep(node, 'final FC (lm_head)');
      continue;
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
    const lead = rank === 3 ? [weight.shape[0]!] : [];
    const n = weight.shape[rank - 2]!;
    const k = weight.shape[rank - 1]!;
    entries.push({
      op: 'quantize',
      module: node.path,
      kind,
      sources: [weightName],
      outputs: [
        plannedOutput(weightName, fmt.dtype, weight.shape),
        plannedOutput(`${node.path}.weight_scale_inv`, 'F32', [...lead, ceilDiv(n, bn), ceilDiv(k, bk)]),
      ],
    });
    modules.push({ module: node.path, decision: kind, reason: rank === 3 ? 'stacked experts' : 'linear' });
    handled.add(weightName);
  }

  const reasons = new Map(modules.map((m) => [m.module, m.reason]));
  for (const t of tensors) {
    if (handled.has(t.name)) continue;
    entries.push({ op: 'copy', reason: copyReason(t, reasons), sources: [t.name], outputs: [plannedOutput(t.name, t.dtype, t.shape)] });
  }

  return {
    architecture: arch.label,
    family: arch.family,
    settings,
    entries,
    modules,
    notConverted,
    warnings,
  };
}

function copyReason(t: SourceTensor, moduleReasons: ReadonlyMap<string, string>): string {
  if (t.shape.length < 2) return t.shape.length === 1 ? '1-D' : 'scalar';
  return moduleReasons.get(t.name.slice(0, t.name.lastIndexOf('.'))) ?? 'not a module weight';
}
