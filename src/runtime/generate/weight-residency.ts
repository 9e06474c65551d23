// Whether generation keeps a model's weights in memory across decode steps or streams them from
// the checkpoint layer by layer at every step. Streaming holds about one decoder layer at a time
// (any model size); resident reads each tensor once (ModelWeights.keepResident), which for a model
// that fits saves re-reading the whole checkpoint per token. `auto` takes resident when the
// checkpoint's tensors fit in half of the memory free now.

import { freemem } from 'node:os';
import type { Checkpoint } from '../../io/checkpoint.js';
import { formatBytes } from '../../io/sizes.js';

export type WeightMode = 'resident' | 'streamed';
export type WeightModeRequest = WeightMode | 'auto';

export const WEIGHT_MODE_REQUESTS: readonly WeightModeRequest[] = ['auto', 'resident', 'streamed'];

export interface WeightModeChoice {
  readonly mode: WeightMode;
  readonly reason: string;
  readonly checkpointBytes: number;
}

export function checkpointTensorBytes(checkpoint: Checkpoint): number {
  return checkpoint.tensorNames().reduce((acc, name) => acc + checkpoint.info(name).byteLength, 0);
}

export function chooseWeightMode(request: WeightModeRequest, checkpointBytes: number, freeBytes: number = freemem()): WeightModeChoice {
  const size = formatBytes(checkpointBytes);
  if (request !== 'auto') return { mode: request, reason: `--weights ${request} (checkpoint ${size})`, checkpointBytes };
  const budget = freeBytes / 2;
  return checkpointBytes <= budget
    ? { mode: 'resident', reason: `checkpoint ${size} fits in half of the free memory (${formatBytes(freeBytes)} free)`, checkpointBytes }
    : { mode: 'streamed', reason: `checkpoint ${size} is more than half of the free memory (${formatBytes(freeBytes)} free): one layer at a time`, checkpointBytes };
}
