// The deployment check on real models' shapes (plan-only: config.json + tensor shapes, no bytes)
// at TP 1/2/4/8, each rule on its own, suggestions, and the CLI (`fp8q check`, `convert --target`)
// on a sparse real-dimension checkpoint.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { convertCheckpoint, type ConvertEvent } from '../src/pipeline/convert-checkpoint.js';
import { applyOutputFormat } from '../src/pipeline/output-format.js';
import { blockScaleQuantizePass } from '../src/passes/block-scale-quantize.js';
import {
  DeployTargetError,
  deployCheck,
  excludeFlags,
  inventoryFromPlan,
  withBlock,
  withTargetKeys,
  type DeployCheckInput,
  type DeployReport,
  type EngineId,
} from '../src/passes/deploy-check/index.js';
import { parseTargets } from '../src/passes/deploy-check/target-lists.js';
import type { QuantizationSettings } from '../src/passes/plan.js';
import { main } from '../src/cli/index.js';
import * as models from './helpers/real-model-shapes.js';
import { makeTempDir } from './helpers/temp-dir.js';
import { fp8qBatch } from './helpers/fp8q-batch.js';

const DYNAMIC_128: QuantizationSettings = { format: 'e4m3fn', block: { bn: 128, bk: 128 }, scaleFormat: 'float', activationScheme: 'dynamic' };

function planned(
  model: models.RealModel,
  opts: {
    settings?: Partial<QuantizationSettings>;
    exclude?: string[];
    mlaSplit?: boolean;
    format?: 'hf' | 'compressed-tensors';
    targets?: string;
    qc?: (qc: Record<string, unknown>) => Record<string, unknown>;
  } = {},
): DeployCheckInput {
  const plan = blockScaleQuantizePass(model.config, model.tensors, {
    settings: { ...DYNAMIC_128, ...opts.settings },
    exclude: opts.exclude ?? [],
    mlaSplit: opts.mlaSplit ?? false,
  });
  const formatted = applyOutputFormat(plan, opts.format ?? 'hf');
  let qc = formatted.quantizationConfig as unknown as Record<string, unknown>;
  if (opts.targets) qc = withTargetKeys(qc, formatted.plan, parseTargets(opts.targets));
  if (opts.qc) qc = opts.qc(qc);
  return inventoryFromPlan(model.config, formatted.plan, qc);
}

/** 'ok'/'FAIL' per TP 1,2,4,8 for one engine. */
function row(report: DeployReport, engine: EngineId): string {
  return [1, 2, 4, 8].map((tp) => (report.results.find((r) => r.engine === engine && r.tp === tp)!.verdict === 'loads' ? 'ok' : 'FAIL')).join(' ');
}

function findings(report: DeployReport, engine: EngineId, tp: number): { rule: string; message: string; pattern: string | undefined; severity: string }[] {
  return report.results
    .find((r) => r.engine === engine && r.tp === tp)!
    .findings.map((f) => ({ rule: f.rule, message: f.message, pattern: f.tensors?.pattern, severity: f.severity }));
}

function failRules(report: DeployReport, engine: EngineId, tp: number): string[] {
  return [
    ...new Set(
      findings(report, engine, tp)
        .filter((f) => f.severity === 'fail')
        .map((f) => f.rule),
    ),
  ].sort();
}

