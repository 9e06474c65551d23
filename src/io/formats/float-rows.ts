// A weight to be read as float values, whatever it is stored as: BF16/FP16/FP32/F64, or FP8 with
// its block scale_inv (FP8 checkpoints as input), whose scale tensor is checked against the grid
// the weight needs and loaded as float32. The tensor is seen as a 2-D matrix of rows = product of
// all axes but the last, columns = the last axis; the scale grid is indexed per leading index by
// the tensor's last two axes (Fp8SourceRef). The stripe driver reads the rows (stripe-tasks.ts).

import { isFloatSourceDtype, isFp8Dtype, widenToFloat32 } from '../../fp8/dtypes.js';
import { ceilDiv } from '../../fp8/block-quantize.js';
import { E4M3_DECODE, E5M2_DECODE } from '../../fp8/formats.js';
import type { Fp8SourceRef } from './descriptor.js';
import type { Checkpoint, CheckpointTensor } from '../checkpoint/checkpoint.js';
import { CheckpointError } from '../errors.js';
import { elementCount } from '../safetensors/safetensors-reader.js';

/** The scale grid an FP8 tensor of `shape` needs under `ref` (leading axes, then the 2-D grid). */
export function expectedScaleShape(shape: readonly number[], ref: Omit<Fp8SourceRef, 'scale'>): number[] {
  const rows = shape.length >= 2 ? shape[shape.length - 2]! : 1;
  const cols = shape[shape.length - 1] ?? 1;
  const grid = [ceilDiv(rows, ref.rowBlock), ceilDiv(cols, ref.colBlock)];
  return [...shape.slice(0, -2), ...(ref.scaleTransposed ? [grid[1]!, grid[0]!] : grid)];
}

function withoutOnes(shape: readonly number[]): string {
  return JSON.stringify(shape.filter((d) => d !== 1));
}

/** An FP8 tensor's scales as FloatRowReader.blockScales gives them. */
export interface BlockScales {
  readonly scales: Float32Array;
  readonly gridRows: number;
  readonly gridCols: number;
  readonly rowBlock: number;
  readonly colBlock: number;
}

export class FloatRowReader {
  /** Rows of the 2-D view (all axes but the last). */
  readonly rows: number;
  readonly cols: number;
  /** Rows of one matrix (the second-to-last axis): where the scale grid restarts. */
  private readonly matrixRows: number;
  private readonly decode: Float32Array | undefined;

  private constructor(
    readonly info: CheckpointTensor,
    private readonly ref: Fp8SourceRef | undefined,
    /** The scale values as float32 (exact for F32/BF16/F16 scale tensors). */
    private readonly scales: Float32Array | undefined,
  ) {
    const shape = info.shape;
    this.cols = shape[shape.length - 1] ?? 1;
    this.rows = this.cols === 0 ? 0 : elementCount(shape) / this.cols;
    this.matrixRows = shape.length >= 2 ? shape[shape.length - 2]! : 1;
    this.decode = info.dtype === 'F8_E4M3' ? E4M3_DECODE : info.dtype === 'F8_E5M2' ? E5M2_DECODE : undefined;
  }

  static async open(ckpt: Checkpoint, name: string, ref?: Fp8SourceRef): Promise<FloatRowReader> {
    const info = ckpt.info(name);
    if (isFloatSourceDtype(info.dtype)) return new FloatRowReader(info, undefined, undefined);
    if (!isFp8Dtype(info.dtype)) throw new CheckpointError(`tensor "${name}" is ${info.dtype}; only float or FP8 weights can be read as values`);
    if (!ref) throw new CheckpointError(`tensor "${name}" is ${info.dtype} but has no scale tensor: its values cannot be recovered`);
    const scaleInfo = ckpt.info(ref.scale);
    checkFp8Scale(ckpt, name, ref);
    if (!isFloatSourceDtype(scaleInfo.dtype)) throw new CheckpointError(`scale tensor "${ref.scale}" is ${scaleInfo.dtype}`); // (checked above; narrows the type)
    const scales = widenToFloat32(await ckpt.readTensor(ref.scale), scaleInfo.dtype);
    return new FloatRowReader(info, ref, scales);
  }

  get isFp8(): boolean {
    return this.decode !== undefined;
  }

  /** Rows of one matrix (the second-to-last axis): a scale grid never spans two. */
  get rowsPerMatrix(): number {
    return this.matrixRows;
  }

  /**
   * An FP8 tensor's scale grid, un-transposed: per matrix, `[gridRows, gridCols]` row-major over
   * (stored row block, stored column block). Undefined for a float tensor.
   */
  blockScales(): BlockScales | undefined {
    if (!this.ref || !this.scales) return undefined;
    const { rowBlock, colBlock, scaleTransposed } = this.ref;
    const gridRows = ceilDiv(this.matrixRows, rowBlock);
    const gridCols = ceilDiv(this.cols, colBlock);
    if (!scaleTransposed) return { scales: this.scales, gridRows, gridCols, rowBlock, colBlock };
    const per = gridRows * gridCols;
    const out = new Float32Array(this.scales.length);
    for (let m = 0; m < this.scales.length / per; m++) {
      for (let r = 0; r < gridRows; r++) for (let c = 0; c < gridCols; c++) out[m * per + r * gridCols + c] = this.scales[m * per + c * gridRows + r]!;
    }
    return { scales: out, gridRows, gridCols, rowBlock, colBlock };
  }
}

/**
 * The scale tensor of FP8 weight `name` has a float dtype and the shape its blocks need; returns
 * that shape. Reads nothing, so inspect and dequant can check every weight before any long work.
 */
export function checkFp8Scale(ckpt: Checkpoint, name: string, ref: Fp8SourceRef): number[] {
  const info = ckpt.info(name);
  const scaleInfo = ckpt.info(ref.scale);
  if (!isFloatSourceDtype(scaleInfo.dtype)) {
    throw new CheckpointError(`scale tensor "${ref.scale}" is ${scaleInfo.dtype}; fp8q reads F32, BF16 or F16 block scales`);
  }
  const expected = expectedScaleShape(info.shape, ref);
  // [E] vs [E, 1, 1] and the like hold the same values in the same order; other differences do not.
  if (withoutOnes(scaleInfo.shape) !== withoutOnes(expected)) {
    throw new CheckpointError(
      `scale tensor "${ref.scale}" is ${JSON.stringify(scaleInfo.shape)} but "${name}" ${JSON.stringify(info.shape)} with ${ref.rowBlock}x${ref.colBlock} blocks ` +
        `needs ${JSON.stringify(expected)}: the block size in config.json does not match the tensors`,
    );
  }
  return [...expected];
}
