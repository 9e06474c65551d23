// Every entry kind that moves weight bytes, cut into stripe tasks for the one stripe driver
// (stripe-driver.ts), so each gets the worker pool and the fast kernels:
//  - quantize / requantize: a weight stored out × in (`[N, K]`, or `[E, N, K]` fused experts),
//    float or FP8 (decoded in the worker), in chunks of whole bn-row stripes;
//  - quantize-in-out: fused experts stored in × out `[E, K, N]`, bk stored rows at a time with the
//    block turned (bk × bn), scales scattered to `[E, ceil(N/bn), ceil(K/bk)]`;
//  - stack-experts: each chunk's rows gathered from the parts they fall in (gate, then up);
//  - mla-split: kv_b_proj one head at a time, its nope rows for w_uk, then its v rows for w_uv
//    (move-blocks: each part quantized as kv_b_proj's own, codes and scales moved; own-grid: w_uk
//    from the transposed nope rows on its own grid);
//  - dequantize: FP8 rows rounded once to BF16/F16/F32 in the worker, which counts NaN/Inf in them.
// Every kind runs on the worker pool's fast kernels, or with --threads 0 on the reference kernel
// (the oracle); independent references of each layout are in the tests (experts-stacked,
// mla-split, fp8-input-dequant).
// Dequantization rounds the exact `fp8 × scale_inv` once to the output dtype. DeepSeek's
// fp8_cast_bf16.py (deepseek-ai/DeepSeek-V3, inference/kernel.py weight_dequant) multiplies in
// float32 and then stores BF16, which can round twice; the two agree except where the float32
// product lands on a BF16 tie, never with BF16/F16 or power-of-two scales (their products are
// exact in float32).

import { ceilDiv, type NonFiniteValueError } from '../fp8/block-quantize.js';
import { dtypeSize, isFloatSourceDtype, widenToFloat32, type FloatSourceDtype } from '../fp8/dtypes.js';
import { decodeScaledToFloat32, type DequantDtype, type Fp8Dtype } from '../fp8/scaled-decode.js';
import type { DequantizeEntry, Fp8SourceRef, MlaSplitEntry, PlannedOutput, QuantizeEntry, QuantizeInOutEntry, RequantizeEntry, StackExpertsEntry } from '../passes/plan.js';
import type { Checkpoint, CheckpointTensor } from '../io/checkpoint/checkpoint.js';
import { countNonFinite } from '../io/checkpoint/nonfinite-count.js';
import { kernelOptions, nonFiniteSourceError, nonFiniteWeightError, quantizationSettings, quantizeGeometry, type ExecuteOptions, type OutputSink } from './entry-executors.js';
import { CheckpointError } from '../io/errors.js';
import { FloatRowReader, type BlockScales } from '../io/formats/float-rows.js';
import type { ChunkInput, ChunkSegment, ChunkSettings } from './quantize-chunk.js';
import { CHUNK_BYTES, type BufferPool } from './quantize-pool.js';
import { driveStripes, IN_PROCESS_MAX_BYTES, readSourceBytes, type StripeRunner, type StripeTask } from './stripe-driver.js';

/** What every task builder needs. */
interface Run {
  readonly ckpt: Checkpoint;
  readonly sink: OutputSink;
  readonly opts: ExecuteOptions;
  readonly runner: StripeRunner;
}

/** A tensor read row by row as raw segments (float bytes, or FP8 codes with the grid slice they need). */
class TensorRows {
  private constructor(
    private readonly run: Run,
    readonly reader: FloatRowReader,
    private readonly grid: BlockScales | undefined,
  ) {}

  static async open(run: Run, name: string, ref?: Fp8SourceRef): Promise<TensorRows> {
    const reader = await FloatRowReader.open(run.ckpt, name, ref);
    return new TensorRows(run, reader, reader.blockScales());
  }

  get info(): CheckpointTensor {
    return this.reader.info;
  }

