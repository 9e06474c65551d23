// `fp8q convert` as a library call: open → plan → validate destination → (static activations:
// calibrate) → writePlan (write-plan.ts: shards, index, config and companion files in a staging
// folder, then rename). Progress is reported as typed events; this module never writes to the
// terminal.

import { performance } from 'node:perf_hooks';
import type { BlockShape, ScaleFormat } from '../fp8/block-quantize.js';
import type { Fp8Format } from '../fp8/formats.js';
import { blockScaleQuantizePass } from '../passes/block-scale-quantize.js';
import { requantizePass } from '../passes/fp8-plans.js';
import { planTotals, type ConvertPlan, type PlannedOutput } from '../passes/plan.js';
import { Checkpoint, INDEX_FILE, type ModelConfig } from './checkpoint.js';
import type { CheckpointFormat } from './formats/descriptor.js';
import { applyOutputFormat, type WrittenQuantizationConfig } from './formats/output-format.js';
import { checkOutputDestination } from './output-folder.js';
import {
  measureStaticActivationScales,
  readStaticCalibration,
  requireCalibration,
  staticActivationPlan,
  type CalibrationSummary,
  type StaticActivationEvent,
  type StaticActivationOptions,
} from './static-activation.js';
import { writePlan, type WrittenShard } from './write-plan.js';

export { DEFAULT_MAX_SHARD_BYTES, type WrittenShard } from './write-plan.js';

/** A safetensors file that is not a shard of the checkpoint (Checkpoint lists it among otherFiles). */
function isStrayWeightFile(file: string): boolean {
  return file.endsWith('.safetensors');
}

export interface ConvertOptions {
  readonly input: string;
  readonly output: string;
  readonly format?: Fp8Format;
  readonly block?: BlockShape;
  readonly scaleFormat?: ScaleFormat;
  /** On-disk layout: 'hf' (weight_scale_inv, quant_method fp8; default) or 'compressed-tensors'. */
  readonly outputFormat?: CheckpointFormat;
  readonly exclude?: readonly string[];
  readonly maxShardBytes?: number;
  readonly dryRun?: boolean;
  readonly force?: boolean;
  readonly allowNonFinite?: boolean;
  /** Worker threads quantizing (default: available cores); 0 runs the reference kernel on the main thread. */
  readonly threads?: number;
  /** Also write DeepSeek MLA's w_uk / w_uv (passes/mla-split.ts). */
  readonly mlaSplit?: boolean;
  /** Write per-expert weights as one stacked [E, N, K] tensor per projection (passes/stack-experts.ts). */
  readonly stackExperts?: boolean;
  /** Accept an FP8 input: dequantize it to float32 on the fly and quantize again (passes/fp8-plans.ts). */
  readonly requantize?: boolean;
  /** 'static' measures an activation_scale per quantized linear on `calibration` (io/static-activation.ts). */
  readonly activationScheme?: 'dynamic' | 'static';
  readonly calibration?: StaticActivationOptions;
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
  /** Static activation scheme: the calibration run (absent for dynamic; no seconds/scales in a dry run). */
  readonly calibration?: CalibrationSummary | { readonly file: string; readonly samples: number; readonly tokens: number };
}

// The hf config's type and builder live with the format layer; re-exported for existing callers.
export { quantizationConfigOf, type QuantizationConfig } from './formats/hf-fp8.js';

export function planFor(ckpt: Checkpoint, opts: ConvertOptions): ConvertPlan {
  const passOptions = {
    settings: {
      format: opts.format ?? 'e4m3fn',
      block: opts.block ?? { bn: 128, bk: 128 },
      scaleFormat: opts.scaleFormat ?? 'float',
      activationScheme: opts.activationScheme ?? 'dynamic',
    },
    exclude: opts.exclude ?? [],
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
  const ckpt = await Checkpoint.open(opts.input);
  try {
    const outputFormat = opts.outputFormat ?? 'hf';
    const calibration = requireCalibration(opts.activationScheme, opts.calibration);
    const basePlan = planFor(ckpt, opts);
    const { plan, quantizationConfig: qc, warnings: formatWarnings } = applyOutputFormat(calibration ? staticActivationPlan(basePlan, calibration) : basePlan, outputFormat);
    const warnings = [...plan.warnings, ...formatWarnings];
    if (ckpt.configProblem) warnings.unshift(ckpt.configProblem);
    // e.g. Mistral's consolidated.safetensors beside the HF shards: a second full BF16 copy that
    // must not ride along into the FP8 folder.
    for (const f of ckpt.otherFiles.filter(isStrayWeightFile)) {
      warnings.push(`${f} is not one of the checkpoint's shards (not named by ${INDEX_FILE}, or in a subfolder): not converted and not copied`);
    }
    for (const w of warnings) emit({ type: 'warning', message: w });
    const totals = planTotals(plan, (n) => ckpt.info(n).byteLength);
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
    };
    await checkOutputDestination(opts.input, opts.output, opts.force ?? false);
    // Calibration input is read (and tokenized) in a dry run too: a missing tokenizer.json shows up before the real run.
    const calibrationSet = calibration ? await readStaticCalibration(opts.input, ckpt.config, calibration, emit) : undefined;
    if (opts.dryRun) {
      const cal = calibrationSet ? { calibration: { file: calibrationSet.file, samples: calibrationSet.sequences.length, tokens: calibrationSet.tokens } } : {};
      return { ...base, ...cal, dryRun: true, seconds: (performance.now() - t0) / 1000, shards: [] };
    }
    const measured = calibration && calibrationSet ? await measureStaticActivationScales(opts.input, plan, calibrationSet, calibration, emit) : undefined;

    const shards = await writePlan(ckpt, {
      output: opts.output,
      entries: plan.entries,
      settings: plan.settings,
      config: withQuantizationConfig(ckpt.config, qc),
      ...(opts.maxShardBytes !== undefined ? { maxShardBytes: opts.maxShardBytes } : {}),
      ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
      ...(opts.allowNonFinite !== undefined ? { allowNonFinite: opts.allowNonFinite } : {}),
      ...(measured ? { activationScales: measured.scales } : {}),
      emit,
    });
    return { ...base, ...(measured ? { calibration: measured.summary } : {}), dryRun: false, seconds: (performance.now() - t0) / 1000, shards };
  } finally {
    await ckpt.close();
  }
}

function withQuantizationConfig(config: ModelConfig | undefined, qc: WrittenQuantizationConfig): ModelConfig {
  return { ...(config ?? {}), quantization_config: qc };
}

export type { PlannedOutput };
