// Reading source shards around the page cache (O_DIRECT). A convert reads every source byte
// exactly once, so caching it only costs: page-cache pages must be allocated (and on a VM whose
// balloon reclaims free memory, faulted in from the host: measured 3x the wall time of a
// concurrent read + write, bench/NOTES.md), and it evicts what the machine had cached. O_DIRECT
// needs the buffer address, file offset and length aligned to the device block, so reads land in
// page-aligned slots (aligned-memory.ts) and are sliced from there. Where the platform or
// file system refuses O_DIRECT (macOS, tmpfs, …) a read returns undefined and the caller reads
// through the page cache as before.

import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { alignDown, alignedMemory, alignUp, DIRECT_ALIGN } from './aligned-memory.js';
import { WasmNonFiniteScan } from '../../fp8/nonfinite-scan.js';
import { CheckpointError } from '../errors.js';

/** Bytes of a direct read, in a staging slot until release(). */
export interface DirectView {
  readonly bytes: Uint8Array;
  release(): void;
}

export class DirectReads {
  private readonly files = new Map<string, Promise<FileHandle | null>>();
  private readonly free: number[] = [];
  private readonly waiting: Array<(slot: number) => void> = [];
  private readonly slotBytes: number;

  private constructor(
    private readonly memory: ArrayBuffer,
    slots: number,
    /** Largest range one view can hold. */
    readonly capacity: number,
  ) {
    this.slotBytes = capacity + 2 * DIRECT_ALIGN;
    for (let i = 0; i < slots; i++) this.free.push(i);
  }

  /** `slots` staging slots of `capacity` bytes each, or undefined where O_DIRECT does not exist. */
  static create(slots: number, capacity: number): DirectReads | undefined {
    const cap = alignUp(capacity);
    const memory = constants.O_DIRECT === undefined ? undefined : alignedMemory(slots * (cap + 2 * DIRECT_ALIGN));
    if (!memory) return undefined;
    // Copies check what they read for NaN/Inf where it lies (io/checkpoint/nonfinite-count.ts).
    WasmNonFiniteScan.register(memory);
    return new DirectReads(memory.buffer, slots, cap);
  }

  private acquire(): Promise<number> {
    const slot = this.free.pop();
    if (slot !== undefined) return Promise.resolve(slot);
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(slot: number): void {
    const next = this.waiting.shift();
    if (next) next(slot);
    else this.free.push(slot);
  }

  private handle(path: string): Promise<FileHandle | null> {
    let h = this.files.get(path);
    if (!h) {
      h = open(path, constants.O_RDONLY | constants.O_DIRECT).catch(() => null);
      this.files.set(path, h);
    }
    return h;
  }

  /**
   * Bytes [offset, offset + length) of `path` (length ≤ capacity) in a slot, or undefined if this
   * file cannot be read directly; the caller then reads it through the page cache.
   */
  async view(path: string, offset: number, length: number): Promise<DirectView | undefined> {
    if (length > this.capacity) throw new RangeError(`DirectReads: ${length} bytes exceed a slot's ${this.capacity}`);
    const handle = await this.handle(path);
    if (!handle) return undefined;
    const slot = await this.acquire();
    const start = alignDown(offset);
    const end = alignUp(offset + length);
    const staging = new Uint8Array(this.memory, slot * this.slotBytes, end - start);
    let done = 0;
    try {
      while (done < offset + length - start) {
        const { bytesRead } = await handle.read(staging, done, staging.byteLength - done, start + done);
        if (bytesRead === 0) throw new CheckpointError(`${path}: unexpected end of file at byte ${start + done}: the file is truncated`);
        done += bytesRead;
        // A short read not at the end of the file would leave the next request unaligned.
        if (done % DIRECT_ALIGN !== 0 && done < offset + length - start)
          throw new CheckpointError(`${path}: unexpected end of file at byte ${start + done}: the file is truncated`);
      }
    } catch (e) {
      this.release(slot);
      if (e instanceof CheckpointError) throw e;
      if ((e as NodeJS.ErrnoException).code === 'EINVAL') {
        // The file system took the O_DIRECT open but not the read: stop trying on this file.
        this.files.set(path, Promise.resolve(null));
        await handle.close().catch(() => undefined);
        return undefined;
      }
      throw e;
    }
    return { bytes: staging.subarray(offset - start, offset - start + length), release: () => this.release(slot) };
  }

  /** Fill `into` with bytes from `offset` of `path`, slot by slot; false if the file cannot be read directly. */
  async readInto(path: string, offset: number, into: Uint8Array): Promise<boolean> {
    for (let done = 0; done < into.byteLength; ) {
      const n = Math.min(this.capacity, into.byteLength - done);
      const v = await this.view(path, offset + done, n);
      if (!v) return false;
      into.set(v.bytes, done);
      v.release();
      done += n;
    }
    return true;
  }

  async close(): Promise<void> {
    const handles = await Promise.all(this.files.values());
    this.files.clear();
    await Promise.all(handles.map((h) => h?.close().catch(() => undefined)));
  }
}