test("real models at TP 1/2/4/8: the outcomes the engines' sources imply", () => {
  const expected: [models.RealModel, Record<EngineId, string>][] = [
    [models.llama3_8b(), { vllm: 'ok ok ok ok', sglang: 'ok ok ok ok', mlc: 'FAIL FAIL FAIL FAIL', transformers: 'ok ok ok ok', deepseek: 'FAIL FAIL FAIL FAIL' }],
    [models.llama3_70b(), { vllm: 'ok ok ok ok', sglang: 'ok ok ok ok', mlc: 'FAIL FAIL FAIL FAIL', transformers: 'ok ok ok ok', deepseek: 'FAIL FAIL FAIL FAIL' }],
    [models.qwen3_30b_a3b(), { vllm: 'ok ok FAIL FAIL', sglang: 'ok ok FAIL FAIL', mlc: 'ok ok FAIL FAIL', transformers: 'ok ok ok FAIL', deepseek: 'FAIL FAIL FAIL FAIL' }],
    [models.qwen3_235b(), { vllm: 'ok ok ok FAIL', sglang: 'ok ok ok FAIL', mlc: 'ok ok ok FAIL', transformers: 'ok ok ok FAIL', deepseek: 'FAIL FAIL FAIL FAIL' }],
    [models.mixtral_8x7b(), { vllm: 'ok ok ok ok', sglang: 'ok ok ok ok', mlc: 'FAIL FAIL FAIL FAIL', transformers: 'ok ok ok ok', deepseek: 'FAIL FAIL FAIL FAIL' }],
    [models.deepseek_v3(), { vllm: 'ok ok ok ok', sglang: 'ok ok ok ok', mlc: 'ok ok ok ok', transformers: 'ok ok ok ok', deepseek: 'ok ok ok ok' }],
  ];
  for (const [model, rows] of expected) {
    const report = deployCheck(planned(model));
    for (const engine of Object.keys(rows) as EngineId[]) assert.equal(row(report, engine), rows[engine], `${model.name} ${engine}`);
  }
});

test('Qwen3-30B-A3B at TP 4: 768/4 = 192 is not a multiple of 128 → vLLM refuses the fused MoE, and 64x64 blocks fix it', () => {
  const report = deployCheck(planned(models.qwen3_30b_a3b()), { engines: ['vllm'], tpSizes: [4] });
  const [f] = findings(report, 'vllm', 4);
  assert.equal(f!.rule, 'moe-intermediate');
  assert.match(f!.message, /768\/4 = 192 is not a multiple of block_n 128/);
  assert.equal(f!.pattern, 'model.layers.*.mlp.experts.*.gate_proj.weight');
  assert.match(report.results[0]!.findings[0]!.source, /fp8\.py Fp8MoEMethod\.create_weights/);
  const [s] = report.suggestions;
  assert.equal(s!.flags, '--block 64x64');
  assert.equal(s!.scalesAfter, s!.scalesBefore * 4, '64x64 has four times the scales of 128x128 on these shapes');
  assert.equal(deployCheck(withBlock(planned(models.qwen3_30b_a3b()), 64, 64), { engines: ['vllm'], tpSizes: [4] }).results[0]!.verdict, 'loads');
  // Qwen3-235B: 1536/8 = 192 at TP 8, the same rule.
  const big = deployCheck(planned(models.qwen3_235b()), { engines: ['vllm', 'sglang'], tpSizes: [8] });
  for (const e of ['vllm', 'sglang'] as const) assert.match(findings(big, e, 8)[0]!.message, /1536\/8 = 192/);
});

test('DeepSeek-V3: MLA aligned at 128x128; transformers only warns about kv_a_proj_with_mqa (576 rows) for dequantize=True', () => {
  const report = deployCheck(planned(models.deepseek_v3()));
  const w = findings(report, 'transformers', 1);
  assert.deepEqual(
    w.map((f) => [f.rule, f.severity, f.pattern]),
    [['dequantize-rows', 'warn', 'model.layers.*.self_attn.kv_a_proj_with_mqa.weight']],
  );
  // MLC's MLA rule: qk_nope_head_dim must be a multiple of bn (here 64 of 128).
  const narrow = { ...models.deepseek_v3(2), name: 'MLA-64' };
  narrow.config['qk_nope_head_dim'] = 64;
  assert.deepEqual(failRules(deployCheck(planned(narrow), { engines: ['mlc'], tpSizes: [1] }), 'mlc', 1), ['mla-alignment']);
  // DeepSeek's own code: 128x128 only, and no names outside convert.py's mapping (w_uk/w_uv of --mla-split).
  assert.deepEqual(failRules(deployCheck(planned(models.deepseek_v3(1), { settings: { block: { bn: 64, bk: 64 } } }), { engines: ['deepseek'], tpSizes: [1] }), 'deepseek', 1), [
    'block-size',
  ]);
  const split = deployCheck(planned(models.deepseek_v3(1), { mlaSplit: true }), { engines: ['deepseek', 'vllm'], tpSizes: [1] });
  assert.deepEqual(failRules(split, 'deepseek', 1), ['tensor-names']);
  assert.match(findings(split, 'deepseek', 1)[0]!.message, /model\.layers\.\*\.self_attn\.w_uk, /);
  // Experts are divided among ranks, not sliced: 256 routed experts over 3 ranks do not divide.
  assert.ok(failRules(deployCheck(planned(models.deepseek_v3(4)), { engines: ['deepseek'], tpSizes: [3] }), 'deepseek', 3).includes('expert-parallel'));
});

