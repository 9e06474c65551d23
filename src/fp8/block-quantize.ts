// Block-scale FP8 quantization of 2-D weights, the numerics of docs/FORMAT.md §2:
// per (bn × bk) block, amax in float32, scale = amax / FP8_MAX (float32 division),
// q = fp8(clamp(w / scale)) with a float32 division per element. This is the reference kernel:
// any faster path must produce the same bytes.

import { encoderFor, fp8FormatInfo, type Fp8Format } from './formats.js';

export type ScaleFormat = 'float' | 'ue8m0';

export interface BlockShape {
  /** Rows per block (output features). */
  readonly bn: number;
  /** Columns per block (input features). */
  readonly bk: number;
}

export interface BlockQuantizeOptions {
  readonly format: Fp8Format;
  readonly block: BlockShape;
  readonly scaleFormat?: ScaleFormat;
  /**
   * What to do with NaN/±Inf. 'error' (default) throws NonFiniteValueError; 'saturate' maps ±Inf to
   * ±FP8_MAX and NaN to 0 and keeps them out of amax, so the rest of the block is unaffected.
   */
  readonly nonFinite?: 'error' | 'saturate';
}

export interface BlockQuantized {
  readonly codes: Uint8Array;
  /** Dequantization multipliers, [ceil(rows/bn), ceil(cols/bk)] row-major. */
  readonly scaleInv: Float32Array;
}

/** A NaN or Inf in a weight: a checkpoint with it would silently be wrong. */
export class NonFiniteValueError extends Error {
  constructor(
    readonly row: number,
    readonly col: number,
    readonly value: number,
  ) {
    super(`non-finite value ${value} at [${row}, ${col}]`);
    this.name = 'NonFiniteValueError';
  }
}

export function ceilDiv(a: number, b: number): number {
  return Math.floor((a + b - 1) / b);
}

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/**
 * Round a positive float32 scale up to a power of two (UE8M0). Done on the bits, not with
 * ceil(log2(x)): float32 log2 of a value just above 2^k can round to k and give a scale that clips.
 */
export function roundUpToPowerOfTwo(scale: number): number {
  scratchF32[0] = scale;
  const bits = scratchU32[0]!;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0) {
    // Subnormal: the next power of two at or above it.
    let p = 2 ** -149;
    while (p < scale) p *= 2;
    return p;
  }
  if (mant === 0) return scale;
  return 2 ** (exp - 127 + 1);
}

/** The scale of one block from its float32 amax; never 0, NaN or Inf for finite amax. */
export function scaleFromAmax(amax: number, fp8Max: number, scaleFormat: ScaleFormat): number {
  let scale = Math.fround(amax / fp8Max);
  // All-zero block (or float32 underflow): any positive scale dequantizes zeros to zeros.
  if (!(scale > 0)) scale = 1;
  return scaleFormat === 'ue8m0' ? roundUpToPowerOfTwo(scale) : scale;
}

/** What every stripe kernel (this oracle, fast-quantize.ts, wasm-kernel.ts) reads from the options, defaults applied. */
export interface StripeSettings {
  readonly bk: number;
  /** FP8_MAX of the format. */
  readonly max: number;
  readonly scaleFormat: ScaleFormat;
  /** nonFinite === 'saturate'. */
  readonly saturate: boolean;
}

export function stripeSettings(opts: BlockQuantizeOptions): StripeSettings {
  return {
    bk: opts.block.bk,
    max: fp8FormatInfo(opts.format).max,
    scaleFormat: opts.scaleFormat ?? 'float',
    saturate: opts.nonFinite === 'saturate',
  };
}

/**
 * Quantize one row stripe (at most `bn` rows of a [rows, cols] matrix) into `codes` (same layout)
 * and `scaleInv` (one row of ceil(cols/bk) scales). `firstRow` only labels errors.
 */
export function quantizeStripe(
  values: Float32Array,
  rowsInStripe: number,
  cols: number,
  opts: BlockQuantizeOptions,
  codes: Uint8Array,
  scaleInv: Float32Array,
  firstRow = 0,
): void {
  const { bk, max, scaleFormat, saturate } = stripeSettings(opts);
  const encode = encoderFor(opts.format);
  const colBlocks = ceilDiv(cols, bk);
  for (let cb = 0; cb < colBlocks; cb++) {
    const c0 = cb * bk;
    const c1 = Math.min(cols, c0 + bk);
    let amax = 0;
    for (let r = 0; r < rowsInStripe; r++) {
      const base = r * cols;
      for (let c = c0; c < c1; c++) {
        const v = values[base + c]!;
        const a = v < 0 ? -v : v;
        if (a !== a || a === Infinity) {
          if (!saturate) throw new NonFiniteValueError(firstRow + r, c, v);
          continue; // kept out of amax: one bad value must not zero the rest of its block
        }
        if (a > amax) amax = a;
      }
    }
    const scale = scaleFromAmax(amax, max, scaleFormat);
    scaleInv[cb] = scale;
    for (let r = 0; r < rowsInStripe; r++) {
      const base = r * cols;
      for (let c = c0; c < c1; c++) {
        const v = values[base + c]!;
        let q = Math.fround(v / scale);
        if (q > max) q = max;
        else if (q < -max) q = -max;
        else if (q !== q) q = 0; // NaN only reaches here under the saturate policy
        codes[base + c] = encode(q);
      }
    }
  }
}

/** Quantize a whole [rows, cols] float32 matrix. */
export function blockQuantize(values: Float32Array, rows: number, cols: number, opts: BlockQuantizeOptions): BlockQuantized {
  if (values.length !== rows * cols) {
    throw new RangeError(`blockQuantize: ${values.length} values for shape [${rows}, ${cols}]`);
  }
  const { bn } = opts.block;
  const codes = new Uint8Array(rows * cols);
  const colBlocks = ceilDiv(cols, opts.block.bk);
  const scaleInv = new Float32Array(ceilDiv(rows, bn) * colBlocks);
  for (let r0 = 0, rb = 0; r0 < rows; r0 += bn, rb++) {
    const n = Math.min(bn, rows - r0);
    quantizeStripe(
      values.subarray(r0 * cols, (r0 + n) * cols),
      n,
      cols,
      opts,
      codes.subarray(r0 * cols, (r0 + n) * cols),
      scaleInv.subarray(rb * colBlocks, (rb + 1) * colBlocks),
      r0,
    );
  }
  return { codes, scaleInv };
}

/** w ≈ decode(code) × scale_inv[block]: the dequantization every runtime does. */
export function blockDequantize(codes: Uint8Array, scaleInv: Float32Array, rows: number, cols: number, block: BlockShape, decodeTable: Float32Array): Float32Array {
  const out = new Float32Array(rows * cols);
  const colBlocks = ceilDiv(cols, block.bk);
  for (let r = 0; r < rows; r++) {
    const srow = Math.floor(r / block.bn) * colBlocks;
    for (let c = 0; c < cols; c++) {
      out[r * cols + c] = Math.fround(decodeTable[codes[r * cols + c]!]! * scaleInv[srow + Math.floor(c / block.bk)]!);
    }
  }
  return out;
}
