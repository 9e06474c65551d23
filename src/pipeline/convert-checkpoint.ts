// `fp8q convert` as a library call: open → plan → validate destination → (static activations:
// calibrate) → writePlan (write-plan.ts: shards, index, config and companion files in a staging
// folder, then rename). Progress is reported as typed events; this module never writes to the
// terminal.

import { selectCompanionFiles } from '../io/checkpoint/companion-files.js';
import { countNonFiniteInTensor, type NonFiniteReport } from '../io/checkpoint/nonfinite-count.js';
import { performance } from 'node:perf_hooks';
import type { BlockShape, ScaleFormat } from '../fp8/block-quantize.js';
import type { Fp8Format } from '../fp8/formats.js';
import { blockScaleQuantizePass } from '../passes/block-scale-quantize.js';
import { requantizePass } from '../passes/fp8-plans.js';
import { planTotals, type ConvertPlan, type PlannedOutput } from '../passes/plan.js';
import { deployCheck, DeployTargetError, failingTargets, inventoryFromPlan, withTargetKeys, type DeployReport, type DeployTarget } from '../passes/deploy-check/index.js';
import { Checkpoint, INDEX_FILE } from '../io/checkpoint/checkpoint.js';
import { CheckpointError } from '../io/errors.js';
import type { CheckpointFormat } from '../io/formats/descriptor.js';
import { applyOutputFormat, type WrittenQuantizationConfig } from './output-format.js';
import { checkOutputDestination } from './output-folder.js';
import { writePlan, type WrittenShard } from './write-plan.js';
import {
  measureStaticActivationScales,
  readStaticCalibration,
  requireCalibration,
  staticActivationPlan,
  type CalibrationSummary,
  type StaticActivationEvent,
  type StaticActivationOptions,
} from './static-activation.js';

export { DEFAULT_MAX_SHARD_BYTES, type WrittenShard } from './write-plan.js';

export interface ConvertOptions {
  readonly input: string;
  readonly output: string;
  readonly format?: Fp8Format;
  readonly block?: BlockShape;
  readonly scaleFormat?: ScaleFormat;
  /** On-disk layout: 'hf' (weight_scale_inv, quant_method fp8; default) or 'compressed-tensors'. */
  readonly outputFormat?: CheckpointFormat;
  readonly exclude?: readonly string[];
  /** Quantize modules the architecture's recipe would keep (vision towers, projectors, …); see passes/family-recipes.ts. */
  readonly include?: readonly string[];
  readonly maxShardBytes?: number;
  readonly dryRun?: boolean;
  readonly force?: boolean;
  readonly allowNonFinite?: boolean;
  /** A tensor a shard holds but the index does not list: a warning (left out) instead of an error. */
  readonly allowUnindexed?: boolean;
  /** Worker threads quantizing (default: available cores); 0 runs the reference executors on the main thread. */
  readonly threads?: number;
  /** Compute each output shard's SHA-256 (the summary's `shards[].sha256`); costs about a core at disk speed. */
  readonly hashShards?: boolean;
  /** Also write DeepSeek MLA's w_uk / w_uv (passes/mla-split.ts). */
  readonly mlaSplit?: boolean;
  /** Write per-expert weights as one stacked [E, N, K] tensor per projection (passes/stack-experts.ts). */
  readonly stackExperts?: boolean;
  /** Accept an FP8 input: dequantize it to float32 on the fly and quantize again (passes/fp8-plans.ts). */
  readonly requantize?: boolean;
  /** 'static' measures an activation_scale per quantized linear on `calibration` (pipeline/static-activation.ts). */
  readonly activationScheme?: 'dynamic' | 'static';
  readonly calibration?: StaticActivationOptions;
  /** Engines and tensor-parallel sizes the output must load in: checked before anything is read or written (passes/deploy-check/). */
  readonly deployTargets?: readonly DeployTarget[];
  /** Convert even when a deploy target would refuse the output. */
  readonly forceTarget?: boolean;
  readonly onEvent?: (event: ConvertEvent) => void;
}

export type ConvertEvent =
  | { readonly type: 'plan'; readonly plan: ConvertPlan; readonly bytesTotal: number }
  | { readonly type: 'warning'; readonly message: string }
  | { readonly type: 'tensor'; readonly name: string; readonly index: number; readonly count: number }
  | { readonly type: 'bytes'; readonly done: number; readonly total: number }
  | { readonly type: 'finalizing' }
  | StaticActivationEvent;

