// Element dtypes of safetensors files, their sizes, and widening of floating-point element bytes
// to float32 (and narrowing back, for dequantized output). Pure: no I/O.

import { WASM_WIDEN_MIN_ELEMENTS, wasmWidenBf16 } from './wasm-widen.js';

export const DTYPE_SIZES = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
} as const;

export type Dtype = keyof typeof DTYPE_SIZES;

export const DTYPES = Object.keys(DTYPE_SIZES) as Dtype[];

export function isDtype(value: string): value is Dtype {
  return Object.prototype.hasOwnProperty.call(DTYPE_SIZES, value);
}

export function dtypeSize(dtype: Dtype): number {
  return DTYPE_SIZES[dtype];
}

/** Source dtypes a conversion quantizes; everything else is copied through. */
export type FloatSourceDtype = 'F32' | 'F16' | 'BF16' | 'F64';

export function isFloatSourceDtype(dtype: Dtype): dtype is FloatSourceDtype {
  return dtype === 'F32' || dtype === 'F16' || dtype === 'BF16' || dtype === 'F64';
}

export function isFp8Dtype(dtype: Dtype): dtype is 'F8_E4M3' | 'F8_E5M2' {
  return dtype === 'F8_E4M3' || dtype === 'F8_E5M2';
}

/** IEEE half → float32 value for every one of the 65,536 patterns (exact). */
const F16_TABLE: Float32Array = (() => {
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    let v: number;
    if (exp === 0) v = mant * 2 ** -24;
    else if (exp === 31) v = mant === 0 ? Infinity : NaN;
    else v = (1 + mant / 1024) * 2 ** (exp - 15);
    table[h] = sign * v;
  }
  return table;
})();

/**
 * Widen `count` elements of little-endian `bytes` (starting at element 0) into `out` as float32.
 * BF16 and F16 widen exactly; F64 rounds to nearest float32.
 */
export function widenToFloat32(bytes: Uint8Array, dtype: FloatSourceDtype, out: Float32Array = new Float32Array(bytes.byteLength / dtypeSize(dtype))): Float32Array {
  const count = out.length;
  switch (dtype) {
    case 'BF16': {
      if (count >= WASM_WIDEN_MIN_ELEMENTS && wasmWidenBf16(bytes, count, out)) return out;
      const u32 = new Uint32Array(out.buffer, out.byteOffset, count);
      let i = 0;
      if (bytes.byteOffset % 4 === 0) {
        // Two words per 32-bit load (little-endian: the first word is the low half): ~1.7× the
        // one-word loop, which the widening of a CPU verify's weights spends most of its time in.
        const pairs = new Uint32Array(bytes.buffer, bytes.byteOffset, count >>> 1);
        for (let p = 0; p < pairs.length; p++, i += 2) {
          const w = pairs[p]!;
          u32[i] = w << 16;
          u32[i + 1] = w & 0xffff0000;
        }
      }
      if (i < count) {
        const u16 = u16View(bytes, count);
        for (; i < count; i++) u32[i] = u16[i]! << 16;
      }
      return out;
    }
    case 'F16': {
      const u16 = u16View(bytes, count);
      for (let i = 0; i < count; i++) out[i] = F16_TABLE[u16[i]!]!;
      return out;
    }
    case 'F32': {
      if (bytes.byteOffset % 4 === 0) out.set(new Float32Array(bytes.buffer, bytes.byteOffset, count));
      else out.set(new Float32Array(bytes.slice(0, count * 4).buffer));
      return out;
    }
    case 'F64': {
      const f64 = bytes.byteOffset % 8 === 0 ? new Float64Array(bytes.buffer, bytes.byteOffset, count) : new Float64Array(bytes.slice(0, count * 8).buffer);
      for (let i = 0; i < count; i++) out[i] = f64[i]!;
      return out;
    }
  }
}

function u16View(bytes: Uint8Array, count: number): Uint16Array {
  return bytes.byteOffset % 2 === 0 ? new Uint16Array(bytes.buffer, bytes.byteOffset, count) : new Uint16Array(bytes.slice(0, count * 2).buffer);
}

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** float32 → bfloat16 bits, round-to-nearest-even; NaN stays a quiet NaN (as torch does). */
export function float32ToBf16Bits(x: number): number {
  scratchF32[0] = x;
  const bits = scratchU32[0]!;
  if ((bits & 0x7fffffff) > 0x7f800000) return ((bits >>> 16) | 0x40) & 0xffff;
  const rounded = bits + 0x7fff + ((bits >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

/** `x` rounded to the nearest bfloat16 value (round-to-nearest-even), as a number. */
export function roundToBf16(x: number): number {
  scratchU32[0] = float32ToBf16Bits(x) << 16;
  return scratchF32[0]!;
}

/** float32 → IEEE half bits, round-to-nearest-even, overflow to Inf. */
export function float32ToF16Bits(x: number): number {
  scratchF32[0] = x;
  const bits = scratchU32[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rem = m & ((1 << shift) - 1);
    let h = m >>> shift;
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  return sign | h;
}

/** Narrow float32 values to `dtype` little-endian bytes (the dequantize direction). */
export function narrowFromFloat32(values: Float32Array, dtype: FloatSourceDtype): Uint8Array {
  switch (dtype) {
    case 'F32':
      return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
    case 'F64': {
      const out = new Float64Array(values.length);
      out.set(values);
      return new Uint8Array(out.buffer);
    }
    case 'BF16': {
      const out = new Uint16Array(values.length);
      for (let i = 0; i < values.length; i++) out[i] = float32ToBf16Bits(values[i]!);
      return new Uint8Array(out.buffer);
    }
    case 'F16': {
      const out = new Uint16Array(values.length);
      for (let i = 0; i < values.length; i++) out[i] = float32ToF16Bits(values[i]!);
      return new Uint8Array(out.buffer);
    }
  }
}
