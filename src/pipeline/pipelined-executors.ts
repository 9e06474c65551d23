// The fast copy: pieces are read ahead (around the page cache where the file system allows,
// direct-reads.ts) while earlier ones are written; buffers come from the pool's BufferPool and are
// reused for the whole run. Weights that are quantized or decoded go through the stripe driver
// (stripe-driver.ts) instead.

import { join } from 'node:path';
import type { CopyEntry } from '../passes/plan.js';
import type { Checkpoint } from '../io/checkpoint/checkpoint.js';
import type { DirectView } from '../io/safetensors/direct-reads.js';
import { checkCopiedPiece, type ExecuteOptions, type OutputSink } from './entry-executors.js';
import type { QuantizePool } from './quantize-pool.js';
import { orderedWindow } from './stripe-driver.js';

/** Copy pieces read ahead of the one being written. */
const COPY_READ_AHEAD = 2;

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
