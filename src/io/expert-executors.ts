// Executing the MoE expert entries whose layout differs from a plain [N, K] linear:
// - StackExpertsEntry: per-expert [N_i, K] weights → one [E, ΣN_i, K] FP8 tensor. Each expert's
//   parts (gate, up) are concatenated along N and quantized as one matrix, so a bn-row block may
//   straddle the gate/up boundary exactly as it does when transformers quantizes its fused
//   gate_up_proj; scales are [E, ceil(N/bn), ceil(K/bk)].
// - QuantizeInOutEntry: a fused weight stored in × out, [E, K, N] (gpt-oss, Llama-4). It keeps its
//   stored layout; blocks are bk stored rows (in) × bn stored columns (out), and the scale is
//   written [E, ceil(N/bn), ceil(K/bk)] — out-block first, as for every other fp8q weight.

import { ceilDiv } from '../fp8/block-quantize.js';
import type { QuantizeInOutEntry, StackExpertsEntry } from '../passes/plan.js';
import type { Checkpoint } from './checkpoint.js';
import { quantizationSettings, type ExecuteOptions, type OutputSink } from './entry-executors.js';
import { CheckpointError } from './errors.js';
import { FloatRowReader } from './float-rows.js';
import { quantizeStripeOf } from './quantize-rows.js';

export async function executeStackExperts(entry: StackExpertsEntry, ckpt: Checkpoint, sink: OutputSink, opts: ExecuteOptions): Promise<void> {
  const [weightOut, scaleOut] = entry.outputs;
  const [experts, n, k] = weightOut!.shape as [number, number, number];
  const { bn, bk } = quantizationSettings(opts).block;
  const rowBlocks = ceilDiv(n, bn);
  const colBlocks = ceilDiv(k, bk);
  const scales = new Float32Array(experts * rowBlocks * colBlocks);
  const values = new Float32Array(Math.min(bn, n) * k);
  const codes = new Uint8Array(values.length);
  for (let e = 0; e < experts; e++) {
    const parts = await Promise.all(entry.parts[e]!.map((name) => FloatRowReader.open(ckpt, name, entry.fp8?.[name])));
    const starts: number[] = [];
    let total = 0;
    for (const p of parts) {
      if (p.cols !== k) throw new CheckpointError(`tensor "${p.info.name}" is ${JSON.stringify(p.info.shape)}; every part of ${entry.module} must have ${k} columns`);
      starts.push(total);
      total += p.rows;
    }
    if (total !== n) throw new CheckpointError(`the parts of expert ${e} of ${entry.module} have ${total} rows together; the plan expected ${n}`);
    for (let rb = 0; rb < rowBlocks; rb++) {
      const r0 = rb * bn;
      const rows = Math.min(bn, n - r0);
      // Fill rows [r0, r0 + rows) of the concatenation from whichever parts they fall in.
      for (let pi = 0; pi < parts.length; pi++) {
        const lo = Math.max(r0, starts[pi]!);
        const hi = Math.min(r0 + rows, starts[pi]! + parts[pi]!.rows);
        if (lo >= hi) continue;
        await parts[pi]!.readF32(lo - starts[pi]!, hi - lo, values.subarray((lo - r0) * k, (hi - r0) * k));
        opts.onBytes?.((hi - lo) * k * (parts[pi]!.info.byteLength / Math.max(1, parts[pi]!.rows * k)));
      }
      const at = (e * rowBlocks + rb) * colBlocks;
      const c = codes.subarray(0, rows * k);
      quantizeStripeOf(values.subarray(0, rows * k), rows, k, { bn, bk }, opts, c, scales.subarray(at, at + colBlocks), entry.parts[e]!.join(' + '), (r, col) => {
        const row = r0 + r;
        let pi = 0;
        while (pi + 1 < starts.length && starts[pi + 1]! <= row) pi++;
        return `[${row - starts[pi]!}, ${col}] of "${entry.parts[e]![pi]}"`;
      });
      await sink.write(weightOut!.name, c, (e * n + r0) * k);
    }
  }
  await sink.write(scaleOut!.name, new Uint8Array(scales.buffer), 0);
}

export async function executeQuantizeInOut(entry: QuantizeInOutEntry, ckpt: Checkpoint, sink: OutputSink, opts: ExecuteOptions): Promise<void> {
  const source = entry.sources[0]!;
  const reader = await FloatRowReader.open(ckpt, source, entry.fp8?.[source]);
  const [weightOut, scaleOut] = entry.outputs;
  const shape = reader.info.shape;
  const experts = shape.length === 3 ? shape[0]! : 1;
  const k = shape[shape.length - 2]!;
  const n = shape[shape.length - 1]!;
  const { bn, bk } = quantizationSettings(opts).block;
  const outBlocks = ceilDiv(n, bn);
  const inBlocks = ceilDiv(k, bk);
  const scales = new Float32Array(experts * outBlocks * inBlocks);
  const stripeScales = new Float32Array(outBlocks);
  const values = new Float32Array(Math.min(bk, k) * n);
  const codes = new Uint8Array(values.length);
  const bytesPerElement = reader.info.byteLength / Math.max(1, reader.rows * reader.cols);
  for (let e = 0; e < experts; e++) {
    for (let kb = 0; kb < inBlocks; kb++) {
      const k0 = kb * bk;
      const rows = Math.min(bk, k - k0);
      const v = await reader.readF32(e * k + k0, rows, values);
      const c = codes.subarray(0, rows * n);
      // In storage the block is bk rows × bn columns: quantizeStripe's column block is bn here.
      quantizeStripeOf(v, rows, n, { bn: bk, bk: bn }, opts, c, stripeScales, source, (r, col) => `[${e}, ${k0 + r}, ${col}]`);
      for (let nb = 0; nb < outBlocks; nb++) scales[(e * outBlocks + nb) * inBlocks + kb] = stripeScales[nb]!;
      await sink.write(weightOut!.name, c, (e * k + k0) * n);
      opts.onBytes?.(rows * n * bytesPerElement);
    }
  }
  await sink.write(scaleOut!.name, new Uint8Array(scales.buffer), 0);
}
