// SHA-256 of output shards off the main thread. The direct shard writer gathers a shard's bytes,
// in file order, in slots of a shared memory; each full slot is hashed by this thread while the
// same slot is being written, and the slot is reused only when both are done. One worker serves
// every stream (shards are written one after another); replies come back in request order.

import type { Worker } from 'node:worker_threads';
import { startModuleWorker } from '../io/module-worker.js';

export type HashRequest =
  | { readonly op: 'begin'; readonly stream: number; readonly memory: SharedArrayBuffer }
  | { readonly op: 'update'; readonly stream: number; readonly offset: number; readonly length: number }
  | { readonly op: 'digest' | 'cancel'; readonly stream: number };

export type HashReply =
  | { readonly op: 'updated'; readonly stream: number }
  | { readonly op: 'digest'; readonly stream: number; readonly hex: string }
  | { readonly op: 'error'; readonly stream: number; readonly message: string };

interface Waiter {
  resolve(hex: string): void;
  reject(e: Error): void;
}

export class HashThread {
  private worker: Worker | undefined;
  private nextStream = 0;
  /** Replies arrive in request order: one FIFO of waiters for the whole worker. */
  private readonly waiting: Waiter[] = [];
  private broken: Error | undefined;

  private post(req: HashRequest, waiter?: Waiter): void {
    if (this.broken) {
      waiter?.reject(this.broken);
      return;
    }
    if (!this.worker) {
      const w = startModuleWorker(import.meta.url, 'hash-worker');
      w.unref();
      w.on('message', (reply: HashReply) => this.onReply(reply));
      w.on('error', (e: Error) => this.fail(new Error(`hash worker failed: ${e.message}`)));
      w.on('exit', (code) => this.fail(new Error(`hash worker exited (code ${code})`)));
      this.worker = w;
    }
    if (waiter) {
      this.waiting.push(waiter);
      this.worker.ref();
    }
    this.worker.postMessage(req);
  }

  private onReply(reply: HashReply): void {
    const waiter = this.waiting.shift();
    if (this.waiting.length === 0) this.worker?.unref();
    if (!waiter) return;
    if (reply.op === 'error') waiter.reject(new Error(`hashing failed: ${reply.message}`));
    else waiter.resolve(reply.op === 'digest' ? reply.hex : '');
  }

  private fail(e: Error): void {
    this.broken ??= e;
    for (const w of this.waiting.splice(0)) w.reject(this.broken);
  }

  /** A new running hash over ranges of `memory`. */
  open(memory: SharedArrayBuffer): HashStream {
    const stream = this.nextStream++;
    this.post({ op: 'begin', stream, memory });
    return {
      update: (offset, length) => new Promise<void>((resolve, reject) => this.post({ op: 'update', stream, offset, length }, { resolve: () => resolve(), reject })),
      digest: () => new Promise<string>((resolve, reject) => this.post({ op: 'digest', stream }, { resolve, reject })),
      cancel: () => this.post({ op: 'cancel', stream }, { resolve: () => undefined, reject: () => undefined }),
    };
  }

  async close(): Promise<void> {
    const w = this.worker;
    this.broken ??= new Error('hash thread closed');
    this.worker = undefined;
    await w?.terminate();
  }
}

export interface HashStream {
  /** Hash `length` bytes at `offset` of the stream's memory; resolves once they have been read. */
  update(offset: number, length: number): Promise<void>;
  /** The SHA-256 (hex) of everything updated, in order. Ends the stream. */
  digest(): Promise<string>;
  /** End the stream without a digest. */
  cancel(): void;
}
