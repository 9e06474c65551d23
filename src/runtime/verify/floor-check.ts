// The FP8-floor check of a quantized linear off the main thread: whether re-quantizing the
// original's BF16 weights the way the stored linear says (block, FP8 format, scale format) gives
// exactly the stored codes and scales (fp8-floor.ts: then the floor probe is the module itself and
// is not run). Each job reads its two tensors stripe by stripe in a worker (floor-check-worker.ts),
// quantizes with the WebAssembly kernel `convert` uses and stops at the first difference.
//
// Verify queues the jobs of every layer's non-expert linears (and the routed experts of a layer
// that may run paired, paired-layers.ts mayPairLayer) when it starts, so on a machine with
// cores to spare the workers run ahead of the layers while the main thread waits on onnxruntime
// (a CUDA verify spent ~0.25 s a layer on this check on the main thread, bench/NOTES.md). A job
// that cannot answer (another dtype, a width the kernel does not cover, Inf/NaN, a read error)
// answers undefined and the main thread takes the old path, so the report is the same either way.

import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import type { BlockShape } from '../../fp8/block-quantize.js';
import type { Fp8Format } from '../../fp8/formats.js';
import { WasmBf16Kernel } from '../../fp8/wasm-kernel.js';
import type { Checkpoint } from '../../io/checkpoint/checkpoint.js';
import { startModuleWorker } from '../../io/module-worker.js';
import { storedBytesDecideFloor } from './fp8-floor.js';

/** One linear to check: `[n, k]` BF16 original weights against stored FP8 codes and float32 scales. */
export interface FloorCheckJob {
  readonly original: { readonly file: string; readonly offset: number };
  readonly codes: { readonly file: string; readonly offset: number };
  readonly scales: { readonly file: string; readonly offset: number };
  readonly n: number;
  readonly k: number;
  readonly block: BlockShape;
  readonly format: Fp8Format;
}

export interface FloorCheckRequest extends FloorCheckJob {
  readonly id: number;
}

/** `same`: the floor is the stored linear; false: it is not; undefined: the worker cannot tell. */
export type FloorCheckReply = { readonly id: number; readonly same: boolean | undefined } | { readonly id: number; readonly error: string };

const FORMATS: Readonly<Record<string, Fp8Format>> = { F8_E4M3: 'e4m3fn', F8_E5M2: 'e5m2' };

/**
 * The job for `module`, or undefined where the worker's path does not apply and fp8-floor.ts
 * decides on the main thread: what it compares must be exactly what storedEquals compares.
 */
export function floorCheckJob(
  module: string,
  original: Checkpoint,
  quantized: Checkpoint,
  blockFor: (module: string, n: number, k: number, scaleShape: readonly number[]) => BlockShape,
): FloorCheckJob | undefined {
  const name = `${module}.weight`;
  const scaleName = `${module}.weight_scale_inv`;
  if (!original.has(name) || !quantized.has(name)) return undefined;
  // What storedEquals compares on the main thread (verify also re-quantizes on these scales, block-requantize.ts).
  if (!storedBytesDecideFloor(quantized, module) || original.has(`${module}.bias`) || original.has(`${module}.input_scale`)) return undefined;
  const o = original.info(name);
  const q = quantized.info(name);
  const s = quantized.info(scaleName);
  const format = FORMATS[q.dtype];
  if (o.dtype !== 'BF16' || format === undefined || s.dtype !== 'F32' || o.shape.length !== 2 || q.shape.length !== 2) return undefined;
  const [n, k] = o.shape as [number, number];
  if (q.shape[0] !== n || q.shape[1] !== k) return undefined;
  let block: BlockShape;
  try {
    block = blockFor(module, n, k, s.shape);
  } catch {
    return undefined;
  }
  if (!WasmBf16Kernel.supports(k, block.bk) || s.byteLength !== Math.ceil(n / block.bn) * Math.ceil(k / block.bk) * 4) return undefined;
  return {
    original: { file: join(original.dir, o.shard), offset: o.fileOffset },
    codes: { file: join(quantized.dir, q.shard), offset: q.fileOffset },
    scales: { file: join(quantized.dir, s.shard), offset: s.fileOffset },
    n,
    k,
    block,
    format,
  };
}

/** Worker threads for a verify on `cores` cores: those the main thread and onnxruntime's copies leave, at most 8. */
export function defaultFloorCheckThreads(cores = availableParallelism()): number {
  return Math.max(0, Math.min(8, cores - 2));
}

/** Worker threads for a CPU verify: one beside the main thread when there is a second core. */
export function defaultCpuFloorCheckThreads(cores = availableParallelism()): number {
  return cores >= 2 ? 1 : 0;
}

