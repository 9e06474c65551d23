// Executing one plan entry: read its sources from the checkpoint in bounded pieces and write its
// outputs. Memory per entry is a few row stripes (bn rows of a weight) or one copy chunk, never a
// whole tensor.

import { ceilDiv, quantizeStripe, NonFiniteValueError, type BlockShape } from '../fp8/block-quantize.js';
import { dtypeSize, isFloatSourceDtype, widenToFloat32, type FloatSourceDtype } from '../fp8/dtypes.js';
import type { CopyEntry, PlannedOutput, QuantizationSettings, QuantizeEntry } from '../passes/plan.js';
import type { Checkpoint, CheckpointTensor } from './checkpoint.js';
import { CheckpointError } from './errors.js';
import type { ChunkSettings } from './quantize-chunk.js';
import type { QuantizePool } from './quantize-pool.js';

/** Where an entry's output bytes go (a SafetensorsWriter, behind the shard map). */
export interface OutputSink {
  write(name: string, bytes: Uint8Array, byteOffset: number): Promise<void>;
}

export interface ExecuteOptions {
  /** The plan's quantization settings; absent for a plan that quantizes nothing (dequant). */
  readonly settings?: QuantizationSettings;
  readonly nonFinite: 'error' | 'saturate';
  /** Called with source bytes consumed, for progress. */
  readonly onBytes?: (bytes: number) => void;
  /** Worker threads for the fast quantize path (pipelined-executors.ts); without it, this module's executors run. */
  readonly pool?: QuantizePool;
  /** Calibrated static activation scales by module, for `activation-scale` entries. */
  readonly activationScales?: ReadonlyMap<string, Float32Array>;
}

/** Copies move in pieces of this size: large enough for disk speed, small enough to stay flat. */
export const COPY_CHUNK_BYTES = 16 * 1024 * 1024;

export async function executeCopy(entry: CopyEntry, ckpt: Checkpoint, sink: OutputSink, opts: ExecuteOptions): Promise<void> {
  const src = ckpt.info(entry.sources[0]!);
  const out = entry.outputs[0]!;
  const reader = ckpt.reader(src.name);
  const buf = new Uint8Array(Math.min(COPY_CHUNK_BYTES, Math.max(1, src.byteLength)));
  for (let done = 0; done < src.byteLength; ) {
    const n = Math.min(buf.byteLength, src.byteLength - done);
    const piece = await reader.readRange(src.fileOffset + done, buf.subarray(0, n));
    await sink.write(out.name, piece, done);
    done += n;
    opts.onBytes?.(n);
  }
}

/** A NaN/Inf found while quantizing `src` (matrix `expert` of a 3-D stack), as the user sees it. */
export function nonFiniteWeightError(src: CheckpointTensor, expert: number, err: NonFiniteValueError, block: BlockShape): CheckpointError {
  const where = src.shape.length === 3 ? `[${expert}, ${err.row}, ${err.col}]` : `[${err.row}, ${err.col}]`;
  return new CheckpointError(
    `tensor "${src.name}" (${src.dtype}${JSON.stringify(src.shape)}) has a non-finite value (${err.value}) at ${where}, in block [${Math.floor(err.row / block.bn)}, ${Math.floor(err.col / block.bk)}]: ` +
      `the source checkpoint is damaged; fix it, or pass --allow-nonfinite to saturate ±Inf and zero NaN`,
  );
}

/** The plan's quantization settings, which every quantizing entry needs. */
export function quantizationSettings(opts: ExecuteOptions): QuantizationSettings {
  if (!opts.settings) throw new Error('a quantizing plan entry was executed without quantization settings');
  return opts.settings;
}

/** The kernel options of this run: the plan's format and scales, the run's NaN/Inf policy, `block` (default the plan's). */
export function kernelOptions(opts: ExecuteOptions, block: BlockShape = quantizationSettings(opts).block): ChunkSettings {
  const settings = quantizationSettings(opts);
  return { format: settings.format, block, scaleFormat: settings.scaleFormat, nonFinite: opts.nonFinite };
}

/** A `quantize` entry's float source and outputs, and the geometry of its `[E?, N, K]` weight in blocks. */
export interface QuantizeGeometry {
  readonly src: CheckpointTensor;
  readonly dtype: FloatSourceDtype;
  readonly weightOut: PlannedOutput;
  readonly scaleOut: PlannedOutput;
  /** The leading axis of a 3-D stack, else 1. */
  readonly experts: number;
  readonly n: number;
  readonly k: number;
  readonly bn: number;
  readonly rowBlocks: number;
  readonly colBlocks: number;
}

/** Shared by executeQuantize and the pipelined executor, so both read an entry the same way. */
export function quantizeGeometry(entry: QuantizeEntry, ckpt: Checkpoint, opts: ExecuteOptions): QuantizeGeometry {
  const src = ckpt.info(entry.sources[0]!);
  if (!isFloatSourceDtype(src.dtype)) throw new CheckpointError(`tensor "${src.name}" is ${src.dtype}; only float weights can be quantized`);
  const dtype: FloatSourceDtype = src.dtype;
  const [weightOut, scaleOut] = entry.outputs as [PlannedOutput, PlannedOutput];
  const rank = src.shape.length;
  const experts = rank === 3 ? src.shape[0]! : 1;
  const n = src.shape[rank - 2]!;
  const k = src.shape[rank - 1]!;
  const { bn, bk } = quantizationSettings(opts).block;
  return { src, dtype, weightOut, scaleOut, experts, n, k, bn, rowBlocks: ceilDiv(n, bn), colBlocks: ceilDiv(k, bk) };
}

export async function executeQuantize(entry: QuantizeEntry, ckpt: Checkpoint, sink: OutputSink, opts: ExecuteOptions): Promise<void> {
  const { src, dtype, weightOut, scaleOut, experts, n, k, bn, rowBlocks, colBlocks } = quantizeGeometry(entry, ckpt, opts);
  const stripeRows = Math.min(bn, n);
  const srcBytes = new Uint8Array(stripeRows * k * dtypeSize(dtype));
  const values = new Float32Array(stripeRows * k);
  const codes = new Uint8Array(stripeRows * k);
  // Scales are tiny (1/16384 of the weight at 128x128): gather them and write once, after the codes.
  const scales = new Float32Array(experts * rowBlocks * colBlocks);
  const quantOpts = kernelOptions(opts);
  for (let e = 0; e < experts; e++) {
    for (let rb = 0; rb < rowBlocks; rb++) {
      const r0 = rb * bn;
      const rows = Math.min(bn, n - r0);
      const globalRow = e * n + r0;
      // Rows of the [E·N, K] view: readRows counts along the first axis, which for a 3-D stack is E.
      const rowBytes = k * dtypeSize(dtype);
      const bytes = await ckpt.reader(src.name).readRange(src.fileOffset + globalRow * rowBytes, srcBytes.subarray(0, rows * rowBytes));
      const v = widenToFloat32(bytes, dtype, values.subarray(0, rows * k));
      const c = codes.subarray(0, rows * k);
      const scaleRow = scales.subarray((e * rowBlocks + rb) * colBlocks, (e * rowBlocks + rb + 1) * colBlocks);
      try {
        quantizeStripe(v, rows, k, quantOpts, c, scaleRow, r0);
      } catch (err) {
        if (err instanceof NonFiniteValueError) throw nonFiniteWeightError(src, e, err, quantizationSettings(opts).block);
        throw err;
      }
      await sink.write(weightOut.name, c, globalRow * k);
      opts.onBytes?.(bytes.byteLength);
    }
  }
  await sink.write(scaleOut.name, new Uint8Array(scales.buffer), 0);
}
