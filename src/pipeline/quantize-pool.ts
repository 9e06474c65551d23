// A pool of worker threads that quantize chunks of row stripes (quantize-worker.ts), so the
// kernel runs on every core while the main thread reads, writes and hashes; it also owns the
// fast path's other per-convert resources (I/O buffers, direct read and write staging, the hash
// thread). The I/O buffers are shared memory that each worker is sent once, with a number: a chunk
// then names its buffers by number (no copies, and no transfer, which would make a new buffer
// object per chunk and per direction: at disk speed that was a second of garbage collection on the
// main thread for every 4 GB); each worker holds one chunk at a time and the rest wait here.
// Workers start on the first chunk (a convert of a tiny model never pays for them). Idle workers
// are unref'd, so a pool nobody closed never keeps the process alive; busy ones are ref'd, so the
// process never exits with a chunk in flight.

import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { NonFiniteValueError } from '../fp8/block-quantize.js';
import { DirectReads } from '../io/safetensors/direct-reads.js';
import { WriteSlots } from './direct-shard-writer.js';
import { HashThread } from './hash-thread.js';
import { startModuleWorker } from '../io/module-worker.js';
import { chunkOutputBytes, type ChunkInput } from './quantize-chunk.js';

/** A buffer on the wire: a pooled shared buffer's number (with the buffer the first time this worker sees it), or a one-off buffer. */
export type WireBuffer = { readonly pooled: number; readonly buffer?: SharedArrayBuffer } | { readonly buffer: ArrayBufferLike };

export interface ChunkRequest extends Omit<ChunkInput, 'source' | 'codes'> {
  readonly id: number;
  readonly source: WireBuffer;
  readonly codes: WireBuffer;
}

export interface ChunkReply {
  readonly id: number;
  /** One-off (non-pooled) buffers, transferred back; pooled ones stay where they are. */
  readonly source?: ArrayBuffer;
  readonly codes?: ArrayBuffer;
  /** The chunk's float32 scales; absent on failure. */
  readonly scales?: ArrayBuffer;
  /** A dequantization's NaN/Inf values among those written. */
  readonly nonFinite?: number;
  readonly failure?: { readonly nonFinite: { row: number; col: number; value: number } } | { readonly message: string };
}

export interface QuantizedChunk {
  /** The source buffer, free for the next read. */
  readonly source: ArrayBufferLike;
  /** rows × cols codes, on the codes buffer that went out. */
  readonly codes: Uint8Array;
  readonly scales: Float32Array;
  /** A dequantization's NaN/Inf values among those written, where the chunk's thread counted them. */
  readonly nonFinite?: number;
}

/** A chunk that failed (reason: NonFiniteValueError or Error); its buffers come back for reuse. */
export class ChunkFailure extends Error {
  constructor(
    readonly reason: Error,
    readonly source: ArrayBufferLike,
    readonly codes: ArrayBufferLike,
  ) {
    super(reason.message);
    this.name = 'ChunkFailure';
  }
}

/** Default --threads: every core the OS gives this process. */
export function defaultThreads(): number {
  return Math.max(1, availableParallelism());
}

interface Pending {
  readonly request: ChunkInput & { readonly id: number };
  readonly resolve: (c: QuantizedChunk) => void;
  readonly reject: (e: Error) => void;
}

/**
 * Free I/O buffers, reused across chunks and entries for the whole convert: a fresh 4 MiB
 * ArrayBuffer per chunk costs page faults, zeroing and GC, and adds up to gigabytes. Pooled
 * buffers are shared memory, numbered, so the workers can be sent a number instead (see above).
 */
export class BufferPool {
  private readonly free: SharedArrayBuffer[] = [];
  private readonly numbers = new WeakMap<ArrayBufferLike, number>();
  private made = 0;
  constructor(readonly defaultBytes: number) {}

  /** A buffer of at least `minBytes` (usually exactly defaultBytes). */
  take(minBytes: number): ArrayBufferLike {
    if (minBytes > this.defaultBytes) return new ArrayBuffer(minBytes);
    const reused = this.free.pop();
    if (reused) return reused;
    const buffer = new SharedArrayBuffer(this.defaultBytes);
    this.numbers.set(buffer, this.made++);
    return buffer;
  }

  give(buffer: ArrayBufferLike): void {
    // Oversized one-offs (a stripe larger than a chunk) are left to the GC.
    if (this.numbers.has(buffer)) this.free.push(buffer as SharedArrayBuffer);
  }

  /** The pool's number for one of its buffers; undefined for a one-off. */
  numberOf(buffer: ArrayBufferLike): number | undefined {
    return this.numbers.get(buffer);
  }
}

/** Source bytes per chunk of work, and the size of every pooled I/O buffer. */
export const CHUNK_BYTES = 4 * 1024 * 1024;

/**
 * Direct-read staging slots: the quantize read-ahead plus the copy read-ahead of two entries in
 * flight (write-plan.ts), with room to spare: a copy waiting for its turn to write holds its slots.
 */
const DIRECT_SLOTS = 8;
/**
 * Direct-write slots: one filling per open stream (a copy and two quantized entries at once,
 * write-plan.ts) and two being written; large writes are what disks like.
 */
const WRITE_SLOTS = 5;
const WRITE_SLOT_BYTES = 8 * 1024 * 1024;

