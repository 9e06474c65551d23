// `fp8q dequant` as a library call: an FP8 checkpoint (DeepSeek-V3's release, Qwen3-FP8, transformers'
// output, fp8q's own) → a BF16 (or FP16) checkpoint, what DeepSeek's fp8_cast_bf16.py does: every
// FP8 weight becomes `fp8 × scale_inv` rounded once to the output dtype, its scale (and any
// activation scale) is dropped, everything else is copied byte for byte, and config.json loses
// quantization_config. Same atomic staging, sharding and index as convert.

import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { planDequantize } from '../passes/fp8-plans.js';
import type { PlanEntry, QuantizationSettings } from '../passes/plan.js';
import { Checkpoint, CONFIG_FILE, INDEX_FILE, type ModelConfig } from './checkpoint.js';
import { type ConfigChanges, writeEditedConfig } from './config-json.js';
import { DEFAULT_MAX_SHARD_BYTES } from './convert-checkpoint.js';
import { executeCopy } from './entry-executors.js';
import { executeDequantize } from './fp8-executors.js';
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
  const ckpt = await Checkpoint.open(opts.input);
  try {
    const infos = ckpt.tensorNames().map((n) => ckpt.info(n));
    const plan = planDequantize(ckpt.config, infos, dtype === 'float16' ? 'F16' : 'BF16');
    const warnings: string[] = [...(ckpt.configProblem ? [ckpt.configProblem] : []), ...plan.warnings];
    if (plan.input.perTensor > 0) warnings.push(`${plan.input.perTensor} FP8 weights have one scale per tensor (not per block); dequantized with it`);
    for (const f of ckpt.otherFiles.filter((f) => f.endsWith('.safetensors'))) warnings.push(`${f} is not one of the checkpoint's shards: not read and not copied`);
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
    await checkOutputDestination(opts.input, opts.output, opts.force ?? false);

    const shards = assignShards(entries.map((e) => e.outputs), opts.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES);
    const shardOf = new Map<string, number>();
    shards.forEach((s, i) => s.tensors.forEach((t) => shardOf.set(t.name, i)));
    let staging: StagingFolder | undefined;
    try {
      staging = await StagingFolder.create(opts.output);
      let done = 0;
      const onBytes = (n: number): void => {
        done += n;
        emit({ type: 'bytes', done, total: bytesIn });
      };
      let next = 0;
      const written: { file: string; bytes: number }[] = [];
      for (let si = 0; si < shards.length; si++) {
        const writer = await SafetensorsWriter.create(join(staging.path, shards[si]!.file), shards[si]!.tensors, { format: 'pt' });
        try {
          for (; next < entries.length && shardOf.get(entries[next]!.outputs[0]!.name) === si; next++) {
            const entry = entries[next]!;
            emit({ type: 'tensor', name: entry.outputs[0]!.name, index: next, count: entries.length });
            if (entry.op === 'dequantize') await executeDequantize(entry, ckpt, writer, { onBytes });
            else if (entry.op === 'copy') await executeCopy(entry, ckpt, writer, { settings: COPY_ONLY, nonFinite: 'error', onBytes });
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
      for (const f of ckpt.otherFiles) {
        if (f === CONFIG_FILE || NOT_COPIED.test(f) || f.split('/').some((p) => p.startsWith('.'))) continue;
        await mkdir(dirname(join(staging.path, f)), { recursive: true });
        await copyFile(join(ckpt.dir, f), join(staging.path, f));
      }
      await staging.commit();
      return { ...base, seconds: (performance.now() - t0) / 1000, shards: written };
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