test('a VLM (Qwen2.5-VL-7B): the vision MLP (3420) and 28 heads at TP 8', () => {
  const model = models.qwen2_5_vl_7b();
  const input = planned(model);
  const report = deployCheck(input);
  const visionQuantized = input.linears.some((l) => l.module.startsWith('visual.'));
  if (visionQuantized) {
    // vLLM merges gate/up: 3420 rows of gate_proj are not a multiple of 128 even on one GPU.
    assert.ok(findings(report, 'vllm', 1).some((f) => f.rule === 'merged-part' && f.pattern === 'visual.blocks.*.mlp.gate_proj.weight'));
    // transformers' act_quant needs in_features % 128: down_proj's 3420 inputs fail at the first forward.
    assert.ok(findings(report, 'transformers', 1).some((f) => f.rule === 'activation-groups' && f.pattern === 'visual.blocks.*.mlp.down_proj.weight'));
    // No block divides 3420 into whole 128/64/32 blocks: the suggestion keeps those linears in BF16.
    const s = report.suggestions.find((x) => x.engine === 'vllm' && x.tp === 1)!;
    assert.match(s.flags, /--exclude 're:\^visual/);
    assert.ok(s.extraBytes > 0);
  } else {
    assert.ok(findings(report, 'vllm', 1).some((f) => f.rule === 'kept-linear'));
  }
  assert.ok(findings(report, 'vllm', 8).some((f) => f.rule === 'tp-even-split' && /28 attention heads over 8 ranks/.test(f.message)));
  assert.equal(row(report, 'vllm'), 'FAIL FAIL FAIL FAIL');
  assert.equal(row(report, 'mlc'), 'FAIL FAIL FAIL FAIL');
  // The vision tower kept in BF16 and listed in ignored_layers (convert --exclude 're:^visual\.' --target vllm):
  // the language model loads at TP 1/2/4, and 28 heads still do not split over 8.
  const keptVision = deployCheck(planned(model, { exclude: ['re:^visual\\.'], targets: 'vllm' }), { engines: ['vllm', 'mlc'] });
  assert.equal(row(keptVision, 'vllm'), 'ok ok ok FAIL');
  assert.ok(failRules(keptVision, 'mlc', 1).includes('kept-linear'), 'MLC LLM would still build the vision linears as FP8');
});

test('activation scheme × block: static is refused by vLLM, SGLang and MLC, read by transformers', () => {
  const r = deployCheck(planned(models.qwen3_30b_a3b(), { settings: { activationScheme: 'static' } }), { tpSizes: [1] });
  for (const e of ['vllm', 'sglang', 'mlc'] as const) assert.ok(failRules(r, e, 1).includes('activation-scheme'), e);
  assert.deepEqual(failRules(r, 'transformers', 1), []);
});

test('required config keys and weight dtype: E5M2 fails everywhere, a config without fmt fails MLC only', () => {
  const e5 = deployCheck(planned(models.qwen3_30b_a3b(), { settings: { format: 'e5m2' } }), { tpSizes: [1] });
  for (const e of ['vllm', 'sglang', 'transformers'] as const) assert.ok(failRules(e5, e, 1).includes('weight-dtype'), e);
  assert.ok(failRules(e5, 'mlc', 1).includes('config-keys'));
  const noFmt = deployCheck(planned(models.qwen3_30b_a3b(), { qc: ({ fmt: _fmt, ...rest }) => rest }), { tpSizes: [1] });
  assert.deepEqual(failRules(noFmt, 'mlc', 1), ['config-keys']);
  assert.equal(noFmt.results.find((r) => r.engine === 'vllm')!.verdict, 'loads');
  const noScheme = deployCheck(planned(models.llama3_8b(1), { qc: ({ activation_scheme: _s, ...rest }) => rest }), { engines: ['vllm'], tpSizes: [1] });
  assert.deepEqual(failRules(noScheme, 'vllm', 1), ['config-keys']);
});

test("compressed-tensors layout: vLLM reads it; MLC LLM and DeepSeek's code do not", () => {
  const r = deployCheck(planned(models.deepseek_v3(4), { format: 'compressed-tensors' }), { tpSizes: [1] });
  assert.equal(r.results.find((x) => x.engine === 'vllm')!.verdict, 'loads');
  assert.ok(failRules(r, 'mlc', 1).includes('layout'));
  assert.ok(failRules(r, 'deepseek', 1).includes('layout'));
});

test('kept linears: vLLM reads ignored_layers (written with --target vllm), MLC LLM builds every Linear as FP8', () => {
  const model = models.llama3_8b(2);
  const bare = deployCheck(planned(model, { exclude: ['mlp.down_proj'] }), { tpSizes: [1] });
  assert.deepEqual(failRules(bare, 'vllm', 1), ['kept-linear']);
  assert.match(findings(bare, 'vllm', 1)[0]!.message, /ignored_layers/);
  assert.equal(findings(bare, 'vllm', 1)[0]!.pattern, 'model.layers.*.mlp.down_proj.weight');
  assert.deepEqual(failRules(bare, 'sglang', 1), [], 'SGLang falls back to modules_to_not_convert');
  assert.deepEqual(failRules(bare, 'transformers', 1), []);
  assert.ok(failRules(bare, 'mlc', 1).includes('kept-linear'));
  const targeted = deployCheck(planned(model, { exclude: ['mlp.down_proj'], targets: 'vllm' }), { tpSizes: [1] });
  assert.deepEqual(failRules(targeted, 'vllm', 1), []);
  // Keeping only k_proj splits vLLM's merged qkv_proj.
  const partial = deployCheck(planned(model, { exclude: ['self_attn.k_proj'], targets: 'vllm' }), { engines: ['vllm'], tpSizes: [1] });
  assert.deepEqual(failRules(partial, 'vllm', 1), ['fused-partially-kept']);
});

test('scale tensors: missing, wrongly shaped, or not float32 where the engine needs it', () => {
  const input = planned(models.llama3_8b(1));
  const [first, ...rest] = input.linears;
  const broken = (l: typeof first): DeployCheckInput => ({ ...input, linears: [l!, ...rest] });
  assert.ok(failRules(deployCheck(broken({ ...first!, scale: undefined }), { engines: ['vllm'], tpSizes: [1] }), 'vllm', 1).includes('scale-missing'));
  const shape = deployCheck(broken({ ...first!, scale: { ...first!.scale!, shape: [1, 1] } }), { engines: ['transformers'], tpSizes: [1] });
  assert.deepEqual(failRules(shape, 'transformers', 1), ['scale-shape']);
  const bf16 = deployCheck(broken({ ...first!, scale: { ...first!.scale!, dtype: 'BF16' } }), { engines: ['vllm', 'transformers'], tpSizes: [1] });
  assert.deepEqual(failRules(bf16, 'vllm', 1), [], 'vLLM copies BF16 scales into its float32 parameter');
  assert.deepEqual(failRules(bf16, 'transformers', 1), []);
  const qwen = planned(models.qwen3_30b_a3b(1));
  const [q0, ...qrest] = qwen.linears;
  const packed = { ...qwen, linears: [{ ...q0!, scale: { ...q0!.scale!, dtype: 'U8' } }, ...qrest] };
  const r = deployCheck(packed, { engines: ['mlc', 'vllm'], tpSizes: [1] });
  assert.deepEqual(failRules(r, 'mlc', 1), ['scale-dtype']);
  assert.deepEqual(failRules(r, 'vllm', 1), ['scale-dtype']);
});

test('MLC LLM concatenates q/k/v and gate/up with their scales: a part off the block fails even on one GPU', () => {
  const model = models.qwen3_30b_a3b(1);
  // A Qwen3 whose key/value projection is 64 rows (one 64-wide head): q is fine, k is not.
  const narrow: models.RealModel = {
    ...model,
    config: { ...model.config, num_key_value_heads: 1, head_dim: 64, num_attention_heads: 64 },
    tensors: model.tensors.map((t) => (/self_attn\.(k|v)_proj/.test(t.name) ? { ...t, shape: [64, t.shape[1]!] } : t)),
  };
  const r = deployCheck(planned(narrow), { engines: ['mlc', 'vllm'], tpSizes: [1] });
  assert.deepEqual(failRules(r, 'mlc', 1), ['merged-part']);
  assert.equal(findings(r, 'mlc', 1)[0]!.pattern, 'model.layers.*.self_attn.k_proj.weight');
  assert.deepEqual(failRules(r, 'vllm', 1), ['merged-part'], "vLLM's merged qkv_proj checks every part but the last too");
});

test('convert --target refuses a doomed conversion before reading weights or creating the output (exit 2)', async () => {
  const tmp = await makeTempDir('deploy-target');
  try {
    const src = join(tmp.path, 'qwen3-30b-a3b');
    const { mkdir } = await import('node:fs/promises');
    await mkdir(src);
    await models.writeSparseCheckpoint(src, models.qwen3_30b_a3b(2));
    const events: ConvertEvent['type'][] = [];
    await assert.rejects(
      convertCheckpoint({ input: src, output: join(tmp.path, 'out'), deployTargets: parseTargets('vllm:tp4,mlc'), onEvent: (e) => events.push(e.type) }),
      (e: unknown) => e instanceof DeployTargetError && /vllm:tp4/.test(e.message) && !/mlc/.test(e.message.split('\n')[0]!),
    );
    assert.deepEqual(
      events.filter((t) => t === 'tensor' || t === 'bytes'),
      [],
    );
    assert.equal(existsSync(join(tmp.path, 'out')), false);
    // Through the CLI: exit 2, the failing rule named; --force-target lets a dry run through.
    const stderr: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) =>
      typeof chunk === 'string' ? (stderr.push(chunk), true) : (write as (c: Uint8Array, ...r: unknown[]) => boolean)(chunk, ...rest)) as typeof process.stderr.write;
    let code: number;
    try {
      code = await main(['node', 'fp8q', 'convert', src, '-o', join(tmp.path, 'out'), '--target', 'vllm:tp4', '-q']);
    } finally {
      process.stderr.write = write;
    }
    assert.equal(code, 2);
    assert.match(stderr.join(''), /MoE intermediate per rank 768\/4 = 192.*\n.*Fp8MoEMethod\.create_weights/);
    assert.match(stderr.join(''), /--block 64x64/);
    const forced = await convertCheckpoint({ input: src, output: join(tmp.path, 'out'), dryRun: true, deployTargets: parseTargets('vllm:tp4'), forceTarget: true });
    assert.equal(forced.deployCheck!.results[0]!.verdict, 'fails');
  } finally {
    await tmp.cleanup();
  }
});

