// Whether byte ranges of two checkpoints hold the same bytes, answered in a worker thread
// (same-stored-bytes-worker.ts). Verify asks it of both lm_heads and final norms while the last
// layers run: the head phase widens one lm_head for both models where their stored bytes are the
// same (a conversion keeps lm_head as it was, runner.ts heads), and comparing them chunk by chunk
// on the main thread held it ~0.35 s for a 1.85 GB DeepSeek-V3 head (bench/NOTES.md).

import { join } from 'node:path';
import type { Checkpoint } from '../../io/checkpoint/checkpoint.js';
import { startModuleWorker } from '../../io/module-worker.js';

/** A tensor's stored bytes: a file and a range of it. */
export interface StoredRange {
  readonly file: string;
  readonly offset: number;
  readonly length: number;
}

/** The stored range of tensor `name` of `ckpt`. */
export function storedRange(ckpt: Checkpoint, name: string): StoredRange {
  const info = ckpt.info(name);
  return { file: join(ckpt.dir, info.shard), offset: info.fileOffset, length: info.byteLength };
}

/**
 * Whether each pair of ranges holds the same bytes: true when every pair does, false at the first
 * difference (a length included), undefined when the worker cannot tell (a read error, a worker that
 * did not start). The caller then compares on its own.
 */
export function sameStoredBytes(
  pairs: readonly (readonly [StoredRange, StoredRange])[],
  /** Stops the worker (the answer is then undefined): a verify that fails does not wait for its reads to end. */
  signal?: AbortSignal,
): Promise<boolean | undefined> {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve(undefined);
      return;
    }
    let worker: ReturnType<typeof startModuleWorker>;
    try {
      worker = startModuleWorker(import.meta.url, 'same-stored-bytes-worker');
    } catch {
      resolve(undefined);
      return;
    }
    const finish = (answer: boolean | undefined): void => {
      resolve(answer);
      void worker.terminate();
    };
    signal?.addEventListener('abort', () => finish(undefined), { once: true });
    worker.once('message', (reply: { readonly same?: boolean }) => finish(reply.same));
    worker.once('error', () => finish(undefined));
    worker.once('exit', () => finish(undefined));
    worker.postMessage(pairs);
  });
}
