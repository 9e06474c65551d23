// One chunk of whole row stripes through the fast kernels: the unit of work of the quantize pool's
// workers (quantize-worker.ts), and of the main thread for tensors too small to be worth a hop.
// BF16 stripes go to the WebAssembly SIMD kernel where it applies, everything else (other source
// dtypes, widths not a multiple of 16, stripes holding Inf/NaN) to the TypeScript fast kernel;
// both produce the oracle's bytes. A chunk may instead be a list of segments (rows of different
// tensors or dtypes, FP8 with its scale grid: stacked experts, --requantize): FP8 in one grid goes
// straight from the codes (fp8/wasm-requantize.ts, or fp8/requantize-codes.ts without wasm), the
// rest is decoded to float32 first and quantized by the float32 fast kernel; or a dequantization (`dequantizeTo`):
// FP8 rows rounded once to a float dtype (fp8/wasm-dequant.ts for BF16/F16, fp8/scaled-decode.ts
// otherwise), no quantization, with the count of NaN/Inf values written, so they are checked on the
// thread that made them.

import { quantizeStripe, type BlockShape, type ScaleFormat } from '../fp8/block-quantize.js';
import { dtypeSize, widenToFloat32, type FloatSourceDtype } from '../fp8/dtypes.js';
import { FastQuantizeScratch, quantizeBf16StripeFast, quantizeF32StripeFast } from '../fp8/fast-quantize.js';
import type { Fp8Format } from '../fp8/formats.js';
import { requantizeCodes } from '../fp8/requantize-codes.js';
import { narrowExact } from '../fp8/round-once.js';
import { decodeScaledToFloat32, dequantizeScaledExact, fp8DecodeTable, type DequantDtype, type Fp8Dtype, type ScaleGridSlice } from '../fp8/scaled-decode.js';
import { WasmBf16Kernel } from '../fp8/wasm-kernel.js';
import { WasmDequantKernel } from '../fp8/wasm-dequant.js';
import { WasmRequantizeKernel } from '../fp8/wasm-requantize.js';
import { countNonFinite } from '../io/checkpoint/nonfinite-count.js';

export interface ChunkSettings {
  readonly format: Fp8Format;
  readonly block: BlockShape;
  readonly scaleFormat: ScaleFormat;
  readonly nonFinite: 'error' | 'saturate';
}

/** Rows of a chunk stored in `dtype` at `byteOffset` of the chunk's source buffer; FP8 rows carry their scales. */
export interface ChunkSegment {
  readonly rows: number;
  readonly byteOffset: number;
  readonly dtype: FloatSourceDtype | Fp8Dtype;
  readonly grid?: ScaleGridSlice;
}

/** `rows` rows (whole stripes; the first at a multiple of bn) of a [*, cols] matrix. */
export interface ChunkInput {
  /** The source's dtype when `segments` is absent (the whole source buffer is one run of it). */
  readonly dtype: FloatSourceDtype;
  /** The source as segments in row order, decoded to float32 before quantizing. */
  readonly segments?: readonly ChunkSegment[];
  /** Dequantize instead (one FP8 segment): `codes` receives rows × cols values of this dtype and no scales come back. */
  readonly dequantizeTo?: DequantDtype;
  readonly rows: number;
  readonly cols: number;
  /** Row of the chunk's first row within its matrix (labels errors). */
  readonly firstRow: number;
  /** Kernel settings; absent for a dequantize chunk. */
  readonly settings?: ChunkSettings;
  /** Source bytes, from offset 0. */
  readonly source: ArrayBufferLike;
  /** Room for rows × cols codes, filled from offset 0. */
  readonly codes: ArrayBufferLike;
}

/** Per-thread state: the kernels' scratch and a widening buffer for non-BF16 sources. */
export class ChunkScratch {
  readonly kernel = new FastQuantizeScratch();
  /** Undefined without WebAssembly SIMD, or when `useWasm` is false (tests, bench). */
  readonly wasm: WasmBf16Kernel | undefined;
  private widened = new Float32Array(0);
  private requantizeKernel: WasmRequantizeKernel | null | undefined;
  private dequantKernel: WasmDequantKernel | null | undefined;