test('fp8q check --json on a converted checkpoint; convert --target vllm writes ignored_layers beside modules_to_not_convert', async () => {
  const tmp = await makeTempDir('deploy-check-cli');
  try {
    const out = join(tmp.path, 'llama-fp8');
    await convertCheckpoint({ input: 'fixtures/models/llama', output: out, exclude: ['mlp.down_proj'], deployTargets: parseTargets('vllm'), threads: 0 });
    const qc = JSON.parse(await readFile(join(out, 'config.json'), 'utf8'))['quantization_config'] as Record<string, unknown>;
    assert.deepEqual(qc['ignored_layers'], qc['modules_to_not_convert']);
    assert.ok((qc['ignored_layers'] as string[]).includes('model.layers.0.mlp.down_proj'));
    const chunks: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) =>
      typeof chunk === 'string' ? (chunks.push(chunk), true) : (write as (c: Uint8Array, ...r: unknown[]) => boolean)(chunk, ...rest)) as typeof process.stdout.write;
    let code: number;
    try {
      code = await main(['node', 'fp8q', 'check', out, '--engine', 'vllm,mlc', '--tp', '1,2', '--json']);
    } finally {
      process.stdout.write = write;
    }
    assert.equal(code, 0);
    const report = JSON.parse(chunks.join('')) as DeployReport & { judged: string };
    assert.equal(report.judged, 'checkpoint');
    assert.deepEqual(
      report.results.map((r) => `${r.engine}:${r.tp}:${r.verdict}`),
      ['vllm:1:loads', 'vllm:2:fails', 'mlc:1:fails', 'mlc:2:fails'],
    );
    // The fixture's k_proj has 128 rows: 64 per rank at TP 2.
    assert.ok(report.results[1]!.findings.some((f) => f.rule === 'merged-part' && f.tensors?.pattern === 'model.layers.*.self_attn.k_proj.weight'));
    const usage = await main(['node', 'fp8q', 'check', out, '--engine', 'tgi']);
    assert.equal(usage, 2);
  } finally {
    await tmp.cleanup();
  }
});

