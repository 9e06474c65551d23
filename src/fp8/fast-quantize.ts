// The fast block-scale quantize kernel: the same bytes as quantizeStripe (block-quantize.ts, the
// oracle), without per-element function calls, allocations or float32<->bits round trips through
// a shared scratch word. Per (bn × bk) block:
//  - amax on the integer bit patterns: for non-negative IEEE floats, |x|'s bits order like |x|,
//    and a pattern ≥ the infinity pattern is Inf/NaN, so one integer max finds both;
//  - q = fround(w / scale), the float32 division of docs/FORMAT.md §2, rounded by a Float32Array store;
//  - the FP8 code from q's bits with integer round-to-nearest-even (c10's algorithm, unrolled),
//    in long loops over whole rows rather than 128-element block rows.
// BF16 words widen through a 65,536-entry table. Non-finite values are found by the integer amax
// and reported (or skipped under 'saturate') exactly as the oracle does.
// The WebAssembly SIMD kernel (wasm-kernel.ts) takes most BF16 stripes; this one takes the rest
// (other source dtypes, odd widths, stripes holding Inf/NaN) and runs wherever wasm does not.
// test/perf-fast-kernel.test.ts checks the bytes and errors against the oracle.

import { NonFiniteValueError, scaleFromAmax, stripeSettings, type BlockQuantizeOptions } from './block-quantize.js';
import type { Fp8Format } from './formats.js';

/** Integer constants of the float32-bits → FP8 encode, per format (see formats.ts for c10's). */
interface EncodeConstants {
  /** Bits of FP8_MAX: at or above it (Inf included) the clamped value encodes as ±max. */
  readonly maxBits: number;
  readonly maxCode: number;
  /** Bits of the smallest normal FP8 value. */
  readonly minNormalBits: number;
  /** Rebias of the exponent field, float32 → FP8, pre-shifted into place. */
  readonly rebias: number;
  /** Position of FP8's mantissa LSB in a float32 pattern, and the RNE "half minus one" below it. */
  readonly mantShift: number;
  readonly roundBias: number;
  /** Subnormals: code = RNE(significand >> (subShiftBase − exponent)); 0 at or below subZeroExp. */
  readonly subShiftBase: number;
  readonly subZeroExp: number;
}

const E4M3_CONSTANTS: EncodeConstants = {
  maxBits: 0x43e00000, // 448
  maxCode: 0x7e,
  minNormalBits: 121 << 23, // 2^-6
  rebias: (7 - 127) << 23,
  mantShift: 20,
  roundBias: 0x7ffff,
  subShiftBase: 141, // grid 2^-9: w·2^9 = significand · 2^(exp − 141)
  subZeroExp: 116, // shift ≥ 25: w·2^9 < 1/2
};

const E5M2_CONSTANTS: EncodeConstants = {
  maxBits: 0x47600000, // 57344
  maxCode: 0x7b,
  minNormalBits: 113 << 23, // 2^-14
  rebias: (15 - 127) << 23,
  mantShift: 21,
  roundBias: 0xfffff,
  subShiftBase: 134, // grid 2^-16
  subZeroExp: 109,
};

function constantsFor(format: Fp8Format): EncodeConstants {
  return format === 'e4m3fn' ? E4M3_CONSTANTS : E5M2_CONSTANTS;
}

/** BF16 word → float32 value, all 65,536 patterns (256 KiB, stays in L2). */
const BF16_VALUES: Float32Array = (() => {
  const table = new Float32Array(65536);
  const bits = new Uint32Array(table.buffer);
  for (let h = 0; h < 65536; h++) bits[h] = h << 16;
  return table;
})();

/** Per-thread scratch: one row of float32 quotients and its bit view, grown on demand. */
export class FastQuantizeScratch {
  private q = new Float32Array(0);
  private qBits = new Uint32Array(0);

  row(cols: number): { q: Float32Array; qBits: Uint32Array } {
    if (this.q.length < cols) {
      this.q = new Float32Array(cols);
      this.qBits = new Uint32Array(this.q.buffer);
    }
    return { q: this.q, qBits: this.qBits };
  }
}

/**
 * Encode `n` float32 patterns of `qBits` (already divided by the scale) into codes[at ..), with the
 * clamp of docs/FORMAT.md §2: |q| ≥ max (Inf included) → ±max, NaN → 0 (NaN only arrives under 'saturate').
 */
function encodeRow(qBits: Uint32Array, n: number, codes: Uint8Array, at: number, k: EncodeConstants): void {
  const { maxBits, maxCode, minNormalBits, rebias, mantShift, roundBias, subShiftBase, subZeroExp } = k;
  for (let j = 0; j < n; j++) {
    const bits = qBits[j]!;
    const sign = (bits >>> 24) & 0x80;
    const a = bits & 0x7fffffff;
    let code: number;
    if (a >= minNormalBits) {
      if (a < maxBits) code = ((a + rebias + roundBias + ((a >>> mantShift) & 1)) >>> mantShift) | sign;
      else code = a > 0x7f800000 ? 0 : maxCode | sign;
    } else {
      const exp = a >>> 23;
      if (exp <= subZeroExp) code = sign;
      else {
        const significand = (a & 0x7fffff) | 0x800000;
        const shift = subShiftBase - exp;
        code = ((significand + (1 << (shift - 1)) - 1 + ((significand >>> shift) & 1)) >>> shift) | sign;
      }
    }
    codes[at + j] = code;
  }
}

