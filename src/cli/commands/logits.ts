// `fp8q logits`: runs a checkpoint's forward (original or FP8) on token ids from a safetensors
// file and writes `logits` F32 [B, T, vocab], atomically (temporary file, then rename).

import { performance } from 'node:perf_hooks';
import { isDeviceRequest, selectDevice, type DeviceSelection } from '../../runtime/device.js';
import { ModelRunner } from '../../runtime/models/runner.js';
import { readInputIds, writeLogits } from '../../runtime/models/token-ids.js';
import { UsageError } from '../errors.js';
import { StagingFile } from '../../io/output-folder.js';
import { capThreads, parsePositiveInt } from '../options.js';
import { info, outputMode, printJson, warn, type OutputMode } from '../output.js';

export interface LogitsFlags {
  inputIds?: string;
  output?: string;
  device?: string;
  threads?: string;
  force?: boolean;
  json?: boolean;
  quiet?: boolean;
}

export interface LogitsSummary {
  readonly model: string;
  readonly output: string;
  readonly architecture: string;
  /** The device the forward ran on; `deviceSelection` says why (the same shape as verify's report). */
  readonly device: DeviceSelection['device'];
  readonly deviceSelection: DeviceSelection;
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

/** --threads for onnxruntime, capped to the machine's cores (more only costs memory), with a note when capped. */
export function parseThreadsFlag(text: string | undefined, mode?: OutputMode): number | undefined {
  if (text === undefined) return undefined;
  return capThreads(parsePositiveInt('--threads', text), mode);
}

export async function logitsCommand(model: string, flags: LogitsFlags): Promise<LogitsSummary> {
  if (!flags.inputIds) throw new UsageError('missing --input-ids <ids.safetensors>: a file with "input_ids" I64 [B, T]');
  if (!flags.output) throw new UsageError('missing -o <out.safetensors>: say where to write the logits');
  const mode = outputMode(flags);
  const t0 = performance.now();
  const threads = parseThreadsFlag(flags.threads, mode);
  const deviceRequest = parseDeviceFlag(flags.device);
  // The destination is checked before the forward: a refused -o costs nothing.
  const staged = await StagingFile.create(flags.output, { force: flags.force === true, inputFiles: [flags.inputIds], inputFolders: [model] });
  for (const w of staged.warnings) warn(mode, w);
  try {
    const device = await selectDevice(deviceRequest);
    const batch = await readInputIds(flags.inputIds);
    const runner = await ModelRunner.open(model, { device: device.device, ...(threads === undefined ? {} : { intraOpThreads: threads }) });
    try {
      info(mode, `${model}: ${runner.spec.label}, ${batch.batch}×${batch.seq} tokens on ${device.device} (${device.reason})`);
      const logits = await runner.forward(batch.ids, batch, (layer) => info(mode, `  layer ${layer + 1}/${runner.spec.numLayers}`));
      const vocab = logits.length / (batch.batch * batch.seq);
      await writeLogits(staged.path, logits, batch, vocab);
      await staged.commit();
      return report(model, flags.output, runner.spec.label, device, batch, vocab, t0, mode);
    } finally {
      await runner.close();
    }
  } catch (e) {
    await staged.discard();
    throw e;
  }
}

function report(
  model: string,
  output: string,
  architecture: string,
  device: DeviceSelection,
  batch: { batch: number; seq: number },
  vocab: number,
  t0: number,
  mode: OutputMode,
): LogitsSummary {
  const summary: LogitsSummary = {
    model,
    output,
    architecture,
    device: device.device,
    deviceSelection: device,
    batch: batch.batch,
    seq: batch.seq,
    vocab,
    seconds: (performance.now() - t0) / 1000,
  };
  if (mode.json) printJson(summary);
  else info(mode, `${output}: logits F32 [${batch.batch}, ${batch.seq}, ${vocab}] in ${summary.seconds.toFixed(1)} s`);
  return summary;
}
