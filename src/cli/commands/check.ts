// `fp8q check`: will this checkpoint load in each engine at each tensor-parallel size? Renders the
// deployment check (passes/deploy-check/) as a table with findings and suggestions, or JSON.
// Exit 0 whatever the verdicts: the report is the result (convert --target is the gate).

import { deployCheckSourceOf } from '../../pipeline/inspect/deploy-check-input.js';
import { DEFAULT_TP_SIZES, deployCheck, ENGINES, reportLines, type DeployReport } from '../../passes/deploy-check/index.js';
import { readFlags } from '../common/flags.js';
import { outputMode, printJson, warn } from '../common/output.js';
import { CHECK_FLAGS, type CheckFlags } from './check-flags.js';

export async function checkCommand(dir: string, flags: CheckFlags): Promise<DeployReport> {
  const mode = outputMode(flags);
  const { engines = [...ENGINES], tpSizes = [...DEFAULT_TP_SIZES], block } = readFlags(CHECK_FLAGS, flags);
  const source = await deployCheckSourceOf(dir, block ? { block } : {});
  if (source.judged === 'checkpoint' && block)
    warn(mode, `--block is ignored for an FP8 checkpoint: it is checked at its own block ${source.input.block.bn}x${source.input.block.bk}`);
  const report = deployCheck(source.input, { engines, tpSizes });
  if (mode.json) {
    printJson({ dir, judged: source.judged, architecture: source.input.label, ...report, warnings: source.warnings });
    return report;
  }
  for (const w of source.warnings) warn(mode, w);
  const what = source.judged === 'plan' ? `as fp8q convert would write it (block ${report.block.bn}x${report.block.bk})` : 'as stored';
  process.stdout.write(`${dir}: ${source.input.label}, ${what}\n${reportLines(report).join('\n')}\n`);
  return report;
}
