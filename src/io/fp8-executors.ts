// Executing entries that read FP8 checkpoints made by others (or by fp8q):
// - RequantizeEntry (convert --requantize): the FP8 weight is dequantized to float32 on the fly
//   (`fp8 × scale_inv`, one float32 multiplication, as PyTorch's `w.float() * s` gives) and
//   quantized again with the requested block size, dtype and scale format.
// - DequantizeEntry (fp8q dequant): each value is `fp8 × scale_inv` computed exactly and rounded
//   once to the output dtype. DeepSeek's fp8_cast_bf16.py (deepseek-ai/DeepSeek-V3,
//   inference/kernel.py weight_dequant) multiplies in float32 and then stores BF16, which can round
//   twice; the two agree except where the float32 product lands on a BF16 tie, never with BF16/F16
//   or power-of-two scales (their products are exact in float32).

import { isFloatSourceDtype } from '../fp8/dtypes.js';
import { narrowExact } from '../fp8/round-once.js';
import type { DequantizeEntry, RequantizeEntry } from '../passes/plan.js';
import type { Checkpoint } from './checkpoint.js';
import type { ExecuteOptions, OutputSink } from './entry-executors.js';
import { CheckpointError } from './errors.js';
import { countNonFinite } from './nonfinite-count.js';
import { FloatRowReader } from './float-rows.js';
import { quantizeOutInRows } from './quantize-rows.js';

/** Dequantized output moves in stripes of about this many elements (8 MiB of float64). */
const DEQUANT_STRIPE_ELEMENTS = 1 << 20;

export async function executeRequantize(entry: RequantizeEntry, ckpt: Checkpoint, sink: OutputSink, opts: ExecuteOptions): Promise<void> {
  const source = entry.sources[0]!;
  const reader = await FloatRowReader.open(ckpt, source, entry.fp8[source]);
  const [weightOut, scaleOut] = entry.outputs;
  await quantizeOutInRows(reader, weightOut!, scaleOut!, sink, opts);
}

/** An FP8 weight whose dequantized values are NaN/Inf, as the user sees it. */
export function dequantizedNonFiniteError(source: string, dtype: string, count: number, flag: string): CheckpointError {
  return new CheckpointError(
    `tensor "${source}" dequantizes to ${count} NaN/Inf value(s) in ${dtype} (NaN FP8 codes, damaged scales${dtype === 'F16' ? ", or values beyond float16's ±65504: try --dtype bfloat16" : ''}): ` +
      `the output would compute NaN; pass ${flag} to write it anyway`,
    'E_INPUT_NONFINITE',
  );
}

/**
 * Writes `fp8 × scale` rounded once to the output dtype. Returns how many values came out NaN/Inf
 * (NaN codes, damaged scales, values beyond float16's range), which the caller refuses or reports.
 */
export async function executeDequantize(entry: DequantizeEntry, ckpt: Checkpoint, sink: OutputSink, opts: Pick<ExecuteOptions, 'onBytes'>): Promise<number> {
  const source = entry.sources[0]!;
  const out = entry.outputs[0]!;
  if (!isFloatSourceDtype(out.dtype)) throw new CheckpointError(`cannot dequantize "${source}" to ${out.dtype}: expected BF16, F16 or F32`);
  const reader = await FloatRowReader.open(ckpt, source, entry.fp8[source]);
  const rowsPerStripe = Math.max(1, Math.floor(DEQUANT_STRIPE_ELEMENTS / Math.max(1, reader.cols)));
  const exact = new Float64Array(Math.min(rowsPerStripe, reader.rows) * reader.cols);
  const outBytesPerRow = (out.byteLength / Math.max(1, reader.rows)) | 0;
  let nonFinite = 0;
  for (let r0 = 0; r0 < reader.rows; r0 += rowsPerStripe) {
    const rows = Math.min(rowsPerStripe, reader.rows - r0);
    const values = await reader.readExact(r0, rows, exact);
    const narrowed = narrowExact(values, out.dtype);
    nonFinite += countNonFinite(narrowed, out.dtype);
    await sink.write(out.name, narrowed, r0 * outBytesPerRow);
    opts.onBytes?.(rows * reader.cols);
  }
  return nonFinite;
}
