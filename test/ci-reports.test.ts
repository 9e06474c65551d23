// Reports for CI systems: verify's JUnit XML (validated against fixtures/junit/junit.xsd with
// libxml2 and read back with a JUnit parser), verify's Markdown and convert's --report (rendered to
// HTML with markdown-it), from synthetic reports that carry every optional field and from real
// runs through the CLI on the llama fixture: a sound and a damaged conversion give the right
// pass/fail counts, a failed gate still writes its reports, the GitHub job summary is appended to,
// and report files follow the write rules (no overwrite without --force, never inside a model).

import assert from 'node:assert/strict';
import { copyFile, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse as parseJunit, type TestCase, type TestSuite } from 'junit2json';
import MarkdownIt from 'markdown-it';
import { validateXML } from 'xmllint-wasm';

import { convertCheckpoint, type ConvertSummary } from '../src/pipeline/convert-checkpoint.js';
import type { ConvertPlan } from '../src/passes/plan.js';
import { renderConvertReport } from '../src/cli/reports/convert-report.js';
import { code, ranges } from '../src/cli/reports/markdown.js';
import { renderVerifyJunit } from '../src/cli/reports/verify-junit.js';
import { renderVerifyMarkdown } from '../src/cli/reports/verify-markdown.js';
import type { VerifyReportView } from '../src/cli/reports/verify-report-view.js';
import { VerifyTimer } from '../src/cli/reports/verify-timings.js';
import { copyCheckpointWithEdits, scaleF32 } from './helpers/checkpoint-edit.js';
import { FIXTURES, MODELS, modelDir } from './helpers/fixtures.js';
import { assertJsonError } from './helpers/hostile.js';
import { fp8qBatch } from './helpers/fp8q-batch.js';
import type { CliResult } from './helpers/safety.js';

const markdown = new MarkdownIt();

async function schemaErrors(xml: string): Promise<string[]> {
  const xsd = await readFile(join(FIXTURES, 'junit/junit.xsd'), 'utf8');
  const result = await validateXML({ xml: [{ fileName: 'report.xml', contents: xml }], schema: [{ fileName: 'junit.xsd', contents: xsd }] });
  return result.errors.map((e) => e.message);
}

async function suiteOf(xml: string): Promise<TestSuite> {
  const parsed = (await parseJunit(xml)) as { testsuite?: TestSuite[] };
  assert.equal(parsed.testsuite?.length, 1, 'one test suite per verify run');
  return parsed.testsuite![0]!;
}

const cases = (s: TestSuite): TestCase[] => s.testcase ?? [];
const failedCases = (s: TestSuite): TestCase[] => cases(s).filter((c) => (c.failure?.length ?? 0) > 0);

/** Cells per row of every table in the HTML: a stray pipe or newline in a cell changes a row's count. */
function tableShapes(html: string): number[][] {
  const tables = html
    .split('<table>')
    .slice(1)
    .map((t) => t.split('</table>')[0]!);
  return tables.map((t) =>
    t
      .split('<tr>')
      .slice(1)
      .map((row) => (row.match(/<t[dh][ >]/g) ?? []).length),
  );
}

function assertRectangularTables(html: string): void {
  const shapes = tableShapes(html);
  assert.ok(shapes.length > 0, 'renders tables');
  for (const rows of shapes)
    assert.ok(
      rows.every((n) => n === rows[0]),
      `every row of a table has as many cells as its header: ${rows.join(',')}`,
    );
}

const WEIRD = 'model.layers.1.mlp.we|rd`<name>&"\'\u0001';

function linear(module: string, layer: number, relativeError: number) {
  return { module, layer, rows: 48, relativeError, cosine: 1 - relativeError ** 2 / 2, sqnrDb: -20 * Math.log10(relativeError) };
}

