// `fp8q inspect`: renders an InspectReport as a table, or JSON.

import { inspectCheckpoint, type InspectReport } from '../../pipeline/inspect/inspect-checkpoint.js';
import { formatBytes } from '../../io/sizes.js';
import { structureLines } from '../../passes/model-structure.js';
import type { PlanRecipe } from '../../passes/plan.js';
import { outputMode, printJson, warn } from '../common/output.js';
import { deployCheckSourceOf } from '../../pipeline/inspect/deploy-check-input.js';
import { CheckpointError } from '../../io/errors.js';
import { deployCheck, reportLines, type DeployReport } from '../../passes/deploy-check/index.js';
import type { InspectFlags } from './inspect-flags.js';

/** The deployment check at the end of inspect; a checkpoint it cannot judge is a warning, not a failure. */
async function deployReportOf(dir: string, warnings: string[]): Promise<DeployReport | null> {
  try {
    return deployCheck((await deployCheckSourceOf(dir)).input);
  } catch (e) {
    if (!(e instanceof CheckpointError)) throw e;
    warnings.push(`deployment check skipped: ${e.message}`);
    return null;
  }
}

/** The family's convert rules, as inspect and convert --dry-run state them. */
export function recipeLines(recipe: PlanRecipe | null | undefined): string[] {
  if (!recipe) return [];
  return [`  convert rules: ${recipe.name}, checked against ${recipe.checkedAgainst}`, ...recipe.notes.map((n) => `    ${n}`)];
}

export async function inspectCommand(dir: string, flags: InspectFlags): Promise<InspectReport> {
  const mode = outputMode(flags);
  const report = await inspectCheckpoint(dir);
  const deployWarnings: string[] = [];
  const deploy = await deployReportOf(dir, deployWarnings);
  if (mode.json) {
    printJson({ ...report, deployCheck: deploy, warnings: [...report.warnings, ...deployWarnings] });
    return report;
  }
  for (const w of [...report.warnings, ...deployWarnings]) warn(mode, w);
  const lines = [
    `${report.dir}: ${report.architecture}${report.recipe ? ` (${report.recipe.name}; family ${report.family})` : ' (unknown family: generic rules)'}`,
    ...recipeLines(report.recipe),
    `  ${report.tensors} tensors in ${report.shards.length} shard(s), ${(report.parameters / 1e6).toFixed(2)}M parameters, ${formatBytes(report.bytes)}`,
    '  dtype      tensors   parameters        bytes',
    ...report.byDtype.map((g) => `  ${g.dtype.padEnd(9)} ${String(g.tensors).padStart(8)} ${String(g.parameters).padStart(12)} ${formatBytes(g.bytes).padStart(12)}`),
  ];
  lines.push(...structureLines(report.mla, report.experts, report.fp8));
  if (report.quantizedBy) {
    lines.push(`  quantized: ${report.quantizedBy}`);
    const qf = report.quantizedFormat;
    if (qf) {
      lines.push(
        `  format: ${qf.format} (scales "*.${qf.scaleSuffix}"), block ${qf.block.bn}x${qf.block.bk}, ${qf.fmt}, activations ${qf.activationScheme}, ${qf.ignore.length} module(s) not quantized`,
      );
    }
    const sc = report.scales;
    if (sc) {
      const what = sc.found === 'ue8m0' ? 'ue8m0 (every scale is a power of two)' : 'float';
      lines.push(`  scale format: ${what}; declared ${sc.declared}; ${sc.values} scales in ${sc.tensors} tensors`);
    }
    lines.push(`  quantization_config: ${JSON.stringify(report.quantizationConfig)}`);
  } else {
    lines.push(`  a convert would quantize ${report.wouldQuantize.length} modules and keep ${report.wouldKeep.length}:`);
    for (const m of report.wouldQuantize) lines.push(`    quantize ${m}`);
    for (const m of report.wouldKeep) lines.push(`    keep     ${m.module} (${m.reason})`);
  }
  if (deploy) lines.push(...reportLines(deploy));
  process.stdout.write(`${lines.join('\n')}\n`);
  return report;
}
