// `convert --report`: what a conversion did, as Markdown fit to paste into a model card: the
// settings, what was quantized and what was kept and why (modules folded over layers and experts,
// so a 61-layer model is a dozen rows, not thousands), sizes before and after, each shard's
// SHA-256, and the `quantization_config` written to config.json. Pure: summary and plan in, text out.

import type { ConvertSummary } from '../../pipeline/convert-checkpoint.js';
import { formatBytes } from '../../io/sizes.js';
import type { ConvertPlan } from '../../passes/plan.js';
import { cell, code, codeCell, ranges, table } from './markdown.js';

export interface ConvertReportInput {
  readonly summary: ConvertSummary;
  readonly plan: ConvertPlan;
  /** fp8q's version. */
  readonly version: string;
  /** The source commit, when it came from the Hub. */
  readonly sourceRevision?: string;
}

const WEIGHT_DTYPE = { e4m3fn: 'float8_e4m3fn (E4M3)', e5m2: 'float8_e5m2 (E5M2)' } as const;

interface ModuleGroup {
  readonly pattern: string;
  readonly what: string;
  readonly layers: Set<number>;
  readonly experts: Set<number>;
  count: number;
}

/** `model.layers.3.mlp.experts.7.w1` → pattern `model.layers.*.mlp.experts.*.w1`, layer 3, expert 7. */
function fold(module: string): { pattern: string; layer: number | undefined; expert: number | undefined } {
  let layer: number | undefined;
  let expert: number | undefined;
  const pattern = module
    .replace(/(^|\.)layers\.(\d+)(?=\.|$)/, (_m, pre: string, n: string) => {
      layer = Number(n);
      return `${pre}layers.*`;
    })
    .replace(/(^|\.)experts\.(\d+)(?=\.|$)/, (_m, pre: string, n: string) => {
      expert = Number(n);
      return `${pre}experts.*`;
    });
  return { pattern, layer, expert };
}

function groupModules(items: readonly { module: string; what: string }[]): ModuleGroup[] {
  const groups = new Map<string, ModuleGroup>();
  for (const { module, what } of items) {
    const f = fold(module);
    const key = `${f.pattern}\u0000${what}`;
    let g = groups.get(key);
    if (!g) {
      g = { pattern: f.pattern, what, layers: new Set(), experts: new Set(), count: 0 };
      groups.set(key, g);
    }
    g.count++;
    if (f.layer !== undefined) g.layers.add(f.layer);
    if (f.expert !== undefined) g.experts.add(f.expert);
  }
  return [...groups.values()];
}

function where(g: ModuleGroup): string {
  const parts: string[] = [];
  if (g.layers.size > 0) parts.push(`layers ${ranges([...g.layers])}`);
  if (g.experts.size > 0) parts.push(`experts ${ranges([...g.experts])}`);
  return parts.length > 0 ? parts.join('; ') : '–';
}

function settingsSection(input: ConvertReportInput): string[] {
  const { summary: s, plan } = input;
  const st = plan.settings;
  const rows: string[][] = [
    ['architecture', cell(s.architecture)],
    ['weights', `${WEIGHT_DTYPE[st.format]}, one float32 scale per ${st.block.bn}×${st.block.bk} block`],
    ['scale format', st.scaleFormat === 'ue8m0' ? 'ue8m0 (each scale a power of two)' : 'float'],
    ['activations', st.activationScheme === 'static' ? 'static scales from calibration data' : 'dynamic (quantized per token group at run time)'],
    ['layout', s.outputFormat === 'compressed-tensors' ? 'compressed-tensors (`weight_scale`, llm-compressor FP8_BLOCK)' : 'hf (`weight_scale_inv`, `quant_method: fp8`)'],
  ];
  const c = s.calibration;
  if (c !== undefined) rows.push(['calibration', `${codeCell(c.file)}: ${c.samples} samples, ${c.tokens} tokens`]);
  rows.push(['converter', `fp8q ${cell(input.version)}`]);
  return ['### Settings', '', ...table(['setting', 'value'], rows), ''];
}

function sizeSection(s: ConvertSummary, plan: ConvertPlan): string[] {
  const tensorsOut = plan.entries.reduce((n, e) => n + e.outputs.length, 0);
  const ratio = s.bytesIn > 0 ? `${((100 * s.bytesOut) / s.bytesIn).toFixed(1)}%` : '–';
  return [
    '### Sizes',
    '',
    ...table(
      ['', 'tensors', 'size', 'bytes', 'of the source'],
      [
        ['source', `${s.tensorsQuantized + s.tensorsKept} (${s.tensorsQuantized} to quantize, ${s.tensorsKept} to keep)`, formatBytes(s.bytesIn), String(s.bytesIn), '100%'],
        ['FP8 checkpoint', `${tensorsOut} (with scales)`, formatBytes(s.bytesOut), String(s.bytesOut), ratio],
      ],
      ['l', 'l', 'r', 'r', 'r'],
    ),
    '',
  ];
}

