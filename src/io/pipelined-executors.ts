// The fast executors of the two entries that carry almost every byte of a convert, `quantize` and
// `copy`, overlapping read, compute and write instead of doing one after the other:
//  - quantize: chunks of whole row stripes (~CHUNK_BYTES of source) are read ahead, quantized in
//    the worker pool, and written strictly in order (the shard hash is computed on the way), with
//    at most 2·threads + 1 chunks in flight: memory is a few chunks per worker, whatever the
//    tensor's size;
//  - copy: pieces are read ahead while earlier ones are written.
// Source bytes are read around the page cache where the file system allows (direct-reads.ts);
// buffers come from the pool's BufferPool and are reused for the whole convert. Output bytes are
// identical to entry-executors.ts (the oracle): same kernel contract, same order.

import { join } from 'node:path';
import { NonFiniteValueError } from '../fp8/block-quantize.js';
import { dtypeSize } from '../fp8/dtypes.js';
import type { CopyEntry, QuantizeEntry } from '../passes/plan.js';
import type { Checkpoint } from './checkpoint.js';
import type { DirectView } from './direct-reads.js';
import { checkCopiedPiece, kernelOptions, nonFiniteWeightError, quantizeGeometry, type ExecuteOptions, type OutputSink } from './entry-executors.js';
import { ChunkScratch, quantizeChunk, type ChunkInput } from './quantize-chunk.js';
import { CHUNK_BYTES, ChunkFailure, type QuantizedChunk, type QuantizePool } from './quantize-pool.js';

/** Weights smaller than this are quantized on the main thread: a worker hop costs more than it saves. */
export const IN_PROCESS_MAX_BYTES = 1024 * 1024;

/** Copy pieces read ahead of the one being written. */
const COPY_READ_AHEAD = 2;

const mainThreadScratch = new ChunkScratch();

/** The pool's contract, run synchronously on this thread. */
function quantizeHere(input: ChunkInput): QuantizedChunk {
  try {
    const scales = quantizeChunk(input, mainThreadScratch);
    return { source: input.source, codes: new Uint8Array(input.codes, 0, input.rows * input.cols), scales };
  } catch (e) {
    throw new ChunkFailure(e as Error, input.source, input.codes);
  }
}

interface Chunk {
  readonly expert: number;
  /** First row within its matrix (a multiple of bn) and row count (whole stripes). */
  readonly row: number;
  readonly rows: number;
}

/** A ChunkFailure with the chunk it happened in (the expert index is needed for the message). */
class FailedChunk extends Error {
  constructor(
    readonly chunk: Chunk,
    readonly failure: ChunkFailure,
  ) {
    super(failure.message);
  }
}

/**
 * Runs `start(i)` for i = 0..count-1 with at most `depth` started and not yet consumed, and hands
 * the results to `consume` strictly in order. A failure stops the launching; results still in
 * flight behind it are dropped without becoming unhandled rejections.
 */
async function orderedWindow<T>(count: number, depth: number, start: (i: number) => Promise<T>, consume: (value: T, i: number) => Promise<void>): Promise<void> {
  const inflight: Array<Promise<T>> = [];
  const launch = (i: number): void => {
    const p = start(i);
    p.catch(() => undefined);
    inflight.push(p);
  };
  for (let i = 0; i < Math.min(depth, count); i++) launch(i);
  for (let i = 0; i < count; i++) {
    const value = await inflight.shift()!;
    if (i + depth < count) launch(i + depth);
    await consume(value, i);
  }
}

