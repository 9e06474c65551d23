// Requantizing block-scaled FP8 codes to new blocks (convert --requantize) without decoding every
// element: within one source block every value is one of 256, `fround(fp8 × scale)`. So a target
// block's amax comes from the largest code magnitude of each source block it overlaps (|fp8| grows
// with the code's low 7 bits), and each output code from a 256-entry table per (source block,
// target block) pair: `encode(clamp(fround(fround(fp8 × s_src) / s_dst)))`, the oracle's formula,
// encoded by the fast kernel's integer encoder (fast-quantize.ts)
// (block-quantize.ts quantizeStripe on the values io/formats/float-rows.ts readF32 gives). Stripes holding
// a NaN/Inf code, a non-finite scale or a product that overflows float32 are left to the caller
// (returns false), which decodes and runs the general kernel, so errors stay the oracle's.
// Pure: no I/O.

import { scaleFromAmax, stripeSettings, type BlockQuantizeOptions } from './block-quantize.js';
import { encodeFloat32Bits } from './fast-quantize.js';
import { fp8DecodeTable, type Fp8Dtype, type ScaleGridSlice } from './scaled-decode.js';

/** Whether `code` of `dtype` (or its magnitude, code & 0x7f) is NaN or ±Inf. */
export function nonFiniteCode(dtype: Fp8Dtype, code: number): boolean {
  const m = code & 0x7f;
  return dtype === 'F8_E4M3' ? m === 0x7f : m >= 0x7c;
}

/**
 * Quantizes `rows` rows (whole target stripes of `opts.block.bn`, the first at a multiple of it)
 * of FP8 `codes` with source scales `grid` into `out` codes and `scales` (ceil(rows/bn) ×
 * ceil(cols/bk)). Returns false, writing nothing meaningful, when a stripe needs the general path.
 */
export function requantizeCodes(
  codes: Uint8Array,
  rows: number,
  cols: number,
  dtype: Fp8Dtype,
  grid: ScaleGridSlice,
  opts: BlockQuantizeOptions,
  out: Uint8Array,
  scales: Float32Array,
): boolean {
  const decode = fp8DecodeTable(dtype);
  const { bk, max, scaleFormat } = stripeSettings(opts);
  const bn = opts.block.bn;
  for (let i = 0; i < grid.scales.length; i++) if (!Number.isFinite(grid.scales[i]!)) return false;
  const gridRow0 = Math.floor(grid.firstRow / grid.rowBlock);
  const gridRowOf = (r: number): number => Math.floor((grid.firstRow + r) / grid.rowBlock) - gridRow0;
  const colBlocks = Math.ceil(cols / bk);
  const table = new Uint8Array(256);
  const values = new Float32Array(256);
  const q = new Float32Array(256);
  const qBits = new Uint32Array(q.buffer);
  for (let s = 0, r0 = 0; r0 < rows; s++, r0 += bn) {
    const r1 = Math.min(rows, r0 + bn);
    for (let cb = 0, c0 = 0; c0 < cols; cb++, c0 += bk) {
      const c1 = Math.min(cols, c0 + bk);
      // amax over the source blocks the target block overlaps: rows [r0, r1) × columns [c0, c1).
      let amax = 0;
      for (let ra = r0; ra < r1; ) {
        const g = gridRowOf(ra);
        const rb = Math.min(r1, (gridRow0 + g + 1) * grid.rowBlock - grid.firstRow);
        for (let ca = c0; ca < c1; ) {
          const gc = Math.floor(ca / grid.colBlock);
          const cbEnd = Math.min(c1, (gc + 1) * grid.colBlock);
          let mag = 0;
          for (let r = ra; r < rb; r++) {
            for (let c = r * cols + ca, end = r * cols + cbEnd; c < end; c++) {
              const m = codes[c]! & 0x7f;
              if (m > mag) mag = m;
            }
          }
          // NaN/Inf codes have the largest magnitudes, so the block's largest tells whether it holds one.
          if (nonFiniteCode(dtype, mag)) return false;
          const a = Math.fround(decode[mag]! * Math.abs(grid.scales[g * grid.gridCols + gc]!));
          if (a === Infinity) return false;
          if (a > amax) amax = a;
          ca = cbEnd;
        }
        ra = rb;
      }
      const scale = scaleFromAmax(amax, max, scaleFormat);
      scales[s * colBlocks + cb] = scale;
      for (let ra = r0; ra < r1; ) {
        const g = gridRowOf(ra);
        const rb = Math.min(r1, (gridRow0 + g + 1) * grid.rowBlock - grid.firstRow);
        for (let ca = c0; ca < c1; ) {
          const gc = Math.floor(ca / grid.colBlock);
          const cbEnd = Math.min(c1, (gc + 1) * grid.colBlock);
          const src = grid.scales[g * grid.gridCols + gc]!;
          // Each store into a Float32Array rounds: q = fround(fround(fp8 × s_src) / s_dst).
          for (let c = 0; c < 256; c++) values[c] = decode[c]! * src;
          for (let c = 0; c < 256; c++) q[c] = values[c]! / scale;
          encodeFloat32Bits(qBits, 256, table, 0, opts.format);
          for (let r = ra; r < rb; r++) {
            for (let c = r * cols + ca, end = r * cols + cbEnd; c < end; c++) out[c] = table[codes[c]!]!;
          }
          ca = cbEnd;
        }
        ra = rb;
      }
    }
  }
  return true;
}
