// `verify --junit`: the verify report as JUnit XML, the test report format CI systems show
// (GitLab's test reports, Jenkins, Azure, GitHub through report actions). One <testsuite> per run;
// one <testcase> per gate and one per quantized linear, named by its module path, grouped by layer
// (classname `fp8q.verify.layers.N`). A failed gate or linear is a <failure> whose message is the
// measured figure against its limit; linears no token reached and tensors verify did not run are
// <skipped>. Times: the suite's is the run's wall time; a linear's is its layer's time shared
// evenly among the layer's compared linears (verify runs a layer's linears together, not one by
// one), so the cases add up to the layers' time. Written to the common JUnit schema (Jenkins /
// Ant / Surefire): counts and times are plain numbers, text is escaped for XML 1.0.

import { describeInput, gateResults, linearFailures, linearSeconds, mebibytes, sci, decibels, type VerifyReportView } from './verify-report-view.js';

export interface JunitOptions {
  /** When the run started (the suite's `timestamp`), ISO 8601 without a zone as the schema has it. */
  readonly startedAt?: Date;
  readonly hostname?: string;
  /** fp8q's version, recorded as a property. */
  readonly version?: string;
}

interface TestCase {
  readonly classname: string;
  readonly name: string;
  readonly time: number | undefined;
  readonly failure?: { readonly message: string; readonly type: string; readonly text: string };
  readonly skipped?: string;
  readonly out?: string;
}

// XML 1.0 allows tab, newline, carriage return and characters from U+0020 on (minus U+FFFE/FFFF
// and lone surrogates); anything else in a path or message would make the file unreadable.
const NOT_XML_CHAR = /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu;

export function xmlEscape(text: string): string {
  return text
    .replace(NOT_XML_CHAR, '\uFFFD')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;')
    .replace(/\r/g, '&#13;')
    .replace(/\n/g, '&#10;')
    .replace(/\t/g, '&#9;');
}

