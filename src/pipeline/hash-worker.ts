// Worker-thread entry of the hash thread (hash-thread.ts): SHA-256 of byte ranges of a shared
// memory, in the order they arrive, one running hash per stream. The main thread of a convert
// is the critical path of a disk-bound run; hashing a 3 GB shard there costs ~2 s of it.

import { createHash, type Hash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import type { HashReply, HashRequest } from './hash-thread.js';

const port = parentPort;
if (!port) throw new Error('hash-worker runs only as a worker thread (see hash-thread.ts)');
const streams = new Map<number, { memory: SharedArrayBuffer; hash: Hash }>();

port.on('message', (req: HashRequest) => {
  let reply: HashReply;
  try {
    if (req.op === 'begin') {
      streams.set(req.stream, { memory: req.memory, hash: createHash('sha256') });
      return;
    }
    const s = streams.get(req.stream);
    if (!s) throw new Error(`hash stream ${req.stream} was not begun`);
    if (req.op === 'update') {
      s.hash.update(new Uint8Array(s.memory, req.offset, req.length));
      reply = { stream: req.stream, op: 'updated' };
    } else {
      streams.delete(req.stream);
      reply = { stream: req.stream, op: 'digest', hex: req.op === 'digest' ? s.hash.digest('hex') : '' };
    }
  } catch (e) {
    reply = { stream: req.stream, op: 'error', message: e instanceof Error ? e.message : String(e) };
  }
  port.postMessage(reply);
});
