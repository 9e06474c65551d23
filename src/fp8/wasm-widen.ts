// Widening of stored weights to float32 in WebAssembly SIMD (wasm/widen-kernel.ts): BF16 words
// and FP8 codes, in chunks copied through the module's small memory, 2–3× the TypeScript loops of
// dtypes.ts / formats.ts with the same bits (they call this above a size where it pays, and keep
// their loops where the runtime has no WebAssembly SIMD).

import { WIDEN_KERNEL_WASM_BASE64 } from './fp8-kernel-wasm.generated.js';
import { compiledModule, instantiate } from './wasm-module.js';

interface WidenExports {
  readonly memory: { readonly buffer: ArrayBuffer };
  widenBf16(src: number, n: number, dst: number): void;
  decodeFp8(codes: number, n: number, dst: number, e5m2: number): void;
}

/** Elements per chunk: 128 KiB of BF16 in and 256 KiB of float32 out, inside the module's 512 KiB. */
const CHUNK = 1 << 16;
/** Below this many elements the TypeScript loop is as fast (no copies, no call). */
export const WASM_WIDEN_MIN_ELEMENTS = 1 << 14;

let kernel: WidenExports | null | undefined;

function widenKernel(): WidenExports | null {
  if (kernel === undefined) {
    const module = compiledModule(WIDEN_KERNEL_WASM_BASE64);
    kernel = module ? instantiate<WidenExports>(module) : null;
  }
  return kernel;
}

/**
 * `count` elements of `inBytes` bytes each from `src` into `out` as float32, through the module's
 * memory a chunk at a time: `kernel(k, n)` turns n elements at offset 0 into float32 at CHUNK·inBytes.
 * False where WebAssembly SIMD is missing.
 */
function throughModule(src: Uint8Array, inBytes: number, count: number, out: Float32Array, kernel: (k: WidenExports, n: number) => void): boolean {
  const k = widenKernel();
  if (k === null) return false;
  const mem = new Uint8Array(k.memory.buffer);
  const dst = new Uint8Array(out.buffer, out.byteOffset, count * 4);
  const outAt = CHUNK * inBytes;
  for (let i = 0; i < count; i += CHUNK) {
    const n = Math.min(CHUNK, count - i);
    mem.set(src.subarray(i * inBytes, (i + n) * inBytes), 0);
    kernel(k, n);
    dst.set(mem.subarray(outAt, outAt + n * 4), i * 4);
  }
  return true;
}

/** `count` BF16 words of `bytes` into `out` as float32; false where WebAssembly SIMD is missing. */
export function wasmWidenBf16(bytes: Uint8Array, count: number, out: Float32Array): boolean {
  return throughModule(bytes, 2, count, out, (k, n) => k.widenBf16(0, n, CHUNK * 2));
}

/** FP8 `codes` into `out` as their float32 values (the decode table's bits); false where WebAssembly SIMD is missing. */
export function wasmDecodeFp8(codes: Uint8Array, e5m2: boolean, out: Float32Array): boolean {
  return throughModule(codes, 1, codes.length, out, (k, n) => k.decodeFp8(0, n, CHUNK, e5m2 ? 1 : 0));
}