/**
 * Encode `n` float32 values (their bit patterns in `qBits`, already divided by the scale) into
 * `codes[at ..)` with the same clamp as the stripe kernels (for the codes kernel of
 * requantize-codes.ts).
 */
export function encodeFloat32Bits(qBits: Uint32Array, n: number, codes: Uint8Array, at: number, format: Fp8Format): void {
  encodeRow(qBits, n, codes, at, constantsFor(format));
}

const f32Word = new Float32Array(1);
const u32Word = new Uint32Array(f32Word.buffer);

function bitsToFloat(bits: number): number {
  u32Word[0] = bits;
  return f32Word[0]!;
}

/**
 * BF16 stripe (raw little-endian words, at most bn rows of a [rows, cols] matrix) → codes and one
 * row of scales. Same contract, bytes and errors as quantizeStripe on the widened values.
 * Two passes: every block's amax and scale (block by block, so an Inf/NaN is reported where the
 * oracle's scan meets it first), then row by row, long loops over whole rows.
 */
export function quantizeBf16StripeFast(
  src: Uint16Array,
  rowsInStripe: number,
  cols: number,
  opts: BlockQuantizeOptions,
  codes: Uint8Array,
  scaleInv: Float32Array,
  firstRow: number,
  scratch: FastQuantizeScratch,
): void {
  const { bk, max, scaleFormat, saturate } = stripeSettings(opts);
  for (let c0 = 0, cb = 0; c0 < cols; c0 += bk, cb++) {
    const c1 = Math.min(cols, c0 + bk);
    let amax = 0;
    for (let r = 0; r < rowsInStripe; r++) {
      for (let i = r * cols + c0, end = r * cols + c1; i < end; i++) {
        const m = src[i]! & 0x7fff;
        if (m > amax) amax = m;
      }
    }
    if (amax >= 0x7f80) amax = finiteAmaxOrThrow(src, 16, 0x7f80, rowsInStripe, cols, c0, c1, saturate, firstRow);
    scaleInv[cb] = scaleFromAmax(bitsToFloat(amax << 16), max, scaleFormat);
  }
  const k = constantsFor(opts.format);
  const { q, qBits } = scratch.row(cols);
  const values = BF16_VALUES;
  for (let r = 0; r < rowsInStripe; r++) {
    const base = r * cols;
    for (let c0 = 0, cb = 0; c0 < cols; c0 += bk, cb++) {
      const scale = scaleInv[cb]!;
      // A float32 division per element, rounded by the Float32Array store: docs/FORMAT.md §2's formula.
      for (let c = c0, end = Math.min(cols, c0 + bk); c < end; c++) q[c] = values[src[base + c]!]! / scale;
    }
    encodeRow(qBits, cols, codes, base, k);
  }
}

/** The same for float32 values (F16/F32/F64 sources, widened). */
export function quantizeF32StripeFast(
  values: Float32Array,
  rowsInStripe: number,
  cols: number,
  opts: BlockQuantizeOptions,
  codes: Uint8Array,
  scaleInv: Float32Array,
  firstRow: number,
  scratch: FastQuantizeScratch,
): void {
  const { bk, max, scaleFormat, saturate } = stripeSettings(opts);
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let c0 = 0, cb = 0; c0 < cols; c0 += bk, cb++) {
    const c1 = Math.min(cols, c0 + bk);
    let amax = 0;
    for (let r = 0; r < rowsInStripe; r++) {
      for (let i = r * cols + c0, end = r * cols + c1; i < end; i++) {
        const m = bits[i]! & 0x7fffffff;
        if (m > amax) amax = m;
      }
    }
    if (amax >= 0x7f800000) amax = finiteAmaxOrThrow(bits, 0, 0x7f800000, rowsInStripe, cols, c0, c1, saturate, firstRow);
    scaleInv[cb] = scaleFromAmax(bitsToFloat(amax), max, scaleFormat);
  }
  const k = constantsFor(opts.format);
  const { q, qBits } = scratch.row(cols);
  for (let r = 0; r < rowsInStripe; r++) {
    const base = r * cols;
    for (let c0 = 0, cb = 0; c0 < cols; c0 += bk, cb++) {
      const scale = scaleInv[cb]!;
      for (let c = c0, end = Math.min(cols, c0 + bk); c < end; c++) q[c] = values[base + c]! / scale;
    }
    encodeRow(qBits, cols, codes, base, k);
  }
}

/**
 * The rare block holding Inf/NaN: throw for the first one in the oracle's scan order (rows, then
 * columns), or under 'saturate' return the amax of the finite values only. `widen` shifts a raw
 * word into float32 position (16 for BF16, 0 for float32 patterns).
 */
function finiteAmaxOrThrow(
  words: Uint16Array | Uint32Array,
  widen: number,
  infBits: number,
  rows: number,
  cols: number,
  c0: number,
  c1: number,
  saturate: boolean,
  firstRow: number,
): number {
  const absMask = infBits === 0x7f80 ? 0x7fff : 0x7fffffff;
  let amax = 0;
  for (let r = 0; r < rows; r++) {
    for (let c = c0; c < c1; c++) {
      const w = words[r * cols + c]!;
      const m = w & absMask;
      if (m >= infBits) {
        if (!saturate) throw new NonFiniteValueError(firstRow + r, c, bitsToFloat(widen === 16 ? w << 16 : w));
      } else if (m > amax) amax = m;
    }
  }
  return amax;
}
