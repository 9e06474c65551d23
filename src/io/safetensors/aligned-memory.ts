// Page-aligned memory for O_DIRECT I/O (direct-reads.ts, direct-shard-writer.ts). O_DIRECT needs
// the buffer's address aligned to the device block, and an ArrayBuffer's address is not (malloc
// puts a header before large blocks); the memory of a WebAssembly.Memory is page-aligned. It is
// made at its final size and never grown: growing would detach every view into it.

interface MemoryApi {
  Memory: new (d: { initial: number; maximum: number; shared?: boolean }) => { readonly buffer: ArrayBuffer | SharedArrayBuffer };
}

/** A page-aligned, fixed-size buffer, or undefined where this runtime has no WebAssembly. */
export function alignedBuffer(bytes: number): ArrayBuffer | undefined {
  return alignedMemory(bytes)?.buffer;
}

/** The same with the WebAssembly.Memory it is the buffer of (a WebAssembly module can then work in it in place). */
export function alignedMemory(bytes: number): { readonly buffer: ArrayBuffer } | undefined {
  const wasm = (globalThis as { WebAssembly?: MemoryApi }).WebAssembly;
  const pages = Math.max(1, Math.ceil(bytes / 65536));
  const memory = wasm?.Memory ? new wasm.Memory({ initial: pages, maximum: pages }) : undefined;
  return memory && memory.buffer instanceof ArrayBuffer ? (memory as { readonly buffer: ArrayBuffer }) : undefined;
}

/** The same as a SharedArrayBuffer, which worker threads can read in place. */
export function alignedSharedBuffer(bytes: number): SharedArrayBuffer | undefined {
  const wasm = (globalThis as { WebAssembly?: MemoryApi }).WebAssembly;
  const pages = Math.max(1, Math.ceil(bytes / 65536));
  try {
    const buffer = wasm?.Memory ? new wasm.Memory({ initial: pages, maximum: pages, shared: true }).buffer : undefined;
    return buffer instanceof SharedArrayBuffer ? buffer : undefined;
  } catch {
    return undefined;
  }
}

/** Alignment of O_DIRECT offsets, lengths and addresses: covers 512-byte and 4 KiB logical blocks. */
export const DIRECT_ALIGN = 4096;

export function alignDown(n: number): number {
  return Math.floor(n / DIRECT_ALIGN) * DIRECT_ALIGN;
}

export function alignUp(n: number): number {
  return Math.ceil(n / DIRECT_ALIGN) * DIRECT_ALIGN;
}
