// Reading safetensors files through a file handle: the header is parsed and validated once, then
// tensors (or row stripes of them) are read on demand. A 1.3 TB checkpoint never enters memory;
// at most the bytes a caller asks for do.

import { open, type FileHandle } from 'node:fs/promises';
import { DTYPE_SIZES, isDtype, type Dtype } from '../../fp8/dtypes.js';
import { quoteName, SafetensorsParseError } from '../errors.js';
import { findDuplicateKey } from './json-duplicate-keys.js';

/**
 * Largest header we accept. Real headers are a few hundred KB (DeepSeek-V3 shards: ~100 KB);
 * refusing larger ones before allocating protects against a corrupt or hostile length field.
 */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** Largest rank we accept: real weights are ≤ 4-D. */
export const MAX_RANK = 8;

export interface TensorInfo {
  readonly name: string;
  readonly dtype: Dtype;
  readonly shape: readonly number[];
  /** Absolute offset of the tensor's first byte in the file. */
  readonly fileOffset: number;
  readonly byteLength: number;
}

export interface SafetensorsHeader {
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly metadata: Readonly<Record<string, string>>;
  /** 8 + header length: where the data section starts. */
  readonly dataStart: number;
}

export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Validate a parsed header against the file size: known dtypes, integer dims, byte length equal
 * to shape × dtype size, offsets inside the data section, no overlap and no gaps.
 */
export function parseSafetensorsHeader(file: string, headerBytes: Uint8Array, fileSize: number): SafetensorsHeader {
  const dataStart = 8 + headerBytes.byteLength;
  let json: unknown;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
    json = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsParseError(file, `header is not valid UTF-8 JSON (${(e as Error).message}); the file is corrupt or not a safetensors file`);
  }
  if (!isRecord(json)) throw new SafetensorsParseError(file, 'header is not a JSON object');
  // JSON.parse keeps the last of two equal keys: a tensor named twice would silently lose one copy.
  const duplicate = findDuplicateKey(text);
  if (duplicate !== undefined) {
    throw new SafetensorsParseError(file, 'the header names this tensor more than once; the file is corrupt', duplicate);
  }
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();
  const dataLength = fileSize - dataStart;
  const ranges: { name: string; begin: number; end: number }[] = [];
  for (const [name, entry] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (!isRecord(entry)) throw new SafetensorsParseError(file, '__metadata__ is not an object');
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== 'string') throw new SafetensorsParseError(file, `__metadata__[${quoteName(k)}] is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    if (!isRecord(entry)) throw new SafetensorsParseError(file, 'entry is not an object', name);
    const { dtype, shape, data_offsets: offsets } = entry;
    if (typeof dtype !== 'string' || !isDtype(dtype)) {
      throw new SafetensorsParseError(file, `unknown dtype ${JSON.stringify(dtype)} (supported: ${Object.keys(DTYPE_SIZES).join(', ')})`, name);
    }
    if (!Array.isArray(shape) || shape.length > MAX_RANK || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
      throw new SafetensorsParseError(file, `invalid shape ${JSON.stringify(shape)}`, name);
    }
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && (o as number) >= 0) ||
      (offsets[0] as number) > (offsets[1] as number)
    ) {
      throw new SafetensorsParseError(file, `invalid data_offsets ${JSON.stringify(offsets)}`, name);
    }
    const [begin, end] = offsets as [number, number];
    const dims = shape as number[];
    const expected = elementCount(dims) * DTYPE_SIZES[dtype];
    if (!Number.isSafeInteger(expected)) {
      throw new SafetensorsParseError(file, `shape ${JSON.stringify(dims)} has too many elements to be stored in a file`, name);
    }
    if (end - begin !== expected) {
      throw new SafetensorsParseError(file, `data_offsets [${begin}, ${end}] hold ${end - begin} bytes but ${dtype}${JSON.stringify(dims)} needs ${expected}`, name);
    }
    if (end > dataLength) {
      throw new SafetensorsParseError(file, `data_offsets [${begin}, ${end}] run past the end of the data section (${dataLength} bytes): the file is truncated`, name);
    }
    ranges.push({ name, begin, end });
    tensors.set(name, { name, dtype, shape: dims, fileOffset: dataStart + begin, byteLength: expected });
  }
  ranges.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const r of ranges) {
    if (r.begin < cursor) throw new SafetensorsParseError(file, `data overlaps the previous tensor (offset ${r.begin} < ${cursor})`, r.name);
    if (r.begin > cursor) throw new SafetensorsParseError(file, `gap of ${r.begin - cursor} unused bytes before this tensor's data`, r.name);
    cursor = r.end;
  }
  if (cursor !== dataLength) {
    const last = ranges[ranges.length - 1]?.name;
    throw new SafetensorsParseError(
      file,
      `tensors cover ${cursor} bytes of a ${dataLength}-byte data section: ${dataLength - cursor} trailing bytes ${last !== undefined ? "after this tensor's data " : ''}belong to no tensor; the file is corrupt`,
      last,
    );
  }
  return { tensors, metadata, dataStart };
}

