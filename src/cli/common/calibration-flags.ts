// `fp8q convert`'s static-activation flags (--activation-scheme, --calibration*,
// --activation-scale-granularity) → ConvertOptions fields, checked before any reading, and the
// calibration progress events rendered as lines. Kept apart from commands/convert.ts so the
// convert command stays a list of its flags.

import { existsSync } from 'node:fs';
import type { ConvertEvent } from '../../pipeline/convert-checkpoint.js';
import type { StaticActivationOptions } from '../../pipeline/static-activation.js';
import { DEFAULT_CALIBRATION_SAMPLES, DEFAULT_CALIBRATION_SEQ_LEN } from '../../runtime/text/calibration-input.js';
import { isDeviceRequest, selectDevice } from '../../runtime/device/device.js';
import { MAX_SEQUENCE } from '../../runtime/models/token-ids.js';
import { CheckpointError } from '../../io/errors.js';
import { UsageError } from './errors.js';
import { parsePositiveInt } from './options.js';

export interface CalibrationFlags {
  activationScheme?: string;
  calibration?: string;
  calibrationSamples?: string;
  calibrationSeqLen?: string;
  calibrationSplit?: string;
  calibrationDevice?: string;
  activationScaleGranularity?: string;
}

export interface ParsedCalibration {
  readonly activationScheme: 'dynamic' | 'static';
  /** Without the device: chosen by resolveCalibrationDevice once the flags are known to be valid. */
  readonly calibration: Omit<StaticActivationOptions, 'device'> | undefined;
  readonly deviceRequest: 'auto' | 'cpu' | 'cuda';
}

export function parseCalibrationFlags(flags: CalibrationFlags): ParsedCalibration {
  const scheme = flags.activationScheme ?? 'dynamic';
  if (scheme !== 'dynamic' && scheme !== 'static') throw new UsageError(`invalid --activation-scheme "${scheme}": expected dynamic or static`);
  const calibrationOnly: [string, string | undefined][] = [
    ['--calibration', flags.calibration],
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
  if (flags.calibration === undefined) {
    throw new UsageError('--activation-scheme static needs --calibration <file>: a text file (one sample per line), JSONL of {"text": ...}, or input_ids .safetensors');
  }
  // A missing input file is E_INPUT_MISSING (exit 1), as for verify --text and generate --prompts.
  if (!existsSync(flags.calibration)) throw new CheckpointError(`--calibration: no such file: ${flags.calibration}`, 'E_INPUT_MISSING');
  const split = flags.calibrationSplit ?? 'sample';
  if (split !== 'sample' && split !== 'chunk') throw new UsageError(`invalid --calibration-split "${split}": expected sample or chunk`);
  const granularity = flags.activationScaleGranularity ?? 'group';
  if (granularity !== 'group' && granularity !== 'tensor') {
    throw new UsageError(`invalid --activation-scale-granularity "${granularity}": expected group or tensor`);
  }
  const device = flags.calibrationDevice ?? 'auto';
  if (!isDeviceRequest(device)) throw new UsageError(`invalid --calibration-device "${device}": expected auto, cpu or cuda`);
  const seqLen = flags.calibrationSeqLen === undefined ? DEFAULT_CALIBRATION_SEQ_LEN : parsePositiveInt('--calibration-seq-len', flags.calibrationSeqLen);
  if (seqLen > MAX_SEQUENCE) throw new UsageError(`invalid --calibration-seq-len ${seqLen}: at most ${MAX_SEQUENCE} tokens`);
  return {
    activationScheme: 'static',
    calibration: {
      file: flags.calibration,
      samples: flags.calibrationSamples === undefined ? DEFAULT_CALIBRATION_SAMPLES : parsePositiveInt('--calibration-samples', flags.calibrationSamples),
      seqLen,
      split,
      granularity,
    },
    deviceRequest: device,
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