export interface ConvertSummary {
  readonly input: string;
  readonly output: string;
  readonly dryRun: boolean;
  readonly architecture: string;
  readonly tensorsQuantized: number;
  readonly tensorsKept: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly seconds: number;
  readonly shards: readonly WrittenShard[];
  readonly warnings: readonly string[];
  readonly outputFormat: CheckpointFormat;
  readonly quantizationConfig: WrittenQuantizationConfig;
  /** --allow-nonfinite: the NaN/Inf values it replaced or kept, by tensor (absent when there were none). */
  readonly nonFinite?: NonFiniteReport;
  /** Static activation scheme: the calibration run (absent for dynamic; no seconds/scales in a dry run). */
  readonly calibration?: CalibrationSummary | { readonly file: string; readonly samples: number; readonly tokens: number };
  /** The deployment check: against --target when given, and against every engine at TP 1/2/4/8 in a dry run. */
  readonly deployCheck?: DeployReport;
}

// The hf config's type and builder live with the format layer; re-exported for existing callers.
export { quantizationConfigOf, type QuantizationConfig } from '../io/formats/hf-fp8.js';

export function planFor(ckpt: Checkpoint, opts: ConvertOptions): ConvertPlan {
  const passOptions = {
    settings: {
      format: opts.format ?? 'e4m3fn',
      block: opts.block ?? { bn: 128, bk: 128 },
      scaleFormat: opts.scaleFormat ?? 'float',
      activationScheme: opts.activationScheme ?? 'dynamic',
    },
    exclude: opts.exclude ?? [],
    include: opts.include ?? [],
    mlaSplit: opts.mlaSplit ?? false,
    stackExperts: opts.stackExperts ?? false,
  } as const;
  const tensors = ckpt.tensorNames().map((n) => ckpt.info(n));
  // An FP8 input is refused by the pass (AlreadyQuantizedError) unless --requantize asks for it.
  if (opts.requantize) return requantizePass(ckpt.config, tensors, passOptions);
  return blockScaleQuantizePass(ckpt.config, tensors, passOptions);
}