export class SafetensorsReader {
  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    readonly header: SafetensorsHeader,
    readonly fileSize: number,
  ) {}

  static async open(path: string): Promise<SafetensorsReader> {
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (e) {
      throw new SafetensorsParseError(path, `cannot open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    try {
      const { size } = await handle.stat();
      if (size < 8) throw new SafetensorsParseError(path, `file is ${size} bytes, too short for a safetensors header`);
      const lenBuf = new Uint8Array(8);
      await readExactly(handle, lenBuf, 0, path);
      const headerLenExact = new DataView(lenBuf.buffer).getBigUint64(0, true);
      const headerLen = Number(headerLenExact);
      if (headerLen > MAX_HEADER_BYTES) {
        // The exact integer: a 2^63 length must not print as 9223372036854776000.
        throw new SafetensorsParseError(path, `header length ${headerLenExact} exceeds the ${MAX_HEADER_BYTES}-byte limit: the file is corrupt or not a safetensors file`);
      }
      if (headerLen > size - 8) {
        throw new SafetensorsParseError(path, `header length ${headerLen} is larger than the file (${size} bytes): the file is truncated or corrupt`);
      }
      const headerBytes = new Uint8Array(headerLen);
      await readExactly(handle, headerBytes, 8, path);
      const header = parseSafetensorsHeader(path, headerBytes, size);
      return new SafetensorsReader(path, handle, header, size);
    } catch (e) {
      await handle.close();
      throw e;
    }
  }

  get metadata(): Readonly<Record<string, string>> {
    return this.header.metadata;
  }

  tensorNames(): string[] {
    return [...this.header.tensors.keys()];
  }

  has(name: string): boolean {
    return this.header.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const info = this.header.tensors.get(name);
    if (!info) throw new SafetensorsParseError(this.path, 'no such tensor in this file', name);
    return info;
  }

  /** The whole tensor's bytes. Prefer readRows for large tensors. */
  async readTensor(name: string, into?: Uint8Array): Promise<Uint8Array> {
    const info = this.info(name);
    const out = into ?? new Uint8Array(info.byteLength);
    await readExactly(this.handle, out.subarray(0, info.byteLength), info.fileOffset, this.path, name);
    return out.subarray(0, info.byteLength);
  }

  /** Bytes of rows [rowStart, rowStart + rowCount) along the first axis. */
  async readRows(name: string, rowStart: number, rowCount: number, into?: Uint8Array): Promise<Uint8Array> {
    const info = this.info(name);
    const rows = info.shape[0] ?? 1;
    if (rowStart < 0 || rowCount < 0 || rowStart + rowCount > rows) {
      throw new RangeError(`${this.path}: tensor "${name}": rows [${rowStart}, ${rowStart + rowCount}) out of [0, ${rows})`);
    }
    const rowBytes = rows === 0 ? 0 : info.byteLength / rows;
    const length = rowBytes * rowCount;
    const out = into ? into.subarray(0, length) : new Uint8Array(length);
    await readExactly(this.handle, out, info.fileOffset + rowStart * rowBytes, this.path, name);
    return out;
  }

  /** Raw bytes at an absolute range of the file (for copying tensors through unchanged). */
  async readRange(offset: number, into: Uint8Array): Promise<Uint8Array> {
    await readExactly(this.handle, into, offset, this.path);
    return into;
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

/**
 * Reads above this size go in pieces of this size, several at once on libuv's threads: one read()
 * copies from the page cache on one core (~5 GB/s on the GPU machine), and a CUDA verify waited on
 * its lm_head chunks' reads that way (bench/NOTES.md).
 */
export const READ_PIECE_BYTES = 16 * 1024 * 1024;
const READS_IN_FLIGHT = 4;

async function readExactly(handle: FileHandle, into: Uint8Array, position: number, file: string, tensor?: string): Promise<void> {
  if (into.byteLength <= 2 * READ_PIECE_BYTES) return readPiece(handle, into, position, file, tensor);
  let next = 0;
  const failures: { readonly start: number; readonly error: unknown }[] = [];
  const reader = async (): Promise<void> => {
    while (next < into.byteLength && failures.length === 0) {
      const start = next;
      next += READ_PIECE_BYTES;
      try {
        await readPiece(handle, into.subarray(start, Math.min(start + READ_PIECE_BYTES, into.byteLength)), position + start, file, tensor);
      } catch (error) {
        failures.push({ start, error });
      }
    }
  };
  // Every piece has settled before an error is thrown: a read still writing into `into` after the
  // caller has given the buffer back (to a pool) would corrupt whatever reuses it. The earliest
  // piece's failure is the one a single read would have met.
  await Promise.all(Array.from({ length: READS_IN_FLIGHT }, reader));
  if (failures.length > 0) throw failures.reduce((a, b) => (b.start < a.start ? b : a)).error;
}

async function readPiece(handle: FileHandle, into: Uint8Array, position: number, file: string, tensor?: string): Promise<void> {
  let done = 0;
  while (done < into.byteLength) {
    const { bytesRead } = await handle.read(into, done, into.byteLength - done, position + done);
    if (bytesRead === 0) {
      throw new SafetensorsParseError(file, `unexpected end of file at byte ${position + done}: the file is truncated`, tensor);
    }
    done += bytesRead;
  }
}
