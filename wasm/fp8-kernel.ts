// AssemblyScript source of the WebAssembly SIMD kernel for BF16 → FP8 block quantization
// (compiled by `npm run build:wasm` into src/fp8/fp8-kernel-wasm.generated.ts; loaded by
// src/fp8/wasm-kernel.ts). Same numerics as the oracle, src/fp8/block-quantize.ts:
//  - amax on |bf16| bit patterns (integer max orders non-negative floats like their values);
//  - q = w / scale as an IEEE float32 division (f32x4.div rounds to nearest even, like fround);
//  - the FP8 code of q exactly as c10 rounds it (formats.ts), clamped to ±max: one rounding,
//    encodeMagnitude4 (a float32 add onto the FP8 grid), for the quantize loop and, with the
//    sign put back (encode4), for the requantize tables.
// It handles finite stripes whose width and block width are multiples of 16; the caller computes
// the scales (scaleFromAmax) and sends anything else (Inf/NaN, odd widths) to the TypeScript
// kernel. No allocation: every pointer is into memory the caller laid out.

/** out[cb] = max over the stripe's rows and block cb's columns of (w & 0x7fff), as i32. */
export function amaxBf16(src: usize, rows: i32, cols: i32, bk: i32, out: usize): void {
  const mask = i16x8.splat(0x7fff);
  for (let c0: i32 = 0, cb: i32 = 0; c0 < cols; c0 += bk, cb++) {
    const c1 = min(cols, c0 + bk);
    let acc = i16x8.splat(0);
    for (let r: i32 = 0; r < rows; r++) {
      const row = src + (<usize>r * <usize>cols << 1);
      for (let c = c0; c < c1; c += 8) acc = i16x8.max_u(acc, v128.and(v128.load(row + (<usize>c << 1)), mask));
    }
    let m: i32 = i16x8.extract_lane_u(acc, 0);
    m = max(m, <i32>i16x8.extract_lane_u(acc, 1));
    m = max(m, <i32>i16x8.extract_lane_u(acc, 2));
    m = max(m, <i32>i16x8.extract_lane_u(acc, 3));
    m = max(m, <i32>i16x8.extract_lane_u(acc, 4));
    m = max(m, <i32>i16x8.extract_lane_u(acc, 5));
    m = max(m, <i32>i16x8.extract_lane_u(acc, 6));
    m = max(m, <i32>i16x8.extract_lane_u(acc, 7));
    store<i32>(out + (<usize>cb << 2), m);
  }
}

/**
 * Four non-negative float32 quotients (as bits) → four FP8 magnitude codes, saturating (anything
 * from max up, +Inf and NaN included, gives max). q is rounded onto the FP8 grid by one float32
 * add and subtract of M = 2^(exponent of q + 23 − FP8 mantissa bits), whose ulp is the FP8 spacing at q's exponent
 * (M is at least `subnormalM`, the subnormal grid's, so small q round onto that); the add rounds to
 * nearest even, as c10's conversion does. From the grid value g, two readings: `normal`, g's bits
 * shifted down with the exponent rebiased (right from the smallest normal code up, and below it
 * always less than the subnormal code), and `subnormal`, g's ulps above `subnormalM` (exact on
 * that grid; right below the smallest normal code, and at or above it from there). So the code is
 * max(normal, min(subnormal, smallest normal code)), clamped to max by a min (the code grows with
 * q). No float32 subnormal is made (x86 runs those in microcode, ~10x slower); below 2^31 signed
 * compares order the bits like the values.
 */
// @ts-ignore: decorator
@inline
function encodeMagnitude4(q: v128, maxCode: v128, gridExp: v128, subnormalM: v128, minNormalCode: v128, rebias: v128, mantShift: i32): v128 {
  const m = i32x4.max_s(i32x4.add(v128.and(q, i32x4.splat(0x7f800000)), gridExp), subnormalM);
  const g = f32x4.sub(f32x4.add(q, m), m);
  const normal = i32x4.min_s(i32x4.sub(i32x4.shr_u(g, mantShift), rebias), maxCode);
  const subnormal = i32x4.min_s(i32x4.sub(f32x4.add(g, subnormalM), subnormalM), minNormalCode);
  return i32x4.max_s(normal, subnormal);
}

