// The WebAssembly SIMD kernel (wasm/fp8-kernel.ts, embedded by `npm run build:wasm`) behind the
// same contract as quantizeStripe, for BF16 stripes: ~7x the TypeScript fast kernel, which is
// what makes a convert disk-bound on two cores (bench/NOTES.md). Each thread owns one instance
// and its linear memory: a stripe is copied in, amax'd, scaled here with the oracle's own
// scaleFromAmax, encoded, and copied out. A stripe holding Inf/NaN is declined (returns false) so
// the TypeScript kernel reports or saturates it exactly as the oracle does.

import { scaleFromAmax, stripeSettings, type BlockQuantizeOptions } from './block-quantize.js';
import { FP8_KERNEL_WASM_BASE64 } from './fp8-kernel-wasm.generated.js';
import { compiledModule, instantiate } from './wasm-module.js';

export interface KernelExports {
  readonly memory: { readonly buffer: ArrayBuffer; grow(pages: number): number };
  amaxBf16(src: number, rows: number, cols: number, bk: number, out: number): void;
  encodeBf16(src: number, rows: number, cols: number, bk: number, scales: number, codes: number, e5m2: number): void;
  maxMagnitudes(codes: number, cols: number, r0: number, r1: number, edges: number, n: number, out: number): void;
  requantizeTables(decode: number, srcScales: number, dstScales: number, n: number, tables: number, e5m2: number): void;
  encodeFromTables(codes: number, cols: number, r0: number, r1: number, edges: number, n: number, tables: number, out: number): void;
  dequantFromTables(
    codes: number,
    cols: number,
    r0: number,
    r1: number,
    edges: number,
    n: number,
    tables: number,
    modes: number,
    bases: number,
    out: number,
    fp8: number,
    expShift: number,
    expMask: number,
    expLow: number,
  ): number;
}

const WASM_PAGE_BYTES = 65536;
/** First BF16 pattern of |x| that is Inf or NaN. */
const BF16_INF = 0x7f80;

/** A fresh instance of the kernel module with its own memory, or undefined without WebAssembly SIMD. */
export function kernelInstance(): KernelExports | undefined {
  const module = compiledModule(FP8_KERNEL_WASM_BASE64);
  return module ? instantiate<KernelExports>(module) : undefined;
}

/** Grows `kernel`'s memory to at least `total` bytes (pages of 64 KiB). */
export function reserveKernelMemory(kernel: KernelExports, total: number): void {
  const have = kernel.memory.buffer.byteLength;
  if (total > have) kernel.memory.grow(Math.ceil((total - have) / WASM_PAGE_BYTES));
}

export function align16(n: number): number {
  return Math.ceil(n / 16) * 16;
}

const f32Word = new Float32Array(1);
const u32Word = new Uint32Array(f32Word.buffer);

export class WasmBf16Kernel {
  private bytes: Uint8Array;

  private constructor(private readonly kernel: KernelExports) {
    this.bytes = new Uint8Array(kernel.memory.buffer);
  }

  /** A kernel instance for this thread, or undefined without WebAssembly SIMD. */
  static create(): WasmBf16Kernel | undefined {
    const kernel = kernelInstance();
    return kernel ? new WasmBf16Kernel(kernel) : undefined;
  }

  /** Stripe widths the SIMD loops cover without a scalar tail. */
  static supports(cols: number, bk: number): boolean {
    return cols % 16 === 0 && bk % 16 === 0;
  }

  private reserve(total: number): void {
    reserveKernelMemory(this.kernel, total);
    if (this.bytes.buffer !== this.kernel.memory.buffer) this.bytes = new Uint8Array(this.kernel.memory.buffer);
  }

  /**
   * quantizeStripe for a BF16 stripe (raw words; `supports(cols, bk)` must hold). Returns false,
   * leaving codes and scaleInv unspecified, if a block holds Inf/NaN.
   */
  quantizeStripe(src: Uint16Array, rows: number, cols: number, opts: BlockQuantizeOptions, codes: Uint8Array, scaleInv: Float32Array): boolean {
    const { bk } = opts.block;
    const colBlocks = Math.ceil(cols / bk);
    const count = rows * cols;
    // Layout: [source words][codes][amax i32 per block][scale f32 per block].
    const srcAt = 0;
    const codesAt = align16(srcAt + count * 2);
    const amaxAt = align16(codesAt + count);
    const scalesAt = align16(amaxAt + colBlocks * 4);
    this.reserve(scalesAt + colBlocks * 4);
    const buffer = this.kernel.memory.buffer;
    this.bytes.set(new Uint8Array(src.buffer, src.byteOffset, count * 2), srcAt);
    this.kernel.amaxBf16(srcAt, rows, cols, bk, amaxAt);
    const amax = new Int32Array(buffer, amaxAt, colBlocks);
    const scales = new Float32Array(buffer, scalesAt, colBlocks);
    const { max, scaleFormat } = stripeSettings(opts);
    for (let cb = 0; cb < colBlocks; cb++) {
      const bits = amax[cb]!;
      if (bits >= BF16_INF) return false;
      u32Word[0] = bits << 16;
      const scale = scaleFromAmax(f32Word[0]!, max, scaleFormat);
      scales[cb] = scale;
      scaleInv[cb] = scale;
    }
    this.kernel.encodeBf16(srcAt, rows, cols, bk, scalesAt, codesAt, opts.format === 'e5m2' ? 1 : 0);
    codes.set(this.bytes.subarray(codesAt, codesAt + count));
    return true;
  }
}