  get rows(): number {
    return this.reader.rows;
  }

  get cols(): number {
    return this.reader.cols;
  }

  get dtype(): FloatSourceDtype | Fp8Dtype {
    return this.info.dtype as FloatSourceDtype | Fp8Dtype;
  }

  get elementBytes(): number {
    return dtypeSize(this.info.dtype);
  }

  /** Reads rows [row0, row0 + count) of the 2-D view into `buffer` at `byteOffset`; FP8 rows must lie in one matrix. */
  async segment(row0: number, count: number, buffer: ArrayBufferLike, byteOffset: number): Promise<ChunkSegment> {
    const size = this.elementBytes;
    await readSourceBytes(this.run.ckpt, this.run.runner, this.info, row0 * this.cols * size, new Uint8Array(buffer, byteOffset, count * this.cols * size));
    const grid = this.grid;
    if (!grid) return { rows: count, byteOffset, dtype: this.dtype };
    const matrixRows = this.reader.rowsPerMatrix;
    const m = Math.floor(row0 / matrixRows);
    const a = row0 - m * matrixRows;
    if (a + count > matrixRows) throw new Error(`rows [${row0}, ${row0 + count}) of "${this.info.name}" span two matrices`);
    const first = Math.floor(a / grid.rowBlock);
    const last = Math.floor((a + count - 1) / grid.rowBlock);
    const base = m * grid.gridRows * grid.gridCols;
    // A copy, not a view: the slice travels to a worker, and a view would carry the whole grid.
    const scales = grid.scales.slice(base + first * grid.gridCols, base + (last + 1) * grid.gridCols);
    return { rows: count, byteOffset, dtype: this.dtype, grid: { scales, gridCols: grid.gridCols, rowBlock: grid.rowBlock, colBlock: grid.colBlock, firstRow: a } };
  }

  /** Rows as float32 on this thread (small reads only: the MLA split's transposed w_uk). */
  async float32(row0: number, count: number, buffers: BufferPool): Promise<Float32Array> {
    const scratch = buffers.take(count * this.cols * this.elementBytes);
    try {
      const seg = await this.segment(row0, count, scratch, 0);
      const out = new Float32Array(count * this.cols);
      const bytes = new Uint8Array(scratch, 0, count * this.cols * this.elementBytes);
      if (seg.grid) decodeScaledToFloat32(bytes, count, this.cols, seg.dtype as Fp8Dtype, seg.grid, out);
      else widenToFloat32(bytes, seg.dtype as FloatSourceDtype, out);
      return out;
    } finally {
      buffers.give(scratch);
    }
  }
}

/** A chunk over `segments` (read into `source` in order): one float dtype goes as plain bytes (the WebAssembly path), anything else as segments. */
function chunkOf(
  segments: readonly ChunkSegment[],
  rows: number,
  cols: number,
  firstRow: number,
  settings: ChunkSettings,
  source: ArrayBufferLike,
  codes: ArrayBufferLike,
): ChunkInput {
  const dtype = segments[0]!.dtype;
  if (isFloatSourceDtype(dtype) && segments.every((s) => s.dtype === dtype && !s.grid)) {
    return { dtype: dtype as FloatSourceDtype, rows, cols, firstRow, settings, source, codes };
  }
  return { dtype: 'F32', segments, rows, cols, firstRow, settings, source, codes };
}

/** Rows per chunk: whole `stripe`-row stripes, about CHUNK_BYTES of source. */
function chunkRows(total: number, stripe: number, rowBytes: number): number {
  return Math.min(total, Math.max(1, Math.floor(CHUNK_BYTES / Math.max(1, stripe * rowBytes))) * stripe);
}

function drive(run: Run, tasks: readonly StripeTask[], sourceBytes: number): Promise<void> {
  return driveStripes(tasks, run.runner, { inProcess: sourceBytes < IN_PROCESS_MAX_BYTES, ...(run.opts.onBytes ? { onBytes: run.opts.onBytes } : {}) });
}

