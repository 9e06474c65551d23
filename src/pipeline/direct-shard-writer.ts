// Writing an output shard around the page cache (O_DIRECT), behind SafetensorsWriter's interface.
// A convert writes each shard once and fsyncs it: buffering it in the page cache first costs page
// allocations (on a VM whose balloon reclaims free memory, host faults: ~1.5 s per GB measured, vs
// ~0.4 s direct; bench/NOTES.md) and then the same bytes again at the fsync.
// Writes may come in any order (convert runs copies and quantized entries at once, each writing at
// its final offsets). Each run of writes that continue one another is a stream, gathered in a
// page-aligned slot and written a slot at a time; the pages a stream shares with its neighbours
// (an entry's first and last page, a small tensor) are gathered in seam pages and written once
// whole. The last page goes out padded and the file is truncated to its size. Where O_DIRECT is
// refused, create() returns a plain SafetensorsWriter.

import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { alignDown, alignedBuffer, alignedSharedBuffer, alignUp, DIRECT_ALIGN } from '../io/safetensors/aligned-memory.js';
import type { HashStream, HashThread } from './hash-thread.js';
import { layoutSafetensors, SafetensorsWriter, type PlannedTensor, type SafetensorsLayout } from '../io/safetensors/safetensors-writer.js';

/** What the convert job needs of a shard writer (SafetensorsWriter has the same shape). */
export interface ShardWriter {
  readonly path: string;
  readonly layout: SafetensorsLayout;
  write(name: string, bytes: Uint8Array, byteOffset?: number): Promise<void>;
  finish(): Promise<void>;
  abort(): Promise<void>;
  /** The writes that end at file `position` are complete (a direct writer writes out what it still holds of them). */
  endStream?(position: number): void;
  /** Present when the writer hashes the file itself: its SHA-256 (hex), after finish(). */
  readonly digest?: () => Promise<string>;
}

/** Page-aligned slots a direct writer gathers streams in; one writer uses them at a time. */
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

