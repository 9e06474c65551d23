// Will it load? The deployment check: for each engine and tensor-parallel size, the findings of
// its rules (rules.ts) on a checkpoint's inventory (inventory.ts), a verdict, and — for targets
// that fail — the block sizes or exclusions that would make them load, with their cost. A pure
// function from data to a report; the CLI renders it (reportLines gives the text).

import { ceilDiv } from '../../fp8/block-quantize.js';
import { ENGINES, type EngineId } from './engines.js';
import type { DeployTarget } from './target-lists.js';
import type { DeployCheckInput, QuantizedLinear } from './inventory.js';
import { evaluateEngine, type Finding } from './rules.js';
import { patternOf } from './topology.js';
import type { ConvertPlan } from '../plan.js';

export { ENGINES, ENGINE_LABELS, parseEngines, type EngineId } from './engines.js';
export type { DeployTarget } from './target-lists.js';
export { inventoryFromCheckpoint, inventoryFromPlan, type DeployCheckInput } from './inventory.js';
export type { Finding } from './rules.js';

export const DEFAULT_TP_SIZES: readonly number[] = [1, 2, 4, 8];

export type Verdict = 'loads' | 'fails';

export interface TargetResult {
  readonly engine: EngineId;
  readonly tp: number;
  readonly verdict: Verdict;
  readonly findings: readonly Finding[];
}

export interface Suggestion {
  readonly engine: EngineId;
  readonly tp: number;
  /** `--block NxK` or `--exclude …` flags that make this target load. */
  readonly flags: string;
  readonly why: string;
  /** Scale values (float32 each) at the checked block, and with the suggestion. */
  readonly scalesBefore: number;
  readonly scalesAfter: number;
  /** Extra bytes of the checkpoint with the suggestion (scales, or BF16 instead of FP8 weights). */
  readonly extraBytes: number;
}

export interface DeployReport {
  readonly block: { readonly bn: number; readonly bk: number };
  readonly fmt: string;
  readonly activationScheme: string;
  readonly layout: string;
  readonly engines: readonly EngineId[];
  readonly tpSizes: readonly number[];
  readonly results: readonly TargetResult[];
  readonly suggestions: readonly Suggestion[];
  /** Where the rules and the engine versions they were read from are written down. */
  readonly rulesFrom: string;
}

function evaluateTarget(input: DeployCheckInput, engine: EngineId, tp: number): TargetResult {
  const findings = evaluateEngine(engine, input, tp);
  return { engine, tp, verdict: findings.some((f) => f.severity === 'fail') ? 'fails' : 'loads', findings };
}

export function scaleCount(linears: readonly QuantizedLinear[], bn: number, bk: number): number {
  let n = 0;
  for (const l of linears) n += l.experts * ceilDiv(l.outFeatures, bn) * ceilDiv(l.inFeatures, bk);
  return n;
}

/** The same checkpoint quantized with another block: scale shapes follow the block. */
export function withBlock(input: DeployCheckInput, bn: number, bk: number): DeployCheckInput {
  const linears = input.linears.map((l) => {
    const grid = [ceilDiv(l.outFeatures, bn), ceilDiv(l.inFeatures, bk)];
    const expected = l.expectedScaleShape.length === 3 ? [l.experts, ...grid] : grid;
    return { ...l, expectedScaleShape: expected, scale: l.scale ? { ...l.scale, shape: expected } : undefined };
  });
  return { ...input, block: { bn, bk }, quantizationConfig: { ...input.quantizationConfig, weight_block_size: [bn, bk] }, linears };
}

/** The same checkpoint with these linears kept in BF16 and listed where every engine looks for kept layers. */
function withExcluded(input: DeployCheckInput, modules: ReadonlySet<string>): DeployCheckInput {
  const moved = input.linears.filter((l) => modules.has(l.module));
  const kept = [...input.kept, ...moved.filter((l) => l.experts === 1).map((l) => ({ module: l.module, shape: [l.outFeatures, l.inFeatures] }))];
  const list = [...((input.quantizationConfig['modules_to_not_convert'] as string[] | undefined) ?? []), ...moved.map((l) => l.module)];
  return {
    ...input,
    linears: input.linears.filter((l) => !modules.has(l.module)),
    kept,
    tensorNames: input.tensorNames.filter((n) => !moved.some((l) => l.scale?.name === n)),
    quantizationConfig: { ...input.quantizationConfig, modules_to_not_convert: list, ignored_layers: list },
  };
}

/** Blocks tried when shapes fail, largest first (fewest scales). */
const CANDIDATE_BLOCKS: readonly [number, number][] = [
  [128, 128],
  [128, 64],
  [64, 128],
  [64, 64],
  [32, 32],
];

const SHAPE_RULES = new Set(['column-slice', 'merged-part', 'row-slice', 'moe-intermediate', 'mla-alignment', 'activation-groups', 'scale-shape', 'block-size']);

