// One entry point that executes any plan entry, so the convert job (and dequant) need not know
// every entry kind: each kind's executor lives in its own module.

import type { PlanEntry } from '../passes/plan.js';
import { executeActivationScale } from './activation-scale-executor.js';
import type { Checkpoint } from './checkpoint.js';
import { executeCopy, executeQuantize, type ExecuteOptions, type OutputSink } from './entry-executors.js';
import { executeQuantizeInOut, executeStackExperts } from './expert-executors.js';
import { dequantizedNonFiniteError, executeDequantize, executeRequantize } from './fp8-executors.js';
import { executeMlaSplit } from './mla-split-executor.js';
import { executeCopyOverlapped, executeQuantizePipelined } from './pipelined-executors.js';

export async function executeEntry(entry: PlanEntry, ckpt: Checkpoint, sink: OutputSink, opts: ExecuteOptions): Promise<void> {
  switch (entry.op) {
    case 'copy':
      return opts.pool ? executeCopyOverlapped(entry, ckpt, sink, opts, opts.pool) : executeCopy(entry, ckpt, sink, opts);
    case 'quantize':
      return opts.pool ? executeQuantizePipelined(entry, ckpt, sink, opts, opts.pool) : executeQuantize(entry, ckpt, sink, opts);
    case 'quantize-in-out':
      return executeQuantizeInOut(entry, ckpt, sink, opts);
    case 'mla-split':
      return executeMlaSplit(entry, ckpt, sink, opts);
    case 'stack-experts':
      return executeStackExperts(entry, ckpt, sink, opts);
    case 'requantize':
      return executeRequantize(entry, ckpt, sink, opts);
    case 'dequantize': {
      const bad = await executeDequantize(entry, ckpt, sink, opts);
      if (bad > 0 && opts.nonFinite === 'error') throw dequantizedNonFiniteError(entry.sources[0]!, entry.outputs[0]!.dtype, bad, '--allow-nonfinite');
      if (bad > 0) opts.onNonFiniteKept?.(entry.outputs[0]!.name, bad);
      return;
    }
    case 'activation-scale':
      return executeActivationScale(entry, sink, opts);
  }
}
