// A pool of worker threads that quantize chunks of row stripes (quantize-worker.ts), so the
// kernel runs on every core while the main thread reads, writes and hashes. Buffers travel as
// transfers both ways (no copies); each worker holds one chunk at a time and the rest wait here.
// Workers start on the first chunk (a convert of a tiny model never pays for them). Idle workers
// are unref'd, so a pool nobody closed never keeps the process alive; busy ones are ref'd, so the
// process never exits with a chunk in flight.

import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { NonFiniteValueError } from '../fp8/block-quantize.js';
import type { ChunkInput } from './quantize-chunk.js';

export interface ChunkRequest extends ChunkInput {
  readonly id: number;
}

export interface ChunkReply {
  readonly id: number;
  readonly source: ArrayBuffer;
  readonly codes: ArrayBuffer;
  /** The chunk's float32 scales; absent on failure. */
  readonly scales?: ArrayBuffer;
  readonly failure?: { readonly nonFinite: { row: number; col: number; value: number } } | { readonly message: string };
}

export interface QuantizedChunk {
  /** The source buffer, free for the next read. */
  readonly source: ArrayBuffer;
  /** rows × cols codes, on the codes buffer that went out. */
  readonly codes: Uint8Array;
  readonly scales: Float32Array;
}

/** A chunk that failed (reason: NonFiniteValueError or Error); its buffers come back for reuse. */
export class ChunkFailure extends Error {
  constructor(
    readonly reason: Error,
    readonly source: ArrayBuffer,
    readonly codes: ArrayBuffer,
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
  readonly request: ChunkRequest;
  readonly resolve: (c: QuantizedChunk) => void;
  readonly reject: (e: Error) => void;
}

/**
 * The parent's node options minus those that only make sense for the main script (an inline
 * `-e` program, its --input-type, the test runner, a debugger port): by default a worker inherits
 * them all, and `--input-type` alone makes it fail to start.
 */
export function workerExecArgv(execArgv: readonly string[]): string[] {
  const withValue = new Set(['-e', '--eval', '-p', '--print', '--input-type']);
  const dropped = /^(--input-type=|--eval=|--print=|--test|--watch|--inspect|--debug-port)/;
  const out: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const a = execArgv[i]!;
    if (withValue.has(a)) i++;
    else if (!dropped.test(a)) out.push(a);
  }
  return out;
}

/**
 * A worker running quantize-worker beside this module: the .js file in dist/; under tsx (tests,
 * bench) the .ts file, loaded by a bootstrap that registers tsx first, because Node 20 does not
 * apply an `--import tsx` of the worker's execArgv to the worker's entry module.
 */
function startWorker(): Worker {
  const execArgv = workerExecArgv(process.execArgv);
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./quantize-worker.js', import.meta.url), { execArgv });
  const tsx = import.meta.resolve('tsx/esm/api');
  const entry = new URL('./quantize-worker.ts', import.meta.url).href;
  const bootstrap = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); });`;
  return new Worker(bootstrap, { eval: true, execArgv });
}

/**
 * Free I/O buffers, reused across chunks and entries for the whole convert: a fresh 4 MiB
 * ArrayBuffer per chunk costs page faults, zeroing and GC, and adds up to gigabytes.
 */
export class BufferPool {
  private readonly free: ArrayBuffer[] = [];
  constructor(readonly defaultBytes: number) {}

  /** A buffer of at least `minBytes` (usually exactly defaultBytes). */
  take(minBytes: number): ArrayBuffer {
    const i = this.free.findIndex((b) => b.byteLength >= minBytes);
    if (i >= 0) return this.free.splice(i, 1)[0]!;
    return new ArrayBuffer(Math.max(minBytes, this.defaultBytes));
  }

  give(buffer: ArrayBuffer): void {
    // Oversized one-offs (a stripe larger than a chunk) are left to the GC.
    if (buffer.byteLength === this.defaultBytes) this.free.push(buffer);
  }
}

/** Source bytes per chunk of work, and the size of every pooled I/O buffer. */
export const CHUNK_BYTES = 4 * 1024 * 1024;

export class QuantizePool {
  /** I/O buffers for the executors that use this pool. */
  readonly buffers = new BufferPool(CHUNK_BYTES);
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly busy = new Map<Worker, Pending>();
  private readonly queue: Pending[] = [];
  private nextId = 0;
  private broken: Error | undefined;
  private closed = false;

  private constructor(readonly threads: number) {}

  static start(threads: number): QuantizePool {
    if (!Number.isSafeInteger(threads) || threads < 1) throw new RangeError(`QuantizePool: threads must be a positive integer, got ${threads}`);
    return new QuantizePool(threads);
  }

  private spawn(): void {
    for (let i = 0; i < this.threads; i++) {
      const w = startWorker();
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
      w.postMessage(job.request, [job.request.source, job.request.codes]);
    }
  }

  private onReply(w: Worker, reply: ChunkReply): void {
    w.unref();
    const job = this.busy.get(w);
    if (!job || job.request.id !== reply.id) return; // its chunk was rejected when the pool broke
    this.busy.delete(w);
    this.idle.push(w);
    const f = reply.failure;
    if (!f) {
      const codes = new Uint8Array(reply.codes, 0, job.request.rows * job.request.cols);
      job.resolve({ source: reply.source, codes, scales: new Float32Array(reply.scales!) });
    } else {
      const reason = 'nonFinite' in f ? new NonFiniteValueError(f.nonFinite.row, f.nonFinite.col, f.nonFinite.value) : new Error(f.message);
      job.reject(new ChunkFailure(reason, reply.source, reply.codes));
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
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
