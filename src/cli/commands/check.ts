// `fp8q check`: will this checkpoint load in each engine at each tensor-parallel size? Renders the
// deployment check (passes/deploy-check/) as a table with findings and suggestions, or JSON.
// Exit 0 whatever the verdicts: the report is the result (convert --target is the gate).

import { deployCheckSourceOf } from '../../pipeline/inspect/deploy-check-input.js';
import { DEFAULT_TP_SIZES, deployCheck, ENGINES, parseEngines, parseTpSizes, reportLines, type DeployReport } from '../../passes/deploy-check/index.js';
import { UsageError } from '../common/errors.js';
import { parseBlock } from '../common/options.js';
import { outputMode, printJson, warn } from '../common/output.js';

export interface CheckFlags {
  engine?: string;
  tp?: string;
  block?: string;
  json?: boolean;
}

function parseOr<T>(parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

export async function checkCommand(dir: string, flags: CheckFlags): Promise<DeployReport> {
  const mode = outputMode(flags);
  const engines = flags.engine === undefined ? [...ENGINES] : parseOr(() => parseEngines(flags.engine!));
  const tpSizes = flags.tp === undefined ? [...DEFAULT_TP_SIZES] : parseOr(() => parseTpSizes(flags.tp!));
  const block = flags.block === undefined ? undefined : parseBlock(flags.block);
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