/** Element text: like attributes, but newlines and tabs stay readable. */
function xmlText(text: string): string {
  return text.replace(NOT_XML_CHAR, '\uFFFD').replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function time(t: number | undefined): string {
  return t === undefined || !Number.isFinite(t) || t < 0 ? '0' : t.toFixed(3);
}

/** `2026-12-01T04:48:43`: the schema's timestamp has no zone; it is UTC. */
function timestamp(d: Date): string {
  return d.toISOString().slice(0, 19);
}

function linearCases(r: VerifyReportView): TestCase[] {
  const failed = linearFailures(r);
  const share = linearSeconds(r);
  const cases: TestCase[] = [];
  const limit = r.gates.maxLayerRelError;
  for (const l of r.linears) {
    const ratio = l.errorRatio === undefined ? '' : `, ${l.errorRatio.toFixed(2)}× its FP8 floor ${sci(l.floorError ?? NaN)}`;
    const figures =
      `relative error ${sci(l.relativeError)} (limit ${limit})${ratio}, cosine ${l.cosine.toFixed(5)}, SQNR ${decibels(l.sqnrDb)} dB, ${l.rows} rows` +
      (l.clipping ? `, ${l.clipping.clipped} of ${l.clipping.elements} input values beyond the calibrated range` : '');
    const f = failed.get(l.module);
    cases.push({
      classname: `fp8q.verify.layers.${l.layer}`,
      name: l.module,
      time: share(l),
      ...(f ? { failure: { message: f.message, type: f.gate, text: `${f.message}\n${figures}` } } : { out: figures }),
    });
  }
  for (const module of r.notReached) {
    cases.push({ classname: `fp8q.verify.layers.${layerOf(module)}`, name: module, time: 0, skipped: 'no token was routed to this expert, so it was not compared' });
  }
  for (const tensor of r.unverified ?? []) {
    cases.push({ classname: 'fp8q.verify.unverified', name: tensor, time: 0, skipped: 'verify does not run this quantized tensor' });
  }
  return cases;
}

function layerOf(module: string): string {
  const m = /(?:^|\.)layers\.(\d+)\./.exec(module);
  return m ? m[1]! : 'other';
}

function gateCases(r: VerifyReportView): TestCase[] {
  return gateResults(r).map((g) => {
    const detail = `${g.metric}: ${g.measured}, limit ${g.limit}`;
    if (g.passed) return { classname: 'fp8q.verify.gates', name: g.gate, time: 0, out: detail };
    const [first] = g.failures;
    const message =
      g.gate === 'max-layer-rel-error'
        ? `${g.failures.length} linear(s) above ${g.flag} ${r.gates.maxLayerRelError}; worst ${sci(r.summary.maxRelativeError)} (${r.summary.worstLinear ?? '?'})`
        : first!.message;
    return {
      classname: 'fp8q.verify.gates',
      name: g.gate,
      time: 0,
      failure: { message, type: g.gate, text: [detail, ...g.failures.map((f) => f.message)].join('\n') },
    };
  });
}

function properties(r: VerifyReportView, opts: JunitOptions): [string, string][] {
  const props: [string, string][] = [
    ['original', r.original],
    ['quantized', r.quantized],
    ['architecture', r.architecture],
    ['device', r.device],
    ['input', describeInput(r)],
    ['tokens', String(r.model.tokens)],
    ['mean-kl', String(r.model.meanKl)],
    ['max-kl', String(r.model.maxKl)],
    ['top1-agreement', String(r.model.top1Agreement)],
    ['logits-relative-error', String(r.model.relativeError)],
    ['peak-weights-held', mebibytes(r.peakWeightBytes)],
  ];
  if (r.deviceSelection) props.push(['device-selection', `${r.deviceSelection.requested} → ${r.deviceSelection.device}: ${r.deviceSelection.reason}`]);
  if (r.perplexity) {
    props.push(['perplexity-original', String(r.perplexity.original)], ['perplexity-quantized', String(r.perplexity.quantized)]);
    props.push(['perplexity-relative-increase', String(r.perplexity.increasePercent / 100)]);
  }
  for (const [k, v] of Object.entries(r.gates)) if (typeof v === 'number') props.push([`gate-${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`, String(v)]);
  if (r.timings) {
    props.push(['seconds-setup', r.timings.setup.toFixed(3)], ['seconds-layers', r.timings.layers.reduce((a, b) => a + b, 0).toFixed(3)]);
    props.push(['seconds-head', r.timings.head.toFixed(3)]);
  }
  if (opts.version !== undefined) props.push(['fp8q-version', opts.version]);
  return props;
}

export function renderVerifyJunit(r: VerifyReportView, opts: JunitOptions = {}): string {
  const cases = [...gateCases(r), ...linearCases(r)];
  const failures = cases.filter((c) => c.failure).length;
  const skipped = cases.filter((c) => c.skipped !== undefined).length;
  const suiteName = `fp8q verify ${r.quantized}`;
  const counts = `tests="${cases.length}" failures="${failures}" errors="0"`;
  const lines: string[] = ['<?xml version="1.0" encoding="UTF-8"?>'];
  // `skipped` is an attribute of <testsuite> only: the common schema has none on <testsuites>.
  lines.push(`<testsuites name="fp8q verify" ${counts} time="${time(r.seconds)}">`);
  const attrs = [`name="${xmlEscape(suiteName)}"`, counts, `skipped="${skipped}"`, `time="${time(r.seconds)}"`];
  if (opts.startedAt) attrs.push(`timestamp="${timestamp(opts.startedAt)}"`);
  if (opts.hostname !== undefined) attrs.push(`hostname="${xmlEscape(opts.hostname)}"`);
  lines.push(`  <testsuite ${attrs.join(' ')}>`);
  lines.push('    <properties>');
  for (const [name, value] of properties(r, opts)) lines.push(`      <property name="${xmlEscape(name)}" value="${xmlEscape(value)}"/>`);
  lines.push('    </properties>');
  for (const c of cases) {
    const head = `    <testcase classname="${xmlEscape(c.classname)}" name="${xmlEscape(c.name)}" time="${time(c.time)}"`;
    if (c.failure) {
      lines.push(`${head}>`);
      lines.push(`      <failure message="${xmlEscape(c.failure.message)}" type="${xmlEscape(c.failure.type)}">${xmlText(c.failure.text)}</failure>`);
      lines.push('    </testcase>');
    } else if (c.skipped !== undefined) {
      lines.push(`${head}>`, `      <skipped message="${xmlEscape(c.skipped)}"/>`, '    </testcase>');
    } else if (c.out !== undefined) {
      lines.push(`${head}>`, `      <system-out>${xmlText(c.out)}</system-out>`, '    </testcase>');
    } else {
      lines.push(`${head}/>`);
    }
  }
  lines.push(`    <system-out>${xmlText(`${r.passed ? 'PASS' : 'FAILED'}: ${r.quantized} against ${r.original}, ${describeInput(r)}, ${r.device}`)}</system-out>`);
  lines.push('  </testsuite>', '</testsuites>');
  return `${lines.join('\n')}\n`;
}
