// FP8 formats and scalar encode/decode, bit-exact with PyTorch's c10 casts
// (c10/util/Float8_e4m3fn.h and Float8_e5m2.h: fp8e4m3fn_from_fp32_value, fp8e5m2_from_fp32_value).
// Everything here works on float32 values held in JS numbers; callers guarantee float32-ness
// (Math.fround) where it matters.

import { WASM_WIDEN_MIN_ELEMENTS, wasmDecodeFp8 } from './wasm-widen.js';

export type Fp8Format = 'e4m3fn' | 'e5m2';

export interface Fp8FormatInfo {
  readonly name: Fp8Format;
  /** safetensors dtype string of this format. */
  readonly dtype: 'F8_E4M3' | 'F8_E5M2';
  /** torch dtype name, as users type it on the command line. */
  readonly torchName: 'float8_e4m3fn' | 'float8_e5m2';
  /** `fmt` value in quantization_config. */
  readonly fmt: 'e4m3' | 'e5m2';
  /** Largest finite magnitude. */
  readonly max: number;
}

export const FP8_E4M3FN: Fp8FormatInfo = {
  name: 'e4m3fn',
  dtype: 'F8_E4M3',
  torchName: 'float8_e4m3fn',
  fmt: 'e4m3',
  max: 448,
};

export const FP8_E5M2: Fp8FormatInfo = {
  name: 'e5m2',
  dtype: 'F8_E5M2',
  torchName: 'float8_e5m2',
  fmt: 'e5m2',
  max: 57344,
};

export const FP8_E4M3_MAX = FP8_E4M3FN.max;
export const FP8_E5M2_MAX = FP8_E5M2.max;

export function fp8FormatInfo(format: Fp8Format): Fp8FormatInfo {
  return format === 'e4m3fn' ? FP8_E4M3FN : FP8_E5M2;
}

// One shared scratch word: reinterpreting float32 <-> uint32 without allocation.
const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

export function f32ToBits(x: number): number {
  scratchF32[0] = x;
  return scratchU32[0]!;
}

export function bitsToF32(bits: number): number {
  scratchU32[0] = bits >>> 0;
  return scratchF32[0]!;
}

// Thresholds of c10's algorithm, as float32 bit patterns.
const E4M3_NAN_THRESHOLD = 1087 << 20; // 480.0: first magnitude that c10 maps to NaN
const E4M3_DENORM_MASK = 141 << 23; // 2^14: adding it rounds to the subnormal grid (2^-9)
const E4M3_MIN_NORMAL = 121 << 23; // 2^-6
const E5M2_INF_THRESHOLD = 143 << 23; // 65536.0
const E5M2_DENORM_MASK = 134 << 23; // 2^7: subnormal grid 2^-16
const E5M2_MIN_NORMAL = 113 << 23; // 2^-14
const F32_INF_BITS = 0xff << 23;

/**
 * float32 → E4M3FN code with round-to-nearest-even, exactly as PyTorch's cast. It does NOT clamp:
 * magnitudes ≥ 480 become NaN (0x7f/0xff), as in PyTorch; clamp first to saturate.
 */
export function encodeE4M3(x: number): number {
  let bits = f32ToBits(x);
  const sign = (bits >>> 24) & 0x80;
  bits = (bits & 0x7fffffff) >>> 0;
  let result: number;
  if (bits >= E4M3_NAN_THRESHOLD) {
    result = 0x7f;
  } else if (bits < E4M3_MIN_NORMAL) {
    // float32 addition rounds to nearest even on the 2^-9 grid. a + 2^14 is exact in a double
    // for every a that can round up, so one fround is a single correctly rounded float32 add.
    const denorm = bitsToF32(E4M3_DENORM_MASK);
    result = (f32ToBits(Math.fround(bitsToF32(bits) + denorm)) - E4M3_DENORM_MASK) & 0xff;
  } else {
    const mantOdd = (bits >>> 20) & 1;
    bits = (bits + ((7 - 127) << 23) + 0x7ffff + mantOdd) >>> 0;
    result = (bits >>> 20) & 0xff;
  }
  return result | sign;
}

