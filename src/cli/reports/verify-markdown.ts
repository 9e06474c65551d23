// `verify --markdown` and the GitHub job summary: the verify report as Markdown a person reads in a
// CI page. Model-level figures (KL, top-1, logits error, perplexity before → after when the input
// was text), the gates with pass/fail, the worst linears, what was not compared, and the run
// (input, device, timings). Bounded in size whatever the model (GitHub caps a step summary at
// 1 MiB): the per-linear detail of a large model belongs in --junit or --json.

import { cell, code, codeCell, table } from './markdown.js';
import {
  decibels,
  describeInput,
  gateResults,
  linearFailures,
  mebibytes,
  percent,
  sci,
  seconds,
  signedPercent,
  worstLinears,
  type VerifyReportView,
} from './verify-report-view.js';

export interface MarkdownOptions {
  /** Rows of the worst-linears table (default 10). */
  readonly worst?: number;
  /** Failed linears listed by name at most (default 50). */
  readonly maxFailedListed?: number;
  /** Names listed at most in the "not compared" and "not exercised" lists (default 20). */
  readonly maxListed?: number;
}

function listNames(names: readonly string[], max: number): string {
  const shown = names.slice(0, max).map(code).join(', ');
  return names.length > max ? `${shown} and ${names.length - max} more` : shown;
}

function modelSection(r: VerifyReportView): string[] {
  const m = r.model;
  const rows: string[][] = [
    ['mean KL(original ‖ quantized) per token', sci(m.meanKl)],
    ['max KL', `${sci(m.maxKl)} (token ${m.maxKlToken})`],
    ['top-1 agreement', percent(m.top1Agreement)],
    ['logits relative error', sci(m.relativeError)],
  ];
  if (r.perplexity) {
    const p = r.perplexity;
    rows.push(['perplexity, original → quantized', `${p.original.toFixed(3)} → ${p.quantized.toFixed(3)} (${signedPercent(p.increasePercent / 100)})`]);
  }
  rows.push([
    'quantized linears compared',
    r.summary.linearsCompared > 0
      ? `${r.summary.linearsCompared}; worst relative error ${sci(r.summary.maxRelativeError)}, min cosine ${r.summary.minCosine.toFixed(5)}, min SQNR ${decibels(r.summary.minSqnrDb)} dB`
      : '0',
  ]);
  if (r.clipping) {
    const c = r.clipping;
    rows.push(['static activation clipping', `${c.clipped} of ${c.elements} input values (${percent(c.rate, 4)}) over ${c.linears} linears`]);
  }
  return ['### Model', '', ...table(['metric', 'value'], rows), ''];
}

function gateSection(r: VerifyReportView): string[] {
  const rows = gateResults(r).map((g) => [
    g.flag !== undefined ? code(g.flag) : cell(g.gate),
    cell(g.metric),
    cell(g.limit),
    cell(g.measured),
    g.passed ? '✅ pass' : `❌ **fail**${g.failures.length > 1 ? ` (${g.failures.length})` : ''}`,
  ]);
  const out = ['### Gates', '', ...table(['gate', 'measures', 'limit', 'measured', 'result'], rows), ''];
  if (r.unverified !== undefined && r.unverified.length > 0 && !r.failures.some((f) => f.subject === 'unverified' || f.gate.includes('unverified'))) {
    out.push(`${r.unverified.length} quantized tensor(s) were not exercised and allowed (\`--allow-unverified\`).`, '');
  }
  return out;
}

function failureSection(r: VerifyReportView, maxListed: number): string[] {
  if (r.failures.length === 0) return [];
  const shown = r.failures.slice(0, maxListed);
  const out = ['### Failures', '', ...shown.map((f) => `- ${cell(f.message)}`)];
  if (r.failures.length > shown.length) out.push(`- … and ${r.failures.length - shown.length} more (see the JUnit or JSON report)`);
  out.push('');
  return out;
}

