// Token ids in and logits out, as safetensors: `input_ids` I64 (or I32) `[B, T]` — the layout of
// the reference models' `<name>.logits.safetensors` — and `logits` F32 `[B, T, vocab]`. Also
// seeded synthetic ids for a verify run without an input file.

import { CheckpointError } from '../../io/errors.js';
import { SafetensorsReader } from '../../io/safetensors/safetensors-reader.js';
import { SafetensorsWriter } from '../../io/safetensors/safetensors-writer.js';
import { SeededRandom } from '../ops/random.js';
import type { BatchShape } from './layer-graphs.js';
import { MAX_SEQUENCE } from './sequence-limit.js';

export const INPUT_IDS_TENSOR = 'input_ids';
export const LOGITS_TENSOR = 'logits';

export interface TokenBatch extends BatchShape {
  /** Row-major `[batch, seq]`. */
  readonly ids: Int32Array;
}

export async function readInputIds(path: string): Promise<TokenBatch> {
  const reader = await SafetensorsReader.open(path);
  try {
    if (!reader.has(INPUT_IDS_TENSOR)) {
      throw new CheckpointError(
        `${path} has no "${INPUT_IDS_TENSOR}" tensor (found: ${reader.tensorNames().join(', ') || 'none'}); write token ids as I64 [B, T] "${INPUT_IDS_TENSOR}"`,
      );
    }
    const info = reader.info(INPUT_IDS_TENSOR);
    const shape = info.shape.length === 1 ? [1, info.shape[0]!] : info.shape;
    if (shape.length !== 2 || shape[0]! < 1 || shape[1]! < 1) {
      throw new CheckpointError(`${path}: "${INPUT_IDS_TENSOR}" is [${info.shape.join(', ')}]; expected [B, T]`);
    }
    if (shape[1]! > MAX_SEQUENCE) throw new CheckpointError(`${path}: sequences of ${shape[1]} tokens exceed the ${MAX_SEQUENCE}-token limit`);
    const bytes = (await reader.readTensor(INPUT_IDS_TENSOR)).slice();
    let ids: Int32Array;
    if (info.dtype === 'I64') {
      const wide = new BigInt64Array(bytes.buffer);
      ids = Int32Array.from(wide, (v) => {
        if (v < 0n || v > 0x7fffffffn) throw new CheckpointError(`${path}: token id ${v} is out of range`);
        return Number(v);
      });
    } else if (info.dtype === 'I32') ids = new Int32Array(bytes.buffer);
    else throw new CheckpointError(`${path}: "${INPUT_IDS_TENSOR}" is ${info.dtype}; expected I64 or I32`);
    return { ids, batch: shape[0]!, seq: shape[1]! };
  } finally {
    await reader.close();
  }
}

/** `tokens` ids uniform in [0, vocab) from `seed`, as one sequence. */
export function generateInputIds(vocab: number, tokens: number, seed: number): TokenBatch {
  if (tokens > MAX_SEQUENCE) throw new RangeError(`--tokens ${tokens} exceeds the ${MAX_SEQUENCE}-token limit`);
  const rng = new SeededRandom(seed);
  return { ids: Int32Array.from({ length: tokens }, () => Math.floor(rng.next() * vocab)), batch: 1, seq: tokens };
}

/** Writes `logits` F32 `[B, T, vocab]`; with `ids`, also their `input_ids` I64 `[B, T]` (the reference files' layout). */
export async function writeLogits(path: string, logits: Float32Array, shape: BatchShape, vocab: number, metadata?: Record<string, string>, ids?: TokenBatch): Promise<void> {
  const planned = [
    ...(ids === undefined ? [] : [{ name: INPUT_IDS_TENSOR, dtype: 'I64' as const, shape: [ids.batch, ids.seq] }]),
    { name: LOGITS_TENSOR, dtype: 'F32' as const, shape: [shape.batch, shape.seq, vocab] },
  ];
  const writer = await SafetensorsWriter.create(path, planned, metadata);
  try {
    if (ids !== undefined) await writer.write(INPUT_IDS_TENSOR, new Uint8Array(BigInt64Array.from(ids.ids, BigInt).buffer));
    await writer.write(LOGITS_TENSOR, new Uint8Array(logits.buffer, logits.byteOffset, logits.byteLength));
    await writer.finish();
  } catch (e) {
    await writer.abort();
    throw e;
  }
}

/** Writes `input_ids` I64 `[B, T]` (tests, and users preparing a verify input). */
export async function writeInputIds(path: string, batch: TokenBatch): Promise<void> {
  const writer = await SafetensorsWriter.create(path, [{ name: INPUT_IDS_TENSOR, dtype: 'I64', shape: [batch.batch, batch.seq] }]);
  await writer.write(INPUT_IDS_TENSOR, new Uint8Array(BigInt64Array.from(batch.ids, BigInt).buffer));
  await writer.finish();
}
