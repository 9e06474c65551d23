// `fp8q convert`: flags → ConvertOptions (read by convert-flags.ts's table; the combinations
// checked here), progress rendering, and the summary (table or JSON).

import { convertCheckpoint, type ConvertSummary } from '../../pipeline/convert-checkpoint.js';
import { checkOutputFormat, OutputFormatError } from '../../pipeline/output-format.js';
import { formatBytes } from '../../io/sizes.js';
import type { ConvertPlan } from '../../passes/plan.js';
import { describeEntry, entryDetails } from '../../passes/plan-describe.js';
import { recipeLines } from './inspect.js';
import { capThreads } from '../common/options.js';
import { ByteProgress, info, outputMode, printJson, warn, type OutputMode } from '../common/output.js';
import { EXIT_USAGE, ExitError, UsageError } from '../common/errors.js';
import { DeployTargetError, failingTargets, reportLines } from '../../passes/deploy-check/index.js';
import { checkHubFlags, checkPushTarget, pushConversion, resolveModelSource } from '../common/hub-source.js';
import { checkConvertReport, writeConvertReport } from '../reports/convert-report-file.js';
import { readFlags } from '../common/flags.js';
import { CONVERT_FLAGS, type ConvertFlags } from './convert-flags.js';
import { describeCalibrationEvent, parseCalibrationFlags, resolveCalibration } from '../common/calibration-flags.js';

export async function convertCommand(source: string, flags: ConvertFlags): Promise<ConvertSummary> {
  if (!flags.output) throw new UsageError('missing -o <out-dir>: say where to write the FP8 checkpoint');
  const mode = outputMode(flags);
  // Every value read by its row of CONVERT_FLAGS (most rows fill a ConvertOptions field, and
  // convertCheckpoint reads only those); what stays here is how flags combine.
  const { deployTargets, forceTarget, threads, ...options } = readFlags(CONVERT_FLAGS, flags);
  if (forceTarget && deployTargets === undefined) throw new UsageError('--force-target needs --target <engines>, e.g. --target vllm:tp8,mlc');
  const staticFlags = parseCalibrationFlags(options);
  try {
    // A flag combination the chosen layout cannot express is a command-line error, found before any reading.
    checkOutputFormat(
      { settings: { format: options.format, block: options.block, scaleFormat: options.scaleFormat, activationScheme: staticFlags.activationScheme } },
      options.outputFormat,
    );
  } catch (e) {
    if (e instanceof OutputFormatError) throw new UsageError(e.message);
    throw e;
  }
  if (flags.pushTo !== undefined && options.dryRun) throw new UsageError('--push-to cannot be combined with --dry-run: nothing would be written to push');
  if (options.mlaSplit && options.outputFormat === 'compressed-tensors') {
    throw new UsageError("--mla-split writes MLC LLM's layout, which reads the hf format only: drop --mla-split or use --format hf");
  }
  // Everything about the Hub that can be checked before a byte is read (ids, URL, token for --push-to).
  for (const w of await checkHubFlags(source, flags)) warn(mode, w);
  await checkPushTarget(flags);
  if (flags.report !== undefined)
    await checkConvertReport(flags.report, {
      source,
      output: flags.output,
      force: options.force,
      dryRun: options.dryRun,
      ...(flags.calibration === undefined ? {} : { calibration: flags.calibration }),
    });
  const resolved = await resolveModelSource(source, flags, mode);
  const calibration = await resolveCalibration(staticFlags);
  const progress = options.dryRun ? undefined : new ByteProgress(mode, 'converting');
  let plan: ConvertPlan | undefined;
  try {
    const converted = await convertCheckpoint({
      ...options,
      input: resolved.dir,
      output: flags.output,
      ...(threads === undefined ? {} : { threads: capThreads(threads, mode) }),
      // The shard hashes are shown only by --json and --report; a plain convert does not pay for them.
      hashShards: mode.json || flags.report !== undefined,
      activationScheme: staticFlags.activationScheme,
      ...(calibration === undefined ? {} : { calibration }),
      // A dry run shows the plan and the targets' findings whatever they are; the refusal follows them.
      ...(deployTargets ? { deployTargets, forceTarget: forceTarget || options.dryRun } : {}),
      onEvent: (e) => {
        const calibrationLine = describeCalibrationEvent(e);
        if (e.type === 'warning') warn(mode, e.message);
        else if (e.type === 'calibration-fallback') {
          warn(
            mode,
            `calibration: no token was routed to ${e.expert}; the activation scales of ${e.modules.map((m) => m.slice(e.expert.length + 1)).join(', ')} are measured on the MoE block's whole input`,
          );
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
    if (flags.report !== undefined)
      await writeConvertReport(flags.report, { summary, plan: plan!, ...(resolved.commit === undefined ? {} : { sourceRevision: resolved.commit }) }, mode);
    const refused = options.dryRun && deployTargets && !forceTarget ? refusedTargets(summary) : undefined;
    if (mode.json) {
      const error = refused ? { error: { code: refused.errorCode, exitCode: refused.exitCode, message: refused.message } } : {};
      printJson(options.dryRun ? { ...summary, plan: planForJson(plan!), ...error } : summary);
    } else if (options.dryRun) printPlan(plan!, summary, mode);
    else {
      if (summary.deployCheck) {
        const failing = summary.deployCheck.results.filter((r) => r.verdict === 'fails');
        if (failing.length > 0) warn(mode, `--force-target: converting although ${failing.map((r) => `${r.engine}:tp${r.tp}`).join(', ')} would refuse the output`);
      }
      progress?.succeed(
        `${summary.output}: ${summary.tensorsQuantized} tensors quantized, ${summary.tensorsKept} kept, ` +
          `${formatBytes(summary.bytesIn)} → ${formatBytes(summary.bytesOut)} in ${summary.seconds.toFixed(1)} s`,
      );
    }
    if (refused) throw new ExitError(refused.message, refused.exitCode, refused.errorCode, mode.json);
    return summary;
  } catch (e) {
    progress?.fail();
    // A target that would refuse the output is a command-line choice to revisit: exit 2, nothing written.
    if (e instanceof DeployTargetError) throw new ExitError(e.message, EXIT_USAGE, 'E_USAGE');
    throw e;
  }
}

/**
 * A dry run's check of its --target engines, one refusing the output: the refusal a real run would
 * end with, in one line (the findings and suggestions are in the plan's deployment check).
 */
function refusedTargets(summary: ConvertSummary): ExitError | undefined {
  const failing = summary.deployCheck ? failingTargets(summary.deployCheck) : [];
  if (failing.length === 0) return undefined;
  return new ExitError(
    `dry run: a real run would refuse to convert, as the output would not load in ${failing.map((r) => `${r.engine}:tp${r.tp}`).join(', ')}; ` +
      'change the block or exclusions as the deployment check suggests, or pass --force-target to convert anyway',
    EXIT_USAGE,
    'E_USAGE',
  );
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
  lines.push(`${summary.tensorsQuantized} to quantize, ${summary.tensorsKept} to keep; ${formatBytes(summary.bytesIn)} → ${formatBytes(summary.bytesOut)}`);
  process.stdout.write(`${lines.join('\n')}\n`);
  const key = summary.outputFormat === 'compressed-tensors' ? 'ignore' : 'modules_to_not_convert';
  info(mode, `${key}: ${JSON.stringify(plan.notConverted)}`);
  if (summary.deployCheck) process.stdout.write(`${reportLines(summary.deployCheck).join('\n')}\n`);
}
