// `fp8q convert --activation-scheme static`: the convert job's side of static activation scales.
// The plan gains an activation-scale entry per quantized linear (passes/activation-scales.ts);
// before any shard is written, the calibration set is read and tokenized, the original model runs
// over it layer by layer (runtime/calibration/calibrate.ts), and the measured scales go to the
// executor with the other entries. Events report progress; nothing is printed here.

import type { Fp8Format } from '../fp8/formats.js';
import { activationScaleTargets, withActivationScaleEntries, type ActivationScaleGranularity } from '../passes/activation-scales.js';
import type { ConvertPlan } from '../passes/plan.js';
// The calibration modules load onnxruntime and the tokenizers: imported only when a static
// conversion runs, so a dynamic convert never pays for them.
import type { CalibrationEvent, CalibrationResult } from '../runtime/calibration/calibrate.js';
import type { CalibrationFileKind, CalibrationSet, CalibrationSplit } from '../runtime/text/calibration-input.js';
import type { Device } from '../runtime/onnx/session.js';
import type { ModelConfig } from '../io/checkpoint/checkpoint.js';
import { CheckpointError } from '../io/errors.js';

export interface StaticActivationOptions {
  /** Text (one sample per line), JSONL of {"text": ...}, or input_ids safetensors. */
  readonly file: string;
  readonly samples?: number;
  readonly seqLen?: number;
  readonly split?: CalibrationSplit;
  /** 'group' (default): `[ceil(K/bk)]` per linear, MLC LLM's layout; 'tensor': one 0-dim scalar (transformers). */
  readonly granularity?: ActivationScaleGranularity;
  readonly device?: Device;
  readonly intraOpThreads?: number;
  readonly batchTokens?: number;
}

export type StaticActivationEvent =
  | {
      readonly type: 'calibration-input';
      readonly file: string;
      readonly kind: CalibrationFileKind;
      readonly samples: number;
      readonly tokens: number;
      readonly truncated: number;
    }
  | CalibrationEvent;

/** What the summary says about a static conversion. */
export interface CalibrationSummary {
  readonly file: string;
  readonly kind: CalibrationFileKind;
  readonly granularity: ActivationScaleGranularity;
  readonly samples: number;
  readonly tokens: number;
  readonly scales: number;
  /** Experts no calibration token was routed to, calibrated on the MoE block's whole input. */
  readonly fallbacks: readonly string[];
  readonly seconds: number;
}

export function requireCalibration(scheme: 'dynamic' | 'static' | undefined, calibration: StaticActivationOptions | undefined): StaticActivationOptions | undefined {
  if (scheme !== 'static') {
    if (calibration !== undefined) throw new CheckpointError('calibration data is only used with --activation-scheme static');
    return undefined;
  }
  if (calibration === undefined) {
    throw new CheckpointError('--activation-scheme static measures activation scales on calibration data: pass --calibration <file> (text, .jsonl or input_ids .safetensors)');
  }
  return calibration;
}

export function staticActivationPlan(plan: ConvertPlan, opts: StaticActivationOptions): ConvertPlan {
  return withActivationScaleEntries(plan, opts.granularity ?? 'group');
}

function vocabSizeOf(config: ModelConfig | undefined): number | undefined {
  const v = config?.['vocab_size'];
  return typeof v === 'number' && Number.isSafeInteger(v) && v > 0 ? v : undefined;
}

export async function readStaticCalibration(
  modelDir: string,
  config: ModelConfig | undefined,
  opts: StaticActivationOptions,
  emit: (e: StaticActivationEvent) => void,
): Promise<CalibrationSet> {
  const vocabSize = vocabSizeOf(config);
  const { readCalibrationSet } = await import('../runtime/text/calibration-input.js');
  const set = await readCalibrationSet({
    file: opts.file,
    modelDir,
    ...(opts.samples === undefined ? {} : { samples: opts.samples }),
    ...(opts.seqLen === undefined ? {} : { seqLen: opts.seqLen }),
    ...(opts.split === undefined ? {} : { split: opts.split }),
    ...(vocabSize === undefined ? {} : { vocabSize }),
  });
  emit({ type: 'calibration-input', file: set.file, kind: set.kind, samples: set.sequences.length, tokens: set.tokens, truncated: set.truncated });
  return set;
}

export async function measureStaticActivationScales(
  modelDir: string,
  plan: ConvertPlan,
  set: CalibrationSet,
  opts: StaticActivationOptions,
  emit: (e: StaticActivationEvent) => void,
): Promise<{ scales: ReadonlyMap<string, Float32Array>; summary: CalibrationSummary }> {
  const format: Fp8Format = plan.settings.format;
  const granularity = opts.granularity ?? 'group';
  const { calibrateActivationScales } = await import('../runtime/calibration/calibrate.js');
  const result: CalibrationResult = await calibrateActivationScales({
    model: modelDir,
    set,
    targets: activationScaleTargets(plan),
    groupSize: plan.settings.block.bk,
    granularity,
    format,
    ...(opts.device === undefined ? {} : { device: opts.device }),
    ...(opts.intraOpThreads === undefined ? {} : { intraOpThreads: opts.intraOpThreads }),
    ...(opts.batchTokens === undefined ? {} : { batchTokens: opts.batchTokens }),
    onEvent: emit,
  });
  return {
    scales: result.scales,
    summary: {
      file: set.file,
      kind: set.kind,
      granularity,
      samples: result.samples,
      tokens: result.tokens,
      scales: result.scales.size,
      fallbacks: result.modules.filter((m) => m.fallback).map((m) => m.module),
      seconds: result.seconds,
    },
  };
}