export class QuantizePool {
  /** I/O buffers for the executors that use this pool. */
  readonly buffers = new BufferPool(CHUNK_BYTES);
  private directReads: DirectReads | null | undefined;
  private directWrites: WriteSlots | null | undefined;
  private hashThread: HashThread | undefined;
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly busy = new Map<Worker, Pending>();
  /** Pooled buffers each worker has been sent (by number). */
  private readonly known = new Map<Worker, Set<number>>();
  private readonly queue: Pending[] = [];
  private nextId = 0;
  private broken: Error | undefined;
  private closed = false;

  private constructor(readonly threads: number) {}

  /** Reads around the page cache (direct-reads.ts), made on first use; undefined where unsupported. */
  get direct(): DirectReads | undefined {
    if (this.directReads === undefined) this.directReads = DirectReads.create(DIRECT_SLOTS, CHUNK_BYTES) ?? null;
    return this.directReads ?? undefined;
  }

  /** Staging for direct shard writes (direct-shard-writer.ts), made on first use; undefined where unsupported. */
  get writeSlots(): WriteSlots | undefined {
    if (this.directWrites === undefined) this.directWrites = WriteSlots.create(WRITE_SLOTS, WRITE_SLOT_BYTES) ?? null;
    return this.directWrites ?? undefined;
  }

  /** The thread that hashes direct-written shards (hash-thread.ts); its worker starts on first use. */
  get hashing(): HashThread {
    this.hashThread ??= new HashThread();
    return this.hashThread;
  }

  static start(threads: number): QuantizePool {
    if (!Number.isSafeInteger(threads) || threads < 1) throw new RangeError(`QuantizePool: threads must be a positive integer, got ${threads}`);
    return new QuantizePool(threads);
  }

  private spawn(): void {
    for (let i = 0; i < this.threads; i++) {
      const w = startModuleWorker(import.meta.url, 'quantize-worker');
      w.unref();
      w.on('message', (reply: ChunkReply) => this.onReply(w, reply));
      w.on('error', (e: Error) => this.fail(new Error(`quantize worker failed: ${e.message}`)));
      w.on('exit', (code) => {
        if (!this.closed) this.fail(new Error(`quantize worker exited unexpectedly (code ${code})`));
      });
      this.workers.push(w);
      this.idle.push(w);
    }
  }

  /** Quantize one chunk; rejects with ChunkFailure, or with an Error if the pool broke or closed. */
  run(input: ChunkInput): Promise<QuantizedChunk> {
    return new Promise((resolve, reject) => {
      if (this.broken || this.closed) {
        reject(this.broken ?? new Error('QuantizePool is closed'));
        return;
      }
      if (this.workers.length === 0) this.spawn();
      this.queue.push({ request: { ...input, id: this.nextId++ }, resolve, reject });
      this.dispatch();
    });
  }

  private dispatch(): void {
    while (this.idle.length > 0 && this.queue.length > 0) {
      const w = this.idle.pop()!;
      const job = this.queue.shift()!;
      this.busy.set(w, job);
      w.ref();
      const transfer: ArrayBuffer[] = [];
      const wire = (buffer: ArrayBufferLike): WireBuffer => {
        const pooled = this.buffers.numberOf(buffer);
        if (pooled === undefined) {
          if (buffer instanceof ArrayBuffer) transfer.push(buffer);
          return { buffer };
        }
        let known = this.known.get(w);
        if (!known) this.known.set(w, (known = new Set()));
        if (known.has(pooled)) return { pooled };
        known.add(pooled);
        return { pooled, buffer: buffer as SharedArrayBuffer };
      };
      const request: ChunkRequest = { ...job.request, source: wire(job.request.source), codes: wire(job.request.codes) };
      w.postMessage(request, transfer);
    }
  }

  private onReply(w: Worker, reply: ChunkReply): void {
    w.unref();
    const job = this.busy.get(w);
    if (!job || job.request.id !== reply.id) return; // its chunk was rejected when the pool broke
    this.busy.delete(w);
    this.idle.push(w);
    const f = reply.failure;
    // A one-off buffer went out transferred and comes back in the reply; a pooled one never moved.
    const source = reply.source ?? job.request.source;
    const codesBuffer = reply.codes ?? job.request.codes;
    if (!f) {
      const codes = new Uint8Array(codesBuffer, 0, chunkOutputBytes(job.request));
      job.resolve({ source, codes, scales: new Float32Array(reply.scales!), ...(reply.nonFinite === undefined ? {} : { nonFinite: reply.nonFinite }) });
    } else {
      const reason = 'nonFinite' in f ? new NonFiniteValueError(f.nonFinite.row, f.nonFinite.col, f.nonFinite.value) : new Error(f.message);
      job.reject(new ChunkFailure(reason, source, codesBuffer));
    }
    this.dispatch();
  }

  private fail(e: Error): void {
    if (this.broken) return;
    this.broken = e;
    for (const job of [...this.busy.values(), ...this.queue]) job.reject(e);
    this.busy.clear();
    this.queue.length = 0;
  }

  /** Stops every worker; chunks still queued or running are rejected. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.fail(new Error('QuantizePool closed'));
    this.idle.length = 0;
    await Promise.all([...this.workers.map((w) => w.terminate()), this.directReads?.close(), this.hashThread?.close()]);
  }
}