/** float32 → E5M2 code (RNE). Magnitudes ≥ 65536 become Inf (0x7c), NaN becomes 0x7f. */
export function encodeE5M2(x: number): number {
  let bits = f32ToBits(x);
  const sign = (bits >>> 24) & 0x80;
  bits = (bits & 0x7fffffff) >>> 0;
  let result: number;
  if (bits >= E5M2_INF_THRESHOLD) {
    result = bits > F32_INF_BITS ? 0x7f : 0x7c;
  } else if (bits < E5M2_MIN_NORMAL) {
    const denorm = bitsToF32(E5M2_DENORM_MASK);
    result = (f32ToBits(Math.fround(bitsToF32(bits) + denorm)) - E5M2_DENORM_MASK) & 0xff;
  } else {
    const mantOdd = (bits >>> 21) & 1;
    bits = (bits + ((15 - 127) << 23) + 0xfffff + mantOdd) >>> 0;
    result = (bits >>> 21) & 0xff;
  }
  return result | sign;
}

function buildDecodeTable(format: Fp8Format): Float32Array {
  const table = new Float32Array(256);
  const mantBits = format === 'e4m3fn' ? 3 : 2;
  const bias = format === 'e4m3fn' ? 7 : 15;
  const expMax = format === 'e4m3fn' ? 15 : 31;
  for (let code = 0; code < 256; code++) {
    const sign = code & 0x80 ? -1 : 1;
    const exp = (code >> mantBits) & expMax;
    const mant = code & ((1 << mantBits) - 1);
    let value: number;
    if (format === 'e4m3fn' && exp === 15 && mant === 7) value = NaN;
    else if (format === 'e5m2' && exp === 31) value = mant === 0 ? Infinity : NaN;
    else if (exp === 0) value = mant * 2 ** (1 - bias - mantBits);
    else value = (1 + mant / (1 << mantBits)) * 2 ** (exp - bias);
    table[code] = sign * value;
  }
  return table;
}

/** Code → float32 value, for every one of the 256 codes. */
export const E4M3_DECODE: Float32Array = buildDecodeTable('e4m3fn');
export const E5M2_DECODE: Float32Array = buildDecodeTable('e5m2');

export function decodeE4M3(code: number): number {
  return E4M3_DECODE[code & 0xff]!;
}

export function decodeE5M2(code: number): number {
  return E5M2_DECODE[code & 0xff]!;
}

export function encoderFor(format: Fp8Format): (x: number) => number {
  return format === 'e4m3fn' ? encodeE4M3 : encodeE5M2;
}

/**
 * FP8 codes → their float32 values through the decode table, copied as bits (NaN codes keep the
 * table's NaN, as a graph's table Gather gives it): in WebAssembly SIMD for large arrays
 * (wasm-widen.ts, the same bits), else four codes per 32-bit load where aligned.
 */
export function decodeCodesToFloat32(codes: Uint8Array, format: Fp8Format, out: Float32Array = new Float32Array(codes.length)): Float32Array {
  if (codes.length >= WASM_WIDEN_MIN_ELEMENTS && wasmDecodeFp8(codes, format === 'e5m2', out)) return out;
  const table = decodeTableFor(format);
  const bits = new Uint32Array(table.buffer, table.byteOffset, table.length);
  const o = new Uint32Array(out.buffer, out.byteOffset, codes.length);
  let j = 0;
  if (codes.byteOffset % 4 === 0) {
    const words = new Uint32Array(codes.buffer, codes.byteOffset, codes.length >>> 2);
    for (let i = 0; i < words.length; i++, j += 4) {
      const w = words[i]!;
      o[j] = bits[w & 255]!;
      o[j + 1] = bits[(w >>> 8) & 255]!;
      o[j + 2] = bits[(w >>> 16) & 255]!;
      o[j + 3] = bits[w >>> 24]!;
    }
  }
  for (; j < codes.length; j++) o[j] = bits[codes[j]!]!;
  return out;
}

export function decodeTableFor(format: Fp8Format): Float32Array {
  return format === 'e4m3fn' ? E4M3_DECODE : E5M2_DECODE;
}

/** Saturating cast, the `fp8(clamp(x, -max, max))` of docs/FORMAT.md §2: NaN stays NaN. */
export function saturateEncode(x: number, format: Fp8Format): number {
  const max = format === 'e4m3fn' ? FP8_E4M3_MAX : FP8_E5M2_MAX;
  const clamped = x > max ? max : x < -max ? -max : x;
  return format === 'e4m3fn' ? encodeE4M3(clamped) : encodeE5M2(clamped);
}