/** SHA-256 (hex) of a finished file, read back: for a shard whose bytes were not written in order. */
export async function sha256OfFile(path: string): Promise<string> {
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
  /** Open streams by the file position of their next byte. */
  private readonly streams = new Map<number, Stream>();
  private streamsOpened = 0;
  private readonly free: number[] = [];
  /** Waiters for a slot, each woken when one comes back (its write, and hash, done). */
  private readonly onRelease: Array<() => void> = [];
  /** Slot writes, seam-page writes and hash updates under way. */
  private readonly pending = new Set<Promise<void>>();
  private slotWrites = 0;
  private readonly seams: SeamPages;
  private failure: unknown;
  /** The running hash of the bytes flushed so far, in file order; dropped once a second stream opens. */
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
    this.seams = new SeamPages(layout.fileSize);
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
    await w.gather(0, layout.headerBytes);
    return w;
  }

  async write(name: string, bytes: Uint8Array, byteOffset = 0): Promise<void> {
    const slot = this.layout.offsets.get(name);
    if (!slot) throw new Error(`${this.path}: tensor "${name}" is not in this file's plan`);
    if (byteOffset + bytes.byteLength > slot.byteLength) {
      throw new Error(`${this.path}: tensor "${name}": write of ${bytes.byteLength} bytes at ${byteOffset} exceeds its ${slot.byteLength} bytes`);
    }
    await this.gather(slot.fileOffset + byteOffset, bytes);
    this.written.set(name, (this.written.get(name) ?? 0) + bytes.byteLength);
  }

  /** The writes that end at `position` are complete: write out what their stream still holds. */
  endStream(position: number): void {
    const s = this.streams.get(position);
    if (!s) return;
    this.streams.delete(position);
    this.flush(s, true);
  }

  /** Adds `bytes` at file `position` to the stream that ends there, or to a new one. */
  private async gather(position: number, bytes: Uint8Array): Promise<void> {
    this.throwIfFailed();
    if (bytes.byteLength === 0) return;
    let s = this.streams.get(position);
    if (s) this.streams.delete(position);
    else s = this.openStream(position);
    for (let i = 0; i < bytes.byteLength; ) {
      // A stream whose slot went out full takes its next one only when it has bytes for it.
      if (s.slot === NO_SLOT) s.slot = await this.takeSlot();
      const n = Math.min(s.start + this.slots.slotBytes - s.cursor, bytes.byteLength - i);
      this.slots.view(s.slot).set(bytes.subarray(i, i + n), s.cursor - s.start);
      s.cursor += n;
      i += n;
      if (s.cursor === s.start + this.slots.slotBytes) {
        this.flush(s, false);
        s.slot = NO_SLOT;
        s.start = s.from = s.cursor;
      }
    }
    if (this.streams.has(s.cursor)) {
      if (s.slot !== NO_SLOT) this.releaseSlot(s.slot);
      throw new Error(`${this.path}: two writes end at byte ${s.cursor}: tensors overlap`);
    }
    this.streams.set(s.cursor, s);
    // A writer waiting for a slot may now end this stream early to get one (takeSlot).
    if (s.slot !== NO_SLOT) this.wakeWaiters();
  }

  private openStream(position: number): Stream {
    if (++this.streamsOpened === 2 && this.hash) {
      // The file is no longer gathered front to back: digest() hashes the finished file instead.
      const hash = this.hash;
      this.hash = undefined;
      void Promise.all(this.pending).then(
        () => hash.cancel(),
        () => hash.cancel(),
      );
    }
    return { slot: NO_SLOT, start: alignDown(position), from: position, cursor: position };
  }

  /**
   * Writes a stream's slot: its whole pages directly from the slot (hashed on the hash thread while
   * the file is one stream), the partial pages at either end into seam pages. A slot that filled up
   * is written whole; at a stream's end, up to its last byte.
   */
  private flush(s: Stream, end: boolean): void {
    if (s.slot === NO_SLOT) return;
    const view = this.slots.view(s.slot);
    const directFrom = alignUp(s.from);
    const directTo = end ? alignDown(s.cursor) : s.cursor;
    if (directFrom > s.from) this.deposit(s.from, view.subarray(s.from - s.start, Math.min(directFrom, s.cursor) - s.start));
    if (s.cursor > Math.max(directFrom, directTo)) {
      const from = Math.max(directFrom, directTo);
      this.deposit(from, view.subarray(from - s.start, s.cursor - s.start));
    }
    // While the file is one stream, its tail is hashed with the rest (its page goes out as a seam).
    const hashTo = end ? s.cursor : directTo;
    const slot = s.slot;
    const hashing = this.hash && hashTo > directFrom ? this.hash.update(slot * this.slots.slotBytes + (directFrom - s.start), hashTo - directFrom) : undefined;
    const writing = directTo > directFrom ? writeFully(this.handle, view.subarray(directFrom - s.start, directTo - s.start), directFrom, true, this.path) : undefined;
    if (!writing && !hashing) {
      this.releaseSlot(slot);
      return;
    }
    this.slotWrites++;
    this.track(
      Promise.all([writing, hashing]).then(() => undefined),
      () => {
        this.slotWrites--;
        this.releaseSlot(slot);
      },
    );
  }

  /** Bytes of pages shared with another stream: gathered in a seam page, written when it is whole. */
  private deposit(position: number, bytes: Uint8Array): void {
    for (const page of this.seams.add(position, bytes)) {
      this.track(writeFully(this.handle, page.bytes, page.position, true, this.path), () => this.seams.release(page));
    }
  }

  private track(work: Promise<void>, after: () => void): void {
    const done = work.then(
      () => after(),
      (e: unknown) => {
        this.failure ??= e;
        after();
      },
    );
    this.pending.add(done);
    void done.then(() => this.pending.delete(done));
  }

  private releaseSlot(slot: number): void {
    this.free.push(slot);
    this.wakeWaiters();
  }

  /** Every waiter for a slot looks again: one takes a free slot, another may end an open stream. */
  private wakeWaiters(): void {
    for (const wake of this.onRelease.splice(0)) wake();
  }

  /**
   * A free slot: one whose write is done. With every slot held by an open stream and none being
   * written, an open stream is ended early (always correct: a later write at its end opens a new
   * one). Otherwise the slots are being written, or held by writes under way that will soon open
   * a stream or write their slot: wait for either.
   */
  private async takeSlot(): Promise<number> {
    for (;;) {
      this.throwIfFailed();
      const slot = this.free.pop();
      if (slot !== undefined) return slot;
      if (this.slotWrites === 0) {
        const spill = [...this.streams].find(([, s]) => s.slot !== NO_SLOT);
        if (spill) {
          this.endStream(spill[0]);
          continue;
        }
      }
      await new Promise<void>((resolve) => this.onRelease.push(resolve));
    }
  }

  private throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure;
  }

  private async drain(): Promise<void> {
    while (this.pending.size > 0) await Promise.all(this.pending);
  }

  /** Check every planned byte was written, write what streams hold, flush to disk, close. */
  async finish(): Promise<void> {
    try {
      for (const [name, slot] of this.layout.offsets) {
        const got = this.written.get(name) ?? 0;
        if (got !== slot.byteLength) throw new Error(`${this.path}: tensor "${name}" got ${got} of ${slot.byteLength} bytes`);
      }
      for (const position of [...this.streams.keys()]) this.endStream(position);
      await this.drain();
      this.throwIfFailed();
      if (this.seams.size > 0) throw new Error(`${this.path}: internal: ${this.seams.size} partly written pages at the end`);
      if (this.hash) {
        this.finalDigest = this.hash.digest();
        this.finalDigest.catch(() => undefined);
        this.hash = undefined;
      }
      // The last page went out padded to the alignment.
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
  }
}