test('convert --dry-run and inspect end with the deployment report', async () => {
  const out: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  const errWrite = process.stderr.write.bind(process.stderr);
  // The test runner's own messages are Buffers on stdout: pass them through, keep the CLI's text.
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) =>
    typeof chunk === 'string' ? (out.push(chunk), true) : (write as (c: Uint8Array, ...r: unknown[]) => boolean)(chunk, ...rest)) as typeof process.stdout.write;
  process.stderr.write = (() => true) as typeof process.stderr.write;
  let dry: number;
  let inspect: number;
  let text: string;
  try {
    dry = await main(['node', 'fp8q', 'convert', 'fixtures/models/mixtral', '-o', '/nonexistent/never-written', '--dry-run', '--json']);
    text = out.join('');
    out.length = 0;
    inspect = await main(['node', 'fp8q', 'inspect', 'fixtures/models/deepseek_v3']);
  } finally {
    process.stdout.write = write;
    process.stderr.write = errWrite;
  }
  assert.equal(dry, 0);
  const summary = JSON.parse(text) as { deployCheck: DeployReport };
  assert.equal(summary.deployCheck.results.length, 5 * 4, 'five engines × TP 1/2/4/8');
  assert.equal(inspect, 0);
  assert.match(out.join(''), /deployment check \(block 128x128[^\n]*\n {2}engine +tp1 +tp2 +tp4 +tp8\n {2}vllm /);
});

