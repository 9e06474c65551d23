// Whether generation keeps a model's weights in memory across decode steps or streams them from
// the checkpoint layer by layer at every step. Streaming holds about one decoder layer at a time
// (any model size); resident reads each tensor once and, where weights are decoded on the host
// (the CPU), widens it to float32 once (ModelRunner.keepWeightsResident), which for a model that
// fits saves re-reading and re-decoding the whole checkpoint per token. `auto` takes resident when
// what it holds — the stored tensors, plus their float32 copy on the CPU — fits in half of the
// memory free now.

import { freemem } from 'node:os';
import { dtypeSize } from '../../fp8/dtypes.js';
import type { Checkpoint } from '../../io/checkpoint/checkpoint.js';
import { formatBytes } from '../../io/sizes.js';
import type { Device } from '../onnx/session.js';

export type WeightMode = 'resident' | 'streamed';
export type WeightModeRequest = WeightMode | 'auto';

export const WEIGHT_MODE_REQUESTS: readonly WeightModeRequest[] = ['auto', 'resident', 'streamed'];

export interface WeightModeChoice {
  readonly mode: WeightMode;
  readonly reason: string;
  /** Bytes resident weights hold: the stored tensors, plus their float32 copy when decoded on the host. */
  readonly residentBytes: number;
}

/** Memory resident weights take on `device`: stored bytes, plus 4 bytes per element on the CPU (host decode). */
export function residentWeightBytes(checkpoint: Checkpoint, device: Device): number {
  let bytes = 0;
  for (const name of checkpoint.tensorNames()) {
    const info = checkpoint.info(name);
    bytes += info.byteLength;
    if (device === 'cpu') bytes += (info.byteLength / dtypeSize(info.dtype)) * 4;
  }
  return bytes;
}

export function chooseWeightMode(request: WeightModeRequest, residentBytes: number, freeBytes: number = freemem()): WeightModeChoice {
  const size = formatBytes(residentBytes);
  if (request !== 'auto') return { mode: request, reason: `--weights ${request}; resident they take ${size}`, residentBytes };
  return residentBytes <= freeBytes / 2
    ? { mode: 'resident', reason: `${size} fits in half of the free memory (${formatBytes(freeBytes)})`, residentBytes }
    : { mode: 'streamed', reason: `${size} resident would be over half of the free memory (${formatBytes(freeBytes)}): one layer at a time`, residentBytes };
}
