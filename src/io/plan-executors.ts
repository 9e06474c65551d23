// One entry point that executes any plan entry, so the write pipeline need not know every entry
// kind. With a worker pool every entry that moves weights goes through the stripe driver
// (stripe-tasks.ts); without one (--threads 0) the reference executors, each in its own module, run
// on this thread: they are the oracle the driver's bytes are tested against.

import type { PlanEntry } from '../passes/plan.js';
import { executeActivationScale } from './activation-scale-executor.js';
import type { Checkpoint } from './checkpoint.js';
import { executeCopy, executeQuantize, type ExecuteOptions, type OutputSink } from './entry-executors.js';
import { executeQuantizeInOut, executeStackExperts } from './expert-executors.js';
import { executeDequantize, executeRequantize } from './fp8-executors.js';
import { executeMlaSplit } from './mla-split-executor.js';
import { executeCopyOverlapped } from './pipelined-executors.js';
import { executeFast } from './stripe-tasks.js';

export async function executeEntry(entry: PlanEntry, ckpt: Checkpoint, sink: OutputSink, opts: ExecuteOptions): Promise<void> {
  if (opts.pool && entry.op !== 'copy' && entry.op !== 'activation-scale') return executeFast(entry, ckpt, sink, opts, opts.pool);
  switch (entry.op) {
    case 'copy':
      return opts.pool ? executeCopyOverlapped(entry, ckpt, sink, opts, opts.pool) : executeCopy(entry, ckpt, sink, opts);
    case 'quantize':
      return executeQuantize(entry, ckpt, sink, opts);
    case 'quantize-in-out':
      return executeQuantizeInOut(entry, ckpt, sink, opts);
    case 'mla-split':
      return executeMlaSplit(entry, ckpt, sink, opts);
    case 'stack-experts':
      return executeStackExperts(entry, ckpt, sink, opts);
    case 'requantize':
      return executeRequantize(entry, ckpt, sink, opts);
    case 'dequantize':
      return executeDequantize(entry, ckpt, sink, opts);
    case 'activation-scale':
      return executeActivationScale(entry, sink, opts);
  }
}
