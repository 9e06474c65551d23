// Recognising UE8M0 (power-of-two) block scales from their values. A UE8M0 scale is 2^e: in
// float32, a positive number with a zero mantissa (or a subnormal with one mantissa bit set,
// which roundUpToPowerOfTwo produces for tiny blocks). Pure: no I/O.

import type { ScaleFormat } from './block-quantize.js';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** True for a positive, finite float32 that is an exact power of two (normal or subnormal). */
export function isPowerOfTwo(value: number): boolean {
  f32[0] = value;
  const bits = u32[0]!;
  if (bits >>> 31 !== 0) return false; // negative or -0
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return false; // Inf, NaN
  if (exp === 0) return mant !== 0 && (mant & (mant - 1)) === 0;
  return mant === 0;
}

/** Index of the first scale that is not a power of two, or -1 when all are. */
export function firstNonPowerOfTwo(scales: Float32Array): number {
  for (let i = 0; i < scales.length; i++) if (!isPowerOfTwo(scales[i]!)) return i;
  return -1;
}

/** 'ue8m0' when every scale is a power of two (an empty set counts as float: nothing to go on). */
export function scaleFormatOfValues(scales: Float32Array): ScaleFormat {
  return scales.length > 0 && firstNonPowerOfTwo(scales) === -1 ? 'ue8m0' : 'float';
}