  constructor(private readonly useWasm = true) {
    this.wasm = useWasm ? WasmBf16Kernel.create() : undefined;
  }

  /** The WebAssembly requantize kernel, made on first use (its memory holds a chunk twice); undefined without wasm. */
  get requantize(): WasmRequantizeKernel | undefined {
    if (this.requantizeKernel === undefined) this.requantizeKernel = (this.useWasm ? WasmRequantizeKernel.create() : undefined) ?? null;
    return this.requantizeKernel ?? undefined;
  }

  /** The WebAssembly dequantization kernel, made on first use; undefined without wasm. */
  get dequant(): WasmDequantKernel | undefined {
    if (this.dequantKernel === undefined) this.dequantKernel = (this.useWasm ? WasmDequantKernel.create() : undefined) ?? null;
    return this.dequantKernel ?? undefined;
  }

  values(count: number): Float32Array {
    if (this.widened.length < count) this.widened = new Float32Array(count);
    return this.widened.subarray(0, count);
  }
}

/**
 * Quantizes the chunk's stripes in order into `input.codes` and returns its ceil(rows/bn) ×
 * ceil(cols/bk) scales; throws NonFiniteValueError (rows counted within the matrix) as the oracle.
 */
export function quantizeChunk(input: ChunkInput, scratch: ChunkScratch): Float32Array {
  if (input.dequantizeTo) {
    dequantizeChunk(input, scratch);
    return new Float32Array(0);
  }
  const settings = input.settings;
  if (!settings) throw new Error('a quantize chunk needs kernel settings');
  if (input.segments) return quantizeSegments(input, settings, scratch);
  const { rows, cols, firstRow, dtype } = input;
  const { bn, bk } = settings.block;
  const colBlocks = Math.ceil(cols / bk);
  const stripes = Math.ceil(rows / bn);
  const codes = new Uint8Array(input.codes, 0, rows * cols);
  const scales = new Float32Array(stripes * colBlocks);
  const size = dtypeSize(dtype);
  const wasm = dtype === 'BF16' && WasmBf16Kernel.supports(cols, bk) ? scratch.wasm : undefined;
  for (let s = 0; s < stripes; s++) {
    const r0 = s * bn;
    const n = Math.min(bn, rows - r0);
    const stripeCodes = codes.subarray(r0 * cols, (r0 + n) * cols);
    const stripeScales = scales.subarray(s * colBlocks, (s + 1) * colBlocks);
    if (dtype === 'BF16') {
      const src = new Uint16Array(input.source, r0 * cols * 2, n * cols);
      if (!wasm?.quantizeStripe(src, n, cols, settings, stripeCodes, stripeScales)) {
        quantizeBf16StripeFast(src, n, cols, settings, stripeCodes, stripeScales, firstRow + r0, scratch.kernel);
      }
    } else {
      const bytes = new Uint8Array(input.source, r0 * cols * size, n * cols * size);
      const values = widenToFloat32(bytes, dtype, scratch.values(n * cols));
      quantizeF32StripeFast(values, n, cols, settings, stripeCodes, stripeScales, firstRow + r0, scratch.kernel);
    }
  }
  return scales;
}

/** Bytes a chunk's result occupies at the start of its `codes` buffer. */
export function chunkOutputBytes(input: Pick<ChunkInput, 'rows' | 'cols' | 'dequantizeTo'>): number {
  const n = input.rows * input.cols;
  return input.dequantizeTo === undefined ? n : n * (input.dequantizeTo === 'F32' ? 4 : 2);
}