/**
 * A weight stored out × in, `[N, K]` or `[E, N, K]`, float or FP8: codes in file order, then the
 * `[E?, ceil(N/bn), ceil(K/bk)]` scales. `nonFinite(err, expert)` names a NaN/Inf (err.row counts within the matrix).
 */
async function quantizeOutIn(
  run: Run,
  src: TensorRows,
  weightOut: PlannedOutput,
  scaleOut: PlannedOutput,
  nonFinite: (err: NonFiniteValueError, expert: number) => Error,
): Promise<void> {
  const shape = src.info.shape;
  const n = shape[shape.length - 2]!;
  const k = shape[shape.length - 1]!;
  const experts = shape.length === 3 ? shape[0]! : 1;
  const { bn, bk } = quantizationSettings(run.opts).block;
  const rowBlocks = ceilDiv(n, bn);
  const colBlocks = ceilDiv(k, bk);
  const rowBytes = k * src.elementBytes;
  const per = chunkRows(n, bn, rowBytes);
  const settings = kernelOptions(run.opts);
  const scales = new Float32Array(experts * rowBlocks * colBlocks);
  const tasks: StripeTask[] = [];
  for (let e = 0; e < experts; e++) {
    for (let row = 0; row < n; row += per) {
      const rows = Math.min(per, n - row);
      tasks.push({
        sourceBytes: rows * rowBytes,
        prepare: async (buffers) => {
          const source = buffers.take(per * rowBytes);
          const seg = await src.segment(e * n + row, rows, source, 0);
          return chunkOf([seg], rows, k, row, settings, source, buffers.take(per * k));
        },
        finish: async (done) => {
          scales.set(done.scales, (e * rowBlocks + row / bn) * colBlocks);
          await run.sink.write(weightOut.name, done.codes, (e * n + row) * k);
        },
        nonFinite: (err) => nonFinite(err, e),
      });
    }
  }
  await drive(run, tasks, src.info.byteLength);
  await run.sink.write(scaleOut.name, new Uint8Array(scales.buffer), 0);
}

export async function quantizeFast(entry: QuantizeEntry, run: Run): Promise<void> {
  // The reference's checks and messages: a non-float source is refused here, not decoded.
  const { src, weightOut, scaleOut } = quantizeGeometry(entry, run.ckpt, run.opts);
  const rows = await TensorRows.open(run, src.name);
  await quantizeOutIn(run, rows, weightOut, scaleOut, (err, e) => nonFiniteWeightError(src, e, err, quantizationSettings(run.opts).block));
}

export async function requantizeFast(entry: RequantizeEntry, run: Run): Promise<void> {
  const source = entry.sources[0]!;
  const rows = await TensorRows.open(run, source, entry.fp8[source]);
  const [weightOut, scaleOut] = entry.outputs;
  const rank = rows.info.shape.length;
  await quantizeOutIn(run, rows, weightOut!, scaleOut!, (err, e) => nonFiniteSourceError(err, source, (r, c) => (rank === 3 ? `[${e}, ${r}, ${c}]` : `[${r}, ${c}]`)));
}