/** Four float32 quotients (as bits) → four FP8 codes in the low byte of each lane: the magnitude's code and q's sign bit. */
// @ts-ignore: decorator
@inline
function encode4(q: v128, maxCode: v128, gridExp: v128, subnormalM: v128, minNormalCode: v128, rebias: v128, mantShift: i32): v128 {
  const sign = v128.and(i32x4.shr_u(q, 24), i32x4.splat(0x80));
  return v128.or(encodeMagnitude4(v128.and(q, i32x4.splat(0x7fffffff)), maxCode, gridExp, subnormalM, minNormalCode, rebias, mantShift), sign);
}

/**
 * codes[r, c] = fp8(clamp(w[r, c] / scales[c / bk])) for a finite stripe; cols and bk multiples of 16.
 * The division is of |w| (scales are positive, so the quotient's sign is w's and its magnitude is
 * the same float32): the sign byte is taken from the BF16 word after the codes are narrowed.
 */
export function encodeBf16(src: usize, rows: i32, cols: i32, bk: i32, scales: usize, codes: usize, e5m2: bool): void {
  const maxCode = i32x4.splat(e5m2 ? 0x7b : 0x7e);
  // M's exponent is q's plus 23 − mantissa bits (20 for e4m3, 21 for e5m2), at least the
  // subnormal grid's 2^14 (e4m3) or 2^7 (e5m2); normal codes are the bits above the exponent
  // rebias, (127 − 7) << 3 or (127 − 15) << 2, from the smallest normal code, 8 or 4, up.
  const gridExp = i32x4.splat(e5m2 ? 21 << 23 : 20 << 23);
  const subnormalM = i32x4.splat(e5m2 ? 134 << 23 : 141 << 23);
  const minNormalCode = i32x4.splat(e5m2 ? 4 : 8);
  const rebias = i32x4.splat(e5m2 ? 112 << 2 : 120 << 3);
  const mantShift: i32 = e5m2 ? 21 : 20;
  const magnitude = i16x8.splat(0x7fff);
  const signBit = i8x16.splat(-128);
  const zero = i32x4.splat(0);
  for (let r: i32 = 0; r < rows; r++) {
    const row = src + (<usize>r * <usize>cols << 1);
    const out = codes + <usize>r * <usize>cols;
    for (let c0: i32 = 0, cb: i32 = 0; c0 < cols; c0 += bk, cb++) {
      const c1 = min(cols, c0 + bk);
      const scale = f32x4.splat(load<f32>(scales + (<usize>cb << 2)));
      for (let c = c0; c < c1; c += 16) {
        const lo = v128.load(row + (<usize>c << 1));
        const hi = v128.load(row + (<usize>c << 1), 16);
        const mlo = v128.and(lo, magnitude);
        const mhi = v128.and(hi, magnitude);
        // Interleaving zero words below the BF16 words widens them to float32 bits (punpck*wd).
        const q0 = f32x4.div(i8x16.shuffle(zero, mlo, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23), scale);
        const q1 = f32x4.div(i8x16.shuffle(zero, mlo, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31), scale);
        const q2 = f32x4.div(i8x16.shuffle(zero, mhi, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23), scale);
        const q3 = f32x4.div(i8x16.shuffle(zero, mhi, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31), scale);
        const e0 = encodeMagnitude4(q0, maxCode, gridExp, subnormalM, minNormalCode, rebias, mantShift);
        const e1 = encodeMagnitude4(q1, maxCode, gridExp, subnormalM, minNormalCode, rebias, mantShift);
        const e2 = encodeMagnitude4(q2, maxCode, gridExp, subnormalM, minNormalCode, rebias, mantShift);
        const e3 = encodeMagnitude4(q3, maxCode, gridExp, subnormalM, minNormalCode, rebias, mantShift);
        // Codes are 0..126: the saturating narrows pass them through unchanged. The sign bytes are
        // the BF16 words' high bytes (0..255, also unchanged by the narrow), masked to bit 7.
        const magnitudes = i8x16.narrow_i16x8_u(i16x8.narrow_i32x4_u(e0, e1), i16x8.narrow_i32x4_u(e2, e3));
        const signs = v128.and(i8x16.narrow_i16x8_u(i16x8.shr_u(lo, 8), i16x8.shr_u(hi, 8)), signBit);
        v128.store(out + <usize>c, v128.or(magnitudes, signs));
      }
    }
  }
}