function worstSection(r: VerifyReportView, count: number): string[] {
  if (r.linears.length === 0) return [];
  const failed = linearFailures(r);
  const clip = r.clipping !== undefined;
  const worst = worstLinears(r, count);
  const rows = worst.map((l) => [
    String(l.layer),
    codeCell(l.module),
    String(l.rows),
    sci(l.relativeError),
    l.cosine.toFixed(5),
    decibels(l.sqnrDb),
    ...(clip ? [l.clipping ? percent(l.clipping.rate, 4) : '–'] : []),
    failed.has(l.module) ? '❌ fail' : '✅',
  ]);
  const header = ['layer', 'linear', 'rows', 'rel. error', 'cosine', 'SQNR dB', ...(clip ? ['clipped'] : []), `≤ ${r.gates.maxLayerRelError}`];
  const align: ('l' | 'r')[] = ['r', 'l', 'r', 'r', 'r', 'r', ...(clip ? (['r'] as const) : []), 'l'];
  const title = worst.length < r.linears.length ? `### Worst linears (${worst.length} of ${r.linears.length})` : `### Linears (${r.linears.length})`;
  return [title, '', ...table(header, rows, align), ''];
}

function notComparedSection(r: VerifyReportView, max: number): string[] {
  const out: string[] = [];
  if (r.notReached.length > 0) {
    out.push(`**Not compared:** ${r.notReached.length} quantized linear(s) got no tokens (experts no token was routed to): ${listNames(r.notReached, max)}.`, '');
  }
  const unverified = r.unverified ?? [];
  if (unverified.length > 0) out.push(`**Not exercised:** ${unverified.length} quantized tensor(s) verify did not run: ${listNames(unverified, max)}.`, '');
  return out;
}

function runSection(r: VerifyReportView): string[] {
  const rows: string[][] = [
    ['original', codeCell(r.original)],
    ['quantized', codeCell(r.quantized)],
    ['architecture', cell(r.architecture)],
    ['input', cell(describeInput(r))],
    ['device', cell(r.deviceSelection ? `${r.device}: ${r.deviceSelection.reason}` : r.device)],
  ];
  const t = r.timings;
  if (t) {
    const layerTotal = t.layers.reduce((a, b) => a + b, 0);
    let slowest = 0;
    t.layers.forEach((s, i) => {
      if (s > t.layers[slowest]!) slowest = i;
    });
    rows.push([
      'time',
      `${seconds(r.seconds)} s: setup ${seconds(t.setup)} s, ${t.layers.length} layers ${seconds(layerTotal)} s` +
        `${t.layers.length > 0 ? ` (slowest: layer ${slowest}, ${seconds(t.layers[slowest]!)} s)` : ''}, head ${seconds(t.head)} s`,
    ]);
  } else {
    rows.push(['time', `${seconds(r.seconds)} s`]);
  }
  rows.push([
    'peak weights held',
    `${mebibytes(r.peakWeightBytes)} (checkpoints: ${mebibytes(r.checkpointBytes.original)} original, ${mebibytes(r.checkpointBytes.quantized)} quantized)`,
  ]);
  return ['### Run', '', ...table(['', 'value'], rows), ''];
}

export function renderVerifyMarkdown(r: VerifyReportView, opts: MarkdownOptions = {}): string {
  const failedGates = gateResults(r).filter((g) => !g.passed).length;
  const headline = r.passed ? '✅ passed' : `❌ failed (${failedGates} gate${failedGates === 1 ? '' : 's'})`;
  const lines = [
    `## fp8q verify: ${headline}`,
    '',
    `${code(r.quantized)} against ${code(r.original)}: ${cell(r.architecture)}, ${cell(describeInput(r))}, ${r.device}, ${seconds(r.seconds)} s.`,
    '',
    ...gateSection(r),
    ...failureSection(r, opts.maxFailedListed ?? 50),
    ...modelSection(r),
    ...worstSection(r, opts.worst ?? 10),
    ...notComparedSection(r, opts.maxListed ?? 20),
    ...runSection(r),
  ];
  return `${lines.join('\n')}\n`;
}