test("convert --dry-run --target: the plan and the targets' findings, then the exit code a real run would have (2 refused, 0 with --force-target)", async () => {
  const stories = join(import.meta.dirname, '..', 'fixtures', 'models', 'stories260K');
  const out = join(import.meta.dirname, 'never-written');
  const dry = ['convert', stories, '-o', out, '--target', 'vllm', '--dry-run'];
  const [refused, json, forced, loads] = await fp8qBatch([
    dry,
    [...dry, '--json'],
    [...dry, '--force-target'],
    ['convert', 'fixtures/models/llama', '-o', out, '--target', 'vllm', '--dry-run'],
  ]);
  // stories260K's q_proj has 64 rows: block 128 does not divide it, so vLLM would refuse.
  assert.equal(refused!.code, 2, refused!.stderr);
  assert.match(refused!.stdout, /^plan for .*stories260K \(LlamaForCausalLM\), nothing written:$/m);
  assert.match(refused!.stdout, /^ {2}vllm +FAIL$/m);
  assert.match(refused!.stdout, /^ {2}suggestion for vllm:tp1: --exclude /m);
  assert.equal(
    refused!.stderr.trim().split('\n').at(-1),
    'fp8q: dry run: a real run would refuse to convert, as the output would not load in vllm:tp1; change the block or exclusions as the deployment check suggests, or pass --force-target to convert anyway',
  );
  // --json: one document, the plan and the check in it, and the error a real run would have.
  assert.equal(json!.code, 2, json!.stderr);
  const doc = JSON.parse(json!.stdout) as { plan: unknown; deployCheck: DeployReport; error: { code: string; exitCode: number; message: string } };
  assert.ok(doc.plan);
  assert.deepEqual(
    doc.deployCheck.results.map((r) => `${r.engine}:${r.tp}:${r.verdict}`),
    ['vllm:1:fails'],
  );
  assert.deepEqual([doc.error.code, doc.error.exitCode], ['E_USAGE', 2]);
  assert.match(doc.error.message, /^dry run: a real run would refuse to convert/);
  assert.equal(forced!.code, 0, forced!.stderr);
  assert.match(forced!.stdout, /^ {2}vllm +FAIL$/m);
  assert.equal(loads!.code, 0, loads!.stderr);
  assert.match(loads!.stdout, /^ {2}vllm +ok$/m);
  assert.equal(existsSync(out), false);
});

