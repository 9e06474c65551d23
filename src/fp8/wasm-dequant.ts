// Dequantizing block-scaled FP8 codes to BF16/F16 in the WebAssembly SIMD kernel
// (wasm/fp8-kernel.ts dequantFromTables): the contract and the bytes of dequantizeScaledExact
// (scaled-decode.ts), which stays the fallback and the oracle's twin, ~10x faster, plus the count
// of NaN/Inf outputs, so the thread that makes the values also checks them. Per grid row, each
// scale block gets the 256-entry table of its possible outputs, built here with the oracle's own
// rounding (round-once.ts); the kernel only looks codes up in it. When a table is odd in the
// code's sign bit (true of every finite, non-NaN scale: NaN codes give the one canonical NaN
// whatever their sign), the kernel looks up 128 entries instead of 256. Each thread owns one
// instance: codes are copied into its memory and the values out.

import { float64ToBf16Bits, float64ToF16Bits } from './round-once.js';
import { fp8DecodeTable, type Fp8Dtype, type ScaleGridSlice } from './scaled-decode.js';
import { align16, kernelInstance, reserveKernelMemory, type KernelExports } from './wasm-kernel.js';

/** First magnitude (code & 0x7f) that decodes to NaN. */
const NAN_MAGNITUDE: Readonly<Record<Fp8Dtype, number>> = { F8_E4M3: 0x7f, F8_E5M2: 0x7d };

/** Exponent mask and its lowest bit per output dtype: `(w & mask) + low` sets bit 15 exactly for NaN/Inf. */
const EXPONENT: Readonly<Record<'BF16' | 'F16', { readonly mask: number; readonly low: number }>> = {
  BF16: { mask: 0x7f80, low: 0x0080 },
  F16: { mask: 0x7c00, low: 0x0400 },
};

export class WasmDequantKernel {
  private bytes: Uint8Array;

  private constructor(private readonly kernel: KernelExports) {
    this.bytes = new Uint8Array(kernel.memory.buffer);
  }

  /** A kernel instance for this thread, or undefined without WebAssembly SIMD. */
  static create(): WasmDequantKernel | undefined {
    const kernel = kernelInstance();
    return kernel ? new WasmDequantKernel(kernel) : undefined;
  }

  /**
   * dequantizeScaledExact (scaled-decode.ts) to BF16 or F16 with the same arguments and bytes:
   * `rows × cols` codes scaled by `grid`, rounded once, little-endian into `out` (rows × cols × 2
   * bytes). Returns how many of the values written are NaN/Inf.
   */
  dequantize(codes: Uint8Array, rows: number, cols: number, dtype: Fp8Dtype, grid: ScaleGridSlice, to: 'BF16' | 'F16', out: Uint8Array): number {
    const decode = fp8DecodeTable(dtype);
    const narrow = to === 'BF16' ? float64ToBf16Bits : float64ToF16Bits;
    const { colBlock, gridCols } = grid;
    const n = Math.ceil(cols / colBlock);
    if (n > gridCols) throw new Error(`a scale grid of ${gridCols} column blocks of ${colBlock} does not cover ${cols} columns`);
    const count = rows * cols;
    // Layout: [edges i32 × (n+1)][flips i32 × n][tables 512 × n][codes][values u16].
    const edgesAt = 0;
    const flipsAt = align16(edgesAt + (n + 1) * 4);
    const tablesAt = align16(flipsAt + n * 4);
    const codesAt = align16(tablesAt + n * 512);
    const outAt = align16(codesAt + count);
    reserveKernelMemory(this.kernel, outAt + count * 2);
    if (this.bytes.buffer !== this.kernel.memory.buffer) this.bytes = new Uint8Array(this.kernel.memory.buffer);
    const buffer = this.kernel.memory.buffer;
    const edges = new Int32Array(buffer, edgesAt, n + 1);
    for (let j = 0; j <= n; j++) edges[j] = Math.min(cols, j * colBlock);
    const flips = new Int32Array(buffer, flipsAt, n);
    const bytes = this.bytes;
    bytes.set(codes.subarray(0, count), codesAt);
    const nanFrom = NAN_MAGNITUDE[dtype];
    const { mask, low } = EXPONENT[to];
    const firstGridRow = Math.floor(grid.firstRow / grid.rowBlock);
    let any = 0;
    for (let ra = 0; ra < rows; ) {
      const g = Math.floor((grid.firstRow + ra) / grid.rowBlock) - firstGridRow;
      const rb = Math.min(rows, (firstGridRow + g + 1) * grid.rowBlock - grid.firstRow);
      for (let j = 0; j < n; j++) {
        const s = grid.scales[g * gridCols + j]!;
        const lo = tablesAt + j * 512;
        const hi = lo + 256;
        let odd = true;
        for (let c = 0; c < 256; c++) {
          const w = narrow(decode[c]! * s);
          bytes[lo + c] = w & 0xff;
          bytes[hi + c] = w >>> 8;
        }
        // The 128-entry lookup applies when the negative codes' entries are the positive ones' with
        // the sign bit set, and the NaN codes' entries are the same for both signs.
        for (let m = 0; m < 128 && odd; m++) {
          const sign = m < nanFrom ? 0x80 : 0;
          odd = bytes[lo + (m | 0x80)] === bytes[lo + m] && bytes[hi + (m | 0x80)] === (bytes[hi + m]! ^ sign);
        }
        flips[j] = odd ? nanFrom : 0;
      }
      any |= this.kernel.dequantFromTables(codesAt, cols, ra, rb, edgesAt, n, tablesAt, flipsAt, outAt, mask, low);
      ra = rb;
    }
    const values = bytes.subarray(outAt, outAt + count * 2);
    out.set(values);
    if (any === 0) return 0;
    const words = new Uint16Array(buffer, outAt, count);
    let nonFinite = 0;
    for (let i = 0; i < count; i++) if ((words[i]! & mask) === mask) nonFinite++;
    return nonFinite;
  }
}
