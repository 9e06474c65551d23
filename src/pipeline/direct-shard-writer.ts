// Writing an output shard around the page cache (O_DIRECT), behind SafetensorsWriter's interface.
// A convert writes each shard once, front to back, and fsyncs it: buffering it in the page cache
// first costs page allocations (on a VM whose balloon reclaims free memory, host faults: ~1.5 s
// per GB measured, vs ~0.4 s direct; bench/NOTES.md) and then the same bytes again at the fsync.
// Bytes that arrive in file order are gathered in page-aligned slots and written a slot at a time
// (two in flight); the last partial slot is written padded and the file truncated to its size.
// A write out of file order switches the rest of the file to ordinary positional writes, so any
// order stays correct. Where O_DIRECT is refused, create() returns a plain SafetensorsWriter.

import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { alignedBuffer, alignedSharedBuffer, alignUp, DIRECT_ALIGN } from '../io/safetensors/aligned-memory.js';
import type { HashStream, HashThread } from './hash-thread.js';
import { layoutSafetensors, SafetensorsWriter, type PlannedTensor, type SafetensorsLayout } from '../io/safetensors/safetensors-writer.js';

/** What the convert job needs of a shard writer (SafetensorsWriter has the same shape). */
export interface ShardWriter {
  readonly path: string;
  readonly layout: SafetensorsLayout;
  write(name: string, bytes: Uint8Array, byteOffset?: number): Promise<void>;
  finish(): Promise<void>;
  abort(): Promise<void>;
  /** Present when the writer hashes the file itself: its SHA-256 (hex), after finish(). */
  readonly digest?: () => Promise<string>;
}

/** Page-aligned slots a direct writer gathers bytes in; one writer uses them at a time. */
export class WriteSlots {
  private constructor(
    /** Shared where the runtime allows, so the hash thread reads the slots in place. */
    readonly memory: ArrayBuffer | SharedArrayBuffer,
    readonly count: number,
    readonly slotBytes: number,
  ) {}

  /** `count` slots of `slotBytes` (rounded up to the alignment), or undefined without O_DIRECT. */
  static create(count: number, slotBytes: number): WriteSlots | undefined {
    const size = alignUp(slotBytes);
    if (constants.O_DIRECT === undefined) return undefined;
    const memory = alignedSharedBuffer(count * size) ?? alignedBuffer(count * size);
    return memory ? new WriteSlots(memory, count, size) : undefined;
  }

  view(slot: number, length = this.slotBytes): Uint8Array {
    return new Uint8Array(this.memory, slot * this.slotBytes, length);
  }
}

/** Shards smaller than this are written through the page cache: too small to gain, and no hash thread to start. */
export const DIRECT_MIN_BYTES = 8 * 1024 * 1024;

/**
 * A shard writer using `slots` for O_DIRECT where the file system allows it (hashing the file on
 * `hashing`'s thread when the slots are shared), else a SafetensorsWriter.
 */
export async function createShardWriter(
  path: string,
  tensors: readonly PlannedTensor[],
  metadata: Record<string, string> | undefined,
  slots: WriteSlots | undefined,
  hashing?: HashThread,
  minDirectBytes = DIRECT_MIN_BYTES,
): Promise<ShardWriter> {
  const layout = layoutSafetensors(tensors, metadata);
  if (slots && layout.fileSize >= minDirectBytes) {
    const direct = await DirectShardWriter.open(path, layout, slots, hashing);
    if (direct) return direct;
  }
  return SafetensorsWriter.create(path, tensors, metadata);
}

async function sha256OfFile(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

async function writeFully(handle: FileHandle, bytes: Uint8Array, position: number, direct: boolean, path: string): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.byteLength - done, position + done);
    done += bytesWritten;
    // A short direct write leaves the next request unaligned (it only happens as the disk fills).
    if (direct && done < bytes.byteLength && done % DIRECT_ALIGN !== 0) throw new Error(`${path}: short write at byte ${position + done} (is the disk full?)`);
  }
}