function suggest(input: DeployCheckInput, failing: TargetResult): Suggestion | undefined {
  const fails = failing.findings.filter((f) => f.severity === 'fail');
  const before = scaleCount(input.linears, input.block.bn, input.block.bk);
  if (fails.every((f) => SHAPE_RULES.has(f.rule))) {
    for (const [bn, bk] of CANDIDATE_BLOCKS) {
      if (bn === input.block.bn && bk === input.block.bk) continue;
      const r = evaluateTarget(withBlock(input, bn, bk), failing.engine, failing.tp);
      if (r.verdict === 'loads') {
        const after = scaleCount(input.linears, bn, bk);
        return {
          engine: failing.engine,
          tp: failing.tp,
          flags: `--block ${bn}x${bk}`,
          why: 'every slice lines up with the smaller block',
          scalesBefore: before,
          scalesAfter: after,
          extraBytes: (after - before) * 4,
        };
      }
    }
  }
  // Keeping the failing linears in BF16: only when the failures name linears.
  const modules = new Set<string>();
  const patterns = new Set<string>();
  for (const f of fails) {
    if (!f.tensors || !['column-slice', 'merged-part', 'row-slice', 'moe-intermediate', 'activation-groups'].includes(f.rule)) return undefined;
    patterns.add(f.tensors.pattern);
  }
  for (const l of input.linears) {
    if (patterns.has(patternOf(l.weight)) || (l.scale && patterns.has(patternOf(l.scale.name)))) modules.add(l.module);
  }
  // Merged layers must be kept whole: add the other parts of any q/k/v or gate/up touched.
  for (const l of input.linears) {
    const parent = l.module.slice(0, l.module.lastIndexOf('.'));
    if (modules.has(l.module)) continue;
    if ([...modules].some((m) => m.slice(0, m.lastIndexOf('.')) === parent && /(q|k|v|gate|up)_proj$/.test(m) && /(q|k|v|gate|up)_proj$/.test(l.module))) modules.add(l.module);
  }
  if (modules.size === 0) return undefined;
  const r = evaluateTarget(withExcluded(input, modules), failing.engine, failing.tp);
  if (r.verdict !== 'loads') return undefined;
  const excluded = input.linears.filter((l) => modules.has(l.module));
  const params = excluded.reduce((s, l) => s + l.experts * l.outFeatures * l.inFeatures, 0);
  const scales = scaleCount(excluded, input.block.bn, input.block.bk);
  return {
    engine: failing.engine,
    tp: failing.tp,
    flags: excludeFlags(excluded.map((l) => l.module)),
    why: `${excluded.length} linears kept in BF16 (${formatCount(params)} parameters)`,
    scalesBefore: before,
    scalesAfter: before - scales,
    extraBytes: params - scales * 4,
  };
}

/**
 * `--exclude` flags that keep exactly these modules (any layer or expert index): one flag per
 * module pattern when there are few, else one regular expression over their common prefix, so the
 * suggestion can be pasted as it is printed.
 */
export function excludeFlags(modules: readonly string[]): string {
  const patterns = [...new Set(modules.map((m) => patternOf(m).replace(/\./g, '\\.').replace(/\*/g, '\\d+')))].sort();
  if (patterns.length <= 3) return patterns.map((p) => `--exclude 're:^${p}$'`).join(' ');
  // The common prefix up to a dot: model\.layers\.\d+\.(?:mlp\.gate_proj|self_attn\.q_proj|…)
  let prefix = patterns[0]!;
  for (const p of patterns) while (!p.startsWith(prefix)) prefix = prefix.slice(0, -1);
  const cut = prefix.lastIndexOf('\\.');
  prefix = cut < 0 ? '' : prefix.slice(0, cut + 2);
  const flag = `--exclude 're:^${prefix}(?:${patterns.map((p) => p.slice(prefix.length)).join('|')})$'`;
  return flag.length <= 400 ? flag : `--exclude … (${modules.length} linears)`;
}

export function deployCheck(
  input: DeployCheckInput,
  options: { engines?: readonly EngineId[]; tpSizes?: readonly number[]; targets?: readonly DeployTarget[] } = {},
): DeployReport {
  const engines = options.targets ? [...new Set(options.targets.map((t) => t.engine))] : [...(options.engines ?? ENGINES)];
  const tpSizes = options.targets ? [...new Set(options.targets.map((t) => t.tp))].sort((a, b) => a - b) : [...(options.tpSizes ?? DEFAULT_TP_SIZES)];
  const pairs = options.targets ?? engines.flatMap((engine) => tpSizes.map((tp) => ({ engine, tp })));
  const results = pairs.map((p) => evaluateTarget(input, p.engine, p.tp));
  const suggestions: Suggestion[] = [];
  for (const r of results) {
    if (r.verdict !== 'fails') continue;
    const s = suggest(input, r);
    if (s) suggestions.push(s);
  }
  return {
    block: input.block,
    fmt: input.fmt,
    activationScheme: input.activationScheme,
    layout: input.layout,
    engines,
    tpSizes,
    results,
    suggestions,
    rulesFrom: 'docs/ENGINES.md',
  };
}