function quantizedSection(plan: ConvertPlan): string[] {
  const quantized = plan.modules.filter((m) => m.decision !== 'keep').map((m) => ({ module: m.module, what: m.decision }));
  if (quantized.length === 0) return ['### Quantized', '', 'Nothing was quantized.', ''];
  const rows = groupModules(quantized).map((g) => [codeCell(g.pattern), where(g), String(g.count), cell(g.what)]);
  return [`### Quantized (${quantized.length} modules)`, '', ...table(['module', 'where', 'count', 'becomes'], rows, ['l', 'l', 'r', 'l']), ''];
}

function keptSection(plan: ConvertPlan): string[] {
  const kept = plan.modules.filter((m) => m.decision === 'keep').map((m) => ({ module: m.module, what: m.reason }));
  const out: string[] = [];
  if (kept.length > 0) {
    const rows = groupModules(kept).map((g) => [codeCell(g.pattern), where(g), String(g.count), cell(g.what)]);
    out.push(`### Kept in the source dtype (${kept.length} modules)`, '', ...table(['module', 'where', 'count', 'why'], rows, ['l', 'l', 'r', 'l']), '');
  }
  // Tensors copied as they are, beyond the kept modules' weights: norms, biases, buffers …
  const keptWeights = new Set(kept.map((k) => `${k.module}.weight`));
  const byReason = new Map<string, string[]>();
  for (const e of plan.entries) {
    if (e.op !== 'copy' || e.sources.every((s) => keptWeights.has(s))) continue;
    const names = byReason.get(e.reason) ?? [];
    names.push(...e.sources);
    byReason.set(e.reason, names);
  }
  if (byReason.size > 0) {
    const rows = [...byReason].map(([reason, names]) => {
      const patterns = groupModules(names.map((n) => ({ module: n, what: '' }))).map((g) => codeCell(g.pattern));
      return [cell(reason), String(names.length), patterns.slice(0, 4).join(', ') + (patterns.length > 4 ? ', …' : '')];
    });
    out.push('Other tensors copied unchanged:', '', ...table(['why', 'tensors', 'e.g.'], rows, ['l', 'r', 'l']), '');
  }
  if (plan.notConverted.length > 0) {
    out.push(`\`modules_to_not_convert\` / \`ignore\` in config.json lists ${plan.notConverted.length} module(s).`, '');
  }
  return out;
}

function shardSection(s: ConvertSummary): string[] {
  if (s.shards.length === 0) return [];
  const rows = s.shards.map((sh) => [codeCell(sh.file), formatBytes(sh.bytes), String(sh.bytes), sh.sha256 === undefined ? '' : code(sh.sha256)]);
  return ['### Shards', '', ...table(['file', 'size', 'bytes', 'SHA-256'], rows, ['l', 'r', 'r', 'l']), ''];
}

export function renderConvertReport(input: ConvertReportInput): string {
  const { summary: s, plan } = input;
  const st = plan.settings;
  const dtype = st.format === 'e5m2' ? 'E5M2' : 'E4M3';
  const source = `${code(s.input)}${input.sourceRevision !== undefined ? ` at commit ${code(input.sourceRevision)}` : ''}`;
  const lines = [
    `## Block-scale FP8 conversion of ${source}`,
    '',
    `${cell(s.architecture)} converted to block-scale FP8 (${dtype} weights, ${st.block.bn}×${st.block.bk} blocks, ` +
      `${st.scaleFormat === 'ue8m0' ? 'power-of-two' : 'float32'} scales, ${st.activationScheme} activations) in the ${s.outputFormat} layout ` +
      `by fp8q ${cell(input.version)}: ${s.tensorsQuantized} tensors quantized, ${s.tensorsKept} kept, ` +
      `${formatBytes(s.bytesIn)} → ${formatBytes(s.bytesOut)}, written to ${code(s.output)} in ${s.seconds.toFixed(1)} s.`,
    '',
    ...settingsSection(input),
    ...sizeSection(s, plan),
    ...quantizedSection(plan),
    ...keptSection(plan),
    ...shardSection(s),
  ];
  if (s.warnings.length > 0) lines.push('### Warnings', '', ...s.warnings.map((w) => `- ${cell(w)}`), '');
  lines.push('### `quantization_config`', '', '```json', JSON.stringify(s.quantizationConfig, null, 2), '```', '');
  return `${lines.join('\n')}`;
}