class DirectShardWriter implements ShardWriter {
  private readonly written = new Map<string, number>();
  /** File position of the next in-order byte, and of the current slot's first byte. */
  private cursor = 0;
  private slotStart = 0;
  private fill = 0;
  private slot: number;
  private readonly free: number[] = [];
  private readonly inFlight: Array<{ slot: number; done: Promise<void> }> = [];
  /** Set once a write arrives out of order: the rest of the file goes through the page cache. */
  private buffered: FileHandle | undefined;
  /** The running hash of the bytes flushed so far, in file order; dropped if the order breaks. */
  private hash: HashStream | undefined;
  private finalDigest: Promise<string> | undefined;
  readonly digest?: () => Promise<string>;

  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    readonly layout: SafetensorsLayout,
    private readonly slots: WriteSlots,
    hashing: HashThread | undefined,
  ) {
    for (let i = slots.count - 1; i >= 0; i--) this.free.push(i);
    this.slot = this.free.pop()!;
    if (hashing && slots.memory instanceof SharedArrayBuffer) {
      this.hash = hashing.open(slots.memory);
      this.digest = () => this.finalDigest ?? sha256OfFile(this.path);
    }
  }

  /** Opens `path` for direct writes and stages the header; undefined if O_DIRECT is refused. */
  static async open(path: string, layout: SafetensorsLayout, slots: WriteSlots, hashing?: HashThread): Promise<DirectShardWriter | undefined> {
    let handle: FileHandle;
    try {
      handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_DIRECT, 0o666);
    } catch {
      return undefined;
    }
    try {
      // Some file systems accept the flag at open and refuse the I/O: probe with the first page.
      await writeFully(handle, slots.view(0, DIRECT_ALIGN).fill(0), 0, true, path);
    } catch {
      await handle.close().catch(() => undefined);
      return undefined;
    }
    const w = new DirectShardWriter(path, handle, layout, slots, hashing);
    await w.append(layout.headerBytes);
    return w;
  }

  async write(name: string, bytes: Uint8Array, byteOffset = 0): Promise<void> {
    const slot = this.layout.offsets.get(name);
    if (!slot) throw new Error(`${this.path}: tensor "${name}" is not in this file's plan`);
    if (byteOffset + bytes.byteLength > slot.byteLength) {
      throw new Error(`${this.path}: tensor "${name}": write of ${bytes.byteLength} bytes at ${byteOffset} exceeds its ${slot.byteLength} bytes`);
    }
    const position = slot.fileOffset + byteOffset;
    if (this.buffered || position !== this.cursor) {
      const buffered = await this.switchToBuffered();
      await writeFully(buffered, bytes, position, false, this.path);
    } else {
      await this.append(bytes);
    }
    this.written.set(name, (this.written.get(name) ?? 0) + bytes.byteLength);
  }

  private async append(bytes: Uint8Array): Promise<void> {
    for (let i = 0; i < bytes.byteLength; ) {
      const n = Math.min(this.slots.slotBytes - this.fill, bytes.byteLength - i);
      this.slots.view(this.slot).set(bytes.subarray(i, i + n), this.fill);
      this.fill += n;
      this.cursor += n;
      i += n;
      if (this.fill === this.slots.slotBytes) await this.flushSlot(this.fill, this.fill);
    }
  }

  /**
   * Writes the current slot's first `length` bytes (aligned), hashes its first `dataLength`
   * (the rest is padding), and moves on to a free slot: one whose write and hash are both done.
   */
  private async flushSlot(length: number, dataLength: number): Promise<void> {
    const writing = writeFully(this.handle, this.slots.view(this.slot, length), this.slotStart, true, this.path);
    const done = this.hash ? Promise.all([writing, this.hash.update(this.slot * this.slots.slotBytes, dataLength)]).then(() => undefined) : writing;
    done.catch(() => undefined); // awaited below or in drain()
    this.inFlight.push({ slot: this.slot, done });
    this.slotStart += this.slots.slotBytes;
    this.fill = 0;
    if (this.free.length === 0) {
      const oldest = this.inFlight.shift()!;
      await oldest.done;
      this.free.push(oldest.slot);
    }
    this.slot = this.free.pop()!;
  }

  private async drain(): Promise<void> {
    while (this.inFlight.length > 0) {
      const oldest = this.inFlight.shift()!;
      this.free.push(oldest.slot);
      await oldest.done;
    }
  }

  private async switchToBuffered(): Promise<FileHandle> {
    if (this.buffered) return this.buffered;
    await this.drain();
    this.hash?.cancel();
    this.hash = undefined; // digest() now hashes the finished file
    const buffered = await open(this.path, 'r+');
    try {
      // The partial slot's bytes were accepted in order but not written yet.
      await writeFully(buffered, this.slots.view(this.slot, this.fill), this.slotStart, false, this.path);
    } catch (e) {
      await buffered.close();
      throw e;
    }
    this.fill = 0;
    this.buffered = buffered;
    return buffered;
  }

  /** Check every planned byte was written, write the tail, trim the padding, flush to disk, close. */
  async finish(): Promise<void> {
    try {
      for (const [name, slot] of this.layout.offsets) {
        const got = this.written.get(name) ?? 0;
        if (got !== slot.byteLength) throw new Error(`${this.path}: tensor "${name}" got ${got} of ${slot.byteLength} bytes`);
      }
      if (!this.buffered && this.fill > 0) {
        const padded = alignUp(this.fill);
        this.slots.view(this.slot, padded).fill(0, this.fill);
        await this.flushSlot(padded, this.fill);
      }
      await this.drain();
      if (this.hash) {
        this.finalDigest = this.hash.digest();
        this.finalDigest.catch(() => undefined);
        this.hash = undefined;
      }
      await this.handle.truncate(this.layout.fileSize);
      await this.handle.sync();
    } finally {
      await this.close();
    }
  }

  async abort(): Promise<void> {
    await this.drain().catch(() => undefined);
    this.hash?.cancel();
    this.hash = undefined;
    await this.close();
  }

  private async close(): Promise<void> {
    await this.handle.close().catch(() => undefined);
    await this.buffered?.close().catch(() => undefined);
    this.buffered = undefined;
  }
}