export async function convertCheckpoint(opts: ConvertOptions): Promise<ConvertSummary> {
  const t0 = performance.now();
  const emit = opts.onEvent ?? (() => undefined);
  const ckpt = await Checkpoint.open(opts.input, { allowUnindexed: opts.allowUnindexed === true });
  try {
    const outputFormat = opts.outputFormat ?? 'hf';
    const calibration = requireCalibration(opts.activationScheme, opts.calibration);
    const basePlan = planFor(ckpt, opts);
    const formatted = applyOutputFormat(calibration ? staticActivationPlan(basePlan, calibration) : basePlan, outputFormat);
    const { plan, warnings: formatWarnings } = formatted;
    // What the targets need in the config (ignored_layers for vLLM) goes in before the check judges it.
    const qc = opts.deployTargets ? withTargetKeys(formatted.quantizationConfig, plan, opts.deployTargets) : formatted.quantizationConfig;
    let report: DeployReport | undefined;
    if (opts.deployTargets || opts.dryRun) {
      const inventory = inventoryFromPlan(ckpt.config, plan, qc as unknown as Record<string, unknown>);
      report = deployCheck(inventory, opts.deployTargets ? { targets: opts.deployTargets } : {});
      if (opts.deployTargets && failingTargets(report).length > 0 && !opts.forceTarget) throw new DeployTargetError(report);
    }
    const warnings = [...ckpt.problems, ...plan.warnings, ...formatWarnings];
    if (ckpt.configProblem) warnings.unshift(ckpt.configProblem);
    // e.g. Mistral's consolidated.safetensors beside the HF shards: a second full BF16 copy that
    // must not ride along into the FP8 folder.
    for (const f of ckpt.otherFiles.filter((f) => f.endsWith('.safetensors'))) {
      warnings.push(`${f} is not one of the checkpoint's shards (not named by ${INDEX_FILE}, or in a subfolder): not converted and not copied`);
    }
    const companions = await selectCompanionFiles(ckpt.dir, ckpt.otherFiles);
    warnings.push(...companions.warnings);
    for (const w of warnings) emit({ type: 'warning', message: w });
    const totals = planTotals(plan, (n) => ckpt.info(n).byteLength);
    if (totals.quantized === 0) {
      // An "FP8" config over a checkpoint with no FP8 tensor would mislead every loader.
      throw new CheckpointError(
        `${opts.input} has no weight fp8q would quantize (${ckpt.tensors.size} tensor(s), none a 2-D float Linear weight outside --exclude): nothing to convert`,
        'E_INPUT_UNSUPPORTED',
      );
    }
    emit({ type: 'plan', plan, bytesTotal: totals.bytesIn });
    const base = {
      input: opts.input,
      output: opts.output,
      architecture: plan.architecture,
      tensorsQuantized: totals.quantized,
      tensorsKept: totals.kept,
      bytesIn: totals.bytesIn,
      bytesOut: totals.bytesOut,
      warnings,
      outputFormat,
      quantizationConfig: qc,
      ...(report ? { deployCheck: report } : {}),
    };
    const destination = await checkOutputDestination(opts.input, opts.output, opts.force ?? false, { dryRun: opts.dryRun === true });
    for (const w of destination.warnings) {
      warnings.push(w);
      emit({ type: 'warning', message: w });
    }
    // Calibration input is read (and tokenized) in a dry run too: a missing tokenizer.json shows up before the real run.
    const calibrationSet = calibration ? await readStaticCalibration(opts.input, ckpt.config, calibration, emit) : undefined;
    if (opts.dryRun) {
      const cal = calibrationSet ? { calibration: { file: calibrationSet.file, samples: calibrationSet.sequences.length, tokens: calibrationSet.tokens } } : {};
      return { ...base, ...cal, dryRun: true, seconds: (performance.now() - t0) / 1000, shards: [] };
    }
    const measured = calibration && calibrationSet ? await measureStaticActivationScales(opts.input, plan, calibrationSet, calibration, emit) : undefined;

    // --allow-nonfinite changes values: count them first, so the summary says how many and where.
    const nonFinite = opts.allowNonFinite ? await countQuantizedNonFinite(ckpt, plan) : undefined;
    const shards = await writePlan(ckpt, {
      output: opts.output,
      force: opts.force ?? false,
      entries: plan.entries,
      settings: plan.settings,
      config: { sourceIsValid: ckpt.config !== undefined, changes: { set: { quantization_config: qc } } },
      companions: companions.files,
      ...(opts.maxShardBytes !== undefined ? { maxShardBytes: opts.maxShardBytes } : {}),
      ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
      ...(opts.hashShards !== undefined ? { hashShards: opts.hashShards } : {}),
      ...(opts.allowNonFinite !== undefined ? { allowNonFinite: opts.allowNonFinite } : {}),
      ...(measured ? { activationScales: measured.scales } : {}),
      onNonFiniteKept: (name, values) => nonFinite?.push({ name, values, action: 'kept' }),
      emit,
    });
    const changed = nonFinite !== undefined && nonFinite.length > 0 ? { nonFinite: nonFiniteReport(nonFinite) } : {};
    if (changed.nonFinite) {
      const w = describeNonFinite(changed.nonFinite);
      warnings.push(w);
      emit({ type: 'warning', message: w });
    }
    return { ...base, ...changed, ...(measured ? { calibration: measured.summary } : {}), dryRun: false, seconds: (performance.now() - t0) / 1000, shards };
  } finally {
    await ckpt.close();
  }
}

type NonFiniteTensor = NonFiniteReport['tensors'][number];

/** NaN/Inf in the float sources of quantized entries: what --allow-nonfinite will replace. */
async function countQuantizedNonFinite(ckpt: Checkpoint, plan: ConvertPlan): Promise<NonFiniteTensor[]> {
  const out: NonFiniteTensor[] = [];
  for (const e of plan.entries) {
    if (e.op === 'copy' || e.op === 'activation-scale') continue;
    for (const name of e.sources) {
      const values = await countNonFiniteInTensor(ckpt, ckpt.info(name));
      if (values > 0) out.push({ name, values, action: 'replaced' });
    }
  }
  return out;
}

function nonFiniteReport(tensors: readonly NonFiniteTensor[]): NonFiniteReport {
  const unique = [...new Map(tensors.map((t) => [t.name, t])).values()];
  return { values: unique.reduce((a, t) => a + t.values, 0), tensors: unique };
}

function describeNonFinite(r: NonFiniteReport): string {
  const replaced = r.tensors.filter((t) => t.action === 'replaced');
  const kept = r.tensors.filter((t) => t.action === 'kept');
  const parts: string[] = [];
  const sum = (ts: readonly NonFiniteTensor[]): number => ts.reduce((a, t) => a + t.values, 0);
  if (replaced.length > 0)
    parts.push(`${sum(replaced)} NaN/Inf value(s) in ${replaced.length} quantized tensor(s) replaced (±Inf → ±FP8 max, NaN → 0), first ${replaced[0]!.name}`);
  if (kept.length > 0) parts.push(`${sum(kept)} NaN/Inf value(s) in ${kept.length} unquantized tensor(s) kept as they are, first ${kept[0]!.name}`);
  return `--allow-nonfinite: ${parts.join('; ')}`;
}

export type { PlannedOutput };