export async function quantizeInOutFast(entry: QuantizeInOutEntry, run: Run): Promise<void> {
  const source = entry.sources[0]!;
  const src = await TensorRows.open(run, source, entry.fp8?.[source]);
  const [weightOut, scaleOut] = entry.outputs;
  const shape = src.info.shape;
  const experts = shape.length === 3 ? shape[0]! : 1;
  const k = shape[shape.length - 2]!;
  const n = shape[shape.length - 1]!;
  const { bn, bk } = quantizationSettings(run.opts).block;
  const outBlocks = ceilDiv(n, bn);
  const inBlocks = ceilDiv(k, bk);
  // In storage a block is bk rows × bn columns: the kernel's stripe is bk rows, its column block bn.
  const settings = kernelOptions(run.opts, { bn: bk, bk: bn });
  const scales = new Float32Array(experts * outBlocks * inBlocks);
  const rowBytes = n * src.elementBytes;
  const per = chunkRows(k, bk, rowBytes);
  const tasks: StripeTask[] = [];
  for (let e = 0; e < experts; e++) {
    for (let row = 0; row < k; row += per) {
      const rows = Math.min(per, k - row);
      tasks.push({
        sourceBytes: rows * rowBytes,
        prepare: async (buffers) => {
          const source = buffers.take(per * rowBytes);
          const seg = await src.segment(e * k + row, rows, source, 0);
          return chunkOf([seg], rows, n, row, settings, source, buffers.take(per * n));
        },
        finish: async (done) => {
          const stripes = ceilDiv(rows, bk);
          for (let s = 0; s < stripes; s++) {
            const kb = row / bk + s;
            for (let nb = 0; nb < outBlocks; nb++) scales[(e * outBlocks + nb) * inBlocks + kb] = done.scales[s * outBlocks + nb]!;
          }
          await run.sink.write(weightOut!.name, done.codes, (e * k + row) * n);
        },
        nonFinite: (err) => nonFiniteSourceError(err, source, (r, c) => `[${e}, ${r}, ${c}]`),
      });
    }
  }
  await drive(run, tasks, src.info.byteLength);
  await run.sink.write(scaleOut!.name, new Uint8Array(scales.buffer), 0);
}

export async function stackExpertsFast(entry: StackExpertsEntry, run: Run): Promise<void> {
  const [weightOut, scaleOut] = entry.outputs;
  const [experts, n, k] = weightOut!.shape as [number, number, number];
  const { bn, bk } = quantizationSettings(run.opts).block;
  const rowBlocks = ceilDiv(n, bn);
  const colBlocks = ceilDiv(k, bk);
  const settings = kernelOptions(run.opts);
  const scales = new Float32Array(experts * rowBlocks * colBlocks);
  const partsOf: TensorRows[][] = [];
  let maxElementBytes = 1;
  let sourceBytes = 0;
  for (let e = 0; e < experts; e++) {
    const parts = await Promise.all(entry.parts[e]!.map((name) => TensorRows.open(run, name, entry.fp8?.[name])));
    let total = 0;
    for (const p of parts) {
      if (p.cols !== k) throw new CheckpointError(`tensor "${p.info.name}" is ${JSON.stringify(p.info.shape)}; every part of ${entry.module} must have ${k} columns`);
      total += p.rows;
      maxElementBytes = Math.max(maxElementBytes, p.elementBytes);
      sourceBytes += p.info.byteLength;
    }
    if (total !== n) throw new CheckpointError(`the parts of expert ${e} of ${entry.module} have ${total} rows together; the plan expected ${n}`);
    partsOf.push(parts);
  }
  const per = chunkRows(n, bn, k * maxElementBytes);
  const tasks: StripeTask[] = [];
  for (let e = 0; e < experts; e++) {
    const parts = partsOf[e]!;
    const starts: number[] = [];
    parts.reduce((at, p) => (starts.push(at), at + p.rows), 0);
    for (let row = 0; row < n; row += per) {
      const rows = Math.min(per, n - row);
      let bytes = 0;
      for (let pi = 0; pi < parts.length; pi++) {
        const lo = Math.max(row, starts[pi]!);
        const hi = Math.min(row + rows, starts[pi]! + parts[pi]!.rows);
        if (lo < hi) bytes += (hi - lo) * k * parts[pi]!.elementBytes;
      }
      tasks.push({
        sourceBytes: bytes,
        prepare: async (buffers) => {
          const source = buffers.take(per * k * maxElementBytes);
          const segments: ChunkSegment[] = [];
          let at = 0;
          // Rows [row, row + rows) of the concatenation, from whichever parts they fall in.
          for (let pi = 0; pi < parts.length; pi++) {
            const lo = Math.max(row, starts[pi]!);
            const hi = Math.min(row + rows, starts[pi]! + parts[pi]!.rows);
            if (lo >= hi) continue;
            segments.push(await parts[pi]!.segment(lo - starts[pi]!, hi - lo, source, at));
            at += (hi - lo) * k * parts[pi]!.elementBytes;
          }
          return chunkOf(segments, rows, k, row, settings, source, buffers.take(per * k));
        },
        finish: async (done) => {
          scales.set(done.scales, (e * rowBlocks + row / bn) * colBlocks);
          await run.sink.write(weightOut!.name, done.codes, (e * n + row) * k);
        },
        nonFinite: (err) => {
          let pi = 0;
          while (pi + 1 < starts.length && starts[pi + 1]! <= err.row) pi++;
          return nonFiniteSourceError(err, entry.parts[e]!.join(' + '), (r, c) => `[${r - starts[pi]!}, ${c}] of "${entry.parts[e]![pi]}"`);
        },
      });
    }
  }
  await drive(run, tasks, sourceBytes);
  await run.sink.write(scaleOut!.name, new Uint8Array(scales.buffer), 0);
}