/** A report with every optional field: text input, perplexity, unverified tensors, unreached experts, timings, a damaged linear. */
function syntheticReport(): VerifyReportView {
  const linears = [
    linear('model.layers.0.self_attn.q_proj', 0, 0.036),
    linear('model.layers.0.self_attn.v_proj', 0, 3.01),
    linear('model.layers.0.mlp.down_proj', 0, 0.041),
    linear('model.layers.1.self_attn.q_proj', 1, 0.035),
    linear(WEIRD, 1, 0.038),
  ];
  return {
    original: 'models/original',
    quantized: 'models/fp8|out',
    architecture: 'LlamaForCausalLM',
    device: 'cuda',
    input: { source: 'text', batch: 4, seq: 256, description: 'text from stories.txt, 4 samples of 256 tokens (tokenizer.json)' },
    model: { tokens: 1024, meanKl: 0.0412, maxKl: 0.9, maxKlToken: 17, top1Agreement: 0.87, relativeError: 0.21 },
    perplexity: { original: 3.275, quantized: 3.418, increasePercent: 4.37 },
    linears,
    notReached: ['model.layers.1.mlp.experts.3.down_proj'],
    unverified: ['model.layers.0.self_attn.w_uk', 'model.layers.0.self_attn.w_uv'],
    summary: { linearsCompared: 5, maxRelativeError: 3.01, minCosine: 0.9, minSqnrDb: -9.6, worstLinear: 'model.layers.0.self_attn.v_proj' },
    gates: { maxKl: 0.01, minTop1: 0.5, maxLayerRelError: 0.15, maxPplIncrease: 5 },
    failures: [
      {
        gate: 'max-layer-rel-error',
        subject: 'model.layers.0.self_attn.v_proj',
        value: 3.01,
        limit: 0.15,
        message: 'model.layers.0.self_attn.v_proj: relative error 3.0100 exceeds --max-layer-rel-error 0.15',
      },
      { gate: 'max-kl', subject: 'model', value: 0.0412, limit: 0.01, message: 'model: mean KL(original ‖ quantized) 0.0412 exceeds --max-kl 0.01' },
      { gate: 'unverified', subject: 'model', value: 2, limit: 0, message: '2 quantized tensors were not exercised: pass --allow-unverified to accept' },
    ],
    passed: false,
    peakWeightBytes: 3 * 2 ** 20,
    checkpointBytes: { original: 10 * 2 ** 20, quantized: 6 * 2 ** 20 },
    seconds: 12.5,
    timings: { setup: 1.5, layers: [4, 6], head: 1 },
    deviceSelection: { requested: 'auto', device: 'cuda', provider: 'cuda', reason: 'the CUDA execution provider loaded' },
  };
}

