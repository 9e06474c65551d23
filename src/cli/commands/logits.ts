// `fp8q logits`: runs a checkpoint's forward (original or FP8) on token ids from a safetensors
// file and writes `logits` F32 [B, T, vocab], atomically (temporary file, then rename).

import { rename, rm } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { isDeviceRequest, selectDevice, type DeviceSelection } from '../../runtime/device.js';
import { ModelRunner } from '../../runtime/models/runner.js';
import { readInputIds, writeLogits } from '../../runtime/models/token-ids.js';
import { UsageError } from '../errors.js';
import { info, outputMode, printJson } from '../output.js';

export interface LogitsFlags {
  inputIds?: string;
  output?: string;
  device?: string;
  threads?: string;
  json?: boolean;
  quiet?: boolean;
}

export interface LogitsSummary {
  readonly model: string;
  readonly output: string;
  readonly architecture: string;
  readonly device: DeviceSelection;
  readonly batch: number;
  readonly seq: number;
  readonly vocab: number;
  readonly seconds: number;
}

export function parseDeviceFlag(text: string | undefined): 'auto' | 'cpu' | 'cuda' {
  const value = text ?? 'auto';
  if (!isDeviceRequest(value)) throw new UsageError(`invalid --device "${value}": expected auto, cpu or cuda`);
  return value;
}

export function parseThreadsFlag(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new UsageError(`invalid --threads "${text}": expected a positive integer`);
  return n;
}

export async function logitsCommand(model: string, flags: LogitsFlags): Promise<LogitsSummary> {
  if (!flags.inputIds) throw new UsageError('missing --input-ids <ids.safetensors>: a file with "input_ids" I64 [B, T]');
  if (!flags.output) throw new UsageError('missing -o <out.safetensors>: say where to write the logits');
  const mode = outputMode(flags);
  const t0 = performance.now();
  const device = await selectDevice(parseDeviceFlag(flags.device));
  const threads = parseThreadsFlag(flags.threads);
  const batch = await readInputIds(flags.inputIds);
  const runner = await ModelRunner.open(model, { device: device.device, ...(threads === undefined ? {} : { intraOpThreads: threads }) });
  try {
    info(mode, `${model}: ${runner.spec.label}, ${batch.batch}×${batch.seq} tokens on ${device.device} (${device.reason})`);
    const logits = await runner.forward(batch.ids, batch, (layer) => info(mode, `  layer ${layer + 1}/${runner.spec.numLayers}`));
    const vocab = logits.length / (batch.batch * batch.seq);
    const temporary = `${flags.output}.partial-${process.pid}`;
    try {
      await writeLogits(temporary, logits, batch, vocab);
      await rename(temporary, flags.output);
    } catch (e) {
      await rm(temporary, { force: true });
      throw e;
    }
    const summary: LogitsSummary = {
      model,
      output: flags.output,
      architecture: runner.spec.label,
      device,
      batch: batch.batch,
      seq: batch.seq,
      vocab,
      seconds: (performance.now() - t0) / 1000,
    };
    if (mode.json) printJson(summary);
    else info(mode, `${flags.output}: logits F32 [${batch.batch}, ${batch.seq}, ${vocab}] in ${summary.seconds.toFixed(1)} s`);
    return summary;
  } finally {
    await runner.close();
  }
}