test('an --exclude suggestion can be pasted as printed: with it the same target loads (stories260K, vLLM TP 1)', async () => {
  const stories = join(import.meta.dirname, '..', 'fixtures', 'models', 'stories260K');
  const out = join(import.meta.dirname, 'never-written');
  let suggestion: string | undefined;
  await assert.rejects(convertCheckpoint({ input: stories, output: out, dryRun: true, deployTargets: parseTargets('vllm:tp1') }), (e: unknown) => {
    assert.ok(e instanceof DeployTargetError);
    suggestion = e.report.suggestions.find((x) => x.engine === 'vllm' && x.tp === 1)?.flags;
    return true;
  });
  // Five linears per layer over five layers: one regular expression, not "--exclude … (25 linears)".
  assert.equal(suggestion, "--exclude 're:^model\\.layers\\.\\d+\\.(?:mlp\\.gate_proj|mlp\\.up_proj|self_attn\\.k_proj|self_attn\\.q_proj|self_attn\\.v_proj)$'");
  const pattern = /^--exclude '(.*)'$/.exec(suggestion!)![1]!;
  const summary = await convertCheckpoint({ input: stories, output: out, dryRun: true, exclude: [pattern], deployTargets: parseTargets('vllm:tp1') });
  assert.equal(summary.deployCheck!.results.find((r) => r.engine === 'vllm' && r.tp === 1)!.verdict, 'loads');
  assert.equal(existsSync(out), false);
  // Few patterns: one flag each, dots escaped.
  assert.equal(excludeFlags(['visual.blocks.0.mlp.gate_proj', 'visual.blocks.1.mlp.gate_proj']), "--exclude 're:^visual\\.blocks\\.\\d+\\.mlp\\.gate_proj$'");
});

test('transformers refuses fused FP8 experts with biases (gpt-oss), and names the rule; Llama has none', async () => {
  const { deployCheckSourceOf } = await import('../src/pipeline/inspect/deploy-check-input.js');
  const { deployCheck } = await import('../src/passes/deploy-check/index.js');
  const judge = async (name: string) => {
    const source = await deployCheckSourceOf(join('fixtures', 'models', name));
    return deployCheck(source.input, { engines: ['transformers'], tpSizes: [1] }).results[0]!;
  };
  const gptOss = await judge('gpt_oss');
  assert.equal(gptOss.verdict, 'fails');
  const bias = gptOss.findings.find((f) => f.rule === 'expert-bias');
  assert.ok(bias, JSON.stringify(gptOss.findings));
  assert.match(bias.message, /FP8Experts/);
  const llama = await judge('llama');
  assert.ok(!llama.findings.some((f) => f.rule === 'expert-bias'));
});