describe('verify reports from a synthetic report', () => {
  const report = syntheticReport();

  test('JUnit XML is valid, one case per gate and per linear, failures name the figure against its limit', async () => {
    const xml = renderVerifyJunit(report, { startedAt: new Date('2026-01-02T03:04:05Z'), hostname: 'ci-runner', version: '9.9.9' });
    assert.deepEqual(await schemaErrors(xml), []);
    const suite = await suiteOf(xml);
    // 4 gates (per-linear, KL, top-1, perplexity) + the `unverified` gate only a failure names,
    // 5 linears, 1 expert no token reached, 2 tensors not exercised.
    assert.equal(cases(suite).length, 5 + 5 + 1 + 2);
    assert.equal(suite.tests, 13);
    assert.equal(suite.failures, 4);
    assert.equal(suite.skipped, 3);
    assert.equal(suite.errors, 0);
    assert.equal(suite.timestamp, '2026-01-02T03:04:05');
    assert.deepEqual(
      failedCases(suite)
        .map((c) => c.name)
        .sort(),
      ['max-kl', 'max-layer-rel-error', 'model.layers.0.self_attn.v_proj', 'unverified'],
    );
    const damaged = cases(suite).find((c) => c.name === 'model.layers.0.self_attn.v_proj')!;
    assert.equal(damaged.classname, 'fp8q.verify.layers.0');
    assert.match(damaged.failure![0]!.message!, /relative error 3\.0100 exceeds --max-layer-rel-error 0\.15/);
    const kl = cases(suite).find((c) => c.name === 'max-kl')!;
    assert.match(kl.failure![0]!.message!, /0\.0412 exceeds --max-kl 0\.01/);
    const ppl = cases(suite).find((c) => c.name === 'max-ppl-increase')!;
    assert.equal(ppl.failure, undefined);
    assert.match(ppl['system-out']![0]!, /\+4\.37%, limit ≤ 5%/);
    // Text is escaped, not lost: the odd module name comes back (its control character replaced).
    assert.ok(cases(suite).some((c) => c.name === WEIRD.replace('\u0001', '\uFFFD')));
    // A linear's time is its layer's shared among the layer's linears: they add up to the layers' time.
    const linearTime = cases(suite)
      .filter((c) => c.classname?.startsWith('fp8q.verify.layers.') && !c.skipped)
      .reduce((t, c) => t + c.time!, 0);
    assert.ok(Math.abs(linearTime - 10) < 0.01, `linear times add up to ${linearTime}`);
    assert.equal(suite.time, 12.5);
    const props = new Map((suite.properties ?? []).map((p) => [p.name, String(p.value)]));
    assert.equal(props.get('perplexity-quantized'), '3.418');
    assert.equal(props.get('gate-max-ppl-increase'), '5');
    assert.equal(props.get('fp8q-version'), '9.9.9');
  });

  test('a passing report has no failure, and the schema rejects what readers would', async () => {
    const sound: VerifyReportView = {
      ...report,
      linears: report.linears.filter((l) => l.relativeError < 1),
      failures: [],
      passed: true,
      unverified: undefined,
      perplexity: undefined,
      gates: { maxKl: 0.01, minTop1: 0.5, maxLayerRelError: 0.15 },
    };
    const xml = renderVerifyJunit(sound);
    assert.deepEqual(await schemaErrors(xml), []);
    const suite = await suiteOf(xml);
    assert.equal(suite.failures, 0);
    assert.equal(cases(suite).length, 3 + 4 + 1);
    // The schema is not a rubber stamp.
    assert.notDeepEqual(await schemaErrors(xml.replace(/tests="\d+"/, 'tests="many"')), []);
    assert.notDeepEqual(await schemaErrors(xml.replace(/<testcase classname="[^"]*"/, '<testcase')), []);
  });

  test('Markdown renders: gates with pass/fail, perplexity before → after, worst linears, what was not run, timings', () => {
    const md = renderVerifyMarkdown(report);
    const html = markdown.render(md);
    assertRectangularTables(html);
    assert.match(html, /<h2>fp8q verify: ❌ failed \(3 gates\)<\/h2>/);
    assert.match(html, /3\.275 → 3\.418 \(\+4\.37%\)/);
    assert.match(html, /<td><code>--max-kl<\/code><\/td>\s*<td>[^<]*<\/td>\s*<td>≤ 0\.01<\/td>\s*<td>0\.0412<\/td>\s*<td>❌ <strong>fail<\/strong><\/td>/);
    assert.match(html, /<td><code>--max-ppl-increase<\/code><\/td>\s*<td>[^<]*<\/td>\s*<td>≤ 5%<\/td>\s*<td>\+4\.37%<\/td>\s*<td>✅ pass<\/td>/);
    assert.match(html, /<td>unverified<\/td>/);
    // The worst linear leads its table, marked failed; the odd name survives in a code span.
    const worst = html.split('<h3>Linears (5)</h3>')[1]!;
    assert.match(worst, /<td><code>model\.layers\.0\.self_attn\.v_proj<\/code><\/td>(?:\s*<td[^>]*>[^<]*<\/td>){4}\s*<td>❌ fail<\/td>/);
    assert.ok(html.includes("<code>model.layers.1.mlp.we|rd`&lt;name&gt;&amp;&quot;'\u0001</code>"), 'module name shown verbatim');
    assert.match(html, /Not compared:.*model\.layers\.1\.mlp\.experts\.3\.down_proj/);
    assert.match(html, /Not exercised:.*w_uk.*w_uv/);
    assert.match(html, /12\.5 s: setup 1\.50 s, 2 layers 10\.0 s \(slowest: layer 1, 6\.00 s\), head 1\.00 s/);
    assert.match(html, /cuda: the CUDA execution provider loaded/);
  });

  test('Markdown stays small for a large model: the worst linears, not all of them', () => {
    const many = Array.from({ length: 20_000 }, (_, i) => linear(`model.layers.${i % 60}.mlp.experts.${i}.down_proj`, i % 60, 0.03 + (i % 7) / 1000));
    const big: VerifyReportView = { ...report, linears: many, failures: [], passed: true, summary: { ...report.summary, linearsCompared: many.length } };
    const md = renderVerifyMarkdown(big);
    assert.ok(md.length < 16_000, `${md.length} characters`);
    assert.match(md, /### Worst linears \(10 of 20000\)/);
  });
});

describe('markdown helpers', () => {
  test('code spans hold backticks; ranges fold consecutive numbers', () => {
    assert.equal(markdown.renderInline(code('a``b`')), '<code>a``b`</code>');
    assert.equal(ranges([5, 0, 1, 2, 7, 8]), '0–2, 5, 7, 8');
  });

  test('the timer splits a run into setup, layers and head from progress events', () => {
    let now = 0;
    const timer = new VerifyTimer(() => now);
    now = 500;
    timer.observe({ type: 'start', layers: 2, tokens: 8 });
    now = 1000;
    timer.observe({ type: 'layer', index: 0, count: 2 });
    now = 3000;
    timer.observe({ type: 'layer', index: 1, count: 2 });
    now = 3500;
    timer.observe({ type: 'head' });
    now = 4250;
    assert.deepEqual(timer.finish(), { setup: 1, layers: [2, 0.5], head: 0.75 });
  });
});

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

describe('reports through the CLI on the llama fixture', () => {
  let work: string;
  let fp8: string;
  let bad: string;
  let results: CliResult[];
  let summaryBefore: string;
  const ids = join(MODELS, 'llama.logits.safetensors');
  const idsCopy = (): string => join(work, 'input-ids.safetensors');
  const verify = (quantized: string, ...flags: string[]): string[] => ['verify', modelDir('llama'), quantized, '--input-ids', ids, '--device', 'cpu', '--quiet', ...flags];

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'ci-reports-'));
    fp8 = join(work, 'llama-fp8');
    bad = join(work, 'llama-bad');
    await convertCheckpoint({ input: modelDir('llama'), output: fp8 });
    await copyCheckpointWithEdits(fp8, bad, (t) => scaleF32(t.get('model.layers.0.self_attn.v_proj.weight_scale_inv')!, 4));
    await copyFile(ids, idsCopy());
    summaryBefore = '# earlier step\n';
    await writeFile(join(work, 'step-summary.md'), summaryBefore);
    const r = (name: string): string => join(work, 'reports', name);
    results = await fp8qBatch(
      [
        verify(fp8, '--junit', r('sound.xml'), '--markdown', r('sound.md')),
        [...verify(bad, '--junit', r('bad.xml'), '--markdown', r('bad.md')).filter((a) => a !== '--quiet'), '--json'],
        verify(fp8, '--junit', r('sound.xml')),
        verify(fp8, '--junit', r('sound.xml'), '--force', '--no-summary'),
        verify(fp8, '--junit', join(fp8, 'report.xml')),
        verify(fp8, '--junit', r('same'), '--markdown', r('same')),
        ['convert', modelDir('llama'), '-o', join(work, 'out-a'), '--report', r('convert.md'), '--quiet'],
        ['convert', modelDir('llama'), '-o', join(work, 'out-b'), '--report', r('convert.md'), '--quiet'],
        ['convert', modelDir('llama'), '-o', join(work, 'out-c'), '--report', r('dry.md'), '--dry-run'],
        ['convert', modelDir('llama'), '-o', join(work, 'out-d'), '--report', join(work, 'out-d', 'report.md'), '--quiet'],
        /* 10 */ verify(fp8, '--junit', '', '--json'),
        /* 11 */ verify(fp8, '--markdown', `${r('new-folder')}/`),
        /* 12 */ verify(fp8, '--junit', r('sound.xml'), '--json'),
        /* 13 */ ['convert', modelDir('llama'), '-o', join(work, 'out-e'), '--report', '', '--quiet'],
        // A copy of the ids: should the refusal break, the fixture stays intact.
        /* 14 */ ['verify', modelDir('llama'), fp8, '--input-ids', idsCopy(), '--device', 'cpu', '--quiet', '--junit', idsCopy(), '--force'],
        /* 15 */ [
          'convert',
          modelDir('llama'),
          '-o',
          join(work, 'out-f'),
          '--activation-scheme',
          'static',
          '--calibration',
          idsCopy(),
          '--report',
          idsCopy(),
          '--force',
          '--quiet',
        ],
      ],
      { env: { ...process.env, GITHUB_STEP_SUMMARY: join(work, 'step-summary.md') } },
    );
  });

  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  test('a sound conversion: JUnit with no failure, a Markdown report, exit 0', async () => {
    const r = results[0]!;
    assert.equal(r.code, 0, r.stderr);
    const xml = await readFile(join(work, 'reports/sound.xml'), 'utf8');
    assert.deepEqual(await schemaErrors(xml), []);
    const suite = await suiteOf(xml);
    const gates = cases(suite)
      .filter((c) => c.classname === 'fp8q.verify.gates')
      .map((c) => c.name);
    for (const g of ['max-kl', 'min-top1', 'max-layer-rel-error', 'max-layer-error-ratio']) assert.ok(gates.includes(g), gates.join());
    assert.equal(suite.tests, gates.length + 14, 'the gates and the 14 quantized linears of the llama fixture');
    assert.equal(suite.failures, 0);
    assert.ok(cases(suite).some((c) => c.name === 'model.layers.1.mlp.down_proj'));
    const html = markdown.render(await readFile(join(work, 'reports/sound.md'), 'utf8'));
    assertRectangularTables(html);
    assert.match(html, /fp8q verify: ✅ passed/);
  });

  test('a damaged conversion: exit 3, JSON alone on stdout, and reports that name the damaged linear', async () => {
    const r = results[1]!;
    assert.equal(r.code, 3, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { passed: boolean }).passed, false);
    const suite = await suiteOf(await readFile(join(work, 'reports/bad.xml'), 'utf8'));
    const gates = cases(suite)
      .filter((c) => c.classname === 'fp8q.verify.gates')
      .map((c) => c.name ?? '');
    assert.equal(suite.tests, gates.length + 14);
    const failed = failedCases(suite).map((c) => c.name ?? '');
    assert.ok(failed.includes('model.layers.0.self_attn.v_proj'), failed.join());
    assert.ok(failed.includes('max-layer-error-ratio'), failed.join());
    assert.equal(suite.failures, failed.length);
    assert.ok(
      failed.every((n) => n === 'model.layers.0.self_attn.v_proj' || gates.includes(n)),
      failed.join(),
    );
    const html = markdown.render(await readFile(join(work, 'reports/bad.md'), 'utf8'));
    assert.match(html, /fp8q verify: ❌ failed/);
    assert.match(html, /<code>model\.layers\.0\.self_attn\.v_proj<\/code><\/td>(?:\s*<td[^>]*>[^<]*<\/td>){4}\s*<td>❌ fail<\/td>/);
  });

  test('$GITHUB_STEP_SUMMARY gets each run appended, unless --no-summary', async () => {
    const summary = await readFile(join(work, 'step-summary.md'), 'utf8');
    assert.ok(summary.startsWith(summaryBefore), 'what was there is kept');
    assert.equal(summary.match(/^## fp8q verify: /gm)?.length, 2);
    assert.match(summary, /## fp8q verify: ✅ passed[\s\S]*## fp8q verify: ❌ failed/);
  });

  test('$GITHUB_STEP_SUMMARY inside a model folder is skipped with a warning, the run unaffected', async () => {
    const [r] = await fp8qBatch([verify(fp8)], { env: { ...process.env, GITHUB_STEP_SUMMARY: join(fp8, 'summary.md') } });
    assert.equal(r!.code, 0, r!.stderr);
    assert.match(r!.stderr, /^warning: \$GITHUB_STEP_SUMMARY \(.*summary\.md\) is inside the quantized folder .*: not appending the report to it\n$/);
    assert.equal(await exists(join(fp8, 'summary.md')), false);
  });

  test('report files follow the write rules: --force to replace, never inside a model folder, one file per report', async () => {
    assert.equal(results[2]!.code, 1);
    assert.match(results[2]!.stderr, /--junit .*sound\.xml exists: pass --force to replace it/);
    assert.equal(results[3]!.code, 0, results[3]!.stderr);
    assert.equal(results[4]!.code, 2);
    assert.match(results[4]!.stderr, /--junit .* is inside the quantized folder/);
    assert.equal(await exists(join(fp8, 'report.xml')), false);
    assert.equal(results[5]!.code, 2);
    assert.match(results[5]!.stderr, /--junit and --markdown name the same file/);
  });

  test('an empty report path or one naming a folder is refused before the run; --json codes are not E_INTERNAL', async () => {
    assert.match(assertJsonError(results[10]!, 'E_USAGE', 2).message, /^--junit needs a file name/);
    assert.equal(results[11]!.code, 2);
    assert.match(results[11]!.stderr, /^fp8q: --markdown .*new-folder\/ names a folder: give a file name/);
    assert.equal(await exists(join(work, 'reports', 'new-folder')), false);
    assert.match(assertJsonError(results[12]!, 'E_OUTPUT_EXISTS', 1).message, /sound\.xml exists/);
    assert.equal(results[13]!.code, 2);
    assert.match(results[13]!.stderr, /^fp8q: --report needs a file name, e\.g\. --report reports\/convert\.md\n$/);
    assert.equal(await exists(join(work, 'out-e')), false);
  });

  test('a report never replaces an input file, even with --force', async () => {
    const before = await readFile(ids);
    assert.deepEqual(await readFile(idsCopy()), before);
    assert.equal(results[14]!.code, 2);
    assert.match(results[14]!.stderr, /^fp8q: --junit .*input-ids\.safetensors is the --input-ids input: give the report its own file\n$/);
    assert.equal(results[15]!.code, 2);
    assert.match(results[15]!.stderr, /^fp8q: --report .* is the --calibration input/);
    assert.equal(await exists(join(work, 'out-f')), false);
    assert.deepEqual(await readFile(idsCopy()), before);
  });

  test('convert --report: plan, sizes and shard hashes that match the conversion; refused where it cannot be written', async () => {
    assert.equal(results[6]!.code, 0, results[6]!.stderr);
    const md = await readFile(join(work, 'reports/convert.md'), 'utf8');
    const html = markdown.render(md);
    assertRectangularTables(html);
    const index = JSON.parse(await readFile(join(work, 'out-a', 'config.json'), 'utf8')) as { quantization_config: unknown };
    assert.ok(md.includes(JSON.stringify(index.quantization_config, null, 2)), 'quantization_config as config.json has it');
    const { createHash } = await import('node:crypto');
    const sha = createHash('sha256')
      .update(await readFile(join(work, 'out-a', 'model.safetensors')))
      .digest('hex');
    assert.ok(html.includes(`<code>${sha}</code>`), 'the shard hash');
    assert.match(html, /<td><code>model\.layers\.\*\.self_attn\.q_proj<\/code><\/td>\s*<td>layers 0, 1<\/td>\s*<td[^>]*>2<\/td>\s*<td>BlockScaleQuantizeLinear<\/td>/);
    assert.match(html, /<td><code>lm_head<\/code><\/td>\s*<td>–<\/td>\s*<td[^>]*>1<\/td>\s*<td>final FC \(lm_head\)<\/td>/);
    assert.equal(results[7]!.code, 1);
    assert.match(results[7]!.stderr, /--report .*convert\.md exists: pass --force/);
    assert.equal(await exists(join(work, 'out-b')), false, 'refused before converting');
    assert.equal(results[8]!.code, 2);
    assert.match(results[8]!.stderr, /--report cannot be combined with --dry-run/);
    assert.equal(results[9]!.code, 2);
    assert.match(results[9]!.stderr, /inside the output folder/);
  });
});

describe('convert report from a synthetic plan', () => {
  test('MoE experts fold into one row per projection; static calibration and warnings are shown', () => {
    const modules = [0, 1, 2].flatMap((layer) =>
      [0, 1, 2, 3].map((e) => ({ module: `model.layers.${layer}.mlp.experts.${e}.gate_proj`, decision: 'BlockScaleQuantizeMixtralExperts' as const, reason: 'MoE expert' })),
    );
    const plan: ConvertPlan = {
      architecture: 'Qwen3MoeForCausalLM',
      family: 'qwen3_moe',
      settings: { format: 'e4m3fn', block: { bn: 128, bk: 128 }, scaleFormat: 'ue8m0', activationScheme: 'static' },
      entries: [],
      modules: [...modules, { module: 'model.layers.0.mlp.gate', decision: 'keep', reason: 'MoE router' }],
      notConverted: ['model.layers.0.mlp.gate'],
      warnings: [],
    };
    const summary: ConvertSummary = {
      input: 'Qwen/Qwen3-30B-A3B',
      output: 'out|fp8',
      dryRun: false,
      architecture: 'Qwen3MoeForCausalLM',
      tensorsQuantized: 12,
      tensorsKept: 1,
      bytesIn: 2000,
      bytesOut: 1100,
      seconds: 3,
      shards: [{ file: 'model-00001-of-00001.safetensors', bytes: 1200, sha256: 'ab'.repeat(32) }],
      warnings: ['a warning with a | pipe'],
      outputFormat: 'hf',
      quantizationConfig: { quant_method: 'fp8' } as unknown as ConvertSummary['quantizationConfig'],
      calibration: { file: 'calib.txt', samples: 8, tokens: 4096 },
    };
    const md = renderConvertReport({ summary, plan, version: '1.2.3', sourceRevision: 'abc123' });
    const html = markdown.render(md);
    assertRectangularTables(html);
    assert.match(html, /<td><code>model\.layers\.\*\.mlp\.experts\.\*\.gate_proj<\/code><\/td>\s*<td>layers 0–2; experts 0–3<\/td>\s*<td[^>]*>12<\/td>/);
    assert.match(html, /<code>calib\.txt<\/code>: 8 samples, 4096 tokens/);
    assert.match(html, /ue8m0/);
    assert.match(html, /at commit <code>abc123<\/code>/);
    assert.match(html, /55\.0%/);
    assert.match(html, /<li>a warning with a | pipe<\/li>/);
  });
});
