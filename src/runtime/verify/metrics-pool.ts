// Per-linear accuracy metrics (metrics.ts linearMetrics) in worker threads, for a verify whose main
// thread is otherwise held by onnxruntime's synchronous run: on CUDA at 512 tokens these passes over
// every linear's output took ~2.8 s of a ~21 s run on the main thread (bench/NOTES.md). An output
// goes to the worker transferred when the array is the whole of its own buffer (verify does not
// read it again) and copied otherwise; the results are placed where the report lists them, so the
// report is the one the main thread would have computed.

import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { startModuleWorker } from '../../io/module-worker.js';
import { checkLogitSizes, logitMetrics, type LinearMetrics, type LogitMetrics, type TokenComparison } from './metrics.js';

export type MetricsRequest = LinearRequest | TokensRequest | TouchRequest;

/** Writes zeros over `memory` (shared, still zero): its pages are mapped by the worker, not by the main thread's first write. */
export interface TouchRequest {
  readonly kind: 'touch';
  readonly id: number;
  readonly memory: Uint8Array;
}

export interface LinearRequest {
  readonly kind: 'linear';
  readonly id: number;
  readonly reference: Float32Array;
  readonly actual: Float32Array;
  /** Absent when there is no floor, or when the floor is `actual` itself (`floorIsActual`). */
  readonly floor?: Float32Array;
  readonly floorIsActual: boolean;
  readonly rows: number;
  readonly bn?: number;
}

/** compareTokens over a run of whole tokens' logits. */
export interface TokensRequest {
  readonly kind: 'tokens';
  readonly id: number;
  readonly original: Float32Array;
  readonly quantized: Float32Array;
  readonly vocab: number;
}

export type MetricsReply =
  | { readonly id: number; readonly metrics: LinearMetrics }
  | { readonly id: number; readonly touched: true }
  | { readonly id: number; readonly tokens: TokenComparison }
  | { readonly id: number; readonly error: string };

/** Metrics threads for a CUDA verify on `cores` cores beside `floorThreads` floor-check workers: at most 4. */
export function defaultMetricsThreads(floorThreads: number, cores = availableParallelism()): number {
  return Math.max(0, Math.min(4, cores - 2 - floorThreads));
}

