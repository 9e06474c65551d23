// What executing a plan entry shares (the output sink, the options, the kernel settings, the
// user-facing NaN/Inf errors, a quantize entry's geometry), and the plain copy: a source moves in
// bounded pieces, never a whole tensor. Weights go through the stripe driver (stripe-tasks.ts).

import { ceilDiv, type BlockShape, type NonFiniteValueError } from '../fp8/block-quantize.js';
import { isFloatSourceDtype, type FloatSourceDtype } from '../fp8/dtypes.js';
import type { CopyEntry, PlannedOutput, QuantizationSettings, QuantizeEntry } from '../passes/plan.js';
import type { Checkpoint, CheckpointTensor } from '../io/checkpoint/checkpoint.js';
import { CheckpointError } from '../io/errors.js';
import { countNonFinite } from '../io/checkpoint/nonfinite-count.js';
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
  /** Worker threads and I/O resources of the fast path; without it (--threads 0) the reference kernel runs on this thread. */
  readonly pool?: QuantizePool;
  /** Calibrated static activation scales by module, for `activation-scale` entries. */
  readonly activationScales?: ReadonlyMap<string, Float32Array>;
  /** With nonFinite 'saturate': an unquantized tensor copied with `values` NaN/Inf in it (kept as they are). */
  readonly onNonFiniteKept?: (tensor: string, values: number) => void;
}

/** Copies move in pieces of this size: large enough for disk speed, small enough to stay flat. */
export const COPY_CHUNK_BYTES = 16 * 1024 * 1024;

/**
 * NaN/Inf among the bytes of an unquantized tensor being copied: an error naming the tensor, or
 * with --allow-nonfinite their count (the values are kept as they are).
 */
export function checkCopiedPiece(entry: CopyEntry, src: CheckpointTensor, piece: Uint8Array, opts: ExecuteOptions): number {
  const bad = countNonFinite(piece, src.dtype);
  if (bad > 0 && opts.nonFinite === 'error') {
    throw new CheckpointError(
      `tensor "${src.name}" (${src.dtype}${JSON.stringify(src.shape)}, kept unquantized: ${entry.reason}) holds NaN/Inf values: ` +
        'the source checkpoint is damaged and the output would compute NaN; fix it, or pass --allow-nonfinite to keep them as they are',
      'E_INPUT_NONFINITE',
    );
  }
  return bad;
}

export async function executeCopy(entry: CopyEntry, ckpt: Checkpoint, sink: OutputSink, opts: ExecuteOptions): Promise<void> {
  const src = ckpt.info(entry.sources[0]!);
  const out = entry.outputs[0]!;
  const reader = ckpt.reader(src.name);
  const buf = new Uint8Array(Math.min(COPY_CHUNK_BYTES, Math.max(1, src.byteLength)));
  let nonFinite = 0;
  for (let done = 0; done < src.byteLength; ) {
    const n = Math.min(buf.byteLength, src.byteLength - done);
    const piece = await reader.readRange(src.fileOffset + done, buf.subarray(0, n));
    nonFinite += checkCopiedPiece(entry, src, piece, opts);
    await sink.write(out.name, piece, done);
    done += n;
    opts.onBytes?.(n);
  }
  if (nonFinite > 0) opts.onNonFiniteKept?.(src.name, nonFinite);
}

/** The CheckpointError for a NaN/Inf of `source`, at the source coordinates `where` gives. */
export function nonFiniteSourceError(err: NonFiniteValueError, source: string, where: (row: number, col: number) => string): CheckpointError {
  return new CheckpointError(
    `tensor "${source}" has a non-finite value (${err.value}) at ${where(err.row, err.col)}: ` +
      `the source checkpoint is damaged; fix it, or pass --allow-nonfinite to saturate ±Inf and zero NaN`,
    'E_INPUT_NONFINITE',
  );
}

/** A NaN/Inf found while quantizing `src` (matrix `expert` of a 3-D stack), as the user sees it. */
export function nonFiniteWeightError(src: CheckpointTensor, expert: number, err: NonFiniteValueError, block: BlockShape): CheckpointError {
  const where = src.shape.length === 3 ? `[${expert}, ${err.row}, ${err.col}]` : `[${err.row}, ${err.col}]`;
  return new CheckpointError(
    `tensor "${src.name}" (${src.dtype}${JSON.stringify(src.shape)}) has a non-finite value (${err.value}) at ${where}, in block [${Math.floor(err.row / block.bn)}, ${Math.floor(err.col / block.bk)}]: ` +
      `the source checkpoint is damaged; fix it, or pass --allow-nonfinite to saturate ±Inf and zero NaN`,
    'E_INPUT_NONFINITE',
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

/** A quantize entry's source checked and measured (stripe-tasks.ts). */
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
