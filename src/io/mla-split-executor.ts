// Executing an MlaSplitEntry: kv_b_proj → w_uk / w_uv in FP8 (SPEC.md section 4, passes/mla-split.ts
// for the decision). One head at a time: its (nope + v) rows of kv_b_proj are read as float
// (BF16 source, or an FP8 source dequantized), then
// - move-blocks: quantized as kv_b_proj's own rows are (bn × bk blocks; head boundaries fall on
//   block boundaries because nope and v are multiples of bn), and the codes and scales are moved:
//   w_uk = rows [0, nope) transposed, its scales transposed with them; w_uv = rows [nope, nope+v).
//   The bytes equal splitting the kv_b_proj tensor this conversion writes.
// - own-grid: w_uk (kv_lora × nope) is quantized as its own matrix with blocks of bk rows
//   (kv_lora) × bn columns (nope) — the grid a moved block would have — and w_uv (v × kv_lora)
//   with bn × bk blocks; edge blocks are ceil-sized and cover only real elements.

import { ceilDiv } from '../fp8/block-quantize.js';
import type { MlaSplitEntry } from '../passes/plan.js';
import type { Checkpoint } from './checkpoint.js';
import { quantizationSettings, type ExecuteOptions, type OutputSink } from './entry-executors.js';
import { CheckpointError } from './errors.js';
import { FloatRowReader } from './float-rows.js';
import { quantizeMatrix } from './quantize-rows.js';

export async function executeMlaSplit(entry: MlaSplitEntry, ckpt: Checkpoint, sink: OutputSink, opts: ExecuteOptions): Promise<void> {
  const source = entry.sources[0]!;
  const reader = await FloatRowReader.open(ckpt, source, entry.fp8?.[source]);
  const { heads, kvLoraRank: lora, nopeHeadDim: nope, vHeadDim: v } = entry;
  const headRows = nope + v;
  if (reader.rows !== heads * headRows || reader.cols !== lora) {
    throw new CheckpointError(
      `tensor "${source}" is ${JSON.stringify(reader.info.shape)}, but config.json's MLA dims need [${heads * headRows}, ${lora}] ` +
        `(num_attention_heads ${heads} × (qk_nope_head_dim ${nope} + v_head_dim ${v}), kv_lora_rank ${lora})`,
    );
  }
  const { bn, bk } = quantizationSettings(opts).block;
  const [wUk, wUkScale, wUv, wUvScale] = entry.outputs;
  const ukRowBlocks = ceilDiv(lora, bk);
  const ukColBlocks = ceilDiv(nope, bn);
  const uvRowBlocks = ceilDiv(v, bn);
  const uvColBlocks = ceilDiv(lora, bk);
  const ukScales = new Float32Array(heads * ukRowBlocks * ukColBlocks);
  const uvScales = new Float32Array(heads * uvRowBlocks * uvColBlocks);
  const head = new Float32Array(headRows * lora);
  const ukCodes = new Uint8Array(lora * nope);
  const bytesPerElement = reader.info.byteLength / Math.max(1, reader.rows * reader.cols);

  for (let h = 0; h < heads; h++) {
    await reader.readF32(h * headRows, headRows, head);
    const srcRow = (r: number) => h * headRows + r;
    const ukScaleHead = ukScales.subarray(h * ukRowBlocks * ukColBlocks, (h + 1) * ukRowBlocks * ukColBlocks);
    const uvScaleHead = uvScales.subarray(h * uvRowBlocks * uvColBlocks, (h + 1) * uvRowBlocks * uvColBlocks);
    let uvCodes: Uint8Array;
    if (entry.method === 'move-blocks') {
      const q = quantizeMatrix(head, headRows, lora, { bn, bk }, opts, source, (r, c) => `[${srcRow(r)}, ${c}] (head ${h})`);
      for (let l = 0; l < lora; l++) for (let j = 0; j < nope; j++) ukCodes[l * nope + j] = q.codes[j * lora + l]!;
      // kv_b_proj head scales are [(nope+v)/bn, kv_lora/bk]; w_uk's are their first nope/bn rows, transposed.
      for (let lb = 0; lb < ukRowBlocks; lb++) {
        for (let jb = 0; jb < ukColBlocks; jb++) ukScaleHead[lb * ukColBlocks + jb] = q.scaleInv[jb * uvColBlocks + lb]!;
      }
      uvCodes = q.codes.subarray(nope * lora);
      uvScaleHead.set(q.scaleInv.subarray(ukColBlocks * uvColBlocks));
    } else {
      const uk = new Float32Array(lora * nope);
      for (let l = 0; l < lora; l++) for (let j = 0; j < nope; j++) uk[l * nope + j] = head[j * lora + l]!;
      const qk = quantizeMatrix(uk, lora, nope, { bn: bk, bk: bn }, opts, source, (r, c) => `[${srcRow(c)}, ${r}] (head ${h}, w_uk)`);
      ukCodes.set(qk.codes);
      ukScaleHead.set(qk.scaleInv);
      const qv = quantizeMatrix(head.subarray(nope * lora), v, lora, { bn, bk }, opts, source, (r, c) => `[${srcRow(nope + r)}, ${c}] (head ${h}, w_uv)`);
      uvCodes = qv.codes;
      uvScaleHead.set(qv.scaleInv);
    }
    await sink.write(wUk!.name, ukCodes, h * lora * nope);
    await sink.write(wUv!.name, uvCodes, h * v * lora);
    opts.onBytes?.(headRows * lora * bytesPerElement);
  }
  await sink.write(wUkScale!.name, new Uint8Array(ukScales.buffer), 0);
  await sink.write(wUvScale!.name, new Uint8Array(uvScales.buffer), 0);
}
