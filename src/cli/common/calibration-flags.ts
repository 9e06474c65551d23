// `fp8q convert`'s static-activation flags (--activation-scheme, --calibration*,
// --activation-scale-granularity) → ConvertOptions fields, their combinations checked before any
// reading (each value is read by its row in commands/convert-flags.ts), and the
// calibration progress events rendered as lines. Kept apart from commands/convert.ts so the
// convert command stays a list of its flags.

import { existsSync } from 'node:fs';
import type { ConvertEvent } from '../../pipeline/convert-checkpoint.js';
import type { StaticActivationOptions } from '../../pipeline/static-activation.js';
import { DEFAULT_CALIBRATION_SAMPLES, DEFAULT_CALIBRATION_SEQ_LEN } from '../../runtime/text/calibration-input.js';
import type { DeviceRequest } from '../../runtime/device/device-request.js';
import { selectDevice } from '../../runtime/device/device.js';
import { CheckpointError } from '../../io/errors.js';
import { UsageError } from './errors.js';

/** The calibration fields of convert's options, each value already read by its table row (convert-flags.ts). */
export interface CalibrationFlags {
  readonly activationScheme?: 'dynamic' | 'static';
  readonly calibrationFile?: string;
  readonly calibrationSamples?: number;
  readonly calibrationSeqLen?: number;
  readonly calibrationSplit?: 'sample' | 'chunk';
  readonly calibrationDevice?: DeviceRequest;
  readonly activationScaleGranularity?: 'group' | 'tensor';
}

export interface ParsedCalibration {
  readonly activationScheme: 'dynamic' | 'static';
  /** Without the device: chosen by resolveCalibrationDevice once the flags are known to be valid. */
  readonly calibration: Omit<StaticActivationOptions, 'device'> | undefined;
  readonly deviceRequest: DeviceRequest;
}

/** What the calibration flags mean together: the static-only ones refused with dynamic, the file required with static. */
export function parseCalibrationFlags(flags: CalibrationFlags): ParsedCalibration {
  const scheme = flags.activationScheme ?? 'dynamic';
  const calibrationOnly: [string, unknown][] = [
    ['--calibration', flags.calibrationFile],
    ['--calibration-samples', flags.calibrationSamples],
    ['--calibration-seq-len', flags.calibrationSeqLen],
    ['--calibration-split', flags.calibrationSplit],
    ['--calibration-device', flags.calibrationDevice],
    ['--activation-scale-granularity', flags.activationScaleGranularity],
  ];
  if (scheme === 'dynamic') {
    const given = calibrationOnly.filter(([, v]) => v !== undefined).map(([f]) => f);
    if (given.length > 0)
      throw new UsageError(`${given.join(', ')} ${given.length === 1 ? 'applies' : 'apply'} only to --activation-scheme static (dynamic activations need no calibration)`);
    return { activationScheme: 'dynamic', calibration: undefined, deviceRequest: 'cpu' };
  }
  if (flags.calibrationFile === undefined) {
    throw new UsageError('--activation-scheme static needs --calibration <file>: a text file (one sample per line), JSONL of {"text": ...}, or input_ids .safetensors');
  }
  // A missing input file is E_INPUT_MISSING (exit 1), as for verify --text and generate --prompts.
  if (!existsSync(flags.calibrationFile)) throw new CheckpointError(`--calibration: no such file: ${flags.calibrationFile}`, 'E_INPUT_MISSING');
  return {
    activationScheme: 'static',
    calibration: {
      file: flags.calibrationFile,
      samples: flags.calibrationSamples ?? DEFAULT_CALIBRATION_SAMPLES,
      seqLen: flags.calibrationSeqLen ?? DEFAULT_CALIBRATION_SEQ_LEN,
      split: flags.calibrationSplit ?? 'sample',
      granularity: flags.activationScaleGranularity ?? 'group',
    },
    deviceRequest: flags.calibrationDevice ?? 'auto',
  };
}

/** The options convert gets: the device picked (auto probes CUDA) only for a static run. */
export async function resolveCalibration(parsed: ParsedCalibration): Promise<StaticActivationOptions | undefined> {
  if (parsed.calibration === undefined) return undefined;
  const selection = await selectDevice(parsed.deviceRequest);
  return { ...parsed.calibration, device: selection.device };
}

/** A line for each calibration event worth telling a user, or undefined. */
export function describeCalibrationEvent(e: ConvertEvent): string | undefined {
  switch (e.type) {
    case 'calibration-input':
      return `calibration: ${e.samples} sample(s), ${e.tokens} tokens from ${e.file} (${e.kind}${e.truncated > 0 ? `, ${e.truncated} cut to --calibration-seq-len` : ''})`;
    case 'calibration-start':
      return `calibrating activation scales: ${e.layers} layers, ${e.batches} batch(es)`;
    case 'calibration-layer':
      return `calibrating layer ${e.index + 1}/${e.count} (${e.modules} linear(s))`;
    default:
      return undefined;
  }
}
