// HostBufferPool: host buffers for a layer's weights — the bytes read from the checkpoint and the
// float32 arrays decoded from them — handed back once the layer has run and reused by the next
// layer, whose weights have the same sizes. A fresh large buffer costs a page fault per 4 KiB on
// first touch, which on the machines measured cost more than reading or decoding into it
// (README, verify performance), and every decoder layer would otherwise allocate its whole weight
// set anew. Shared by both runners of a verify: their layers have the same shapes. A byte request
// with no free buffer of its size takes the front of a free one up to twice as large (an FP8
// checkpoint's codes fit in its original's BF16 read buffers), so the pool holds the larger of the
// two checkpoints' read buffers, not both.

import { constants } from 'node:buffer';

export class HostBufferPool {
  /** Free ArrayBuffers by byte length. */
  private readonly free = new Map<number, ArrayBuffer[]>();
  private freeBytes = 0;
  /** Views handed out over the front of a larger buffer → that buffer. */
  private readonly parents = new WeakMap<ArrayBufferView, ArrayBuffer>();

  /** @param maxFreeBytes free buffers beyond this many bytes are dropped rather than kept. */
  constructor(readonly maxFreeBytes = Number.POSITIVE_INFINITY) {}

  private take(byteLength: number): ArrayBuffer {
    const buffer = this.free.get(byteLength)?.pop();
    // A new buffer is not zeroed: every caller overwrites what it takes (float32(), bytes()), and
    // zero-filling the first layer's buffers was 0.41 s of a 7.2 s CUDA verify (bench/NOTES.md).
    if (buffer === undefined) return uninitialized(byteLength);
    this.freeBytes -= byteLength;
    return buffer;
  }

  /** `length` float32 elements with stale contents: the caller overwrites all of them. */
  float32(length: number): Float32Array {
    return new Float32Array(this.take(length * 4));
  }

  /** `byteLength` bytes with stale contents: the caller overwrites all of them. */
  bytes(byteLength: number): Uint8Array {
    if (byteLength > 0 && !this.free.get(byteLength)?.length) {
      const larger = this.smallestFree(byteLength, 2 * byteLength);
      if (larger !== undefined) {
        const buffer = this.take(larger);
        const view = new Uint8Array(buffer, 0, byteLength);
        this.parents.set(view, buffer);
        return view;
      }
    }
    return new Uint8Array(this.take(byteLength));
  }

  /** The smallest length of a free buffer in [min, max], if any. */
  private smallestFree(min: number, max: number): number | undefined {
    let best: number | undefined;
    for (const [length, list] of this.free) if (list.length > 0 && length >= min && length <= max && (best === undefined || length < best)) best = length;
    return best;
  }

  /**
   * Returns arrays from float32()/bytes(); the caller must keep no reference it still reads.
   * Views of only part of their buffer are ignored (they did not come from here).
   */
  give(views: Iterable<ArrayBufferView>): void {
    for (const v of views) {
      const parent = this.parents.get(v);
      if (parent !== undefined) this.parents.delete(v);
      const buffer = parent ?? v.buffer;
      if (!(buffer instanceof ArrayBuffer) || (parent === undefined && (v.byteOffset !== 0 || v.byteLength !== buffer.byteLength))) continue;
      if (this.freeBytes + buffer.byteLength > this.maxFreeBytes) continue;
      let list = this.free.get(buffer.byteLength);
      if (list === undefined) this.free.set(buffer.byteLength, (list = []));
      if (list.includes(buffer)) continue;
      list.push(buffer);
      this.freeBytes += buffer.byteLength;
    }
  }

  get heldBytes(): number {
    return this.freeBytes;
  }

  clear(): void {
    this.free.clear();
    this.freeBytes = 0;
  }
}

/** An ArrayBuffer of exactly `byteLength` bytes whose contents are whatever the allocator held. */
function uninitialized(byteLength: number): ArrayBuffer {
  // A Buffer holds at most constants.MAX_LENGTH bytes (4 GiB on Node 20), an ArrayBuffer more: a
  // larger request (an FP8 lm_head of over 2^30 values widened on the host) is zero-filled as before.
  if (byteLength > constants.MAX_LENGTH) return new ArrayBuffer(byteLength);
  const b = Buffer.allocUnsafeSlow(byteLength);
  const buffer = b.buffer;
  // allocUnsafeSlow gives each Buffer its own ArrayBuffer; anything else is not one the pool can hand out whole.
  return buffer instanceof ArrayBuffer && b.byteOffset === 0 && buffer.byteLength === byteLength ? buffer : new ArrayBuffer(byteLength);
}
