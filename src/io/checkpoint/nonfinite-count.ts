// Counting NaN/Inf in stored float bytes (BF16, F16, F32, F64) by their exponent bits: how the
// writers find non-finite values in tensors they copy unquantized, and how many values
// --allow-nonfinite changed, so a damaged checkpoint never passes unreported.

import type { CheckpointTensor } from './checkpoint.js';
import type { Checkpoint } from './checkpoint.js';
import { EXPONENT_CARRY, WasmNonFiniteScan, type ExponentCarry, type ScannedDtype } from '../../fp8/nonfinite-scan.js';

/** Non-finite values among `bytes` of `dtype`; 0 for dtypes that cannot hold one (integers, FP8 E4M3 is handled by its readers). */
export function countNonFinite(bytes: Uint8Array, dtype: string): number {
  // Copies scan every byte of the unquantized tensors (2 GiB of embedding and head in an 8B model)
  // on the thread that writes: the word scan decides, the element count runs only when it may be needed.
  if (LITTLE_ENDIAN && (bytes.byteOffset & 3) === 0 && canHoldNonFinite(dtype) && !anyNonFinite(bytes, EXPONENT_CARRY[dtype as ScannedDtype])) return 0;
  return countNonFiniteSlow(bytes, dtype);
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Whether any element of the 4-byte-aligned `bytes` may be non-finite (fp8/nonfinite-scan.ts); false
 * means none is. Bytes in a memory the SIMD scan was made for (the direct-read slots) are scanned there.
 */
function anyNonFinite(bytes: Uint8Array, c: ExponentCarry): boolean {
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
  let acc = 0;
  let i = 0;
  const wasm = WasmNonFiniteScan.of(bytes.buffer);
  if (wasm) {
    acc = wasm.orCarry(bytes.byteOffset, bytes.byteLength, c);
    i = (bytes.byteLength & ~15) >>> 2;
  }
  // The rest word by word: an even count of words was scanned, so lanes keep their parity.
  const { expEven, expOdd, lowEven, lowOdd } = c;
  for (; i + 1 < words.length; i += 2) acc |= ((words[i]! & expEven) + lowEven) | ((words[i + 1]! & expOdd) + lowOdd);
  if (i < words.length) acc |= (words[i]! & expEven) + lowEven;
  // A tail shorter than a word (odd BF16/F16 counts) is left to the exact count.
  return (acc & c.top) !== 0 || bytes.byteLength % 4 !== 0;
}

function countNonFiniteSlow(bytes: Uint8Array, dtype: string): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let n = 0;
  if (dtype === 'BF16' || dtype === 'F16') {
    const mask = dtype === 'BF16' ? 0x7f80 : 0x7c00;
    for (let i = 0; i + 1 < bytes.byteLength; i += 2) if ((view.getUint16(i, true) & mask) === mask) n++;
  } else if (dtype === 'F32') {
    for (let i = 0; i + 3 < bytes.byteLength; i += 4) if ((view.getUint32(i, true) & 0x7f800000) === 0x7f800000) n++;
  } else if (dtype === 'F64') {
    for (let i = 0; i + 7 < bytes.byteLength; i += 8) if ((view.getUint32(i + 4, true) & 0x7ff00000) === 0x7ff00000) n++;
  }
  return n;
}

export function canHoldNonFinite(dtype: string): boolean {
  return dtype === 'BF16' || dtype === 'F16' || dtype === 'F32' || dtype === 'F64';
}

const SCAN_CHUNK_BYTES = 16 * 1024 * 1024;

/** Non-finite values of a whole tensor, read in pieces (flat memory). */
export async function countNonFiniteInTensor(ckpt: Checkpoint, tensor: CheckpointTensor): Promise<number> {
  if (!canHoldNonFinite(tensor.dtype)) return 0;
  const reader = ckpt.reader(tensor.name);
  const buf = new Uint8Array(Math.min(SCAN_CHUNK_BYTES, Math.max(8, tensor.byteLength)));
  let n = 0;
  for (let done = 0; done < tensor.byteLength; ) {
    const len = Math.min(buf.byteLength, tensor.byteLength - done);
    n += countNonFinite(await reader.readRange(tensor.fileOffset + done, buf.subarray(0, len)), tensor.dtype);
    done += len;
  }
  return n;
}

/** What --allow-nonfinite changed (quantized weights) or kept (unquantized tensors), for the summary. */
export interface NonFiniteReport {
  readonly values: number;
  readonly tensors: readonly { readonly name: string; readonly values: number; readonly action: 'replaced' | 'kept' }[];
}
