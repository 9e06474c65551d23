// One entry point that executes any plan entry, so the write pipeline need not know every entry
// kind: entries that move weights go through the stripe driver (stripe-tasks.ts) on the worker
// pool, or with --threads 0 on this thread with the reference kernel (the oracle); copies and
// activation scales have their own small executors.

import type { PlanEntry } from '../passes/plan.js';
import { executeActivationScale } from './activation-scale-executor.js';
import type { Checkpoint } from '../io/checkpoint/checkpoint.js';
import { executeCopy, type ExecuteOptions, type OutputSink } from './entry-executors.js';
import { executeCopyOverlapped } from './pipelined-executors.js';
import { referenceRunner } from './stripe-driver.js';
import { executeStripes } from './stripe-tasks.js';

export async function executeEntry(entry: PlanEntry, ckpt: Checkpoint, sink: OutputSink, opts: ExecuteOptions): Promise<void> {
  switch (entry.op) {
    case 'copy':
      return opts.pool ? executeCopyOverlapped(entry, ckpt, sink, opts, opts.pool) : executeCopy(entry, ckpt, sink, opts);
    case 'activation-scale':
      return executeActivationScale(entry, sink, opts);
    default:
      return executeStripes(entry, ckpt, sink, opts, opts.pool ?? referenceRunner());
  }
}