/** A stream between slots: its last one went out full and it has no bytes for the next yet. */
const NO_SLOT = -1;

interface Stream {
  /** NO_SLOT, or the slot gathering its bytes. */
  slot: number;
  /** File position of the slot's first byte (page-aligned). */
  start: number;
  /** File position of the stream's first byte in this slot: bytes before it belong to another stream. */
  from: number;
  /** File position after the last byte gathered. */
  cursor: number;
}

interface SeamPage {
  readonly position: number;
  readonly bytes: Uint8Array;
  have: number;
}

/**
 * Pages that two streams (or a stream and the end of the file) share, gathered until each holds
 * every byte that belongs to it, in page-aligned memory (O_DIRECT needs it).
 */
class SeamPages {
  private readonly open = new Map<number, SeamPage>();
  private readonly spare: Uint8Array[] = [];
  private static readonly BATCH = 64;

  constructor(private readonly fileSize: number) {}

  get size(): number {
    return this.open.size;
  }

  /** Adds `bytes` at `position`; returns the pages this completed (release each once written). */
  add(position: number, bytes: Uint8Array): SeamPage[] {
    const complete: SeamPage[] = [];
    for (let i = 0; i < bytes.byteLength; ) {
      const at = position + i;
      const start = alignDown(at);
      const n = Math.min(start + DIRECT_ALIGN - at, bytes.byteLength - i);
      let page = this.open.get(start);
      if (!page) {
        page = { position: start, bytes: this.take(), have: 0 };
        this.open.set(start, page);
      }
      page.bytes.set(bytes.subarray(i, i + n), at - start);
      page.have += n;
      i += n;
      if (page.have === Math.min(DIRECT_ALIGN, this.fileSize - start)) {
        this.open.delete(start);
        complete.push(page);
      }
    }
    return complete;
  }

  release(page: SeamPage): void {
    this.spare.push(page.bytes);
  }

  private take(): Uint8Array {
    let bytes = this.spare.pop();
    if (!bytes) {
      const memory = alignedBuffer(SeamPages.BATCH * DIRECT_ALIGN);
      if (!memory) throw new Error('no page-aligned memory for direct writes');
      for (let i = 1; i < SeamPages.BATCH; i++) this.spare.push(new Uint8Array(memory, i * DIRECT_ALIGN, DIRECT_ALIGN));
      bytes = new Uint8Array(memory, 0, DIRECT_ALIGN);
    }
    // The file's last page goes out whole: what lies past the end must be zeros until the truncate.
    return bytes.fill(0);
  }
}
