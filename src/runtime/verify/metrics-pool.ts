// Per-linear accuracy metrics (metrics.ts linearMetrics) in worker threads, for a verify whose main
// thread is otherwise held by onnxruntime's synchronous run: on CUDA at 512 tokens these passes over
// every linear's output took ~2.8 s of a ~21 s run on the main thread (bench/NOTES.md). An output
// goes to the worker transferred when the array is the whole of its own buffer (verify does not
// read it again) and copied otherwise; the results are placed where the report lists them, so the
// report is the one the main thread would have computed.

import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { startModuleWorker } from '../../io/module-worker.js';
import type { LinearMetrics } from './metrics.js';

export interface MetricsRequest {
  readonly id: number;
  readonly reference: Float32Array;
  readonly actual: Float32Array;
  /** Absent when there is no floor, or when the floor is `actual` itself (`floorIsActual`). */
  readonly floor?: Float32Array;
  readonly floorIsActual: boolean;
  readonly rows: number;
  readonly bn?: number;
}

export type MetricsReply = { readonly id: number; readonly metrics: LinearMetrics } | { readonly id: number; readonly error: string };

/** Metrics threads for a CUDA verify on `cores` cores beside `floorThreads` floor-check workers: at most 4. */
export function defaultMetricsThreads(floorThreads: number, cores = availableParallelism()): number {
  return Math.max(0, Math.min(4, cores - 2 - floorThreads));
}

interface Waiter {
  readonly resolve: (m: LinearMetrics) => void;
  readonly reject: (e: Error) => void;
}

export class MetricsPool {
  private readonly workers: Worker[] = [];
  /** Jobs sent to each worker and not answered yet. */
  private readonly load = new Map<Worker, number>();
  private readonly waiting = new Map<number, { readonly worker: Worker; readonly waiter: Waiter }>();
  private nextId = 0;
  private broken: Error | undefined;

  constructor(threads: number) {
    for (let i = 0; i < threads; i++) {
      const w = startModuleWorker(import.meta.url, 'metrics-worker');
      w.on('message', (reply: MetricsReply) => this.answer(w, reply));
      w.on('error', (e: Error) => this.fail(new Error(`verify's metrics worker failed: ${e.message}`)));
      w.on('exit', (code) => this.fail(new Error(`verify's metrics worker exited (code ${code})`)));
      this.workers.push(w);
      this.load.set(w, 0);
    }
  }

  /** linearMetrics(reference, actual, floor, rows, bn) on the least busy worker. */
  measure(reference: Float32Array, actual: Float32Array, floor: Float32Array | undefined, rows: number, bn: number | undefined): Promise<LinearMetrics> {
    if (this.broken) return Promise.reject(this.broken);
    const w = this.workers.reduce((a, b) => (this.load.get(b)! < this.load.get(a)! ? b : a));
    const id = this.nextId++;
    const floorIsActual = floor === actual;
    const arrays = [reference, actual, ...(floor === undefined || floorIsActual ? [] : [floor])];
    const transfer = new Set<ArrayBuffer>();
    const owned = arrays.map((a) => {
      const s = standalone(a, transfer);
      if (s.buffer instanceof ArrayBuffer && s !== a) transfer.add(s.buffer);
      return s;
    });
    const [ref, act, flo] = owned;
    const request = (r: Float32Array, x: Float32Array, f: Float32Array | undefined): MetricsRequest => ({
      id,
      reference: r,
      actual: x,
      ...(f === undefined ? {} : { floor: f }),
      floorIsActual,
      rows,
      ...(bn === undefined ? {} : { bn }),
    });
    return new Promise<LinearMetrics>((resolve, reject) => {
      this.waiting.set(id, { worker: w, waiter: { resolve, reject } });
      this.load.set(w, this.load.get(w)! + 1);
      try {
        w.postMessage(request(ref!, act!, flo), [...transfer]);
      } catch {
        // A buffer the runtime will not transfer (one onnxruntime still owns): nothing moved, so copy.
        w.postMessage(request(ref!.slice(), act!.slice(), flo?.slice()));
      }
    });
  }

  private answer(w: Worker, reply: MetricsReply): void {
    const entry = this.waiting.get(reply.id);
    if (!entry) return;
    this.waiting.delete(reply.id);
    this.load.set(w, this.load.get(w)! - 1);
    if ('error' in reply) entry.waiter.reject(new Error(`verify's metrics worker: ${reply.error}`));
    else entry.waiter.resolve(reply.metrics);
  }

  private fail(e: Error): void {
    if (this.broken) return;
    this.broken = e;
    for (const { waiter } of this.waiting.values()) waiter.reject(e);
    this.waiting.clear();
  }

  async close(): Promise<void> {
    this.broken ??= new Error('metrics pool closed');
    const workers = this.workers.splice(0);
    for (const w of workers) w.removeAllListeners('exit');
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

/**
 * `a` itself when it is the whole of its own (non-shared) buffer, not already in `transfer`, and
 * then its buffer is added there; else a copy. Transferring detaches the buffer here: callers hand over arrays they
 * do not read again.
 */
function standalone(a: Float32Array, transfer: Set<ArrayBuffer>): Float32Array {
  const buffer = a.buffer;
  if (buffer instanceof ArrayBuffer && a.byteOffset === 0 && a.byteLength === buffer.byteLength && !transfer.has(buffer)) {
    transfer.add(buffer);
    return a;
  }
  return a.slice();
}
