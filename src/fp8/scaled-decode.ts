// Decoding block-scaled FP8 codes (an FP8 checkpoint's weight and its scale_inv grid) in bulk, for
// the stripe driver's workers: to float32 as `fround(fp8 × scale)` (what PyTorch's
// `w.float() * scale_inv` gives; --requantize), or rounded once from the exact product to
// BF16/F16/F32 (dequant, round-once.ts). Within one block every element shares its scale, so each
// block gets a 256-entry table of the 256 possible results and the stripe is table lookups; the
// tables hold exactly what the per-element formulas (io/formats/float-rows.ts, the oracle) give.
// Pure: no I/O.

import { float64ToBf16Bits, float64ToF16Bits } from './round-once.js';
import { E4M3_DECODE, E5M2_DECODE } from './formats.js';

/** FP8 storage dtypes a checkpoint may hold. */
export type Fp8Dtype = 'F8_E4M3' | 'F8_E5M2';

/**
 * The scale grid over a run of rows of one matrix: `scales` holds the grid rows that cover them,
 * row-major `[*, gridCols]` (already un-transposed), its row 0 being the block row of `firstRow`.
 */
export interface ScaleGridSlice {
  readonly scales: Float32Array;
  readonly gridCols: number;
  readonly rowBlock: number;
  readonly colBlock: number;
  /** Row of the run's first row within its matrix. */
  readonly firstRow: number;
}

export function fp8DecodeTable(dtype: Fp8Dtype): Float32Array {
  return dtype === 'F8_E4M3' ? E4M3_DECODE : E5M2_DECODE;
}

/**
 * Calls `row(r, tableRow)` for each of `rows` rows with the grid row it falls in, refilling the
 * per-column-block tables (gridCols × 256 entries, `fill(table, at, scale)`) only when the grid
 * row changes.
 */
function forEachGridRow<T extends Float32Array | Uint16Array>(
  rows: number,
  grid: ScaleGridSlice,
  tables: T,
  fill: (table: T, at: number, scale: number) => void,
  row: (r: number) => void,
): void {
  const first = Math.floor(grid.firstRow / grid.rowBlock);
  let current = -1;
  for (let r = 0; r < rows; r++) {
    const g = Math.floor((grid.firstRow + r) / grid.rowBlock) - first;
    if (g !== current) {
      current = g;
      for (let cb = 0; cb < grid.gridCols; cb++) fill(tables, cb * 256, grid.scales[g * grid.gridCols + cb]!);
    }
    row(r);
  }
}

/** `rows × cols` codes → float32 `fround(decode(code) × scale)` into `out`. */
export function decodeScaledToFloat32(codes: Uint8Array, rows: number, cols: number, dtype: Fp8Dtype, grid: ScaleGridSlice, out: Float32Array): Float32Array {
  const decode = fp8DecodeTable(dtype);
  const tables = new Float32Array(grid.gridCols * 256);
  const { colBlock } = grid;
  forEachGridRow(
    rows,
    grid,
    tables,
    (t, at, s) => {
      for (let c = 0; c < 256; c++) t[at + c] = decode[c]! * s;
    },
    (r) => {
      const base = r * cols;
      for (let c0 = 0, cb = 0; c0 < cols; c0 += colBlock, cb++) {
        const end = Math.min(cols, c0 + colBlock);
        const at = cb * 256;
        for (let c = c0; c < end; c++) out[base + c] = tables[at + codes[base + c]!]!;
      }
    },
  );
  return out.subarray(0, rows * cols);
}

/** Output dtypes of an exact dequantization. */
export type DequantDtype = 'BF16' | 'F16' | 'F32';

/**
 * `rows × cols` codes → `decode(code) × scale` (exact in float64) rounded once to `dtype`,
 * little-endian into `out` (rows × cols × 2 or 4 bytes).
 */
export function dequantizeScaledExact(codes: Uint8Array, rows: number, cols: number, dtype: Fp8Dtype, grid: ScaleGridSlice, to: DequantDtype, out: Uint8Array): Uint8Array {
  const decode = fp8DecodeTable(dtype);
  const n = rows * cols;
  const { colBlock } = grid;
  if (to === 'F32') {
    // One float32 rounding of the exact product: fround(v × s) computed in float64 is exactly that.
    const f = new Float32Array(out.buffer, out.byteOffset, n);
    decodeScaledToFloat32(codes, rows, cols, dtype, grid, f);
    return out.subarray(0, n * 4);
  }
  const narrow = to === 'BF16' ? float64ToBf16Bits : float64ToF16Bits;
  const words = new Uint16Array(out.buffer, out.byteOffset, n);
  const tables = new Uint16Array(grid.gridCols * 256);
  forEachGridRow(
    rows,
    grid,
    tables,
    (t, at, s) => {
      for (let c = 0; c < 256; c++) t[at + c] = narrow(decode[c]! * s);
    },
    (r) => {
      const base = r * cols;
      for (let c0 = 0, cb = 0; c0 < cols; c0 += colBlock, cb++) {
        const end = Math.min(cols, c0 + colBlock);
        const at = cb * 256;
        for (let c = c0; c < end; c++) words[base + c] = tables[at + codes[base + c]!]!;
      }
    },
  );
  return out.subarray(0, n * 2);
}