export async function mlaSplitFast(entry: MlaSplitEntry, run: Run): Promise<void> {
  const source = entry.sources[0]!;
  const src = await TensorRows.open(run, source, entry.fp8?.[source]);
  const { heads, kvLoraRank: lora, nopeHeadDim: nope, vHeadDim: v } = entry;
  const headRows = nope + v;
  if (src.rows !== heads * headRows || src.cols !== lora) {
    throw new CheckpointError(
      `tensor "${source}" is ${JSON.stringify(src.info.shape)}, but config.json's MLA dims need [${heads * headRows}, ${lora}] ` +
        `(num_attention_heads ${heads} × (qk_nope_head_dim ${nope} + v_head_dim ${v}), kv_lora_rank ${lora})`,
    );
  }
  const { bn, bk } = quantizationSettings(run.opts).block;
  const [wUk, wUkScale, wUv, wUvScale] = entry.outputs;
  const ukRowBlocks = ceilDiv(lora, bk);
  const ukColBlocks = ceilDiv(nope, bn);
  const uvRowBlocks = ceilDiv(v, bn);
  const uvColBlocks = ceilDiv(lora, bk);
  const ukScales = new Float32Array(heads * ukRowBlocks * ukColBlocks);
  const uvScales = new Float32Array(heads * uvRowBlocks * uvColBlocks);
  const eb = src.elementBytes;
  const srcRow = (h: number, r: number): number => h * headRows + r;
  const tasks: StripeTask[] = [];
  if (entry.method === 'move-blocks') {
    // Two passes over the heads, so the shard is written in file order (w_uk, its scales, w_uv, its
    // scales) with nothing held but the scales: first each head's nope rows, then its v rows. nope
    // and v are whole row blocks, so each part quantized alone has kv_b_proj's own codes and scales.
    const settings = kernelOptions(run.opts, { bn, bk });
    const ukCodes = new Uint8Array(lora * nope);
    const part =
      (h: number, first: number, rows: number): StripeTask['prepare'] =>
      async (buffers) => {
        const buf = buffers.take(rows * lora * eb);
        const seg = await src.segment(h * headRows + first, rows, buf, 0);
        return chunkOf([seg], rows, lora, 0, settings, buf, buffers.take(rows * lora));
      };
    for (let h = 0; h < heads; h++) {
      tasks.push({
        sourceBytes: nope * lora * eb,
        prepare: part(h, 0, nope),
        finish: async (done) => {
          const q = done.codes;
          for (let l = 0; l < lora; l++) for (let j = 0; j < nope; j++) ukCodes[l * nope + j] = q[j * lora + l]!;
          const ukScaleHead = ukScales.subarray(h * ukRowBlocks * ukColBlocks, (h + 1) * ukRowBlocks * ukColBlocks);
          // The nope rows' scales are [nope/bn, kv_lora/bk]; w_uk's are those transposed.
          for (let lb = 0; lb < ukRowBlocks; lb++) for (let jb = 0; jb < ukColBlocks; jb++) ukScaleHead[lb * ukColBlocks + jb] = done.scales[jb * uvColBlocks + lb]!;
          await run.sink.write(wUk!.name, ukCodes, h * lora * nope);
        },
        nonFinite: (err) => nonFiniteSourceError(err, source, (r, c) => `[${srcRow(h, r)}, ${c}] (head ${h})`),
      });
    }
    for (let h = 0; h < heads; h++) {
      tasks.push({
        sourceBytes: v * lora * eb,
        prepare: part(h, nope, v),
        finish: async (done) => {
          if (h === 0) await run.sink.write(wUkScale!.name, new Uint8Array(ukScales.buffer), 0);
          uvScales.set(done.scales, h * uvRowBlocks * uvColBlocks);
          await run.sink.write(wUv!.name, done.codes, h * v * lora);
        },
        nonFinite: (err) => nonFiniteSourceError(err, source, (r, c) => `[${srcRow(h, nope + r)}, ${c}] (head ${h})`),
      });
    }
  } else {
    const ukSettings = kernelOptions(run.opts, { bn: bk, bk: bn });
    const uvSettings = kernelOptions(run.opts, { bn, bk });
    for (let h = 0; h < heads; h++) {
      tasks.push({
        sourceBytes: nope * lora * eb,
        prepare: async (buffers) => {
          // w_uk is the nope rows transposed (kv_lora × nope): built on this thread as float32.
          const rows = await src.float32(h * headRows, nope, buffers);
          const buf = buffers.take(lora * nope * 4);
          const uk = new Float32Array(buf, 0, lora * nope);
          for (let l = 0; l < lora; l++) for (let j = 0; j < nope; j++) uk[l * nope + j] = rows[j * lora + l]!;
          return { dtype: 'F32', rows: lora, cols: nope, firstRow: 0, settings: ukSettings, source: buf, codes: buffers.take(lora * nope) };
        },
        finish: async (done) => {
          ukScales.set(done.scales, h * ukRowBlocks * ukColBlocks);
          await run.sink.write(wUk!.name, done.codes, h * lora * nope);
        },
        nonFinite: (err) => nonFiniteSourceError(err, source, (r, c) => `[${srcRow(h, c)}, ${r}] (head ${h}, w_uk)`),
      });
    }
    for (let h = 0; h < heads; h++) {
      tasks.push({
        sourceBytes: v * lora * eb,
        prepare: async (buffers) => {
          const buf = buffers.take(v * lora * eb);
          const seg = await src.segment(h * headRows + nope, v, buf, 0);
          return chunkOf([seg], v, lora, 0, uvSettings, buf, buffers.take(v * lora));
        },
        finish: async (done) => {
          // The w_uk scales are complete once every w_uk head is done: the first w_uv task follows the last of them.
          if (h === 0) await run.sink.write(wUkScale!.name, new Uint8Array(ukScales.buffer), 0);
          uvScales.set(done.scales, h * uvRowBlocks * uvColBlocks);
          await run.sink.write(wUv!.name, done.codes, h * v * lora);
        },
        nonFinite: (err) => nonFiniteSourceError(err, source, (r, c) => `[${srcRow(h, nope + r)}, ${c}] (head ${h}, w_uv)`),
      });
    }
  }
  await drive(run, tasks, src.info.byteLength);
  await run.sink.write(wUvScale!.name, new Uint8Array(uvScales.buffer), 0);
}

