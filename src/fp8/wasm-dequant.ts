// Dequantizing block-scaled FP8 codes to BF16/F16 in the WebAssembly SIMD kernel
// (wasm/fp8-kernel.ts dequantFromTables): the contract and the bytes of dequantizeScaledExact
// (scaled-decode.ts), which stays the fallback and the oracle's twin, ~10x faster, plus the count
// of NaN/Inf outputs, so the thread that makes the values also checks them. Per grid row, each
// scale block gets the 256-entry table of its possible outputs, built here with the oracle's own
// rounding (round-once.ts); the kernel only looks codes up in it. When a table is odd in the
// code's sign bit (true of every finite, non-NaN scale: NaN codes give the one canonical NaN
// whatever their sign), the kernel looks up 128 entries instead of 256; when, besides, every normal
// code's entry is its mantissa's base plus its exponent shifted into place (true whenever the
// outputs are normal, so for every ordinary scale), one 16-entry lookup and an add per code. The
// table says which applies: each shortcut is taken only where it gives every entry of the table.
// Each thread owns one instance: codes are copied into its memory and the values out.

import { float64ToBf16Bits, float64ToF16Bits } from './round-once.js';
import { fp8DecodeTable, type Fp8Dtype, type ScaleGridSlice } from './scaled-decode.js';
import { align16, kernelInstance, reserveKernelMemory, type KernelExports } from './wasm-kernel.js';

/** Per FP8 dtype: the first magnitude (code & 0x7f) that is NaN, the Inf magnitude (0x80: none), the first normal magnitude, mantissa bits. */
const FP8_CODES: Readonly<Record<Fp8Dtype, { readonly nanFrom: number; readonly inf: number; readonly subLimit: number; readonly mantBits: number }>> = {
  F8_E4M3: { nanFrom: 0x7f, inf: 0x80, subLimit: 8, mantBits: 3 },
  F8_E5M2: { nanFrom: 0x7d, inf: 0x7c, subLimit: 4, mantBits: 2 },
};

/** Per output dtype: exponent mask and its lowest bit (`(w & mask) + low` sets bit 15 exactly for NaN/Inf), the exponent's shift. */
const EXPONENT: Readonly<Record<'BF16' | 'F16', { readonly mask: number; readonly low: number; readonly shift: number }>> = {
  BF16: { mask: 0x7f80, low: 0x0080, shift: 7 },
  F16: { mask: 0x7c00, low: 0x0400, shift: 10 },
};

/** Kernel modes per block (wasm/fp8-kernel.ts dequantFromTables). */
const GENERAL = 0;
const ODD = 1;
const BASES = 2;

export class WasmDequantKernel {
  private bytes: Uint8Array;
  private readonly base = new Uint16Array(16);

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
    // Layout: [edges i32 × (n+1)][modes i32 × n][tables 512 × n][bases 32 × n][codes][values u16].
    const edgesAt = 0;
    const modesAt = align16(edgesAt + (n + 1) * 4);
    const tablesAt = align16(modesAt + n * 4);
    const basesAt = tablesAt + n * 512;
    const codesAt = align16(basesAt + n * 32);
    const outAt = align16(codesAt + count);
    reserveKernelMemory(this.kernel, outAt + count * 2);
    if (this.bytes.buffer !== this.kernel.memory.buffer) this.bytes = new Uint8Array(this.kernel.memory.buffer);
    const buffer = this.kernel.memory.buffer;
    const edges = new Int32Array(buffer, edgesAt, n + 1);
    for (let j = 0; j <= n; j++) edges[j] = Math.min(cols, j * colBlock);
    const modes = new Int32Array(buffer, modesAt, n);
    const bytes = this.bytes;
    bytes.set(codes.subarray(0, count), codesAt);
    const { nanFrom, inf, subLimit, mantBits } = FP8_CODES[dtype];
    const { mask, low, shift } = EXPONENT[to];
    const fp8 = nanFrom | (inf << 8) | (subLimit << 16) | (mantBits << 24);
    const table = new Uint16Array(256);
    const firstGridRow = Math.floor(grid.firstRow / grid.rowBlock);
    let any = 0;
    for (let ra = 0; ra < rows; ) {
      const g = Math.floor((grid.firstRow + ra) / grid.rowBlock) - firstGridRow;
      const rb = Math.min(rows, (firstGridRow + g + 1) * grid.rowBlock - grid.firstRow);
      for (let j = 0; j < n; j++) {
        const s = grid.scales[g * gridCols + j]!;
        const lo = tablesAt + j * 512;
        const hi = lo + 256;
        for (let c = 0; c < 256; c++) {
          const w = narrow(decode[c]! * s);
          table[c] = w;
          bytes[lo + c] = w & 0xff;
          bytes[hi + c] = w >>> 8;
        }
        modes[j] = this.blockMode(table, nanFrom, inf, subLimit, mantBits, shift, basesAt + j * 32);
      }
      any |= this.kernel.dequantFromTables(codesAt, cols, ra, rb, edgesAt, n, tablesAt, modesAt, basesAt, outAt, fp8, shift, mask, low);
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

  /**
   * The cheapest kernel mode that gives every entry of `table`, writing the 16-entry base (low
   * bytes, then high bytes) at `basesAt` for mode BASES.
   */
  private blockMode(table: Uint16Array, nanFrom: number, inf: number, subLimit: number, mantBits: number, shift: number, basesAt: number): number {
    // ODD: negative codes' entries are the positive ones' with the sign bit set, the NaN codes' the same for both signs.
    for (let m = 0; m < 128; m++) if (table[m | 0x80] !== (m < nanFrom ? table[m]! ^ 0x8000 : table[m])) return GENERAL;
    // BASES: entries 0..2^mantBits-1 are each mantissa one exponent step below the first normal
    // code's, entries 8.. the subnormal codes' own; every normal code is its base plus its exponent.
    const base = this.base;
    const first = 1 << mantBits;
    for (let k = 0; k < first; k++) base[k] = (table[first + k]! - (1 << shift)) & 0xffff;
    for (let m = 0; m < subLimit; m++) base[8 + m] = table[m]!;
    for (let m = 0; m < 128; m++) {
      let expected: number;
      if (m >= nanFrom) expected = table[0x7f]!;
      else if (m === inf) expected = table[inf]!;
      else if (m < subLimit) expected = base[8 + m]!;
      else expected = (base[m & (first - 1)]! + ((m >> mantBits) << shift)) & 0xffff;
      if (table[m] !== expected) return ODD;
    }
    const bytes = this.bytes;
    for (let k = 0; k < 16; k++) {
      bytes[basesAt + k] = base[k]! & 0xff;
      bytes[basesAt + 16 + k] = base[k]! >>> 8;
    }
    return BASES;
  }
}
