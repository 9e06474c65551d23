// How each kind of plan entry reads in --dry-run (one line) and in --json (its own fields), in one
// place, so commands need not know every entry kind.

import type { PlanEntry } from './plan.js';

function outputsOf(e: PlanEntry): string {
  return e.outputs.map((o) => `${o.name} ${o.dtype}[${o.shape.join(',')}]`).join(' + ');
}

/** One line of the --dry-run plan. */
export function describeEntry(e: PlanEntry): string {
  const out = outputsOf(e);
  switch (e.op) {
    case 'copy':
      return `keep      ${out}  (${e.reason})`;
    case 'quantize':
      return `quantize  ${out}  (${e.kind})`;
    case 'quantize-in-out':
      return `quantize  ${out}  (${e.kind}; stored in × out, blocks over (out, in)${e.fp8 ? '; from FP8 via float32' : ''})`;
    case 'mla-split':
      return (
        `mla-split ${out}  (from ${e.sources[0]}: ${e.heads} heads, kv_lora ${e.kvLoraRank}, nope ${e.nopeHeadDim}, v ${e.vHeadDim}; ` +
        `${e.method === 'move-blocks' ? 'blocks of the quantized kv_b_proj moved' : 'quantized from the source with their own ceil-sized grids'})`
      );
    case 'stack-experts':
      return `stack     ${out}  (${e.parts.length} experts × ${e.parts[0]!.length === 1 ? e.parts[0]![0] : e.parts[0]!.join(' + ')} …${e.fp8 ? '; from FP8 via float32' : ''})`;
    case 'requantize':
      return `requant   ${out}  (${e.kind}; FP8 source dequantized to float32)`;
    case 'dequantize':
      return `dequant   ${out}  (${e.reason})`;
    case 'activation-scale':
      return `calibrate ${out}  (static activation scale, ${e.granularity === 'group' ? 'one per input group' : 'one per tensor'}, measured on calibration data)`;
  }
}

/** The fields of an entry beyond op/sources/outputs, for --json. */
export function entryDetails(e: PlanEntry): Record<string, unknown> {
  switch (e.op) {
    case 'copy':
      return { reason: e.reason };
    case 'quantize':
      return { module: e.module, kind: e.kind };
    case 'quantize-in-out':
      return { module: e.module, kind: e.kind, layout: 'in_out', ...(e.fp8 ? { fp8: e.fp8 } : {}) };
    case 'mla-split':
      return {
        module: e.module,
        kind: 'MlaSplit',
        heads: e.heads,
        kvLoraRank: e.kvLoraRank,
        nopeHeadDim: e.nopeHeadDim,
        vHeadDim: e.vHeadDim,
        method: e.method,
        ...(e.fp8 ? { fp8: e.fp8 } : {}),
      };
    case 'stack-experts':
      return { module: e.module, kind: e.kind, parts: e.parts, ...(e.fp8 ? { fp8: e.fp8 } : {}) };
    case 'requantize':
      return { module: e.module, kind: e.kind, fp8: e.fp8 };
    case 'dequantize':
      return { reason: e.reason, fp8: e.fp8 };
    case 'activation-scale':
      return { module: e.module, granularity: e.granularity, inFeatures: e.inFeatures };
  }
}
