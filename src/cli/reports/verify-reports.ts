// The report files of one `fp8q verify` run: --junit, --markdown and the GitHub job summary
// ($GITHUB_STEP_SUMMARY, unless --no-summary). Checked before the run starts, so a path that
// cannot be written costs nothing; written after it, whether the gates passed or not (a failed
// gate is exactly what a CI page must show).

import { hostname } from 'node:os';
import type { VerifyEvent } from '../../runtime/verify/verify-checkpoints.js';
import { fp8qVersion } from '../../io/hub/version.js';
import { info, warn, type OutputMode } from '../common/output.js';
import { appendJobSummary, checkReportTargets, folderHolding, writeReportFile, type ReportTarget } from './report-files.js';
import { renderVerifyJunit } from './verify-junit.js';
import { renderVerifyMarkdown } from './verify-markdown.js';
import type { VerifyReportView } from './verify-report-view.js';
import { VerifyTimer } from './verify-timings.js';

export interface VerifyReportFlags {
  junit?: string;
  markdown?: string;
  /** false with --no-summary. */
  summary?: boolean;
  force?: boolean;
  /** The input files, which no report may replace. */
  text?: string;
  dataset?: string;
  inputIds?: string;
}

export class VerifyReportWriter {
  private readonly timer = new VerifyTimer();
  private readonly startedAt = new Date();

  private constructor(
    private readonly flags: VerifyReportFlags,
    private readonly summaryFile: string | undefined,
    private readonly summarySkipped?: string,
  ) {}

  /** Checks the report paths against the models' folders; call before the run. */
  static async prepare(flags: VerifyReportFlags, models: { original: string; quantized: string }, env: NodeJS.ProcessEnv = process.env): Promise<VerifyReportWriter> {
    const targets: ReportTarget[] = [];
    if (flags.junit !== undefined) targets.push({ flag: '--junit', path: flags.junit });
    if (flags.markdown !== undefined) targets.push({ flag: '--markdown', path: flags.markdown });
    const folders = [
      { role: 'original', path: models.original },
      { role: 'quantized', path: models.quantized },
    ];
    const inputs = (
      [
        ['--text', flags.text],
        ['--dataset', flags.dataset],
        ['--input-ids', flags.inputIds],
      ] as const
    ).flatMap(([flag, path]) => (path === undefined ? [] : [{ flag, path }]));
    await checkReportTargets(targets, { force: flags.force === true, folders, inputs });
    const summary = env['GITHUB_STEP_SUMMARY'];
    if (flags.summary === false || summary === undefined || summary === '') return new VerifyReportWriter(flags, undefined);
    // fp8q never writes into a model folder, whoever names the file: the summary is skipped, not the run.
    const holder = await folderHolding(summary, folders);
    const skipped = holder && `$GITHUB_STEP_SUMMARY (${summary}) is inside the ${holder.role} folder ${holder.path}: not appending the report to it`;
    return new VerifyReportWriter(flags, skipped ? undefined : summary, skipped);
  }

  /** Feed every progress event here: the reports show per-layer times. */
  observe(event: VerifyEvent): void {
    this.timer.observe(event);
  }

  async write(report: VerifyReportView, mode: OutputMode): Promise<void> {
    const view: VerifyReportView = { ...report, timings: report.timings ?? this.timer.finish() };
    if (this.flags.junit !== undefined) {
      await writeReportFile(this.flags.junit, renderVerifyJunit(view, { startedAt: this.startedAt, hostname: hostname(), version: fp8qVersion() }));
      info(mode, `JUnit report: ${this.flags.junit}`);
    }
    const markdown = this.flags.markdown !== undefined || this.summaryFile !== undefined ? renderVerifyMarkdown(view) : undefined;
    if (this.flags.markdown !== undefined) {
      await writeReportFile(this.flags.markdown, markdown!);
      info(mode, `Markdown report: ${this.flags.markdown}`);
    }
    if (this.summarySkipped !== undefined) warn(mode, this.summarySkipped);
    if (this.summaryFile !== undefined) {
      try {
        await appendJobSummary(this.summaryFile, markdown!);
      } catch (e) {
        // The job summary is a courtesy of the CI page; the gates' verdict and the report files stand without it.
        warn(mode, `cannot append to $GITHUB_STEP_SUMMARY (${this.summaryFile}): ${(e as Error).message}`);
      }
    }
  }
}
