// Writes a plan's `activation-scale` entries: the scales were measured before the shards are
// written (runtime/calibration/calibrate.ts) and arrive in ExecuteOptions.activationScales; this
// only checks each one fits its planned tensor and writes its bytes.

import type { ActivationScaleEntry } from '../passes/plan.js';
import type { ExecuteOptions, OutputSink } from './entry-executors.js';
import { CheckpointError } from '../io/errors.js';

export async function executeActivationScale(entry: ActivationScaleEntry, sink: OutputSink, opts: ExecuteOptions): Promise<void> {
  const out = entry.outputs[0]!;
  const values = opts.activationScales?.get(entry.module);
  const expected = out.byteLength / 4;
  if (values === undefined) throw new CheckpointError(`no calibrated activation scale for ${entry.module}: the calibration did not measure it`);
  if (values.length !== expected) {
    throw new CheckpointError(`activation scale of ${entry.module} has ${values.length} values; ${out.name} is F32 [${out.shape.join(', ')}]`);
  }
  const bytes = new Uint8Array(expected * 4);
  const view = new DataView(bytes.buffer);
  values.forEach((v, i) => view.setFloat32(i * 4, v, true));
  await sink.write(out.name, bytes, 0);
}