interface Pending {
  readonly module: string;
  readonly job: FloorCheckJob;
  readonly resolve: (same: boolean | undefined) => void;
  started: boolean;
  /** Waited for before any job queued without it (a layer's routed experts, asked for next; one result() waits for). */
  soon: boolean;
}

export class FloorChecker {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly queue: Pending[] = [];
  private readonly running = new Map<Worker, Pending>();
  private readonly results = new Map<string, { readonly pending: Pending; readonly promise: Promise<boolean | undefined> }>();
  private nextId = 0;
  private closed = false;

  constructor(threads: number) {
    for (let i = 0; i < threads; i++) {
      const w = startModuleWorker(import.meta.url, 'floor-check-worker');
      w.on('message', (reply: FloorCheckReply) => this.done(w, 'error' in reply ? undefined : reply.same));
      // A worker that dies (an error, or an exit nobody asked for) answers undefined for its job
      // (the main thread's path) and takes no more.
      w.on('error', () => this.done(w, undefined, true));
      w.on('exit', () => {
        if (!this.closed) this.done(w, undefined, true);
      });
      this.workers.push(w);
      this.idle.push(w);
    }
  }

  /**
   * Queues `module`'s check (once); a job nobody waits for yet runs after the ones waited for.
   * `soon`: it will be waited for before the jobs queued without it (verify queues every layer's
   * linears up front, and a layer's routed experts, known once the original has run, are asked for
   * before any later layer's), so it goes ahead of them, after the other `soon` ones; so does a
   * job already queued without it that has not started.
   */
  submit(module: string, job: FloorCheckJob, soon = false): void {
    if (this.closed || this.workers.length === 0) return;
    const queued = this.results.get(module)?.pending;
    // A routed expert queued up front for a layer that might pair, asked for `soon` once the layer
    // runs separately after all: it must not wait behind the jobs of experts no token reached.
    if (queued !== undefined && soon && !queued.soon && !queued.started) {
      this.queue.splice(this.queue.indexOf(queued), 1);
      queued.soon = true;
      this.enqueue(queued);
    }
    if (queued !== undefined) return;
    let resolve!: (same: boolean | undefined) => void;
    const promise = new Promise<boolean | undefined>((r) => (resolve = r));
    const pending: Pending = { module, job, resolve, started: false, soon };
    this.results.set(module, { pending, promise });
    this.enqueue(pending);
    this.pump();
  }

  /** Puts `pending` at the end of the queue, or a `soon` one after the other `soon` ones. */
  private enqueue(pending: Pending): void {
    const later = pending.soon ? this.queue.findIndex((p) => !p.soon) : -1;
    if (later < 0) this.queue.push(pending);
    else this.queue.splice(later, 0, pending);
  }

  /** The answer for `module` (undefined when it was never submitted); moves its job to the front. */
  async result(module: string): Promise<boolean | undefined> {
    const r = this.results.get(module);
    if (r === undefined) return undefined;
    if (!r.pending.started) {
      const i = this.queue.indexOf(r.pending);
      if (i > 0) {
        this.queue.splice(i, 1);
        this.queue.unshift(r.pending);
      }
      r.pending.soon = true;
    }
    const same = await r.promise;
    this.results.delete(module);
    return same;
  }

  private pump(): void {
    while (this.idle.length > 0 && this.queue.length > 0) {
      const w = this.idle.pop()!;
      const p = this.queue.shift()!;
      p.started = true;
      this.running.set(w, p);
      const request: FloorCheckRequest = { id: this.nextId++, ...p.job };
      w.postMessage(request);
    }
  }

  private done(w: Worker, same: boolean | undefined, dead = false): void {
    if (!this.workers.includes(w)) return; // already counted dead ('error' then 'exit')
    const p = this.running.get(w);
    this.running.delete(w);
    p?.resolve(same);
    if (dead) {
      this.workers.splice(this.workers.indexOf(w), 1);
      // A worker that died idle must not be handed the next job: nobody would answer it.
      const i = this.idle.indexOf(w);
      if (i >= 0) this.idle.splice(i, 1);
      if (this.workers.length === 0) for (const q of this.queue.splice(0)) q.resolve(undefined);
    } else if (!this.closed) this.idle.push(w);
    this.pump();
  }

  /** Modules whose checks wait for a worker, in the order they will start (a test checks the order). */
  get queued(): readonly string[] {
    return this.queue.map((p) => p.module);
  }

  /** Live worker threads (a test stops one to see the others, or the main thread, take over). */
  get threads(): readonly Worker[] {
    return this.workers;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const p of this.queue.splice(0)) p.resolve(undefined);
    for (const p of this.running.values()) p.resolve(undefined);
    this.running.clear();
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
    this.idle.length = 0;
  }
}
