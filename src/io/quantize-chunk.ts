// One chunk of whole row stripes through the fast kernels: the unit of work of the quantize pool's
// workers (quantize-worker.ts), and of the main thread for tensors too small to be worth a hop.
// BF16 stripes go to the WebAssembly SIMD kernel where it applies, everything else (other source
// dtypes, widths not a multiple of 16, stripes holding Inf/NaN) to the TypeScript fast kernel;
// both produce the oracle's bytes.

import type { BlockShape, ScaleFormat } from '../fp8/block-quantize.js';
import { dtypeSize, widenToFloat32, type FloatSourceDtype } from '../fp8/dtypes.js';
import { FastQuantizeScratch, quantizeBf16StripeFast, quantizeF32StripeFast } from '../fp8/fast-quantize.js';
import type { Fp8Format } from '../fp8/formats.js';
import { WasmBf16Kernel } from '../fp8/wasm-kernel.js';

export interface ChunkSettings {
  readonly format: Fp8Format;
  readonly block: BlockShape;
  readonly scaleFormat: ScaleFormat;
  readonly nonFinite: 'error' | 'saturate';
}

/** `rows` rows (whole stripes; the first at a multiple of bn) of a [*, cols] matrix. */
export interface ChunkInput {
  readonly dtype: FloatSourceDtype;
  readonly rows: number;
  readonly cols: number;
  /** Row of the chunk's first row within its matrix (labels errors). */
  readonly firstRow: number;
  readonly settings: ChunkSettings;
  /** Source bytes, from offset 0. */
  readonly source: ArrayBuffer;
  /** Room for rows × cols codes, filled from offset 0. */
  readonly codes: ArrayBuffer;
}

/** Per-thread state: the kernels' scratch and a widening buffer for non-BF16 sources. */
export class ChunkScratch {
  readonly kernel = new FastQuantizeScratch();
  /** Undefined without WebAssembly SIMD, or when `useWasm` is false (tests, bench). */
  readonly wasm: WasmBf16Kernel | undefined;
  private widened = new Float32Array(0);

  constructor(useWasm = true) {
    this.wasm = useWasm ? WasmBf16Kernel.create() : undefined;
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
  const { rows, cols, firstRow, settings, dtype } = input;
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
