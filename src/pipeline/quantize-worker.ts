// Worker-thread entry of the quantize pool (quantize-pool.ts): receives a chunk of whole row
// stripes of one weight, quantizes it (quantize-chunk.ts) from its source buffer into its codes
// buffer, and replies with the chunk's scales (or a dequantization's NaN/Inf count). Pooled
// buffers are shared memory this thread was sent once and keeps by number; a one-off buffer comes
// transferred and goes back the same way.

import { parentPort } from 'node:worker_threads';
import { NonFiniteValueError } from '../fp8/block-quantize.js';
import { ChunkScratch, runChunk, type ChunkInput } from './quantize-chunk.js';
import type { ChunkReply, ChunkRequest, WireBuffer } from './quantize-pool.js';

const scratch = new ChunkScratch();
const pooled = new Map<number, SharedArrayBuffer>();

function bufferOf(wire: WireBuffer): ArrayBufferLike {
  if (!('pooled' in wire)) return wire.buffer;
  if (wire.buffer) pooled.set(wire.pooled, wire.buffer);
  const buffer = pooled.get(wire.pooled);
  if (!buffer) throw new Error(`quantize worker: pooled buffer ${wire.pooled} was never sent`);
  return buffer;
}

const port = parentPort;
if (!port) throw new Error('quantize-worker runs only as a worker thread (see quantize-pool.ts)');
port.on('message', (req: ChunkRequest) => {
  const transfer: ArrayBuffer[] = [];
  const oneOffs: { source?: ArrayBuffer; codes?: ArrayBuffer } = {};
  let reply: ChunkReply;
  try {
    const input: ChunkInput = { ...req, source: bufferOf(req.source), codes: bufferOf(req.codes) };
    if (!('pooled' in req.source) && input.source instanceof ArrayBuffer) oneOffs.source = input.source;
    if (!('pooled' in req.codes) && input.codes instanceof ArrayBuffer) oneOffs.codes = input.codes;
    const { scales, nonFinite } = runChunk(input, scratch);
    reply = { id: req.id, ...oneOffs, scales: scales.buffer as ArrayBuffer, ...(nonFinite === undefined ? {} : { nonFinite }) };
    transfer.push(scales.buffer as ArrayBuffer);
  } catch (e) {
    const failure =
      e instanceof NonFiniteValueError ? { nonFinite: { row: e.row, col: e.col, value: e.value } } : { message: e instanceof Error ? (e.stack ?? e.message) : String(e) };
    reply = { id: req.id, ...oneOffs, failure };
  }
  if (oneOffs.source) transfer.push(oneOffs.source);
  if (oneOffs.codes && oneOffs.codes !== oneOffs.source) transfer.push(oneOffs.codes);
  port.postMessage(reply, transfer);
});
