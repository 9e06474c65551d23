// `fp8q dequant` as a library call: an FP8 checkpoint (DeepSeek-V3's release, Qwen3-FP8, transformers'
// output, fp8q's own) → a BF16 (or FP16) checkpoint, what DeepSeek's fp8_cast_bf16.py does: every
// FP8 weight becomes `fp8 × scale_inv` rounded once to the output dtype, its scale (and any
// activation scale) is dropped, everything else is copied byte for byte, and config.json loses
// quantization_config. Written by the same pipeline as convert (write-plan.ts).

import { performance } from 'node:perf_hooks';
import { planDequantize } from '../passes/fp8-plans.js';
import { Checkpoint, type ModelConfig } from '../io/checkpoint/checkpoint.js';
import { selectCompanionFiles } from '../io/checkpoint/companion-files.js';
import type { ConfigChanges } from '../io/checkpoint/config-json.js';
import { CheckpointError } from '../io/errors.js';
import { checkFp8Scale } from '../io/formats/float-rows.js';
import type { NonFiniteReport } from '../io/checkpoint/nonfinite-count.js';
import { checkOutputDestination } from './output-folder.js';
import { describeUnusableScales, findUnusableScales } from '../io/formats/scale-survey.js';
import { orderEntries, planInputBytes, planOutputBytes, writePlan } from './write-plan.js';

export type DequantDtype = 'bfloat16' | 'float16';

export interface DequantOptions {
  readonly input: string;
  readonly output: string;
  readonly dtype?: DequantDtype;
  readonly maxShardBytes?: number;
  readonly force?: boolean;
  /** A tensor a shard holds but the index does not list: a warning (left out) instead of an error. */
  readonly allowUnindexed?: boolean;
  /** Write even when scales are NaN/Inf/≤ 0 or values come out non-finite (counted in the summary). */
  readonly allowNonFinite?: boolean;
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
  /** --allow-nonfinite: NaN/Inf values written, by tensor (absent when there were none). */
  readonly nonFinite?: NonFiniteReport;
}

/** What config.json loses and gains to read as a float checkpoint: no quantization_config, dtype fields naming the output dtype. */
export function dequantizedConfigChanges(config: ModelConfig, dtype: DequantDtype): ConfigChanges {
  const set: Record<string, string> = {};
  for (const key of ['torch_dtype', 'dtype']) if (typeof config[key] === 'string') set[key] = dtype;
  return { remove: 'quantization_config' in config ? ['quantization_config'] : [], set };
}

export async function dequantCheckpoint(opts: DequantOptions): Promise<DequantSummary> {
  const t0 = performance.now();
  const emit = opts.onEvent ?? (() => undefined);
  const dtype = opts.dtype ?? 'bfloat16';
  const ckpt = await Checkpoint.open(opts.input, { allowUnindexed: opts.allowUnindexed === true });
  try {
    const infos = ckpt.tensorNames().map((n) => ckpt.info(n));
    const plan = planDequantize(ckpt.config, infos, dtype === 'float16' ? 'F16' : 'BF16');
    const warnings: string[] = [...(ckpt.configProblem ? [ckpt.configProblem] : []), ...ckpt.problems, ...plan.warnings];
    if (plan.input.perTensor > 0) warnings.push(`${plan.input.perTensor} FP8 weights have one scale per tensor (not per block); dequantized with it`);
    for (const f of ckpt.otherFiles.filter((f) => f.endsWith('.safetensors'))) warnings.push(`${f} is not one of the checkpoint's shards: not read and not copied`);
    for (const [name, ref] of plan.input.weights) checkFp8Scale(ckpt, name, ref);
    // Damaged scales make whole blocks NaN/Inf/0: found before a byte is written (scales are small).
    const unusable = describeUnusableScales(await findUnusableScales(ckpt, plan.input.scaleTensors));
    if (unusable && !opts.allowNonFinite) throw new CheckpointError(`${opts.input}: ${unusable}; pass --allow-nonfinite to dequantize it anyway`, 'E_INPUT_NONFINITE');
    if (unusable) warnings.push(`${unusable} (--allow-nonfinite: written anyway)`);
    const companions = await selectCompanionFiles(ckpt.dir, ckpt.otherFiles);
    warnings.push(...companions.warnings);
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
    const destination = await checkOutputDestination(opts.input, opts.output, opts.force ?? false);
    for (const w of destination.warnings) {
      warnings.push(w);
      emit({ type: 'warning', message: w });
    }

    const nonFinite: { name: string; values: number; action: 'kept' }[] = [];
    const written = await writePlan(ckpt, {
      output: opts.output,
      force: opts.force ?? false,
      entries,
      config: ckpt.config ? { sourceIsValid: true, changes: dequantizedConfigChanges(ckpt.config, dtype) } : undefined,
      companions: companions.files,
      ...(opts.maxShardBytes !== undefined ? { maxShardBytes: opts.maxShardBytes } : {}),
      ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
      ...(opts.allowNonFinite !== undefined ? { allowNonFinite: opts.allowNonFinite } : {}),
      onNonFiniteKept: (name, values) => void nonFinite.push({ name, values, action: 'kept' }),
      emit: (e) => {
        if (e.type !== 'finalizing') emit(e);
      },
    });
    if (nonFinite.length > 0) {
      const values = nonFinite.reduce((a, t) => a + t.values, 0);
      const w = `--allow-nonfinite: ${values} NaN/Inf value(s) written in ${nonFinite.length} tensor(s), first ${nonFinite[0]!.name}`;
      warnings.push(w);
      emit({ type: 'warning', message: w });
    }
    const changed = nonFinite.length > 0 ? { nonFinite: { values: nonFinite.reduce((a, t) => a + t.values, 0), tensors: nonFinite } } : {};
    return { ...base, ...changed, seconds: (performance.now() - t0) / 1000, shards: written.map(({ file, bytes }) => ({ file, bytes })) };
  } finally {
    await ckpt.close();
  }
}