// Requantizing FP8 codes to new blocks (src/fp8/wasm-requantize.ts; the TypeScript twin is
// src/fp8/requantize-codes.ts). A row run [r0, r1) lies in one source block row and one target
// stripe; `edges` (n + 1 i32) cut its columns into segments that each lie in one source block and
// one target block, so within a segment every value is `fround(fp8 × s_src)` of one s_src and is
// divided by one s_dst: a 128-entry table per segment maps the code's magnitude to the new code,
// whose sign is the old one's (both products and the quotient are odd functions; the encode keeps
// the sign bit apart).

/** out[j] (i32) = the largest `code & 0x7f` in rows [r0, r1) × columns [edges[j], edges[j+1]), j < n. */
export function maxMagnitudes(codes: usize, cols: i32, r0: i32, r1: i32, edges: usize, n: i32, out: usize): void {
  const mask = i8x16.splat(0x7f);
  for (let j: i32 = 0; j < n; j++) {
    const c0 = load<i32>(edges + (<usize>j << 2));
    const c1 = load<i32>(edges + (<usize>j << 2), 4);
    let acc = i8x16.splat(0);
    let m: i32 = 0;
    for (let r = r0; r < r1; r++) {
      const row = codes + <usize>r * <usize>cols;
      let c = c0;
      for (; c + 16 <= c1; c += 16) acc = i8x16.max_u(acc, v128.and(v128.load(row + <usize>c), mask));
      for (; c < c1; c++) m = max(m, <i32>(load<u8>(row + <usize>c) & 0x7f));
    }
    acc = i8x16.max_u(acc, i8x16.shuffle(acc, acc, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7));
    acc = i8x16.max_u(acc, i8x16.shuffle(acc, acc, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3));
    acc = i8x16.max_u(acc, i8x16.shuffle(acc, acc, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1));
    acc = i8x16.max_u(acc, i8x16.shuffle(acc, acc, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0));
    store<i32>(out + (<usize>j << 2), max(m, <i32>i8x16.extract_lane_u(acc, 0)));
  }
}

/**
 * tables[128·j + m] = fp8(clamp(fround(fround(decode[m] × srcScales[j]) / dstScales[j]))) for the
 * 128 magnitudes m (`decode`: 128 f32, the format's non-negative values) and j < n.
 */
export function requantizeTables(decode: usize, srcScales: usize, dstScales: usize, n: i32, tables: usize, e5m2: bool): void {
  // encodeBf16's constants (see there).
  const maxCode = i32x4.splat(e5m2 ? 0x7b : 0x7e);
  const gridExp = i32x4.splat(e5m2 ? 21 << 23 : 20 << 23);
  const subnormalM = i32x4.splat(e5m2 ? 134 << 23 : 141 << 23);
  const minNormalCode = i32x4.splat(e5m2 ? 4 : 8);
  const rebias = i32x4.splat(e5m2 ? 112 << 2 : 120 << 3);
  const mantShift: i32 = e5m2 ? 21 : 20;
  for (let j: i32 = 0; j < n; j++) {
    const src = f32x4.splat(load<f32>(srcScales + (<usize>j << 2)));
    const dst = f32x4.splat(load<f32>(dstScales + (<usize>j << 2)));
    const out = tables + (<usize>j << 7);
    for (let m: i32 = 0; m < 128; m += 16) {
      const at = decode + (<usize>m << 2);
      // f32x4.mul and .div round once to float32, as the oracle's fround of the exact double does.
      const q0 = f32x4.div(f32x4.mul(v128.load(at), src), dst);
      const q1 = f32x4.div(f32x4.mul(v128.load(at, 16), src), dst);
      const q2 = f32x4.div(f32x4.mul(v128.load(at, 32), src), dst);
      const q3 = f32x4.div(f32x4.mul(v128.load(at, 48), src), dst);
      const e0 = encode4(q0, maxCode, gridExp, subnormalM, minNormalCode, rebias, mantShift);
      const e1 = encode4(q1, maxCode, gridExp, subnormalM, minNormalCode, rebias, mantShift);
      const e2 = encode4(q2, maxCode, gridExp, subnormalM, minNormalCode, rebias, mantShift);
      const e3 = encode4(q3, maxCode, gridExp, subnormalM, minNormalCode, rebias, mantShift);
      v128.store(out + <usize>m, i8x16.narrow_i16x8_u(i16x8.narrow_i32x4_u(e0, e1), i16x8.narrow_i32x4_u(e2, e3)));
    }
  }
}

