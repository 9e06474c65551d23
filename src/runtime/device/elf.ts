// Reads the dynamic section of an ELF64 shared library: the libraries it NEEDs and its RUNPATH.
// fp8q uses it to name the CUDA libraries the CUDA execution provider cannot load, before
// onnxruntime tries (its dlopen error names only the first missing one). Reads a few kilobytes at
// offsets, never the whole file: the provider is over 200 MB.

import { closeSync, openSync, readSync } from 'node:fs';

export interface ElfDynamicInfo {
  /** DT_NEEDED entries, in file order. */
  readonly needed: readonly string[];
  /** DT_RUNPATH (or the older DT_RPATH), colon-separated as stored; null when absent. */
  readonly runpath: string | null;
}

export class ElfParseError extends Error {
  constructor(file: string, detail: string) {
    super(`${file}: not a readable ELF64 little-endian shared library (${detail})`);
    this.name = 'ElfParseError';
  }
}

/** Reads `length` bytes at `offset`; fewer only at the end of the file. */
export type ReadAt = (offset: number, length: number) => Uint8Array;

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const DT_NULL = 0n;
const DT_NEEDED = 1n;
const DT_STRTAB = 5n;
const DT_RPATH = 15n;
const DT_RUNPATH = 29n;
/** Bounds for values read from the file, so a corrupt header cannot ask for gigabytes. */
const MAX_PROGRAM_HEADERS = 4096;
const MAX_DYNAMIC_BYTES = 1 << 20;
const MAX_NAME_BYTES = 4096;

export function readElfDynamicInfo(file: string): ElfDynamicInfo {
  const fd = openSync(file, 'r');
  try {
    const readAt: ReadAt = (offset, length) => {
      const buf = new Uint8Array(length);
      const n = readSync(fd, buf, 0, length, offset);
      return buf.subarray(0, n);
    };
    return parseElfDynamicInfo(readAt, file);
  } finally {
    closeSync(fd);
  }
}

export function parseElfDynamicInfo(readAt: ReadAt, file = 'ELF file'): ElfDynamicInfo {
  const header = view(readAt(0, 64));
  if (header.byteLength < 64 || header.getUint32(0, false) !== 0x7f454c46) throw new ElfParseError(file, 'no ELF magic');
  if (header.getUint8(4) !== 2 || header.getUint8(5) !== 1) throw new ElfParseError(file, 'not 64-bit little-endian');
  const phoff = safeNumber(header.getBigUint64(0x20, true), file);
  const phentsize = header.getUint16(0x36, true);
  const phnum = header.getUint16(0x38, true);
  if (phentsize < 56 || phnum > MAX_PROGRAM_HEADERS) throw new ElfParseError(file, 'bad program header table');

  const loads: { vaddr: number; offset: number; size: number }[] = [];
  let dynamic: { offset: number; size: number } | null = null;
  const table = view(readAt(phoff, phentsize * phnum));
  if (table.byteLength < phentsize * phnum) throw new ElfParseError(file, 'truncated program header table');
  for (let i = 0; i < phnum; i++) {
    const at = i * phentsize;
    const type = table.getUint32(at, true);
    const offset = safeNumber(table.getBigUint64(at + 8, true), file);
    const vaddr = safeNumber(table.getBigUint64(at + 16, true), file);
    const filesz = safeNumber(table.getBigUint64(at + 32, true), file);
    if (type === PT_LOAD) loads.push({ vaddr, offset, size: filesz });
    if (type === PT_DYNAMIC) dynamic = { offset, size: Math.min(filesz, MAX_DYNAMIC_BYTES) };
  }
  // A static executable has no dynamic section and needs nothing.
  if (dynamic === null) return { needed: [], runpath: null };

  const dyn = view(readAt(dynamic.offset, dynamic.size));
  const neededOffsets: number[] = [];
  let runpathOffset: number | null = null;
  let strtabVaddr: number | null = null;
  for (let at = 0; at + 16 <= dyn.byteLength; at += 16) {
    const tag = dyn.getBigInt64(at, true);
    const value = dyn.getBigUint64(at + 8, true);
    if (tag === DT_NULL) break;
    if (tag === DT_NEEDED) neededOffsets.push(safeNumber(value, file));
    else if (tag === DT_STRTAB) strtabVaddr = safeNumber(value, file);
    else if (tag === DT_RUNPATH || (tag === DT_RPATH && runpathOffset === null)) runpathOffset = safeNumber(value, file);
  }
  if (strtabVaddr === null) {
    if (neededOffsets.length === 0 && runpathOffset === null) return { needed: [], runpath: null };
    throw new ElfParseError(file, 'dynamic section without a string table');
  }
  // DT_STRTAB is a virtual address: map it through the PT_LOAD segment that holds it.
  const segment = loads.find((s) => strtabVaddr! >= s.vaddr && strtabVaddr! < s.vaddr + s.size);
  if (segment === undefined) throw new ElfParseError(file, 'string table outside every loaded segment');
  const strtabOffset = segment.offset + (strtabVaddr - segment.vaddr);
  const stringAt = (offset: number): string => {
    const bytes = readAt(strtabOffset + offset, MAX_NAME_BYTES);
    const end = bytes.indexOf(0);
    if (end < 0) throw new ElfParseError(file, 'unterminated name in the string table');
    return Buffer.from(bytes.subarray(0, end)).toString('utf8');
  };
  return {
    needed: neededOffsets.map(stringAt),
    runpath: runpathOffset === null ? null : stringAt(runpathOffset),
  };
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function safeNumber(value: bigint, file: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new ElfParseError(file, 'offset beyond 2^53');
  return Number(value);
}
