// Rounding an exact float64 value to BF16/FP16/F32 once (round to nearest, ties to even), for
// dequantized output: `fp8 × scale_inv` is exact in float64, and rounding it through float32 first
// could round twice (a float32 result that lands on a BF16 tie). The float32 step here rounds to
// odd instead, which keeps the second rounding correct (float32 has 24 bits, ≥ 2 more than BF16's
// 8 and FP16's 11). Pure: no I/O.

import { float32ToBf16Bits, float32ToF16Bits, type FloatSourceDtype } from './dtypes.js';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** `x` rounded to float32 with round-to-odd: exact values stay, inexact ones get a set last bit. */
export function float64ToFloat32RoundToOdd(x: number): number {
  const r = Math.fround(x);
  if (r === x || x !== x) return r;
  f32[0] = r;
  let bits = u32[0]!;
  // Truncate toward zero (one step down in magnitude if nearest rounded up; ±Infinity from
  // overflow steps down to ±max), then make the last bit odd: the sticky bit of what was cut.
  if (Math.abs(r) > Math.abs(x)) bits -= 1;
  u32[0] = bits | 1;
  return f32[0]!;
}

/** BF16 bits of the float64 `x`, rounded once to nearest-even. */
export function float64ToBf16Bits(x: number): number {
  return float32ToBf16Bits(float64ToFloat32RoundToOdd(x));
}

/** FP16 bits of the float64 `x`, rounded once to nearest-even. */
export function float64ToF16Bits(x: number): number {
  return float32ToF16Bits(float64ToFloat32RoundToOdd(x));
}

/** Little-endian bytes of exact values rounded once to `dtype`. */
export function narrowExact(values: Float64Array, dtype: FloatSourceDtype): Uint8Array {
  switch (dtype) {
    case 'F64':
      return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
    case 'F32':
      return new Uint8Array(Float32Array.from(values).buffer);
    case 'BF16': {
      const out = new Uint16Array(values.length);
      for (let i = 0; i < values.length; i++) out[i] = float64ToBf16Bits(values[i]!);
      return new Uint8Array(out.buffer);
    }
    case 'F16': {
      const out = new Uint16Array(values.length);
      for (let i = 0; i < values.length; i++) out[i] = float64ToF16Bits(values[i]!);
      return new Uint8Array(out.buffer);
    }
  }
}