/** The segments' rows as float32 (exact widening, or fround(fp8 × scale)). */
function segmentValues(input: ChunkInput, scratch: ChunkScratch): Float32Array {
  const { cols } = input;
  const values = scratch.values(input.rows * cols);
  let row = 0;
  for (const seg of input.segments!) {
    const out = values.subarray(row * cols, (row + seg.rows) * cols);
    const n = seg.rows * cols;
    if (seg.dtype === 'F8_E4M3' || seg.dtype === 'F8_E5M2') {
      decodeScaledToFloat32(new Uint8Array(input.source, seg.byteOffset, n), seg.rows, cols, seg.dtype, seg.grid!, out);
    } else {
      widenToFloat32(new Uint8Array(input.source, seg.byteOffset, n * dtypeSize(seg.dtype)), seg.dtype, out);
    }
    row += seg.rows;
  }
  if (row !== input.rows) throw new Error(`chunk segments hold ${row} rows; the chunk has ${input.rows}`);
  return values;
}

function quantizeSegments(input: ChunkInput, settings: ChunkSettings, scratch: ChunkScratch): Float32Array {
  const { rows, cols, firstRow } = input;
  const { bn, bk } = settings.block;
  const colBlocks = Math.ceil(cols / bk);
  const stripes = Math.ceil(rows / bn);
  const codes = new Uint8Array(input.codes, 0, rows * cols);
  const scales = new Float32Array(stripes * colBlocks);
  const only = input.segments!.length === 1 ? input.segments![0]! : undefined;
  // FP8 in one grid (--requantize): straight from the codes, unless a stripe holds NaN/Inf.
  if (only?.grid && (only.dtype === 'F8_E4M3' || only.dtype === 'F8_E5M2')) {
    const source = new Uint8Array(input.source, only.byteOffset, rows * cols);
    const wasm = scratch.requantize;
    if (wasm) {
      // The TypeScript codes kernel declines exactly where this one does: on to the general path.
      if (wasm.requantize(source, rows, cols, only.dtype, only.grid, settings, codes, scales)) return scales;
    } else if (requantizeCodes(source, rows, cols, only.dtype, only.grid, settings, codes, scales)) return scales;
  }
  const values = segmentValues(input, scratch);
  for (let s = 0; s < stripes; s++) {
    const r0 = s * bn;
    const n = Math.min(bn, rows - r0);
    quantizeF32StripeFast(
      values.subarray(r0 * cols, (r0 + n) * cols),
      n,
      cols,
      settings,
      codes.subarray(r0 * cols, (r0 + n) * cols),
      scales.subarray(s * colBlocks, (s + 1) * colBlocks),
      firstRow + r0,
      scratch.kernel,
    );
  }
  return scales;
}

/** What a chunk gives back: its scales, and for a dequantization the NaN/Inf values among those written. */
export interface ChunkResult {
  readonly scales: Float32Array;
  readonly nonFinite?: number;
}

/** quantizeChunk, or referenceChunk (the oracle) with `reference`, with a dequantization's NaN/Inf count. */
export function runChunk(input: ChunkInput, scratch: ChunkScratch, reference = false): ChunkResult {
  if (!input.dequantizeTo) return { scales: reference ? referenceChunk(input) : quantizeChunk(input, scratch) };
  // A fresh empty array each time: its buffer is transferred back with the reply.
  if (!reference) return { scales: new Float32Array(0), nonFinite: dequantizeChunk(input, scratch) };
  referenceChunk(input);
  return { scales: new Float32Array(0), nonFinite: countNonFinite(new Uint8Array(input.codes, 0, chunkOutputBytes(input)), input.dequantizeTo) };
}

