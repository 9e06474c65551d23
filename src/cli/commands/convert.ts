// `fp8q convert`: flags → ConvertOptions, progress rendering, and the summary (table or JSON).

import { convertCheckpoint, type ConvertSummary } from '../../io/convert-checkpoint.js';
import { checkOutputFormat, OutputFormatError } from '../../io/formats/output-format.js';
import { formatBytes } from '../../io/sizes.js';
import type { ConvertPlan } from '../../passes/plan.js';
import { describeEntry, entryDetails } from '../../passes/plan-describe.js';
import { recipeLines } from './inspect.js';
import { parseBlock, parseOutputFormat, parsePositiveInt, parseSize, parseWeightDtype } from '../options.js';
import { compileExcludePattern } from '../../passes/skip-rules.js';
import { ByteProgress, info, outputMode, printJson, warn, type OutputMode } from '../output.js';
import { UsageError } from '../errors.js';
import { pushConversion, resolveModelSource, type HubFlags } from '../hub-source.js';
import { describeCalibrationEvent, parseCalibrationFlags, resolveCalibration, type CalibrationFlags } from '../calibration-flags.js';

export interface ConvertFlags extends HubFlags, CalibrationFlags {
  output?: string;
  block: string;
  weightDtype: string;
  scaleFmt?: string;
  format?: string;
  exclude?: string[];
  include?: string[];
  maxShardSize: string;
  dryRun?: boolean;
  force?: boolean;
  json?: boolean;
  quiet?: boolean;
  allowNonfinite?: boolean;
  mlaSplit?: boolean;
  stackExperts?: boolean;
  requantize?: boolean;
  threads?: string;
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
    outputFormat: parseOutputFormat(flags.format ?? 'hf'),
    exclude: parseExcludePatterns(flags.exclude ?? []),
    include: parseExcludePatterns(flags.include ?? [], '--include'),
    maxShardBytes: parseSize('--max-shard-size', flags.maxShardSize),
    dryRun: flags.dryRun === true,
    force: flags.force === true,
    allowNonFinite: flags.allowNonfinite === true,
    mlaSplit: flags.mlaSplit === true,
    stackExperts: flags.stackExperts === true,
    requantize: flags.requantize === true,
    threads: flags.threads === undefined ? undefined : parsePositiveInt('--threads', flags.threads),
  } as const;
  const staticFlags = parseCalibrationFlags(flags);
  try {
    // A flag combination the chosen layout cannot express is a command-line error, found before any reading.
    checkOutputFormat({ settings: { format: options.format, block: options.block, scaleFormat, activationScheme: staticFlags.activationScheme } }, options.outputFormat);
  } catch (e) {
    if (e instanceof OutputFormatError) throw new UsageError(e.message);
    throw e;
  }
  if (flags.pushTo !== undefined && options.dryRun) throw new UsageError('--push-to cannot be combined with --dry-run: nothing would be written to push');
  const resolved = await resolveModelSource(source, flags, mode);
  const calibration = await resolveCalibration(staticFlags);
  const progress = options.dryRun ? undefined : new ByteProgress(mode, 'converting');
  let plan: ConvertPlan | undefined;
  try {
    const converted = await convertCheckpoint({
      ...options,
      input: resolved.dir,
      activationScheme: staticFlags.activationScheme,
      ...(calibration === undefined ? {} : { calibration }),
      onEvent: (e) => {
        const calibrationLine = describeCalibrationEvent(e);
        if (e.type === 'warning') warn(mode, e.message);
        else if (e.type === 'calibration-fallback') {
          warn(mode, `calibration: no token was routed to ${e.expert}; the activation scales of ${e.modules.map((m) => m.slice(e.expert.length + 1)).join(', ')} are measured on the MoE block's whole input`);
        } else if (calibrationLine !== undefined) {
          if (progress) progress.note(calibrationLine);
          else info(mode, calibrationLine);
        } else if (e.type === 'plan') plan = e.plan;
        else if (e.type === 'tensor') progress?.item(e.name);
        else if (e.type === 'bytes') progress?.update(e.done, e.total);
      },
    });
    const pushedTo = flags.pushTo !== undefined ? await pushConversion(converted.output, flags.pushTo, source, resolved.commit, flags, mode) : undefined;
    const summary = pushedTo !== undefined ? { ...converted, input: source, pushedTo } : { ...converted, input: source };
    if (mode.json) printJson(options.dryRun ? { ...summary, plan: planForJson(plan!) } : summary);
    else if (options.dryRun) printPlan(plan!, summary, mode);
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

/** --exclude / --include values, checked before any reading: a bad `re:` pattern is a command-line error. */
function parseExcludePatterns(patterns: readonly string[], flag = '--exclude'): string[] {
  for (const p of patterns) {
    try {
      compileExcludePattern(p, flag);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  }
  return [...patterns];
}

export function planForJson(plan: ConvertPlan): unknown {
  return {
    architecture: plan.architecture,
    family: plan.family ?? null,
    recipe: plan.recipe ?? null,
    settings: plan.settings,
    modules: plan.modules,
    entries: plan.entries.map((e) => ({
      op: e.op,
      sources: e.sources,
      outputs: e.outputs,
      ...entryDetails(e),
    })),
  };
}

function printPlan(plan: ConvertPlan, summary: ConvertSummary, mode: OutputMode): void {
  const lines: string[] = [];
  lines.push(`plan for ${summary.input} (${plan.architecture}), nothing written:`);
  lines.push(...recipeLines(plan.recipe));
  for (const e of plan.entries) lines.push(`  ${describeEntry(e)}`);
  lines.push(
    `${summary.tensorsQuantized} to quantize, ${summary.tensorsKept} to keep; ${formatBytes(summary.bytesIn)} → ${formatBytes(summary.bytesOut)}`,
  );
  process.stdout.write(`${lines.join('\n')}\n`);
  const key = summary.outputFormat === 'compressed-tensors' ? 'ignore' : 'modules_to_not_convert';
  info(mode, `${key}: ${JSON.stringify(plan.notConverted)}`);
}