export async function executeQuantizePipelined(entry: QuantizeEntry, ckpt: Checkpoint, sink: OutputSink, opts: ExecuteOptions, pool: QuantizePool): Promise<void> {
  const { src, dtype, weightOut, scaleOut, experts, n, k, bn, rowBlocks, colBlocks } = quantizeGeometry(entry, ckpt, opts);
  const rowBytes = k * dtypeSize(dtype);
  const chunkRows = Math.min(n, Math.max(1, Math.floor(CHUNK_BYTES / Math.max(1, bn * rowBytes))) * bn);
  const chunks: Chunk[] = [];
  for (let e = 0; e < experts; e++) for (let r = 0; r < n; r += chunkRows) chunks.push({ expert: e, row: r, rows: Math.min(chunkRows, n - r) });
  const scales = new Float32Array(experts * rowBlocks * colBlocks);
  const settings = kernelOptions(opts);
  const reader = ckpt.reader(src.name);
  const path = join(ckpt.dir, src.shard);
  const inProcess = src.byteLength < IN_PROCESS_MAX_BYTES;
  const { buffers } = pool;

  const start = async (i: number): Promise<QuantizedChunk> => {
    const c = chunks[i]!;
    const source = buffers.take(chunkRows * rowBytes);
    const globalRow = c.expert * n + c.row;
    // Rows of the [E·N, K] view, by byte range (readRows counts along the first axis only).
    const into = new Uint8Array(source, 0, c.rows * rowBytes);
    const at = src.fileOffset + globalRow * rowBytes;
    if (!(await pool.direct?.readInto(path, at, into))) await reader.readRange(at, into);
    const input = { dtype, rows: c.rows, cols: k, firstRow: c.row, settings, source, codes: buffers.take(chunkRows * k) };
    try {
      return inProcess ? quantizeHere(input) : await pool.run(input);
    } catch (e) {
      throw e instanceof ChunkFailure ? new FailedChunk(c, e) : e;
    }
  };
  const consume = async (done: QuantizedChunk, i: number): Promise<void> => {
    const c = chunks[i]!;
    buffers.give(done.source);
    scales.set(done.scales, (c.expert * rowBlocks + c.row / bn) * colBlocks);
    await sink.write(weightOut.name, done.codes, (c.expert * n + c.row) * k);
    buffers.give(done.codes.buffer as ArrayBuffer);
    opts.onBytes?.(c.rows * rowBytes);
  };
  try {
    // Each worker has one chunk running and one waiting; one more is being read or written.
    await orderedWindow(chunks.length, 2 * pool.threads + 1, start, consume);
  } catch (err) {
    if (!(err instanceof FailedChunk)) throw err;
    const { failure, chunk } = err;
    buffers.give(failure.source);
    buffers.give(failure.codes);
    if (failure.reason instanceof NonFiniteValueError) throw nonFiniteWeightError(src, chunk.expert, failure.reason, opts.settings.block);
    throw failure.reason;
  }
  await sink.write(scaleOut.name, new Uint8Array(scales.buffer), 0);
}

/** executeCopy with reads running ahead of the writes; direct reads are written from their slot. */
export async function executeCopyOverlapped(entry: CopyEntry, ckpt: Checkpoint, sink: OutputSink, opts: ExecuteOptions, pool: QuantizePool): Promise<void> {
  const src = ckpt.info(entry.sources[0]!);
  const out = entry.outputs[0]!;
  const reader = ckpt.reader(src.name);
  const path = join(ckpt.dir, src.shard);
  const { buffers } = pool;
  const piece = buffers.defaultBytes;
  const count = Math.ceil(src.byteLength / piece);
  const start = async (i: number): Promise<DirectView> => {
    const n = Math.min(piece, src.byteLength - i * piece);
    const at = src.fileOffset + i * piece;
    const direct = await pool.direct?.view(path, at, n);
    if (direct) return direct;
    const buffer = buffers.take(piece);
    return { bytes: await reader.readRange(at, new Uint8Array(buffer, 0, n)), release: () => buffers.give(buffer) };
  };
  let nonFinite = 0;
  await orderedWindow(count, COPY_READ_AHEAD + 1, start, async (view, i) => {
    try {
      nonFinite += checkCopiedPiece(entry, src, view.bytes, opts);
      await sink.write(out.name, view.bytes, i * piece);
    } finally {
      view.release();
    }
    opts.onBytes?.(view.bytes.byteLength);
  });
  if (nonFinite > 0) opts.onNonFiniteKept?.(src.name, nonFinite);
}
