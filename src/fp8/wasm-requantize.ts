// Requantizing block-scaled FP8 codes to new blocks in the WebAssembly SIMD kernel
// (wasm/fp8-kernel.ts maxMagnitudes, requantizeTables, encodeFromTables): the method and the
// contract of requantize-codes.ts, ~10x faster, which is what keeps `convert --requantize` at
// disk speed on two cores (bench/NOTES.md). Per target stripe, the columns are cut where a source
// or a target block begins, and the rows where a source block row begins; each piece lies in one
// source block and one target block. The kernel finds each piece's largest code magnitude; here
// the target blocks' amax and scales are computed with the oracle's own scaleFromAmax (and the
// chunk declined on a NaN/Inf code, a non-finite scale or an overflowing product, exactly where
// requantize-codes.ts declines); then the kernel builds a 128-entry table per piece and maps
// every code through it. Each thread owns one instance: codes are copied into its memory and the
// new codes out.

import { scaleFromAmax, stripeSettings, type BlockQuantizeOptions } from './block-quantize.js';
import { nonFiniteCode } from './requantize-codes.js';
import { fp8DecodeTable, type Fp8Dtype, type ScaleGridSlice } from './scaled-decode.js';
import { align16, kernelInstance, reserveKernelMemory, type KernelExports } from './wasm-kernel.js';

export class WasmRequantizeKernel {
  private constructor(private readonly kernel: KernelExports) {}

  /** A kernel instance for this thread, or undefined without WebAssembly SIMD. */
  static create(): WasmRequantizeKernel | undefined {
    const kernel = kernelInstance();
    return kernel ? new WasmRequantizeKernel(kernel) : undefined;
  }

  /**
   * requantizeCodes (requantize-codes.ts) with the same arguments, result and bytes: `rows` rows
   * (whole target stripes, the first at a multiple of bn) of `codes` with source scales `grid` into
   * `out` codes and `scales`. Returns false, writing nothing meaningful, when a stripe needs the
   * general path.
   */
  requantize(codes: Uint8Array, rows: number, cols: number, dtype: Fp8Dtype, grid: ScaleGridSlice, opts: BlockQuantizeOptions, out: Uint8Array, scales: Float32Array): boolean {
    const gridScales = grid.scales;
    for (let i = 0; i < gridScales.length; i++) if (!Number.isFinite(gridScales[i]!)) return false;
    const decode = fp8DecodeTable(dtype);
    const { bk, max, scaleFormat } = stripeSettings(opts);
    const bn = opts.block.bn;
    const colBlocks = Math.ceil(cols / bk);
    // Column pieces: a new one wherever a target or a source column block begins.
    const edges = [0];
    const pieceBlock: number[] = [];
    const pieceGridCol: number[] = [];
    for (let c = 0; c < cols; ) {
      pieceBlock.push(Math.floor(c / bk));
      pieceGridCol.push(Math.floor(c / grid.colBlock));
      c = Math.min(cols, (Math.floor(c / bk) + 1) * bk, (Math.floor(c / grid.colBlock) + 1) * grid.colBlock);
      edges.push(c);
    }
    const n = pieceBlock.length;
    const count = rows * cols;
    // Layout: [decode f32 × 128][edges i32 × (n+1)][magnitudes i32 × n][source scales f32 × n]
    // [target scales f32 × n][tables 128 × n][codes][new codes].
    const decodeAt = 0;
    const edgesAt = 512;
    const magsAt = align16(edgesAt + (n + 1) * 4);
    const srcAt = align16(magsAt + n * 4);
    const dstAt = align16(srcAt + n * 4);
    const tablesAt = align16(dstAt + n * 4);
    const codesAt = align16(tablesAt + n * 128);
    const outAt = align16(codesAt + count);
    reserveKernelMemory(this.kernel, outAt + count);
    const buffer = this.kernel.memory.buffer;
    new Float32Array(buffer, decodeAt, 128).set(decode.subarray(0, 128));
    new Int32Array(buffer, edgesAt, n + 1).set(edges);
    const mags = new Int32Array(buffer, magsAt, n);
    const src = new Float32Array(buffer, srcAt, n);
    const dst = new Float32Array(buffer, dstAt, n);
    new Uint8Array(buffer, codesAt, count).set(codes.subarray(0, count));
    const e5m2 = opts.format === 'e5m2' ? 1 : 0;
    const gridRow0 = Math.floor(grid.firstRow / grid.rowBlock);
    const amax = new Float64Array(colBlocks);
    for (let s = 0, r0 = 0; r0 < rows; s++, r0 += bn) {
      const r1 = Math.min(rows, r0 + bn);
      amax.fill(0);
      // Pass 1: every piece's largest magnitude, folded into its target block's amax.
      for (let ra = r0; ra < r1; ) {
        const g = Math.floor((grid.firstRow + ra) / grid.rowBlock) - gridRow0;
        const rb = Math.min(r1, (gridRow0 + g + 1) * grid.rowBlock - grid.firstRow);
        this.kernel.maxMagnitudes(codesAt, cols, ra, rb, edgesAt, n, magsAt);
        const gridRow = g * grid.gridCols;
        for (let j = 0; j < n; j++) {
          const mag = mags[j]!;
          // NaN/Inf codes have the largest magnitudes, so a piece's largest tells whether it holds one.
          if (nonFiniteCode(dtype, mag)) return false;
          const a = Math.fround(decode[mag]! * Math.abs(gridScales[gridRow + pieceGridCol[j]!]!));
          if (a === Infinity) return false;
          if (a > amax[pieceBlock[j]!]!) amax[pieceBlock[j]!] = a;
        }
        ra = rb;
      }
      const stripeScales = scales.subarray(s * colBlocks, (s + 1) * colBlocks);
      for (let cb = 0; cb < colBlocks; cb++) stripeScales[cb] = scaleFromAmax(amax[cb]!, max, scaleFormat);
      for (let j = 0; j < n; j++) dst[j] = stripeScales[pieceBlock[j]!]!;
      // Pass 2: a table per piece, then every code through its piece's table.
      for (let ra = r0; ra < r1; ) {
        const g = Math.floor((grid.firstRow + ra) / grid.rowBlock) - gridRow0;
        const rb = Math.min(r1, (gridRow0 + g + 1) * grid.rowBlock - grid.firstRow);
        const gridRow = g * grid.gridCols;
        for (let j = 0; j < n; j++) src[j] = gridScales[gridRow + pieceGridCol[j]!]!;
        this.kernel.requantizeTables(decodeAt, srcAt, dstAt, n, tablesAt, e5m2);
        this.kernel.encodeFromTables(codesAt, cols, ra, rb, edgesAt, n, tablesAt, outAt);
        ra = rb;
      }
    }
    out.set(new Uint8Array(buffer, outAt, count));
    return true;
  }
}
