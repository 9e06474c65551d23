// AssemblyScript source of the WebAssembly SIMD scan for NaN/Inf in stored float bytes (compiled
// by `npm run build:wasm` into src/fp8/fp8-kernel-wasm.generated.ts; loaded by
// src/fp8/nonfinite-scan.ts). It works in memory it imports, so it scans bytes where they were
// read (the direct-read slots), without a copy. Per 32-bit word w and its lane's exponent mask e,
// `(w & e) + lowest exponent bit` sets an element's top bit exactly when all its exponent bits are
// set (sign bits are masked off, so nothing carries into the next element); the OR of all lanes
// tells whether any element is NaN/Inf. No allocation, no data.

/** OR over the 16-byte words at [ptr, ptr + len & ~15) of `(w & exp) + low`, the even and odd 32-bit lanes with their own constants. */
export function orExponentCarry(ptr: usize, len: usize, expEven: u32, expOdd: u32, lowEven: u32, lowOdd: u32): u32 {
  let exp = i32x4.splat(expEven);
  exp = i32x4.replace_lane(exp, 1, expOdd);
  exp = i32x4.replace_lane(exp, 3, expOdd);
  let low = i32x4.splat(lowEven);
  low = i32x4.replace_lane(low, 1, lowOdd);
  low = i32x4.replace_lane(low, 3, lowOdd);
  let a = i32x4.splat(0);
  let b = i32x4.splat(0);
  let c = i32x4.splat(0);
  let d = i32x4.splat(0);
  let p = ptr;
  const end64 = ptr + (len & ~(<usize>63));
  for (; p < end64; p += 64) {
    a = v128.or(a, i32x4.add(v128.and(v128.load(p), exp), low));
    b = v128.or(b, i32x4.add(v128.and(v128.load(p, 16), exp), low));
    c = v128.or(c, i32x4.add(v128.and(v128.load(p, 32), exp), low));
    d = v128.or(d, i32x4.add(v128.and(v128.load(p, 48), exp), low));
  }
  const end16 = ptr + (len & ~(<usize>15));
  for (; p < end16; p += 16) a = v128.or(a, i32x4.add(v128.and(v128.load(p), exp), low));
  a = v128.or(v128.or(a, b), v128.or(c, d));
  return i32x4.extract_lane(a, 0) | i32x4.extract_lane(a, 1) | i32x4.extract_lane(a, 2) | i32x4.extract_lane(a, 3);
}
