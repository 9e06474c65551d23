// WebAssembly SIMD widening of stored weights to float32 (src/fp8/wasm-widen.ts drives it): BF16
// words to their float32 bits, and FP8 codes to the float32 values of docs/FORMAT.md's decode
// tables (NaN as 0x7fc00000, E5M2's ±Inf), bit for bit what the TypeScript loops give. A CPU
// verify widens every weight it runs (bench/NOTES.md). No allocation: the caller lays out memory.

export function widenBf16(src: usize, n: i32, dst: usize): void {
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const v = v128.load(src + (<usize>i << 1));
    v128.store(dst + (<usize>i << 2), i32x4.shl(i32x4.extend_low_i16x8_u(v), 16));
    v128.store(dst + (<usize>i << 2) + 16, i32x4.shl(i32x4.extend_high_i16x8_u(v), 16));
  }
  for (; i < n; i++) store<u32>(dst + (<usize>i << 2), (<u32>load<u16>(src + (<usize>i << 1))) << 16);
}

// Four codes (one per 32-bit lane) to float32 bits. Normal codes by an integer rebias of exponent
// and mantissa, subnormal ones as integer × 2^-bias: no float operation sees a subnormal operand
// (x86 takes those through microcode, ~100× slower).
@inline
function decode4(c: v128, e5m2: bool): v128 {
  const sign = i32x4.shl(v128.and(c, i32x4.splat(0x80)), 24);
  const em = v128.and(c, i32x4.splat(0x7f));
  if (e5m2) {
    const normal = i32x4.add(i32x4.shl(em, 21), i32x4.splat(0x38000000));
    const sub = f32x4.mul(f32x4.convert_i32x4_u(em), f32x4.splat(<f32>1.52587890625e-5)); // 2^-16
    let mag = v128.bitselect(sub, normal, i32x4.lt_s(em, i32x4.splat(4)));
    mag = v128.bitselect(i32x4.splat(0x7f800000), mag, i32x4.eq(em, i32x4.splat(0x7c)));
    return v128.bitselect(i32x4.splat(0x7fc00000), v128.or(mag, sign), i32x4.gt_s(em, i32x4.splat(0x7c)));
  }
  const normal = i32x4.add(i32x4.shl(em, 20), i32x4.splat(0x3c000000));
  const sub = f32x4.mul(f32x4.convert_i32x4_u(em), f32x4.splat(<f32>0.001953125)); // 2^-9
  const mag = v128.bitselect(sub, normal, i32x4.lt_s(em, i32x4.splat(8)));
  return v128.bitselect(i32x4.splat(0x7fc00000), v128.or(mag, sign), i32x4.eq(em, i32x4.splat(0x7f)));
}

export function decodeFp8(codes: usize, n: i32, dst: usize, e5m2: bool): void {
  let i = 0;
  for (; i + 16 <= n; i += 16) {
    const v = v128.load(codes + <usize>i);
    const lo = i16x8.extend_low_i8x16_u(v);
    const hi = i16x8.extend_high_i8x16_u(v);
    const o = dst + (<usize>i << 2);
    v128.store(o, decode4(i32x4.extend_low_i16x8_u(lo), e5m2));
    v128.store(o + 16, decode4(i32x4.extend_high_i16x8_u(lo), e5m2));
    v128.store(o + 32, decode4(i32x4.extend_low_i16x8_u(hi), e5m2));
    v128.store(o + 48, decode4(i32x4.extend_high_i16x8_u(hi), e5m2));
  }
  for (; i < n; i++) store<u32>(dst + (<usize>i << 2), i32x4.extract_lane(decode4(i32x4.splat(<i32>load<u8>(codes + <usize>i)), e5m2), 0));
}