/** An FP8 weight whose dequantized values are NaN/Inf, as the user sees it. */
export function dequantizedNonFiniteError(source: string, dtype: string, count: number, flag: string): CheckpointError {
  return new CheckpointError(
    `tensor "${source}" dequantizes to ${count} NaN/Inf value(s) in ${dtype} (NaN FP8 codes, damaged scales${dtype === 'F16' ? ", or values beyond float16's ±65504: try --dtype bfloat16" : ''}): ` +
      `the output would compute NaN; pass ${flag} to write it anyway`,
    'E_INPUT_NONFINITE',
  );
}

/**
 * Writes `fp8 × scale` rounded once to the output dtype. Values that come out NaN/Inf (NaN codes,
 * damaged scales, values beyond float16's range) are an error, or with --allow-nonfinite written and
 * reported through onNonFiniteKept.
 */
export async function dequantizeFast(entry: DequantizeEntry, run: Run): Promise<void> {
  const source = entry.sources[0]!;
  const out = entry.outputs[0]!;
  const to = out.dtype;
  if (to !== 'BF16' && to !== 'F16' && to !== 'F32') throw new CheckpointError(`cannot dequantize "${source}" to ${out.dtype}: expected BF16, F16 or F32`);
  const src = await TensorRows.open(run, source, entry.fp8[source]);
  const outSize = dtypeSize(to);
  const matrixRows = src.reader.rowsPerMatrix;
  const matrices = matrixRows === 0 ? 0 : src.rows / matrixRows;
  const per = Math.min(matrixRows, Math.max(1, Math.floor(CHUNK_BYTES / Math.max(1, src.cols * outSize))));
  let nonFinite = 0;
  const tasks: StripeTask[] = [];
  for (let m = 0; m < matrices; m++) {
    for (let row = 0; row < matrixRows; row += per) {
      const rows = Math.min(per, matrixRows - row);
      const first = m * matrixRows + row;
      tasks.push({
        sourceBytes: rows * src.cols * src.elementBytes,
        prepare: async (buffers) => {
          const buf = buffers.take(per * src.cols * src.elementBytes);
          const seg = await src.segment(first, rows, buf, 0);
          const dequantizeTo: DequantDtype = to;
          return { dtype: 'F32', segments: [seg], dequantizeTo, rows, cols: src.cols, firstRow: row, source: buf, codes: buffers.take(per * src.cols * outSize) };
        },
        finish: (done) => {
          // Counted by the thread that dequantized the chunk; a runner that did not count leaves it to this one.
          nonFinite += done.nonFinite ?? countNonFinite(done.codes, to);
          return run.sink.write(out.name, done.codes, first * src.cols * outSize);
        },
        nonFinite: (err) => err,
      });
    }
  }
  await drive(run, tasks, src.info.byteLength);
  if (nonFinite > 0 && run.opts.nonFinite !== 'saturate') throw dequantizedNonFiniteError(source, to, nonFinite, '--allow-nonfinite');
  if (nonFinite > 0) run.opts.onNonFiniteKept?.(out.name, nonFinite);
}

/** The entry kinds that move weights: all but copy and activation-scale. */
export type StripeEntry = QuantizeEntry | RequantizeEntry | QuantizeInOutEntry | StackExpertsEntry | MlaSplitEntry | DequantizeEntry;

export function executeStripes(entry: StripeEntry, ckpt: Checkpoint, sink: OutputSink, opts: ExecuteOptions, runner: StripeRunner): Promise<void> {
  const run: Run = { ckpt, sink, opts, runner };
  switch (entry.op) {
    case 'quantize':
      return quantizeFast(entry, run);
    case 'requantize':
      return requantizeFast(entry, run);
    case 'quantize-in-out':
      return quantizeInOutFast(entry, run);
    case 'stack-experts':
      return stackExpertsFast(entry, run);
    case 'mla-split':
      return mlaSplitFast(entry, run);
    case 'dequantize':
      return dequantizeFast(entry, run);
  }
}
