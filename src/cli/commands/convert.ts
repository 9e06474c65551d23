// `fp8q convert`: flags → ConvertOptions, progress rendering, and the summary (table or JSON).

import { convertCheckpoint, type ConvertSummary } from '../../io/convert-checkpoint.js';
import { formatBytes } from '../../io/sizes.js';
import type { ConvertPlan } from '../../passes/plan.js';
import { parseBlock, parseSize, parseWeightDtype } from '../options.js';
import { ByteProgress, info, outputMode, printJson, warn } from '../output.js';
import { UsageError } from '../errors.js';

export interface ConvertFlags {
  output?: string;
  block: string;
  weightDtype: string;
  scaleFmt?: string;
  exclude?: string[];
  maxShardSize: string;
  dryRun?: boolean;
  force?: boolean;
  json?: boolean;
  quiet?: boolean;
  allowNonfinite?: boolean;
}

export async function convertCommand(source: string, flags: ConvertFlags): Promise<ConvertSummary> {
  if (!flags.output) throw new UsageError('missing -o <out-dir>: say where to write the FP8 checkpoint');
  const mode = outputMode(flags);
  const scaleFormat = flags.scaleFmt === undefined || flags.scaleFmt === 'float' ? 'float' : flags.scaleFmt === 'ue8m0' ? 'ue8m0' : undefined;
  if (!scaleFormat) throw new UsageError(`invalid --scale-fmt "${flags.scaleFmt}": expected float or ue8m0`);
  const options = {
    input: source,
    output: flags.output,
    block: parseBlock(flags.block),
    format: parseWeightDtype(flags.weightDtype),
    scaleFormat,
    exclude: flags.exclude ?? [],
    maxShardBytes: parseSize('--max-shard-size', flags.maxShardSize),
    dryRun: flags.dryRun === true,
    force: flags.force === true,
    allowNonFinite: flags.allowNonfinite === true,
  } as const;
  const progress = options.dryRun ? undefined : new ByteProgress(mode, 'converting');
  let plan: ConvertPlan | undefined;
  try {
    const summary = await convertCheckpoint({
      ...options,
      onEvent: (e) => {
        if (e.type === 'warning') warn(mode, e.message);
        else if (e.type === 'plan') plan = e.plan;
        else if (e.type === 'tensor') progress?.item(e.name);
        else if (e.type === 'bytes') progress?.update(e.done, e.total);
      },
    });
    if (mode.json) printJson(options.dryRun ? { ...summary, plan: planForJson(plan!) } : summary);
    else if (options.dryRun) printPlan(plan!, summary);
    else {
      progress?.succeed(
        `${summary.output}: ${summary.tensorsQuantized} tensors quantized, ${summary.tensorsKept} kept, ` +
          `${formatBytes(summary.bytesIn)} → ${formatBytes(summary.bytesOut)} in ${summary.seconds.toFixed(1)} s`,
      );
    }
    return summary;
  } catch (e) {
    progress?.fail();
    throw e;
  }
}

export function planForJson(plan: ConvertPlan): unknown {
  return {
    architecture: plan.architecture,
    family: plan.family ?? null,
    settings: plan.settings,
    modules: plan.modules,
    entries: plan.entries.map((e) => ({
      op: e.op,
      sources: e.sources,
      outputs: e.outputs,
      ...(e.op === 'copy' ? { reason: e.reason } : { module: e.module, kind: e.kind }),
    })),
  };
}

function printPlan(plan: ConvertPlan, summary: ConvertSummary): void {
  const lines: string[] = [];
  lines.push(`plan for ${summary.input} (${plan.architecture}), nothing written:`);
  for (const e of plan.entries) {
    const out = e.outputs.map((o) => `${o.name} ${o.dtype}[${o.shape.join(',')}]`).join(' + ');
    lines.push(e.op === 'copy' ? `  keep      ${out}  (${e.reason})` : `  quantize  ${out}  (${e.kind})`);
  }
  lines.push(
    `${summary.tensorsQuantized} to quantize, ${summary.tensorsKept} to keep; ${formatBytes(summary.bytesIn)} → ${formatBytes(summary.bytesOut)}`,
  );
  process.stdout.write(`${lines.join('\n')}\n`);
  info(outputMode({}), `modules_to_not_convert: ${JSON.stringify(summary.quantizationConfig.modules_to_not_convert)}`);
}
