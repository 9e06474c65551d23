// The fast executors of the two entries that carry almost every byte of a convert, `quantize` and
// `copy`, overlapping read, compute and write instead of doing one after the other:
//  - quantize: chunks of whole row stripes (~CHUNK_BYTES of source) are read ahead, quantized in
//    the worker pool, and written strictly in order (the shard hash is computed on the way), with
//    at most `depth` chunks in flight: memory is a few chunks per worker, whatever the tensor size;
//  - copy: the next piece is read while the current one is written (two buffers).
// Output bytes are identical to entry-executors.ts (the oracle): same kernel contract, same order.

import { ceilDiv, NonFiniteValueError } from '../fp8/block-quantize.js';
import { dtypeSize, isFloatSourceDtype, type FloatSourceDtype } from '../fp8/dtypes.js';
import type { CopyEntry, QuantizeEntry } from '../passes/plan.js';
import type { Checkpoint } from './checkpoint.js';
import { COPY_CHUNK_BYTES, nonFiniteWeightError, type ExecuteOptions, type OutputSink } from './entry-executors.js';
import { CheckpointError } from './errors.js';
import { ChunkScratch, quantizeChunk, type ChunkInput } from './quantize-chunk.js';
import { ChunkFailure, type QuantizedChunk, type QuantizePool } from './quantize-pool.js';

/**
 * Source bytes per chunk: large enough that reads and writes are big sequential requests and
 * per-message costs vanish, small enough that (2·threads + 1) chunks stay far under the RSS budget.
 */
export const CHUNK_BYTES = 8 * 1024 * 1024;

/** Weights smaller than this are quantized on the main thread: a worker hop costs more than it saves. */
export const IN_PROCESS_MAX_BYTES = 1024 * 1024;

const mainThreadScratch = new ChunkScratch();

/** The pool's contract, run synchronously here. */
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

/** Free buffers of one size, reused instead of reallocated for every chunk. */
class BufferPool {
  private readonly free: ArrayBuffer[] = [];
  constructor(private readonly bytes: number) {}
  take(): ArrayBuffer {
    return this.free.pop() ?? new ArrayBuffer(this.bytes);
  }
  give(b: ArrayBuffer): void {
    if (b.byteLength === this.bytes) this.free.push(b);
  }
}

export async function executeQuantizePipelined(entry: QuantizeEntry, ckpt: Checkpoint, sink: OutputSink, opts: ExecuteOptions, pool: QuantizePool): Promise<void> {
  const src = ckpt.info(entry.sources[0]!);
  if (!isFloatSourceDtype(src.dtype)) throw new CheckpointError(`tensor "${src.name}" is ${src.dtype}; only float weights can be quantized`);
  const dtype: FloatSourceDtype = src.dtype;
  const [weightOut, scaleOut] = entry.outputs as [typeof entry.outputs[0], typeof entry.outputs[0]];
  const rank = src.shape.length;
  const experts = rank === 3 ? src.shape[0]! : 1;
  const n = src.shape[rank - 2]!;
  const k = src.shape[rank - 1]!;
  const { bn, bk } = opts.settings.block;
  const colBlocks = ceilDiv(k, bk);
  const rowBlocks = ceilDiv(n, bn);
  const rowBytes = k * dtypeSize(dtype);
  const stripesPerChunk = Math.max(1, Math.floor(CHUNK_BYTES / (bn * rowBytes)));
  const chunkRows = Math.min(n, stripesPerChunk * bn);
  const chunks: Chunk[] = [];
  for (let e = 0; e < experts; e++) for (let r = 0; r < n; r += chunkRows) chunks.push({ expert: e, row: r, rows: Math.min(chunkRows, n - r) });
  const scales = new Float32Array(experts * rowBlocks * colBlocks);
  const sources = new BufferPool(chunkRows * rowBytes);
  const codeBuffers = new BufferPool(chunkRows * k);
  const settings = { format: opts.settings.format, block: opts.settings.block, scaleFormat: opts.settings.scaleFormat, nonFinite: opts.nonFinite };
  const reader = ckpt.reader(src.name);
  const inProcess = src.byteLength < IN_PROCESS_MAX_BYTES;

  const start = async (c: Chunk): Promise<QuantizedChunk> => {
    const source = sources.take();
    const globalRow = c.expert * n + c.row;
    // Rows of the [E·N, K] view, by byte range (readRows counts along the first axis only).
    await reader.readRange(src.fileOffset + globalRow * rowBytes, new Uint8Array(source, 0, c.rows * rowBytes));
    const input = { dtype, rows: c.rows, cols: k, firstRow: c.row, settings, source, codes: codeBuffers.take() };
    return inProcess ? quantizeHere(input) : pool.run(input);
  };
  // Each worker has one chunk running and one waiting; one more is being read or written.
  const depth = 2 * pool.threads + 1;
  const inflight: Array<Promise<QuantizedChunk>> = [];
  const launch = (i: number): void => {
    const p = start(chunks[i]!);
    // Handled when its turn comes; a chunk behind a failed one must not be an unhandled rejection.
    p.catch(() => undefined);
    inflight.push(p);
  };
  for (let i = 0; i < Math.min(depth, chunks.length); i++) launch(i);
  for (let i = 0; i < chunks.length; i++) {
    const c = chunks[i]!;
    let done: QuantizedChunk;
    try {
      done = await inflight.shift()!;
    } catch (err) {
      if (err instanceof ChunkFailure && err.reason instanceof NonFiniteValueError) throw nonFiniteWeightError(src, c.expert, err.reason, opts.settings.block);
      throw err instanceof ChunkFailure ? err.reason : err;
    }
    sources.give(done.source);
    if (i + depth < chunks.length) launch(i + depth);
    scales.set(done.scales, (c.expert * rowBlocks + c.row / bn) * colBlocks);
    await sink.write(weightOut.name, done.codes, (c.expert * n + c.row) * k);
    codeBuffers.give(done.codes.buffer as ArrayBuffer);
    opts.onBytes?.(c.rows * rowBytes);
  }
  await sink.write(scaleOut.name, new Uint8Array(scales.buffer), 0);
}

/** executeCopy with the read of piece i+1 overlapping the write of piece i. */
export async function executeCopyOverlapped(entry: CopyEntry, ckpt: Checkpoint, sink: OutputSink, opts: ExecuteOptions): Promise<void> {
  const src = ckpt.info(entry.sources[0]!);
  const out = entry.outputs[0]!;
  const reader = ckpt.reader(src.name);
  const size = Math.min(COPY_CHUNK_BYTES, Math.max(1, src.byteLength));
  const buffers = [new Uint8Array(size), new Uint8Array(size)];
  const read = (done: number, i: number): Promise<Uint8Array> => {
    const n = Math.min(size, src.byteLength - done);
    return reader.readRange(src.fileOffset + done, buffers[i % 2]!.subarray(0, n));
  };
  let next = src.byteLength > 0 ? read(0, 0) : undefined;
  for (let done = 0, i = 0; next; i++) {
    const piece = await next;
    const after = done + piece.byteLength;
    next = after < src.byteLength ? read(after, i + 1) : undefined;
    // A failed write must not leave the read ahead as an unhandled rejection.
    next?.catch(() => undefined);
    await sink.write(out.name, piece, done);
    opts.onBytes?.(piece.byteLength);
    done = after;
  }
}
