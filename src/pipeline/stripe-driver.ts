// The stripe driver: the one loop that moves a weight through the fast path, whatever the entry
// kind. An entry is cut into tasks (stripe-tasks.ts); each task reads its rows (around the page
// cache where the file system allows), hands a chunk to the worker pool (WebAssembly or fast
// TypeScript kernel, FP8 decode or dequantization in the worker too) and writes the result, with
// reads running ahead and results consumed strictly in task order, at most 2·threads + 1 chunks
// in flight: memory is a few chunks per worker, whatever the tensor's size. Small weights run on
// this thread (a worker hop costs more than it saves). With --threads 0 the same tasks run on
// this thread through the reference kernel (quantize-chunk.ts referenceChunk), the oracle the
// tests compare the fast kernels' bytes with.

import { join } from 'node:path';
import { NonFiniteValueError } from '../fp8/block-quantize.js';
import type { Checkpoint, CheckpointTensor } from '../io/checkpoint/checkpoint.js';
import type { DirectReads } from '../io/safetensors/direct-reads.js';
import { ChunkScratch, chunkOutputBytes, runChunk, type ChunkInput } from './quantize-chunk.js';
import { BufferPool, CHUNK_BYTES, ChunkFailure, type QuantizedChunk } from './quantize-pool.js';

/**
 * Where chunks run: the worker pool (quantize-pool.ts; fast kernels), or, without `run`, this
 * thread with the reference kernel (--threads 0, the oracle).
 */
export interface StripeRunner {
  readonly buffers: BufferPool;
  readonly threads: number;
  /** Reads around the page cache, where the pool made them. */
  readonly direct?: DirectReads | undefined;
  run?(input: ChunkInput): Promise<QuantizedChunk>;
}

/** The oracle's runner: the reference kernel on this thread, one chunk at a time, ordinary reads. */
export function referenceRunner(): StripeRunner {
  return { buffers: new BufferPool(CHUNK_BYTES), threads: 0 };
}

/** Chunks in flight per entry at most, whatever the thread count (16 threads already keep 24 busy enough). */
const MAX_WINDOW = 24;

/** Weights smaller than this are processed on the main thread: a worker hop costs more than it saves. */
export const IN_PROCESS_MAX_BYTES = 1024 * 1024;

/** One unit of work: read → chunk → (pool) → write. */
export interface StripeTask {
  /** Reads the task's rows into buffers taken from `buffers` and returns the chunk to run. */
  prepare(buffers: BufferPool): Promise<ChunkInput>;
  /** Writes (or keeps) the chunk's result; the driver gives the buffers back afterwards. */
  finish(result: QuantizedChunk): Promise<void>;
  /** The user-facing error for a NaN/Inf the kernel met in this task's chunk. */
  nonFinite(err: NonFiniteValueError): Error;
  /** Source bytes this task reads, for progress. */
  readonly sourceBytes: number;
}

const mainThreadScratch = new ChunkScratch();

/** The pool's contract, run synchronously on this thread (with the reference kernel for the oracle). */
function runHere(input: ChunkInput, reference: boolean): QuantizedChunk {
  try {
    const { scales, nonFinite } = runChunk(input, mainThreadScratch, reference);
    return { source: input.source, codes: new Uint8Array(input.codes, 0, chunkOutputBytes(input)), scales, ...(nonFinite === undefined ? {} : { nonFinite }) };
  } catch (e) {
    throw new ChunkFailure(e as Error, input.source, input.codes);
  }
}

/** A ChunkFailure with the task it happened in. */
class FailedTask extends Error {
  constructor(
    readonly task: StripeTask,
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
export async function orderedWindow<T>(count: number, depth: number, start: (i: number) => Promise<T>, consume: (value: T, i: number) => Promise<void>): Promise<void> {
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

export interface DriveOptions {
  /** Run every chunk on this thread (the entry's weights are small). */
  readonly inProcess: boolean;
  readonly onBytes?: (bytes: number) => void;
}

/** Runs `tasks` through `runner` in order; see the module comment. */
export async function driveStripes(tasks: readonly StripeTask[], runner: StripeRunner, opts: DriveOptions): Promise<void> {
  const { buffers } = runner;
  const start = async (i: number): Promise<QuantizedChunk> => {
    const task = tasks[i]!;
    const input = await task.prepare(buffers);
    try {
      if (!runner.run) return runHere(input, true);
      return opts.inProcess ? runHere(input, false) : await runner.run(input);
    } catch (e) {
      throw e instanceof ChunkFailure ? new FailedTask(task, e) : e;
    }
  };
  const consume = async (done: QuantizedChunk, i: number): Promise<void> => {
    const task = tasks[i]!;
    try {
      await task.finish(done);
    } finally {
      buffers.give(done.source);
      buffers.give(done.codes.buffer);
    }
    opts.onBytes?.(task.sourceBytes);
  };
  try {
    // Each worker has one chunk running and one waiting; one more is being read or written. On
    // many cores the window stops growing (memory: two entries' windows of 8 MiB chunks are in flight).
    await orderedWindow(tasks.length, Math.min(2 * runner.threads + 1, MAX_WINDOW), start, consume);
  } catch (err) {
    if (!(err instanceof FailedTask)) throw err;
    const { failure, task } = err;
    buffers.give(failure.source);
    buffers.give(failure.codes);
    if (failure.reason instanceof NonFiniteValueError) throw task.nonFinite(failure.reason);
    throw failure.reason;
  }
}

/** Reads `into.byteLength` bytes of `src` from byte `offset` of its data, directly where possible. */
export async function readSourceBytes(ckpt: Checkpoint, runner: StripeRunner, src: CheckpointTensor, offset: number, into: Uint8Array): Promise<Uint8Array> {
  const at = src.fileOffset + offset;
  if (await runner.direct?.readInto(join(ckpt.dir, src.shard), at, into)) return into;
  return ckpt.reader(src.name).readRange(at, into);
}
