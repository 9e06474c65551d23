// Writing safetensors files without holding them in memory: the header is computed up front from
// the planned tensor list (names, dtypes, shapes), then each tensor's bytes are written at its
// offset, in any order and in as many pieces as the caller likes.

import { open, type FileHandle } from 'node:fs/promises';
import { dtypeSize, type Dtype } from '../../fp8/dtypes.js';
import { elementCount } from './safetensors-reader.js';

export interface PlannedTensor {
  readonly name: string;
  readonly dtype: Dtype;
  readonly shape: readonly number[];
}

export interface SafetensorsLayout {
  readonly headerBytes: Uint8Array;
  /** Offsets of each tensor's first byte from the start of the file. */
  readonly offsets: ReadonlyMap<string, { readonly fileOffset: number; readonly byteLength: number }>;
  readonly fileSize: number;
}

export function tensorByteLength(t: PlannedTensor): number {
  return elementCount(t.shape) * dtypeSize(t.dtype);
}

/**
 * The header and data layout of a file holding `tensors` in the given order. The JSON is padded
 * with spaces to a multiple of 8 bytes, as the reference implementation does, so data is aligned.
 */
export function layoutSafetensors(tensors: readonly PlannedTensor[], metadata?: Record<string, string>): SafetensorsLayout {
  // No prototype: a tensor named "__proto__" must become a key, not replace the prototype.
  const header: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  if (metadata && Object.keys(metadata).length > 0) header['__metadata__'] = metadata;
  let cursor = 0;
  const rel = new Map<string, { begin: number; length: number }>();
  for (const t of tensors) {
    if (rel.has(t.name)) throw new Error(`duplicate tensor name "${t.name}" in one safetensors file`);
    const length = tensorByteLength(t);
    header[t.name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [cursor, cursor + length] };
    rel.set(t.name, { begin: cursor, length });
    cursor += length;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const headerBytes = new Uint8Array(8 + padded).fill(0x20);
  new DataView(headerBytes.buffer).setBigUint64(0, BigInt(padded), true);
  headerBytes.set(json, 8);
  const dataStart = 8 + padded;
  const offsets = new Map<string, { fileOffset: number; byteLength: number }>();
  for (const [name, r] of rel) offsets.set(name, { fileOffset: dataStart + r.begin, byteLength: r.length });
  return { headerBytes, offsets, fileSize: dataStart + cursor };
}

export class SafetensorsWriter {
  private readonly written = new Map<string, number>();

  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    readonly layout: SafetensorsLayout,
  ) {}

  /** Create (or truncate) `path` and write its header. */
  static async create(path: string, tensors: readonly PlannedTensor[], metadata?: Record<string, string>): Promise<SafetensorsWriter> {
    const layout = layoutSafetensors(tensors, metadata);
    const handle = await open(path, 'w');
    try {
      await writeFully(handle, layout.headerBytes, 0);
    } catch (e) {
      await handle.close();
      throw e;
    }
    return new SafetensorsWriter(path, handle, layout);
  }

  /** Write `bytes` at `byteOffset` within tensor `name`'s data. */
  async write(name: string, bytes: Uint8Array, byteOffset = 0): Promise<void> {
    const slot = this.layout.offsets.get(name);
    if (!slot) throw new Error(`${this.path}: tensor "${name}" is not in this file's plan`);
    if (byteOffset + bytes.byteLength > slot.byteLength) {
      throw new Error(`${this.path}: tensor "${name}": write of ${bytes.byteLength} bytes at ${byteOffset} exceeds its ${slot.byteLength} bytes`);
    }
    await writeFully(this.handle, bytes, slot.fileOffset + byteOffset);
    this.written.set(name, (this.written.get(name) ?? 0) + bytes.byteLength);
  }

  /** Check every planned byte was written, flush to disk and close. */
  async finish(): Promise<void> {
    for (const [name, slot] of this.layout.offsets) {
      const got = this.written.get(name) ?? 0;
      if (got !== slot.byteLength) {
        await this.handle.close();
        throw new Error(`${this.path}: tensor "${name}" got ${got} of ${slot.byteLength} bytes`);
      }
    }
    await this.handle.sync();
    await this.handle.close();
  }

  async abort(): Promise<void> {
    await this.handle.close().catch(() => undefined);
  }
}

async function writeFully(handle: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.byteLength - done, position + done);
    done += bytesWritten;
  }
}