/** Dequantizes the chunk into `input.codes`; returns how many values written are NaN/Inf. */
function dequantizeChunk(input: ChunkInput, scratch: ChunkScratch): number {
  const seg = input.segments?.[0];
  if (!seg || input.segments!.length !== 1 || !seg.grid || (seg.dtype !== 'F8_E4M3' && seg.dtype !== 'F8_E5M2')) {
    throw new Error('a dequantize chunk is one FP8 segment with its scale grid');
  }
  const to = input.dequantizeTo!;
  const n = input.rows * input.cols;
  const codes = new Uint8Array(input.source, seg.byteOffset, n);
  const out = new Uint8Array(input.codes, 0, chunkOutputBytes(input));
  const wasm = to === 'F32' ? undefined : scratch.dequant;
  if (wasm) return wasm.dequantize(codes, input.rows, input.cols, seg.dtype, seg.grid, to as 'BF16' | 'F16', out);
  dequantizeScaledExact(codes, input.rows, input.cols, seg.dtype, seg.grid, to, out);
  return countNonFinite(out, to);
}

/** The scale of element (r, c) of a segment: the oracle's per-element lookup (io/formats/float-rows.ts). */
function scaleAt(grid: ScaleGridSlice, r: number, c: number): number {
  const g = Math.floor((grid.firstRow + r) / grid.rowBlock) - Math.floor(grid.firstRow / grid.rowBlock);
  return grid.scales[g * grid.gridCols + Math.floor(c / grid.colBlock)]!;
}

/**
 * The oracle: the same contract as quantizeChunk, element by element with the reference kernel
 * (fp8/block-quantize.ts quantizeStripe), `fround(fp8 × scale)` per element for FP8 input and
 * narrowExact of the exact product for dequantization. --threads 0 runs it; the tests compare the
 * fast kernels' bytes with it.
 */
export function referenceChunk(input: ChunkInput): Float32Array {
  const { rows, cols, firstRow } = input;
  const n = rows * cols;
  if (input.dequantizeTo) {
    const seg = input.segments?.[0];
    if (!seg?.grid || (seg.dtype !== 'F8_E4M3' && seg.dtype !== 'F8_E5M2')) throw new Error('a dequantize chunk is one FP8 segment with its scale grid');
    const decode = fp8DecodeTable(seg.dtype);
    const codes = new Uint8Array(input.source, seg.byteOffset, n);
    const exact = new Float64Array(n);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) exact[r * cols + c] = decode[codes[r * cols + c]!]! * scaleAt(seg.grid, r, c);
    new Uint8Array(input.codes, 0, chunkOutputBytes(input)).set(narrowExact(exact, input.dequantizeTo));
    return new Float32Array(0);
  }
  const settings = input.settings;
  if (!settings) throw new Error('a quantize chunk needs kernel settings');
  const values = new Float32Array(n);
  const segments = input.segments ?? [{ rows, byteOffset: 0, dtype: input.dtype }];
  let row = 0;
  for (const seg of segments) {
    const count = seg.rows * cols;
    if (seg.dtype === 'F8_E4M3' || seg.dtype === 'F8_E5M2') {
      const decode = fp8DecodeTable(seg.dtype);
      const codes = new Uint8Array(input.source, seg.byteOffset, count);
      for (let r = 0; r < seg.rows; r++) {
        for (let c = 0; c < cols; c++) values[(row + r) * cols + c] = Math.fround(decode[codes[r * cols + c]!]! * scaleAt(seg.grid!, r, c));
      }
    } else {
      widenToFloat32(new Uint8Array(input.source, seg.byteOffset, count * dtypeSize(seg.dtype)), seg.dtype, values.subarray(row * cols, row * cols + count));
    }
    row += seg.rows;
  }
  const { bn, bk } = settings.block;
  const colBlocks = Math.ceil(cols / bk);
  const codes = new Uint8Array(input.codes, 0, n);
  const scales = new Float32Array(Math.ceil(rows / bn) * colBlocks);
  for (let s = 0, r0 = 0; r0 < rows; s++, r0 += bn) {
    const m = Math.min(bn, rows - r0);
    quantizeStripe(
      values.subarray(r0 * cols, (r0 + m) * cols),
      m,
      cols,
      settings,
      codes.subarray(r0 * cols, (r0 + m) * cols),
      scales.subarray(s * colBlocks, (s + 1) * colBlocks),
      firstRow + r0,
    );
  }
  return scales;
}
