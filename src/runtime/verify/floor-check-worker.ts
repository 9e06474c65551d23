// Worker-thread entry of the floor check (floor-check.ts): for one linear, reads a stripe of `bn`
// rows of the original's BF16 weights, quantizes it with the WebAssembly kernel (the codes
// fp8-floor.ts's bf16FloorLinear gives), and compares codes and scales with the stored ones,
// stripe by stripe, answering at the first difference. Reads with its own file descriptors.

import { closeSync, openSync, readSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { scaleFormatOfValues } from '../../fp8/scale-format.js';
import { WasmBf16Kernel } from '../../fp8/wasm-kernel.js';
import type { FloorCheckReply, FloorCheckRequest } from './floor-check.js';

const kernel = WasmBf16Kernel.create();

function readAt(file: string, into: Uint8Array, position: number): void {
  const fd = openSync(file, 'r');
  try {
    let done = 0;
    while (done < into.byteLength) {
      const n = readSync(fd, into, done, into.byteLength - done, position + done);
      if (n === 0) throw new Error(`${file}: unexpected end of file at byte ${position + done}`);
      done += n;
    }
  } finally {
    closeSync(fd);
  }
}

function bytesOf(v: ArrayBufferView, byteLength = v.byteLength): Buffer {
  return Buffer.from(v.buffer, v.byteOffset, byteLength);
}

function check(job: FloorCheckRequest): boolean | undefined {
  if (kernel === undefined) return undefined;
  const { n, k, block } = job;
  const kb = Math.ceil(k / block.bk);
  const storedScales = new Float32Array(Math.ceil(n / block.bn) * kb);
  readAt(job.scales.file, new Uint8Array(storedScales.buffer), job.scales.offset);
  const opts = { format: job.format, block, scaleFormat: scaleFormatOfValues(storedScales) };
  const stripe = Math.min(block.bn, n) * k;
  const words = new Uint16Array(stripe);
  const codes = new Uint8Array(stripe);
  const stored = new Uint8Array(stripe);
  const scaleInv = new Float32Array(kb);
  for (let r0 = 0, rb = 0; r0 < n; r0 += block.bn, rb++) {
    const count = Math.min(block.bn, n - r0) * k;
    readAt(job.original.file, new Uint8Array(words.buffer, 0, count * 2), job.original.offset + r0 * k * 2);
    // Inf/NaN in a block: the float32 path of fp8-floor.ts decides, on the main thread.
    if (!kernel.quantizeStripe(words.subarray(0, count), count / k, k, opts, codes.subarray(0, count), scaleInv)) return undefined;
    if (!bytesOf(scaleInv).equals(bytesOf(storedScales.subarray(rb * kb, (rb + 1) * kb)))) return false;
    readAt(job.codes.file, stored.subarray(0, count), job.codes.offset + r0 * k);
    if (!bytesOf(codes, count).equals(bytesOf(stored, count))) return false;
  }
  return true;
}

const port = parentPort;
if (!port) throw new Error('floor-check-worker runs only as a worker thread (see floor-check.ts)');
port.on('message', (job: FloorCheckRequest) => {
  let reply: FloorCheckReply;
  try {
    reply = { id: job.id, same: check(job) };
  } catch (e) {
    reply = { id: job.id, error: e instanceof Error ? e.message : String(e) };
  }
  port.postMessage(reply);
});