interface Waiter {
  readonly resolve: (reply: MetricsReply) => void;
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
    this.grow(threads);
  }

  /**
   * Starts `threads` more workers: verify adds the floor checker's threads for the logits once the
   * layers are done with them (their start overlaps the head's runs).
   */
  grow(threads: number): void {
    if (this.broken) return;
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
    // An array that is the whole of its own (non-shared) buffer goes over transferred; verify does
    // not read it again. Any other (a row range of a shared probe output) goes as a copy.
    const transfer = new Set<ArrayBuffer>();
    const owned = arrays.map((a) => {
      const whole = a.buffer instanceof ArrayBuffer && a.byteOffset === 0 && a.byteLength === a.buffer.byteLength && !transfer.has(a.buffer);
      const s = whole ? a : a.slice();
      transfer.add(s.buffer as ArrayBuffer);
      return s;
    });
    const [ref, act, flo] = owned;
    const request = (r: Float32Array, x: Float32Array, f: Float32Array | undefined): LinearRequest => ({
      kind: 'linear',
      id,
      reference: r,
      actual: x,
      ...(f === undefined ? {} : { floor: f }),
      floorIsActual,
      rows,
      ...(bn === undefined ? {} : { bn }),
    });
    return this.send(w, id, (post) => {
      try {
        post(request(ref!, act!, flo), [...transfer]);
      } catch {
        // A buffer the runtime will not transfer (one onnxruntime still owns): nothing moved, so copy.
        post(request(ref!.slice(), act!.slice(), flo?.slice()), []);
      }
    }).then((reply) => ('metrics' in reply ? reply.metrics : Promise.reject(new Error('metrics worker: unexpected reply'))));
  }

  /**
   * `length` float32 values in fresh shared memory, and when the workers have written its pages
   * (split among them). The head places its logits there: into memory nobody had touched, placing
   * 2 × 265 MB of a 512-token DeepSeek-V3-shaped verify's logits took ~0.3 s of the main thread per
   * model on first-touch page faults, against ~0.1 s into touched memory (bench/NOTES.md).
   */
  sharedZeroed(length: number): { readonly values: Float32Array; readonly ready: Promise<void> } {
    const buffer = new SharedArrayBuffer(length * 4);
    if (this.broken || this.workers.length === 0) return { values: new Float32Array(buffer), ready: Promise.resolve() };
    const parts = this.workers.length;
    const jobs: Promise<MetricsReply>[] = [];
    for (let p = 0; p < parts; p++) {
      const start = Math.floor((p * buffer.byteLength) / parts);
      const end = Math.floor(((p + 1) * buffer.byteLength) / parts);
      const id = this.nextId++;
      jobs.push(this.send(this.workers[p]!, id, (post) => post({ kind: 'touch', id, memory: new Uint8Array(buffer, start, end - start) }, [])));
    }
    return { values: new Float32Array(buffer), ready: Promise.all(jobs).then(() => undefined) };
  }

  /**
   * compareLogits (metrics.ts) with the tokens split over the workers: the same numbers, as every
   * figure is summed per token and then here in token order. Logits in shared memory (the head's,
   * for verify) go to the workers as views; others as copies of each worker's rows.
   */
  async compareLogits(original: Float32Array, quantized: Float32Array, vocab: number): Promise<LogitMetrics> {
    checkLogitSizes(original, quantized, vocab);
    if (this.broken) throw this.broken;
    const tokens = original.length / vocab;
    const parts = Math.max(1, Math.min(this.workers.length, tokens));
    const shared = original.buffer instanceof SharedArrayBuffer && quantized.buffer instanceof SharedArrayBuffer;
    const jobs: Promise<TokenComparison>[] = [];
    for (let p = 0; p < parts; p++) {
      const t0 = Math.floor((p * tokens) / parts);
      const t1 = Math.floor(((p + 1) * tokens) / parts);
      const rows = (a: Float32Array): Float32Array => (shared ? a.subarray(t0 * vocab, t1 * vocab) : a.slice(t0 * vocab, t1 * vocab));
      const o = rows(original);
      const q = rows(quantized);
      const w = this.workers[p]!;
      const id = this.nextId++;
      const job = this.send(w, id, (post) => post({ kind: 'tokens', id, original: o, quantized: q, vocab }, shared ? [] : [o.buffer as ArrayBuffer, q.buffer as ArrayBuffer]));
      jobs.push(job.then((reply) => ('tokens' in reply ? reply.tokens : Promise.reject(new Error('metrics worker: unexpected reply')))));
    }
    const done = await Promise.all(jobs);
    const kl = new Float64Array(tokens);
    const agree = new Uint8Array(tokens);
    const terms = new Float64Array(4 * tokens);
    let at = 0;
    for (const d of done) {
      kl.set(d.kl, at);
      agree.set(d.agree, at);
      terms.set(d.terms, 4 * at);
      at += d.kl.length;
    }
    return logitMetrics({ kl, agree, terms });
  }

  private send(w: Worker, id: number, post: (send: (request: MetricsRequest, transfer: ArrayBuffer[]) => void) => void): Promise<MetricsReply> {
    return new Promise<MetricsReply>((resolve, reject) => {
      this.waiting.set(id, { worker: w, waiter: { resolve, reject } });
      this.load.set(w, this.load.get(w)! + 1);
      post((request, transfer) => w.postMessage(request, transfer));
    });
  }

  private answer(w: Worker, reply: MetricsReply): void {
    const entry = this.waiting.get(reply.id);
    if (!entry) return;
    this.waiting.delete(reply.id);
    this.load.set(w, this.load.get(w)! - 1);
    if ('error' in reply) entry.waiter.reject(new Error(`verify's metrics worker: ${reply.error}`));
    else entry.waiter.resolve(reply);
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