/** out[r, c] = tables[128·j + (code & 0x7f)] ^ (code & 0x80) over rows [r0, r1) and each segment j < n. */
export function encodeFromTables(codes: usize, cols: i32, r0: i32, r1: i32, edges: usize, n: i32, tables: usize, out: usize): void {
  const magnitude = i8x16.splat(0x7f);
  const signBit = i8x16.splat(-128);
  const sixteen = i8x16.splat(16);
  for (let j: i32 = 0; j < n; j++) {
    const c0 = load<i32>(edges + (<usize>j << 2));
    const c1 = load<i32>(edges + (<usize>j << 2), 4);
    const table = tables + (<usize>j << 7);
    const t0 = v128.load(table);
    const t1 = v128.load(table, 16);
    const t2 = v128.load(table, 32);
    const t3 = v128.load(table, 48);
    const t4 = v128.load(table, 64);
    const t5 = v128.load(table, 80);
    const t6 = v128.load(table, 96);
    const t7 = v128.load(table, 112);
    for (let r = r0; r < r1; r++) {
      const row = codes + <usize>r * <usize>cols;
      const dst = out + <usize>r * <usize>cols;
      let c = c0;
      for (; c + 16 <= c1; c += 16) {
        const v = v128.load(row + <usize>c);
        // A 128-entry lookup as eight 16-entry swizzles: indices outside a part's 16 (after the
        // wrapping subtraction) select 0 there, so exactly one part contributes each lane.
        let i = v128.and(v, magnitude);
        let x = i8x16.swizzle(t0, i);
        i = i8x16.sub(i, sixteen);
        x = v128.or(x, i8x16.swizzle(t1, i));
        i = i8x16.sub(i, sixteen);
        x = v128.or(x, i8x16.swizzle(t2, i));
        i = i8x16.sub(i, sixteen);
        x = v128.or(x, i8x16.swizzle(t3, i));
        i = i8x16.sub(i, sixteen);
        x = v128.or(x, i8x16.swizzle(t4, i));
        i = i8x16.sub(i, sixteen);
        x = v128.or(x, i8x16.swizzle(t5, i));
        i = i8x16.sub(i, sixteen);
        x = v128.or(x, i8x16.swizzle(t6, i));
        i = i8x16.sub(i, sixteen);
        x = v128.or(x, i8x16.swizzle(t7, i));
        v128.store(dst + <usize>c, v128.xor(x, v128.and(v, signBit)));
      }
      for (; c < c1; c++) {
        const v = <u32>load<u8>(row + <usize>c);
        store<u8>(dst + <usize>c, <u8>(<u32>load<u8>(table + <usize>(v & 0x7f)) ^ (v & 0x80)));
      }
    }
  }
}

// Dequantizing FP8 codes to BF16/F16 (src/fp8/wasm-dequant.ts; the TypeScript twin is
// src/fp8/scaled-decode.ts dequantizeScaledExact). Within one scale block every output is one of
// 256 values, so the caller builds a 256-entry uint16 table per block (the oracle's own rounding)
// and this maps each code through it, 16 codes at a time with byte swizzles: the table is stored
// as its 256 low bytes then its 256 high bytes. Where a block's table is odd in the code's sign
// bit (entries below the first NaN magnitude change only their sign bit with the code's, the NaN
// codes' not at all) only the first 128 entries are looked up (mode 1). Where, besides, the table
// is its 16-entry base (`bases`: the subnormal codes' entries, and each mantissa's entry one
// exponent step below the smallest normal code's) plus the code's exponent field shifted into the
// output's exponent, with the NaN and Inf codes' entries constant (mode 2, the caller checks that
// this gives every entry, as it does for every finite scale whose outputs are normal), each code
// costs one 16-entry lookup and an add: that is the common case.

/**
 * out[r, c] (uint16) = table_j[codes[r, c]] over rows [r0, r1) and each column segment j < n
 * (`edges`: n + 1 i32; `modes`: n i32; tables: 512 bytes per segment; bases: 32 bytes per
 * segment, low bytes then high bytes; `fp8`: the input format's constants, packed as nanFrom |
 * infCode << 8 | subLimit << 16 | mantBits << 24). Returns the OR over every output element w of
 * `(w & expMask) + expLow`: its bit 15 is set exactly when some output is NaN/Inf.
 */
