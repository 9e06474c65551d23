// `fp8q dequant` as a library call: an FP8 checkpoint (DeepSeek-V3's release, Qwen3-FP8, transformers'
// output, fp8q's own) → a BF16 (or FP16) checkpoint, what DeepSeek's fp8_cast_bf16.py does: every
// FP8 weight becomes `fp8 × scale_inv` rounded once to the output dtype, its scale (and any
// activation scale) is dropped, everything else is copied byte for byte, and config.json loses
// quantization_config. Written by the same pipeline as convert (write-plan.ts).

import { performance } from 'node:perf_hooks';
import { planDequantize } from '../passes/fp8-plans.js';
import { Checkpoint, type ModelConfig } from './checkpoint.js';
import { checkOutputDestination } from './output-folder.js';
import { orderEntries, planInputBytes, planOutputBytes, writePlan } from './write-plan.js';

export type DequantDtype = 'bfloat16' | 'float16';

export interface DequantOptions {
  readonly input: string;
  readonly output: string;
  readonly dtype?: DequantDtype;
  readonly maxShardBytes?: number;
  readonly force?: boolean;
  /** Worker threads (default: available cores); 0 runs the reference kernel on this thread. */
  readonly threads?: number;
  readonly onEvent?: (event: DequantEvent) => void;
}

export type DequantEvent =
  | { readonly type: 'warning'; readonly message: string }
  | { readonly type: 'tensor'; readonly name: string; readonly index: number; readonly count: number }
  | { readonly type: 'bytes'; readonly done: number; readonly total: number };

export interface DequantSummary {
  readonly input: string;
  readonly output: string;
  readonly dtype: DequantDtype;
  /** What the input was: layout, block, scale dtypes. */
  readonly source: { readonly layout: string; readonly block: [number, number]; readonly fmt: string; readonly scaleDtypes: readonly string[] };
  readonly tensorsDequantized: number;
  readonly tensorsCopied: number;
  /** Scales, activation scales and derived MLA w_uk/w_uv, which a float checkpoint does not hold. */
  readonly tensorsDropped: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly seconds: number;
  readonly shards: readonly { readonly file: string; readonly bytes: number }[];
  readonly warnings: readonly string[];
}

/** config.json as a float checkpoint has it: no quantization_config, dtype fields naming the output dtype. */
export function dequantizedConfig(config: ModelConfig | undefined, dtype: DequantDtype): ModelConfig | undefined {
  if (!config) return undefined;
  const { quantization_config: _dropped, ...rest } = config;
  for (const key of ['torch_dtype', 'dtype']) if (typeof rest[key] === 'string') rest[key] = dtype;
  return rest;
}

export async function dequantCheckpoint(opts: DequantOptions): Promise<DequantSummary> {
  const t0 = performance.now();
  const emit = opts.onEvent ?? (() => undefined);
  const dtype = opts.dtype ?? 'bfloat16';
  const ckpt = await Checkpoint.open(opts.input);
  try {
    const infos = ckpt.tensorNames().map((n) => ckpt.info(n));
    const plan = planDequantize(ckpt.config, infos, dtype === 'float16' ? 'F16' : 'BF16');
    const warnings: string[] = [...(ckpt.configProblem ? [ckpt.configProblem] : []), ...plan.warnings];
    if (plan.input.perTensor > 0) warnings.push(`${plan.input.perTensor} FP8 weights have one scale per tensor (not per block); dequantized with it`);
    for (const f of ckpt.otherFiles.filter((f) => f.endsWith('.safetensors'))) warnings.push(`${f} is not one of the checkpoint's shards: not read and not copied`);
    for (const w of warnings) emit({ type: 'warning', message: w });
    const entries = orderEntries(plan.entries);
    const bytesIn = planInputBytes(ckpt, entries);
    const bytesOut = planOutputBytes(entries);
    const { format } = plan.input;
    const base = {
      input: opts.input,
      output: opts.output,
      dtype,
      source: { layout: plan.input.layoutLabel, block: [format.block.bn, format.block.bk] as [number, number], fmt: format.fmt, scaleDtypes: plan.input.scaleDtypes },
      tensorsDequantized: entries.filter((e) => e.op === 'dequantize').length,
      tensorsCopied: entries.filter((e) => e.op === 'copy').length,
      tensorsDropped: infos.length - entries.length,
      bytesIn,
      bytesOut,
      warnings,
    };
    await checkOutputDestination(opts.input, opts.output, opts.force ?? false);
    const written = await writePlan(ckpt, {
      output: opts.output,
      entries,
      config: dequantizedConfig(ckpt.config, dtype),
      ...(opts.maxShardBytes !== undefined ? { maxShardBytes: opts.maxShardBytes } : {}),
      ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
      emit: (e) => {
        if (e.type !== 'finalizing') emit(e);
      },
    });
    return { ...base, seconds: (performance.now() - t0) / 1000, shards: written.map(({ file, bytes }) => ({ file, bytes })) };
  } finally {
    await ckpt.close();
  }
}
