// Whether stored float bytes (BF16, F16, F32, F64) may hold a NaN/Inf, by their exponent bits, a
// 32-bit word at a time: with `e` the exponent mask of each element in the word, `(w & e) +
// lowest exponent bit` reaches the element's top bit exactly when all its exponent bits are set
// (the sign bit is masked off first, so nothing carries into the next element). The constants
// per dtype, and the WebAssembly SIMD form of the scan (wasm/nonfinite-scan.ts) that runs over a
// WebAssembly.Memory in place: the copies of unquantized tensors (2 GiB of embedding and head in
// an 8B model) scan every byte on the thread that writes them. Pure: no I/O.

import { NONFINITE_SCAN_WASM_BASE64 } from './fp8-kernel-wasm.generated.js';
import { compiledModule, instantiate } from './wasm-module.js';

export type ScannedDtype = 'BF16' | 'F16' | 'F32' | 'F64';

/** The per-lane constants of the word scan: even and odd 32-bit words (F64: low and high), and the elements' top bits. */
export interface ExponentCarry {
  readonly expEven: number;
  readonly expOdd: number;
  readonly lowEven: number;
  readonly lowOdd: number;
  readonly top: number;
}

export const EXPONENT_CARRY: Readonly<Record<ScannedDtype, ExponentCarry>> = {
  BF16: { expEven: 0x7f807f80, expOdd: 0x7f807f80, lowEven: 0x00800080, lowOdd: 0x00800080, top: 0x80008000 },
  F16: { expEven: 0x7c007c00, expOdd: 0x7c007c00, lowEven: 0x04000400, lowOdd: 0x04000400, top: 0x80008000 },
  F32: { expEven: 0x7f800000, expOdd: 0x7f800000, lowEven: 0x00800000, lowOdd: 0x00800000, top: 0x80000000 },
  // Little-endian: an element's exponent is in its odd (high) word.
  F64: { expEven: 0, expOdd: 0x7ff00000, lowEven: 0, lowOdd: 0x00100000, top: 0x80000000 },
};

interface ScanExports {
  orExponentCarry(ptr: number, len: number, expEven: number, expOdd: number, lowEven: number, lowOdd: number): number;
}

/** Scans made for a memory, by its buffer. */
const scans = new WeakMap<ArrayBufferLike, WasmNonFiniteScan>();

/** The SIMD scan over one WebAssembly.Memory. */
export class WasmNonFiniteScan {
  private constructor(private readonly exports: ScanExports) {}

  /** Makes the scan of `memory` (a non-shared WebAssembly.Memory that never grows), for `of`; nothing without WebAssembly SIMD. */
  static register(memory: { readonly buffer: ArrayBufferLike }): void {
    const module = compiledModule(NONFINITE_SCAN_WASM_BASE64);
    if (!module) return;
    try {
      scans.set(memory.buffer, new WasmNonFiniteScan(instantiate<ScanExports>(module, { env: { memory } })));
    } catch {
      // Not a memory this module can import: the word scan in JavaScript does the work.
    }
  }

  /** The scan registered for the memory whose buffer is `buffer`, if any. */
  static of(buffer: ArrayBufferLike): WasmNonFiniteScan | undefined {
    return scans.get(buffer);
  }

  /** OR over the words of [byteOffset, byteOffset + (length & ~15)) of the memory of `(w & exp) + low` (`c`'s lanes). */
  orCarry(byteOffset: number, length: number, c: ExponentCarry): number {
    return this.exports.orExponentCarry(byteOffset, length, c.expEven, c.expOdd, c.lowEven, c.lowOdd);
  }
}
