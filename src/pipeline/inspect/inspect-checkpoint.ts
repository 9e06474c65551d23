// `fp8q inspect` as data: what a checkpoint holds (dtypes, parameters, bytes), its quantization
// config, and — for a source checkpoint — which tensors a convert would quantize.

import { blockScaleQuantizePass, detectQuantizedInput } from '../../passes/block-scale-quantize.js';
import { detectArchitecture } from '../../passes/architectures.js';
import { describeFp8Input } from '../../passes/fp8-input.js';
import type { PlanRecipe } from '../../passes/plan.js';
import { recipeOf, SHARED_RULES } from '../../passes/family-recipes.js';
import { describeStructure, type ExpertStructure, type Fp8Structure, type MlaStructure } from '../../passes/model-structure.js';
import { Checkpoint } from '../../io/checkpoint/checkpoint.js';
import { CheckpointError } from '../../io/errors.js';
import { checkFp8Scale } from '../../io/formats/float-rows.js';
import { detectQuantizedFormat, type QuantizedFormat } from '../../io/formats/quantized-format.js';
import { elementCount } from '../../io/safetensors/safetensors-reader.js';
import { describeUnusableScales, surveyScales, ue8m0Mismatch, type ScaleSurvey } from '../../io/formats/scale-survey.js';

export interface DtypeGroup {
  readonly dtype: string;
  readonly tensors: number;
  readonly parameters: number;
  readonly bytes: number;
}

export interface InspectReport {
  readonly dir: string;
  readonly architecture: string;
  readonly family: string | null;
  /** The known family's convert recipe (its name, the release it was checked against, its decisions), or null. */
  readonly recipe: (PlanRecipe & { readonly sharedRules: string }) | null;
  readonly shards: readonly string[];
  readonly tensors: number;
  readonly parameters: number;
  readonly bytes: number;
  readonly byDtype: readonly DtypeGroup[];
  readonly quantizationConfig: unknown;
  /** Set when the checkpoint is already quantized. */
  readonly quantizedBy: string | null;
  /** For an FP8 checkpoint fp8q can read: its layout (hf or compressed-tensors), block, fmt, ignore list. */
  readonly quantizedFormat: QuantizedFormat | null;
  /** For an FP8 checkpoint: the scale format declared and the one its values show (float or ue8m0). */
  readonly scales: ScaleSurvey | null;
  /** For a source checkpoint: the modules a convert with default settings would quantize. */
  readonly wouldQuantize: readonly string[];
  readonly wouldKeep: readonly { module: string; reason: string }[];
  /** MLA attention found (config.json's kv_lora_rank and the kv_b_proj / w_uk tensors), or null. */
  readonly mla: MlaStructure | null;
  /** MoE expert sets found: per-expert or stacked, and the stacked tensors' layout; or null. */
  readonly experts: ExpertStructure | null;
  /** For an FP8 checkpoint: layout, block, weight and scale dtypes. */
  readonly fp8: Fp8Structure | null;
  readonly warnings: readonly string[];
}

export async function inspectCheckpoint(dir: string): Promise<InspectReport> {
  // inspect describes: a tensor the index leaves out is a finding (a warning), not a failure.
  const ckpt = await Checkpoint.open(dir, { allowUnindexed: true });
  try {
    const infos = ckpt.tensorNames().map((n) => ckpt.info(n));
    const groups = new Map<string, { tensors: number; parameters: number; bytes: number }>();
    let parameters = 0;
    let bytes = 0;
    for (const t of infos) {
      const g = groups.get(t.dtype) ?? { tensors: 0, parameters: 0, bytes: 0 };
      const n = elementCount(t.shape);
      g.tensors++;
      g.parameters += n;
      g.bytes += t.byteLength;
      groups.set(t.dtype, g);
      parameters += n;
      bytes += t.byteLength;
    }
    const arch = detectArchitecture(ckpt.config);
    const quantizedBy = detectQuantizedInput(ckpt.config, infos) ?? null;
    const warnings: string[] = [...(ckpt.configProblem ? [ckpt.configProblem] : []), ...ckpt.problems];
    let wouldQuantize: string[] = [];
    let wouldKeep: { module: string; reason: string }[] = [];
    let quantizedFormat: QuantizedFormat | null = null;
    let scales: ScaleSurvey | null = null;
    if (quantizedBy) {
      try {
        quantizedFormat = detectQuantizedFormat(ckpt.config, ckpt.tensorNames()) ?? null;
        if (quantizedFormat) scales = await surveyScales(ckpt, quantizedFormat);
        // What dequant and --requantize would refuse (a scale of the wrong shape …) is a finding here.
        const fp8Input = describeFp8Input(ckpt.config, infos);
        for (const [name, ref] of fp8Input?.weights ?? []) {
          try {
            checkFp8Scale(ckpt, name, ref);
          } catch (e) {
            if (!(e instanceof CheckpointError)) throw e;
            warnings.push(`${e.message} (fp8q dequant refuses it)`);
            break;
          }
        }
      } catch (e) {
        // inspect describes what it can; an unreadable quantization is a finding, not a crash.
        if (!(e instanceof CheckpointError)) throw e;
        warnings.push(e.message);
      }
      const mismatch = scales ? ue8m0Mismatch(scales) : undefined;
      if (mismatch) warnings.push(mismatch);
      const unusable = scales ? describeUnusableScales({ count: scales.unusable, first: scales.firstUnusable }) : undefined;
      if (unusable) warnings.push(`${unusable} (fp8q dequant refuses it unless --allow-nonfinite)`);
    } else {
      const plan = blockScaleQuantizePass(ckpt.config, infos, {
        settings: { format: 'e4m3fn', block: { bn: 128, bk: 128 }, scaleFormat: 'float', activationScheme: 'dynamic' },
      });
      wouldQuantize = plan.modules.filter((m) => m.decision !== 'keep').map((m) => m.module);
      wouldKeep = plan.modules.filter((m) => m.decision === 'keep').map((m) => ({ module: m.module, reason: m.reason }));
      warnings.push(...plan.warnings);
    }
    const structure = describeStructure(ckpt.config, infos, warnings);
    return {
      dir,
      architecture: arch.label,
      family: arch.family ?? null,
      recipe: arch.family ? (({ name, checkedAgainst, notes }) => ({ name, checkedAgainst, notes, sharedRules: SHARED_RULES }))(recipeOf(arch.family)) : null,
      shards: ckpt.shardNames,
      tensors: infos.length,
      parameters,
      bytes,
      byDtype: [...groups.entries()].map(([dtype, g]) => ({ dtype, ...g })).sort((a, b) => b.bytes - a.bytes),
      quantizationConfig: ckpt.config?.['quantization_config'] ?? null,
      quantizedBy,
      quantizedFormat,
      scales,
      wouldQuantize,
      wouldKeep,
      ...structure,
      warnings,
    };
  } finally {
    await ckpt.close();
  }
}
