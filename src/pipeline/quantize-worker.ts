// Worker-thread entry of the quantize pool (quantize-pool.ts): receives a chunk of whole row
// stripes of one weight as a transferred buffer, quantizes it (quantize-chunk.ts), and sends the
// codes, the chunk's scales (or a dequantization's NaN/Inf count) and the source buffer (for reuse)
// back, transferred, not copied.

import { parentPort } from 'node:worker_threads';
import { NonFiniteValueError } from '../fp8/block-quantize.js';
import { ChunkScratch, runChunk } from './quantize-chunk.js';
import type { ChunkReply, ChunkRequest } from './quantize-pool.js';

const scratch = new ChunkScratch();

const port = parentPort;
if (!port) throw new Error('quantize-worker runs only as a worker thread (see quantize-pool.ts)');
port.on('message', (req: ChunkRequest) => {
  let reply: ChunkReply;
  try {
    const { scales, nonFinite } = runChunk(req, scratch);
    reply = { id: req.id, source: req.source, codes: req.codes, scales: scales.buffer as ArrayBuffer, ...(nonFinite === undefined ? {} : { nonFinite }) };
  } catch (e) {
    const failure =
      e instanceof NonFiniteValueError ? { nonFinite: { row: e.row, col: e.col, value: e.value } } : { message: e instanceof Error ? (e.stack ?? e.message) : String(e) };
    reply = { id: req.id, source: req.source, codes: req.codes, failure };
  }
  const transfer: ArrayBuffer[] = [reply.source, reply.codes];
  if (reply.scales) transfer.push(reply.scales);
  port.postMessage(reply, transfer);
});
