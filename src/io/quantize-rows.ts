// Quantizing values that came from a FloatRowReader (any source dtype, FP8 included), for the plan
// entries beyond the plain per-tensor quantize: the same block numerics (fp8/block-quantize.ts),
// with a NaN/Inf reported against the source tensor, and the out × in row-stripe loop that
// requantize and the fused-expert executors share.

import { blockQuantize, ceilDiv, NonFiniteValueError, quantizeStripe, type BlockQuantized, type BlockShape } from '../fp8/block-quantize.js';
import type { PlannedOutput } from '../passes/plan.js';
import { kernelOptions, quantizationSettings, type ExecuteOptions, type OutputSink } from './entry-executors.js';
import { CheckpointError } from './errors.js';
import type { FloatRowReader } from './float-rows.js';

/** The CheckpointError for a NaN/Inf of `source`, at the source coordinates `where` gives. */
export function nonFiniteSourceError(err: NonFiniteValueError, source: string, where: (row: number, col: number) => string): CheckpointError {
  return new CheckpointError(
    `tensor "${source}" has a non-finite value (${err.value}) at ${where(err.row, err.col)}: ` +
      `the source checkpoint is damaged; fix it, or pass --allow-nonfinite to saturate ±Inf and zero NaN`,
  );
}

/** Runs `quantize`, turning a NonFiniteValueError into the CheckpointError that names `source` and `where`. */
function namingNonFinite<T>(quantize: () => T, source: string, where: (row: number, col: number) => string): T {
  try {
    return quantize();
  } catch (err) {
    if (err instanceof NonFiniteValueError) throw nonFiniteSourceError(err, source, where);
    throw err;
  }
}

/** Block-quantize a whole [rows, cols] matrix with `block`; `where` maps a (row, col) to source coordinates. */
export function quantizeMatrix(
  values: Float32Array,
  rows: number,
  cols: number,
  block: BlockShape,
  opts: ExecuteOptions,
  source: string,
  where: (row: number, col: number) => string,
): BlockQuantized {
  return namingNonFinite(() => blockQuantize(values, rows, cols, kernelOptions(opts, block)), source, where);
}

/** quantizeStripe with the error named after the source tensor. */
export function quantizeStripeOf(
  values: Float32Array,
  rows: number,
  cols: number,
  block: BlockShape,
  opts: ExecuteOptions,
  codes: Uint8Array,
  scaleRow: Float32Array,
  source: string,
  where: (row: number, col: number) => string,
): void {
  namingNonFinite(() => quantizeStripe(values, rows, cols, kernelOptions(opts, block), codes, scaleRow, 0), source, where);
}

/**
 * Quantize a weight stored out × in (`[N, K]` or `[E, N, K]`) read through `reader`, in stripes of
 * bn rows: codes go out in file order, the `[E?, ceil(N/bn), ceil(K/bk)]` scales at the end.
 */
export async function quantizeOutInRows(
  reader: FloatRowReader,
  weightOut: PlannedOutput,
  scaleOut: PlannedOutput,
  sink: OutputSink,
  opts: ExecuteOptions,
): Promise<void> {
  const shape = reader.info.shape;
  const n = shape[shape.length - 2]!;
  const k = shape[shape.length - 1]!;
  const experts = shape.length === 3 ? shape[0]! : 1;
  const { bn, bk } = quantizationSettings(opts).block;
  const rowBlocks = ceilDiv(n, bn);
  const colBlocks = ceilDiv(k, bk);
  const values = new Float32Array(Math.min(bn, n) * k);
  const codes = new Uint8Array(values.length);
  const scales = new Float32Array(experts * rowBlocks * colBlocks);
  for (let e = 0; e < experts; e++) {
    for (let rb = 0; rb < rowBlocks; rb++) {
      const r0 = rb * bn;
      const rows = Math.min(bn, n - r0);
      const v = await reader.readF32(e * n + r0, rows, values);
      const c = codes.subarray(0, rows * k);
      const at = (e * rowBlocks + rb) * colBlocks;
      quantizeStripeOf(v, rows, k, quantizationSettings(opts).block, opts, c, scales.subarray(at, at + colBlocks), reader.info.name, (r, col) =>
        experts > 1 || shape.length === 3 ? `[${e}, ${r0 + r}, ${col}]` : `[${r0 + r}, ${col}]`,
      );
      await sink.write(weightOut.name, c, (e * n + r0) * k);
      opts.onBytes?.(rows * k * (reader.info.byteLength / Math.max(1, reader.rows * reader.cols)));
    }
  }
  await sink.write(scaleOut.name, new Uint8Array(scales.buffer), 0);
}
