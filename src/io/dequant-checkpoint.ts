// `fp8q dequant` as a library call: an FP8 checkpoint (DeepSeek-V3's release, Qwen3-FP8, transformers'
// output, fp8q's own) → a BF16 (or FP16) checkpoint, what DeepSeek's fp8_cast_bf16.py does: every
// FP8 weight becomes `fp8 × scale_inv` rounded once to the output dtype, its scale (and any
// activation scale) is dropped, everything else is copied byte for byte, and config.json loses
// quantization_config. Same atomic staging, sharding and index as convert.

import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { copyCompanionFiles, selectCompanionFiles } from './companion-files.js';
import { performance } from 'node:perf_hooks';
import { planDequantize } from '../passes/fp8-plans.js';
import type { PlanEntry, QuantizationSettings } from '../passes/plan.js';
import { Checkpoint, CONFIG_FILE, INDEX_FILE, type ModelConfig } from './checkpoint.js';
import { type ConfigChanges, writeEditedConfig } from './config-json.js';
import { DEFAULT_MAX_SHARD_BYTES } from './convert-checkpoint.js';
import { executeCopy } from './entry-executors.js';
import { checkFp8Scale } from './float-rows.js';
import { dequantizedNonFiniteError, executeDequantize } from './fp8-executors.js';
import { CheckpointError } from './errors.js';
import type { NonFiniteReport } from './nonfinite-count.js';
import { describeUnusableScales, findUnusableScales } from './scale-survey.js';
import { checkOutputDestination, explainWriteFailure, StagingFolder } from './output-folder.js';
import { SafetensorsWriter } from './safetensors-writer.js';
import { assignShards, buildIndex } from './shards.js';

/** Files that hold weights in other formats, or stray safetensors: never copied beside the output. */
const NOT_COPIED = /\.(bin|pt|pth|ckpt|h5|msgpack|gguf|onnx|onnx_data|safetensors)$/i;

export type DequantDtype = 'bfloat16' | 'float16';

/** executeCopy's options carry quantization settings it never reads; a dequant quantizes nothing. */
const COPY_ONLY: QuantizationSettings = { format: 'e4m3fn', block: { bn: 128, bk: 128 }, scaleFormat: 'float', activationScheme: 'dynamic' };

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

function byFirstOutput(a: PlanEntry, b: PlanEntry): number {
  const x = a.outputs[0]!.name;
  const y = b.outputs[0]!.name;
  return x < y ? -1 : x > y ? 1 : 0;
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
    const companions = await selectCompanionFiles(ckpt.dir, ckpt.otherFiles, (f) => f === CONFIG_FILE || NOT_COPIED.test(f));
    warnings.push(...companions.warnings);
    for (const w of warnings) emit({ type: 'warning', message: w });
    const entries = [...plan.entries].sort(byFirstOutput);
    let bytesIn = 0;
    let bytesOut = 0;
    for (const e of entries) {
      for (const s of e.sources) bytesIn += ckpt.info(s).byteLength;
      for (const o of e.outputs) bytesOut += o.byteLength;
    }
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

    const shards = assignShards(entries.map((e) => e.outputs), opts.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES);
    const shardOf = new Map<string, number>();
    shards.forEach((s, i) => s.tensors.forEach((t) => shardOf.set(t.name, i)));
    let staging: StagingFolder | undefined;
    try {
      staging = await StagingFolder.create(opts.output, { force: opts.force ?? false });
      let done = 0;
      const onBytes = (n: number): void => {
        done += n;
        emit({ type: 'bytes', done, total: bytesIn });
      };
      let next = 0;
      const written: { file: string; bytes: number }[] = [];
      const nonFinite: { name: string; values: number; action: 'kept' }[] = [];
      for (let si = 0; si < shards.length; si++) {
        const writer = await SafetensorsWriter.create(join(staging.path, shards[si]!.file), shards[si]!.tensors, { format: 'pt' });
        try {
          for (; next < entries.length && shardOf.get(entries[next]!.outputs[0]!.name) === si; next++) {
            const entry = entries[next]!;
            emit({ type: 'tensor', name: entry.outputs[0]!.name, index: next, count: entries.length });
            if (entry.op === 'dequantize') {
              const bad = await executeDequantize(entry, ckpt, writer, { onBytes });
              if (bad > 0 && !opts.allowNonFinite) throw dequantizedNonFiniteError(entry.sources[0]!, entry.outputs[0]!.dtype, bad, '--allow-nonfinite');
              if (bad > 0) nonFinite.push({ name: entry.outputs[0]!.name, values: bad, action: 'kept' });
            } else if (entry.op === 'copy') {
              const onNonFiniteKept = (name: string, values: number): void => void nonFinite.push({ name, values, action: 'kept' });
              await executeCopy(entry, ckpt, writer, { settings: COPY_ONLY, nonFinite: opts.allowNonFinite ? 'saturate' : 'error', onBytes, onNonFiniteKept });
            }
          }
          await writer.finish();
        } catch (e) {
          await writer.abort();
          throw e;
        }
        written.push({ file: shards[si]!.file, bytes: writer.layout.fileSize });
      }
      if (shards.length > 1) await writeJson(join(staging.path, INDEX_FILE), buildIndex(shards));
      if (ckpt.config) await writeEditedConfig(ckpt.dir, true, join(staging.path, CONFIG_FILE), dequantizedConfigChanges(ckpt.config, dtype));
      await copyCompanionFiles(ckpt.dir, staging.path, companions.files);
      await staging.commit();
      if (nonFinite.length > 0) {
        const values = nonFinite.reduce((a, t) => a + t.values, 0);
        const w = `--allow-nonfinite: ${values} NaN/Inf value(s) written in ${nonFinite.length} tensor(s), first ${nonFinite[0]!.name}`;
        warnings.push(w);
        emit({ type: 'warning', message: w });
      }
      return { ...base, ...(nonFinite.length > 0 ? { nonFinite: { values: nonFinite.reduce((a, t) => a + t.values, 0), tensors: nonFinite } } : {}), seconds: (performance.now() - t0) / 1000, shards: written };
    } catch (e) {
      await staging?.discard();
      throw explainWriteFailure(e, opts.output, bytesOut);
    }
  } finally {
    await ckpt.close();
  }
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await writeFile(path, `${JSON.stringify(value, null, 2)}\n`);
}