export function failingTargets(report: DeployReport): TargetResult[] {
  return report.results.filter((r) => r.verdict === 'fails');
}

function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} k`;
  return String(n);
}

function formatBytesShort(n: number): string {
  const a = Math.abs(n);
  const s = a >= 1e9 ? `${(a / 1e9).toFixed(2)} GB` : a >= 1e6 ? `${(a / 1e6).toFixed(1)} MB` : a >= 1e3 ? `${(a / 1e3).toFixed(1)} kB` : `${a} B`;
  return `${n < 0 ? '-' : '+'}${s}`;
}

/** The report as text: a verdict matrix, then each distinct failure once with the sizes it hits, then suggestions. */
export function reportLines(report: DeployReport): string[] {
  const lines: string[] = [];
  lines.push(
    `deployment check (block ${report.block.bn}x${report.block.bk}, ${report.fmt}, ${report.activationScheme} activations, ${report.layout} layout; rules and engine versions: ${report.rulesFrom}):`,
  );
  const width = Math.max(...report.engines.map((e) => e.length), 6) + 2;
  lines.push(`  ${'engine'.padEnd(width)}${report.tpSizes.map((t) => `tp${t}`.padEnd(7)).join('')}`.trimEnd());
  for (const e of report.engines) {
    const cells = report.tpSizes.map((tp) => {
      const r = report.results.find((x) => x.engine === e && x.tp === tp);
      if (!r) return '-'.padEnd(7);
      const warn = r.findings.some((f) => f.severity === 'warn');
      return (r.verdict === 'loads' ? (warn ? 'warn' : 'ok') : 'FAIL').padEnd(7);
    });
    lines.push(`  ${e.padEnd(width)}${cells.join('')}`.trimEnd());
  }
  const merged = new Map<string, { f: Finding; tps: number[] }>();
  for (const r of report.results) {
    for (const f of r.findings) {
      const key = `${f.engine}|${f.rule}|${f.severity}|${f.message}|${f.tensors?.pattern ?? ''}`;
      const m = merged.get(key);
      if (m) m.tps.push(f.tp);
      else merged.set(key, { f, tps: [f.tp] });
    }
  }
  if (merged.size > 0) lines.push('  findings:');
  for (const { f, tps } of merged.values()) {
    const where = f.tensors ? ` — ${f.tensors.pattern}${f.tensors.count > 1 ? ` (${f.tensors.count} tensors, e.g. ${f.tensors.example})` : ''}` : '';
    lines.push(`  ${f.severity === 'fail' ? 'FAIL' : 'warn'} ${f.engine} tp${tps.join('/')}: ${f.message}${where}`);
    if (f.source) lines.push(`       rule: ${f.source}`);
  }
  const byFlags = new Map<string, { s: Suggestion; targets: string[] }>();
  for (const s of report.suggestions) {
    const m = byFlags.get(s.flags);
    if (m) m.targets.push(`${s.engine}:tp${s.tp}`);
    else byFlags.set(s.flags, { s, targets: [`${s.engine}:tp${s.tp}`] });
  }
  for (const { s, targets } of byFlags.values()) {
    lines.push(
      `  suggestion for ${targets.join(', ')}: ${s.flags} — ${s.why}; scales ${formatCount(s.scalesBefore)} → ${formatCount(s.scalesAfter)}, ${formatBytesShort(s.extraBytes)} (run fp8q verify on the result to see its accuracy)`,
    );
  }
  return lines;
}

/**
 * The config keys the targets read beyond what fp8q writes anyway: vLLM (and SGLang first) take
 * kept layers from `ignored_layers`, so an hf-layout config with kept linears lists them there too.
 */
export function withTargetKeys<T extends object>(qc: T, plan: Pick<ConvertPlan, 'notConverted'>, targets: readonly DeployTarget[]): T {
  const record = qc as Record<string, unknown>;
  const wantsIgnored = targets.some((t) => t.engine === 'vllm' || t.engine === 'sglang');
  if (!wantsIgnored || record['quant_method'] !== 'fp8' || plan.notConverted.length === 0) return qc;
  return { ...qc, ignored_layers: [...plan.notConverted] };
}

/** `convert --target …`: a target would refuse the output; nothing was read or written. */
export class DeployTargetError extends Error {
  constructor(readonly report: DeployReport) {
    const failing = failingTargets(report);
    const lines = reportLines({ ...report, results: failing }).filter((l) => !l.startsWith('  engine') && !/^ {2}[a-z]+ {2,}/.test(l));
    super(
      `refusing to convert: the output would not load in ${failing.map((r) => `${r.engine}:tp${r.tp}`).join(', ')}\n${lines.join('\n')}\n` +
        'nothing was written; change the block or exclusions as suggested, or pass --force-target to convert anyway',
    );
    this.name = 'DeployTargetError';
  }
}
