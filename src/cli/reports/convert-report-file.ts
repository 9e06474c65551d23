// The --report file of one `fp8q convert`: checked before the conversion starts (so a path that
// cannot be written costs nothing), written once the checkpoint is in place.

import { stat } from 'node:fs/promises';
import { fp8qVersion } from '../../io/hub/version.js';
import type { ConvertSummary } from '../../pipeline/convert-checkpoint.js';
import type { ConvertPlan } from '../../passes/plan.js';
import { UsageError } from '../common/errors.js';
import { info, type OutputMode } from '../common/output.js';
import { renderConvertReport } from './convert-report.js';
import { checkReportTargets, writeReportFile } from './report-files.js';

async function isFolder(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** Refuse a --report that cannot be honoured: with --dry-run, inside the source or output folder, existing without --force. */
export async function checkConvertReport(report: string, opts: { source: string; output: string; force: boolean; dryRun: boolean; calibration?: string }): Promise<void> {
  if (opts.dryRun) throw new UsageError('--report cannot be combined with --dry-run: nothing is converted to report on (--dry-run --json prints the plan)');
  // A Hub id names no local folder; its download lands in the Hugging Face cache, not beside the report.
  const folders = [{ role: 'output', path: opts.output }, ...((await isFolder(opts.source)) ? [{ role: 'source', path: opts.source }] : [])];
  const inputs = opts.calibration === undefined ? [] : [{ flag: '--calibration', path: opts.calibration }];
  await checkReportTargets([{ flag: '--report', path: report }], { force: opts.force, folders, inputs });
}

export async function writeConvertReport(report: string, converted: { summary: ConvertSummary; plan: ConvertPlan; sourceRevision?: string }, mode: OutputMode): Promise<void> {
  await writeReportFile(report, renderConvertReport({ ...converted, version: fp8qVersion() }));
  info(mode, `conversion report: ${report}`);
}
