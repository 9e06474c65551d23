// Worker-thread entry of same-stored-bytes.ts: compares pairs of file ranges piece by piece with
// its own file descriptors, stopping at the first difference.

import { closeSync, openSync, readSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import type { StoredRange } from './same-stored-bytes.js';

const PIECE_BYTES = 16 * 1024 * 1024;

function readInto(fd: number, into: Uint8Array, length: number, position: number): void {
  let done = 0;
  while (done < length) {
    const n = readSync(fd, into, done, length - done, position + done);
    if (n === 0) throw new Error(`unexpected end of file at byte ${position + done}`);
    done += n;
  }
}

function same(a: StoredRange, b: StoredRange, bufA: Uint8Array, bufB: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  const fa = openSync(a.file, 'r');
  try {
    const fb = openSync(b.file, 'r');
    try {
      for (let at = 0; at < a.length; at += PIECE_BYTES) {
        const n = Math.min(PIECE_BYTES, a.length - at);
        readInto(fa, bufA, n, a.offset + at);
        readInto(fb, bufB, n, b.offset + at);
        if (!Buffer.from(bufA.buffer, 0, n).equals(Buffer.from(bufB.buffer, 0, n))) return false;
      }
      return true;
    } finally {
      closeSync(fb);
    }
  } finally {
    closeSync(fa);
  }
}

const port = parentPort;
if (!port) throw new Error('same-stored-bytes-worker runs only as a worker thread (see same-stored-bytes.ts)');
port.once('message', (pairs: readonly (readonly [StoredRange, StoredRange])[]) => {
  try {
    const bufA = new Uint8Array(PIECE_BYTES);
    const bufB = new Uint8Array(PIECE_BYTES);
    port.postMessage({ same: pairs.every(([a, b]) => same(a, b, bufA, bufB)) });
  } catch {
    port.postMessage({});
  }
});