export function dequantFromTables(
  codes: usize,
  cols: i32,
  r0: i32,
  r1: i32,
  edges: usize,
  n: i32,
  tables: usize,
  modes: usize,
  bases: usize,
  out: usize,
  fp8: i32,
  expShift: i32,
  expMask: i32,
  expLow: i32,
): i32 {
  const magnitude = i8x16.splat(0x7f);
  const signBit = i8x16.splat(-128);
  const sixteen = i8x16.splat(16);
  const eight = i8x16.splat(8);
  const em = i16x8.splat(<i16>expMask);
  const el = i16x8.splat(<i16>expLow);
  const below = i8x16.splat(<i8>(fp8 & 0xff));
  const infCode = i8x16.splat(<i8>((fp8 >> 8) & 0xff));
  const subLimit = i8x16.splat(<i8>((fp8 >> 16) & 0xff));
  const mantBits: i32 = (fp8 >> 24) & 0xff;
  const mantMask = i8x16.splat(<i8>((<i32>1 << mantBits) - 1));
  let acc = i16x8.splat(0);
  let tail: i32 = 0;
  for (let j: i32 = 0; j < n; j++) {
    const c0 = load<i32>(edges + (<usize>j << 2));
    const c1 = load<i32>(edges + (<usize>j << 2), 4);
    const mode = load<i32>(modes + (<usize>j << 2));
    const lo = tables + (<usize>j << 9);
    const hi = lo + 256;
    if (mode === 2) {
      const bl = v128.load(bases + (<usize>j << 5));
      const bh = v128.load(bases + (<usize>j << 5), 16);
      const nanLo = i8x16.splat(load<u8>(lo + 0x7f));
      const nanHi = i8x16.splat(load<u8>(hi + 0x7f));
      const infAt = <usize>((fp8 >> 8) & 0x7f);
      const infLo = i8x16.splat(load<u8>(lo + infAt));
      const infHi = i8x16.splat(load<u8>(hi + infAt));
      for (let r = r0; r < r1; r++) {
        const row = codes + <usize>r * <usize>cols;
        const dst = out + (<usize>r * <usize>cols << 1);
        for (let c = c0; c + 16 <= c1; c += 16) {
          const v = v128.load(row + <usize>c);
          const m = v128.and(v, magnitude);
          const sub = i8x16.lt_u(m, subLimit);
          const nan = i8x16.ge_u(m, below);
          const inf = i8x16.eq(m, infCode);
          const idx = v128.bitselect(i8x16.add(m, eight), v128.and(m, mantMask), sub);
          let xl = i8x16.swizzle(bl, idx);
          let xh = i8x16.swizzle(bh, idx);
          xl = v128.bitselect(infLo, v128.bitselect(nanLo, xl, nan), inf);
          xh = v128.bitselect(infHi, v128.bitselect(nanHi, xh, nan), inf);
          xh = v128.xor(xh, v128.andnot(v128.and(v, signBit), nan));
          const e = v128.andnot(i8x16.shr_u(m, mantBits), v128.or(v128.or(sub, nan), inf));
          let w0 = i8x16.shuffle(xl, xh, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
          let w1 = i8x16.shuffle(xl, xh, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
          w0 = i16x8.add(w0, i16x8.shl(i16x8.extend_low_i8x16_u(e), expShift));
          w1 = i16x8.add(w1, i16x8.shl(i16x8.extend_high_i8x16_u(e), expShift));
          acc = v128.or(acc, v128.or(i16x8.add(v128.and(w0, em), el), i16x8.add(v128.and(w1, em), el)));
          v128.store(dst + (<usize>c << 1), w0);
          v128.store(dst + (<usize>c << 1), w1, 16);
        }
      }
    } else if (mode === 1) {
      for (let r = r0; r < r1; r++) {
        const row = codes + <usize>r * <usize>cols;
        const dst = out + (<usize>r * <usize>cols << 1);
        for (let c = c0; c + 16 <= c1; c += 16) {
          const v = v128.load(row + <usize>c);
          let i = v128.and(v, magnitude);
          // Lanes whose magnitude is not in part k (after the wrapping subtraction) select 0 there.
          let xl = i8x16.swizzle(v128.load(lo), i);
          let xh = i8x16.swizzle(v128.load(hi), i);
          const flipLane = v128.and(v128.and(v, signBit), i8x16.lt_u(i, below));
          i = i8x16.sub(i, sixteen);
          xl = v128.or(xl, i8x16.swizzle(v128.load(lo, 16), i));
          xh = v128.or(xh, i8x16.swizzle(v128.load(hi, 16), i));
          i = i8x16.sub(i, sixteen);
          xl = v128.or(xl, i8x16.swizzle(v128.load(lo, 32), i));
          xh = v128.or(xh, i8x16.swizzle(v128.load(hi, 32), i));
          i = i8x16.sub(i, sixteen);
          xl = v128.or(xl, i8x16.swizzle(v128.load(lo, 48), i));
          xh = v128.or(xh, i8x16.swizzle(v128.load(hi, 48), i));
          i = i8x16.sub(i, sixteen);
          xl = v128.or(xl, i8x16.swizzle(v128.load(lo, 64), i));
          xh = v128.or(xh, i8x16.swizzle(v128.load(hi, 64), i));
          i = i8x16.sub(i, sixteen);
          xl = v128.or(xl, i8x16.swizzle(v128.load(lo, 80), i));
          xh = v128.or(xh, i8x16.swizzle(v128.load(hi, 80), i));
          i = i8x16.sub(i, sixteen);
          xl = v128.or(xl, i8x16.swizzle(v128.load(lo, 96), i));
          xh = v128.or(xh, i8x16.swizzle(v128.load(hi, 96), i));
          i = i8x16.sub(i, sixteen);
          xl = v128.or(xl, i8x16.swizzle(v128.load(lo, 112), i));
          xh = v128.or(xh, i8x16.swizzle(v128.load(hi, 112), i));
          xh = v128.xor(xh, flipLane);
          const w0 = i8x16.shuffle(xl, xh, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
          const w1 = i8x16.shuffle(xl, xh, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
          acc = v128.or(acc, v128.or(i16x8.add(v128.and(w0, em), el), i16x8.add(v128.and(w1, em), el)));
          v128.store(dst + (<usize>c << 1), w0);
          v128.store(dst + (<usize>c << 1), w1, 16);
        }
      }
    } else {
      for (let r = r0; r < r1; r++) {
        const row = codes + <usize>r * <usize>cols;
        const dst = out + (<usize>r * <usize>cols << 1);
        for (let c = c0; c + 16 <= c1; c += 16) {
          let i = v128.load(row + <usize>c);
          let xl = i8x16.swizzle(v128.load(lo), i);
          let xh = i8x16.swizzle(v128.load(hi), i);
          for (let k: usize = 16; k < 256; k += 16) {
            i = i8x16.sub(i, sixteen);
            xl = v128.or(xl, i8x16.swizzle(v128.load(lo + k), i));
            xh = v128.or(xh, i8x16.swizzle(v128.load(hi + k), i));
          }
          const w0 = i8x16.shuffle(xl, xh, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
          const w1 = i8x16.shuffle(xl, xh, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
          acc = v128.or(acc, v128.or(i16x8.add(v128.and(w0, em), el), i16x8.add(v128.and(w1, em), el)));
          v128.store(dst + (<usize>c << 1), w0);
          v128.store(dst + (<usize>c << 1), w1, 16);
        }
      }
    }
    // Columns past the segment's last multiple of 16 from c0, one at a time from the full table.
    const cTail = c0 + ((c1 - c0) & ~15);
    if (cTail < c1) {
      for (let r = r0; r < r1; r++) {
        const row = codes + <usize>r * <usize>cols;
        const dst = out + (<usize>r * <usize>cols << 1);
        for (let c = cTail; c < c1; c++) {
          const v = <usize>load<u8>(row + <usize>c);
          const w = <i32>load<u8>(lo + v) | (<i32>load<u8>(hi + v) << 8);
          store<u16>(dst + (<usize>c << 1), <u16>w);
          tail |= (w & expMask) + expLow;
        }
      }
    }
  }
  acc = v128.or(acc, i32x4.shr_u(acc, 16));
  return ((i32x4.extract_lane(acc, 0) | i32x4.extract_lane(acc, 1) | i32x4.extract_lane(acc, 2) | i32x4.extract_lane(acc, 3)) | tail) & 0x8000;
}
