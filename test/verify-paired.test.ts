// Paired layers (paired-layers.ts, runner.ts runLayerPair): both models' layer in one graph (an MoE
// layer: one graph per step, an expert's of both models in one),
// each FP8 linear compared with the original's in the graph (ops/comparison-sums.ts), so that a
// CUDA verify brings back sums instead of every linear's input and output.
//   - the in-graph sums equal their float64 reference up to summation order, N a multiple of the
//     column group or not; metrics from them equal linearMetrics on the outputs;
//   - verify with pairing gives the report without it (the same linears, rows and gates; figures
//     within 1e-9 relative: on the CPU the layers compute the same values, and only the float64
//     sums' order differs) on Llama (GQA), DeepSeek-V3 (MLA, dense and MoE layers), Mixtral and
//     five more MoE families, Gemma 3 (feed-forward norms), and one token; it pairs exactly the
//     layers it should: dense ones and MoE ones of per-expert linears, not stacked experts, and
//     not a layer whose linear needs a floor probe (a damaged scale, or a damaged routed expert,
//     whose layer declines after routing), which is still caught;
//   - MoE layers where the models route otherwise (at 12, 2, 1 tokens, a batch of 2), with a
//     shared expert's gate or group-limited routing, ue8m0 scales or excluded experts: the same
//     report, and the same again with codes re-quantized in the graph, which never reaches an
//     expert only the quantized model routed to (its damage shows);
//   - a paired MoE layer gives back its pooled buffers and weight scopes when it declines or fails,
//     and routed experts' floor checks are queued up front only for layers that may pair;
//   - the quantized layer runs on its own kept tensors (a changed norm shows), and outputs whose
//     float32 squares would overflow or vanish are measured as the separate runs measure them.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';

import { convertCheckpoint } from '../src/pipeline/convert-checkpoint.js';
import { DataType } from '../src/runtime/onnx/data-type.js';
import { attr, GraphBuilder, type Value } from '../src/runtime/onnx/graph-builder.js';
import { OnnxSession } from '../src/runtime/onnx/session.js';
import { comparisonSums, emitComparisonSums } from '../src/runtime/ops/comparison-sums.js';
import { ModelRunner } from '../src/runtime/models/runner.js';
import { HostBufferPool } from '../src/runtime/models/buffer-pool.js';
import { layerLinears } from '../src/runtime/models/layer-plan.js';
import { WeightAccounting } from '../src/runtime/models/weights.js';
import { ModelGraph } from '../src/runtime/models/model-graph.js';
import { SessionCache } from '../src/runtime/onnx/session-cache.js';
import { emitRequantizedBlockWeight, requantizeBlockWeight, requantizeSelfTest, runSelfTest } from '../src/runtime/ops/block-requantize.js';
import { decodeTableFor } from '../src/fp8/index.js';
import { linearMetrics, linearMetricsFromSums } from '../src/runtime/verify/metrics.js';
import { verifyCheckpoints, type VerifyOptions, type VerifyReport } from '../src/runtime/verify/verify-checkpoints.js';
import { FloorChecker } from '../src/runtime/verify/floor-check.js';
import { copyCheckpointWithEdits, scaleF32, type EditableTensor } from './helpers/checkpoint-edit.js';
import { MODELS, modelDir } from './helpers/fixtures.js';
import { useConvertedFixtures } from './helpers/converted-fixtures.js';
import { writeSyntheticModel } from './helpers/synthetic-model.js';

const fixtures = useConvertedFixtures('verify-paired');

function randomValues(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32 - 0.5) * 4;
  }
  return out;
}

/** The sums of the graph; `symbolicRows`: declared with a symbolic row count, as an MoE expert's rows are. */
async function graphSums(
  ref: Float32Array,
  act: Float32Array,
  rows: number,
  n: number,
  bn: number,
  symbolicRows = false,
  overRows = false,
): Promise<{ data: Float64Array; dims: readonly number[] }> {
  const g = new GraphBuilder();
  const r = g.input('ref', DataType.FLOAT, [symbolicRows ? 'rows' : rows, n]);
  const a = g.input('act', DataType.FLOAT, [symbolicRows ? 'rows' : rows, n]);
  g.output(emitComparisonSums(g, r, a, bn, overRows), 'sums');
  const session = await OnnxSession.create(g.toBytes(), { device: 'cpu' });
  try {
    const out = await session.run({ ref: { type: 'float32', data: ref, dims: [rows, n] }, act: { type: 'float32', data: act, dims: [rows, n] } });
    assert.equal(out.sums!.type, 'float64');
    return { data: out.sums!.data as Float64Array, dims: out.sums!.dims };
  } finally {
    await session.release();
  }
}

for (const [n, bn] of [
  [300, 128],
  [256, 128],
  [96, 96],
] as const) {
  test(`comparison sums in the graph, N ${n} in groups of ${bn}: the float64 reference up to summation order; metrics as from the outputs`, async () => {
    const rows = 5;
    const ref = randomValues(rows * n, 1);
    const act = ref.map((v, i) => v + (i % 7 === 0 ? 0.05 : -0.01) * v);
    const { data, dims } = await graphSums(ref, act, rows, n, bn);
    const nb = Math.ceil(n / bn);
    assert.deepEqual(dims, [4, rows, nb]);
    const expected = comparisonSums(ref, act, rows, bn);
    for (let i = 0; i < expected.length; i++) {
      const tol = 1e-12 * Math.max(1, Math.abs(expected[i]!));
      assert.ok(Math.abs(data[i]! - expected[i]!) <= tol, `sum ${i}: ${data[i]} against ${expected[i]}`);
    }
    // A symbolic row count gives the same sums.
    const symbolic = await graphSums(ref, act, rows, n, bn, true);
    assert.deepEqual(symbolic.dims, [4, rows, nb]);
    assert.deepEqual(symbolic.data, data);
    // From exact sums, the metrics are linearMetrics' up to float64 summation order.
    const fromSums = linearMetricsFromSums(Float32Array.from(expected), rows, nb, 'output', nb > 1);
    const direct = linearMetrics(ref, act, act, rows, nb > 1 ? bn : undefined);
    for (const key of ['relativeError', 'cosine', 'sqnrDb', 'floorError', 'errorRatio'] as const) {
      assert.ok(Math.abs(fromSums[key]! - direct[key]!) <= 1e-6 * Math.abs(direct[key]!), `${key}: ${fromSums[key]} against ${direct[key]}`);
    }
    const noFloor = linearMetricsFromSums(Float32Array.from(expected), rows, nb, undefined, false);
    assert.equal(noFloor.floorError, undefined);
    assert.ok(Math.abs(noFloor.relativeError - direct.relativeError) <= 1e-9);
    // Over the rows too (what a paired layer's linears send back), static or symbolic rows: the
    // reference's rows added up, and from them the same metrics.
    const summed = comparisonSums(ref, act, rows, bn, true);
    const fromExact = linearMetricsFromSums(expected, rows, nb, 'output', nb > 1);
    assert.equal(summed.length, 4 * nb);
    for (const symbolicRows of [false, true]) {
      const over = await graphSums(ref, act, rows, n, bn, symbolicRows, true);
      assert.deepEqual(over.dims, [4, 1, nb]);
      for (let i = 0; i < summed.length; i++) {
        assert.ok(Math.abs(over.data[i]! - summed[i]!) <= 1e-12 * Math.max(1, Math.abs(summed[i]!)), `summed over rows, sum ${i}: ${over.data[i]} against ${summed[i]}`);
      }
      const fromOver = linearMetricsFromSums(over.data, 1, nb, 'output', nb > 1);
      for (const key of ['relativeError', 'cosine', 'sqnrDb', 'floorError', 'errorRatio'] as const) {
        assert.ok(Math.abs(fromOver[key]! - fromExact[key]!) <= 1e-12 * Math.abs(fromExact[key]!), `over rows, ${key}: ${fromOver[key]} against ${fromExact[key]}`);
      }
    }
  });
}

test('comparison sums: identical outputs give zero error (SQNR +∞, ratio from the floor epsilon)', () => {
  const ref = randomValues(3 * 256, 2);
  const sums = Float32Array.from(comparisonSums(ref, ref, 3, 128));
  const m = linearMetricsFromSums(sums, 3, 2, 'output', true);
  assert.equal(m.relativeError, 0);
  assert.equal(m.sqnrDb, Infinity);
  assert.equal(m.errorRatio, 0);
});

test('comparison sums of outputs whose squares float32 cannot hold (|x| ~1e20, ~1e-25): the metrics linearMetrics gives', async () => {
  // A float32 square overflows above ~1.8e19 and is lost below ~1e-23, where the separate path's
  // float64 sums are exact: summed in float32, both came out as a perfect linear.
  const rows = 3;
  const n = 300;
  const bn = 128;
  for (const scale of [1e20, 1e-25]) {
    const ref = randomValues(rows * n, 3).map((v) => v * scale);
    const act = ref.map((v, i) => v * (1 + (i % 7 === 0 ? 0.03 : -0.01)));
    const { data } = await graphSums(ref, act, rows, n, bn);
    const fromSums = linearMetricsFromSums(data, rows, Math.ceil(n / bn), 'output', true);
    const direct = linearMetrics(ref, act, act, rows, bn);
    assert.ok(direct.relativeError > 0.01, `the outputs differ (${direct.relativeError})`);
    for (const key of ['relativeError', 'cosine', 'sqnrDb', 'floorError', 'errorRatio'] as const) {
      assert.ok(Math.abs(fromSums[key]! - direct[key]!) <= 1e-9 * Math.abs(direct[key]!), `scale ${scale}, ${key}: ${fromSums[key]} against ${direct[key]}`);
    }
  }
});

/** The layers runLayerPair ran as a pair while `fn` runs. */
async function countingPairs<T>(fn: () => Promise<T>): Promise<{ value: T; layers: number[] }> {
  const layers: number[] = [];
  const original = ModelRunner.prototype.runLayerPair;
  ModelRunner.prototype.runLayerPair = async function (this: ModelRunner, ...args: Parameters<typeof original>) {
    const pair = await original.apply(this, args);
    // An MoE layer that declined after routing (undefined) ran in the separate graphs.
    if (pair !== undefined) layers.push(args[1]);
    return pair;
  };
  try {
    return { value: await fn(), layers };
  } finally {
    ModelRunner.prototype.runLayerPair = original;
  }
}

/** The modules ModelGraph.requantizeFrom is given (re-quantized in the graph) while `fn` runs. */
async function countingRequantized<T>(fn: () => Promise<T>): Promise<{ value: T; modules: string[] }> {
  const modules: string[] = [];
  const original = ModelGraph.prototype.requantizeFrom;
  ModelGraph.prototype.requantizeFrom = function (this: ModelGraph, model: string, requantized: ReadonlySet<string>) {
    modules.push(...requantized);
    return original.call(this, model, requantized);
  };
  try {
    return { value: await fn(), modules };
  } finally {
    ModelGraph.prototype.requantizeFrom = original;
  }
}

/** FP8 code bytes fed to the sessions (uint8 graph inputs) while `fn` runs. */
async function countingCodeBytes<T>(fn: () => Promise<T>): Promise<{ value: T; bytes: number }> {
  let bytes = 0;
  const original = SessionCache.prototype.run;
  SessionCache.prototype.run = function (this: SessionCache, model, feeds, into) {
    for (const f of Object.values(feeds)) if (f.type === 'uint8') bytes += f.data.byteLength;
    return original.call(this, model, feeds, into);
  };
  try {
    return { value: await fn(), bytes };
  } finally {
    SessionCache.prototype.run = original;
  }
}

function assertSameReport(paired: VerifyReport, separate: VerifyReport, what: string): void {
  assert.deepEqual(
    paired.linears.map((l) => [l.module, l.rows, l.floorError === undefined, l.errorRatio === undefined]),
    separate.linears.map((l) => [l.module, l.rows, l.floorError === undefined, l.errorRatio === undefined]),
    `${what}: the same linears in the same order`,
  );
  const close = (a: number | undefined, b: number | undefined, key: string): void => {
    // NaN is what both report for a linear whose outputs hold NaN or Inf.
    if (a === b || (Number.isNaN(a) && Number.isNaN(b))) return;
    assert.ok(a !== undefined && b !== undefined && Math.abs(a - b) <= 1e-9 * Math.max(Math.abs(b), 1e-3), `${what}: ${key} ${a} against ${b}`);
  };
  for (let i = 0; i < separate.linears.length; i++) {
    const p = paired.linears[i]!;
    const s = separate.linears[i]!;
    for (const key of ['relativeError', 'cosine', 'sqnrDb', 'floorError', 'errorRatio'] as const) close(p[key], s[key], `${s.module} ${key}`);
  }
  for (const key of ['meanKl', 'maxKl', 'top1Agreement', 'relativeError'] as const) close(paired.model[key], separate.model[key], `model ${key}`);
  assert.deepEqual(paired.notReached, separate.notReached, `${what}: notReached`);
  assert.deepEqual(paired.unverified, separate.unverified, `${what}: unverified`);
  assert.deepEqual(
    paired.failures.map((f) => f.gate),
    separate.failures.map((f) => f.gate),
    `${what}: the same gates fail`,
  );
  assert.equal(paired.passed, separate.passed, what);
}

async function verifyBoth(
  original: string,
  quantized: string,
  input: Pick<VerifyOptions, 'tokens' | 'input'> = { tokens: 12 },
): Promise<{ paired: VerifyReport; separate: VerifyReport; pairedLayers: number[] }> {
  const common = { original, quantized, ...input, seed: 5, weightDecode: 'graph' as const, floorCheckThreads: 1 };
  const { value: paired, layers } = await countingPairs(() => verifyCheckpoints({ ...common, pairedLayers: true }));
  const { value: separate, layers: none } = await countingPairs(() => verifyCheckpoints({ ...common, pairedLayers: false }));
  assert.deepEqual(none, [], 'pairedLayers false pairs nothing');
  return { paired, separate, pairedLayers: layers };
}

/** verifyBoth, and its paired run again with the codes re-quantized in the graph: that report bit for bit. */
async function verifyAll(original: string, quantized: string, input?: Pick<VerifyOptions, 'tokens' | 'input'>, what = quantized): ReturnType<typeof verifyBoth> {
  const both = await verifyBoth(original, quantized, input);
  assertSameReport(both.paired, both.separate, what);
  const { seconds: _a, ...requantized } = await verifyCheckpoints({
    original,
    quantized,
    ...(input ?? { tokens: 12 }),
    seed: 5,
    weightDecode: 'graph',
    floorCheckThreads: 1,
    pairedLayers: true,
    requantizeOnDevice: true,
  });
  const { seconds: _b, ...paired } = both.paired;
  assert.deepEqual(requantized, paired, `${what}: the same report with the codes re-quantized in the graph`);
  return both;
}

/** A copy of Mixtral's conversion with layer 1's router rows of experts `a` and `b` swapped (and `edit`): the quantized model routes otherwise. */
async function swappedRouter(name: string, pairs: readonly (readonly [number, number])[], edit?: (t: Map<string, EditableTensor>) => void): Promise<string> {
  const out = join(fixtures.workDir(), name);
  await copyCheckpointWithEdits(fixtures.converted.get('mixtral')!, out, (t) => {
    const router = t.get('model.layers.1.block_sparse_moe.gate.weight')!.bytes;
    const row = router.byteLength / 4;
    for (const [a, b] of pairs) {
      const first = router.slice(a * row, (a + 1) * row);
      router.copyWithin(a * row, b * row, (b + 1) * row);
      router.set(first, b * row);
    }
    edit?.(t);
  });
  return out;
}

for (const name of ['llama', 'deepseek_v3', 'mixtral'] as const) {
  test(`verify ${name}: paired layers give the report of the separate runs (every layer paired, MoE ones included)`, async () => {
    const original = modelDir(name);
    const quantized = fixtures.converted.get(name)!;
    const { paired, separate, pairedLayers } = await verifyBoth(original, quantized);
    const runner = await ModelRunner.open(original, { weightDecode: 'graph' });
    let layers: number[];
    try {
      layers = [...Array(runner.spec.numLayers).keys()];
      if (name !== 'llama')
        assert.ok(
          layers.some((l) => runner.plan(l).mlp.kind === 'moe'),
          `${name} has MoE layers`,
        );
    } finally {
      await runner.close();
    }
    assert.deepEqual(pairedLayers, layers, 'the layers paired');
    assertSameReport(paired, separate, name);
    assert.ok(paired.passed, 'fp8q conversions pass');
  });
}

// MoE families beyond the converted three. Paired: DeepSeek-V2 (its routing, shared experts),
// MiniMax-M2 (w1/w2/w3 experts, score bias). Not paired, for reasons of their own: Qwen3-VL-MoE and
// gpt-oss stack their experts (row reads); GLM-4 MoE's attention has biases, whose floor the
// workers do not check (floor-check.ts), so no layer of it is paired (nor was its dense one before).
for (const [name, expected] of [
  ['deepseek_v2', 'all'],
  ['minimax_m2', 'all'],
  ['glm4_moe', 'none'],
  ['qwen3_vl_moe', 'none'],
  ['gpt_oss', 'none'],
] as const) {
  test(`verify ${name}: ${expected === 'all' ? 'MoE layers paired, with' : 'no layer paired;'} the report of the separate runs`, async () => {
    const out = join(fixtures.workDir(), `${name}-fp8`);
    await convertCheckpoint({ input: join(MODELS, name), output: out });
    const { paired, separate, pairedLayers } = await verifyBoth(join(MODELS, name), out);
    if (expected === 'all') assert.ok(pairedLayers.length > 0, `${name}: layers are paired`);
    else assert.deepEqual(pairedLayers, [], `${name}: no layer is paired`);
    assertSameReport(paired, separate, name);
  });
}

test('verify of an MoE model at one token (the experts GEMV path): paired layers give the report of the separate runs', async () => {
  const common = { original: modelDir('mixtral'), quantized: fixtures.converted.get('mixtral')!, tokens: 1, seed: 3, weightDecode: 'graph' as const, floorCheckThreads: 1 };
  const { value: paired, layers } = await countingPairs(() => verifyCheckpoints({ ...common, pairedLayers: true }));
  const separate = await verifyCheckpoints({ ...common, pairedLayers: false });
  assert.ok(layers.length > 0, 'layers are paired');
  assertSameReport(paired, separate, 'mixtral, one token');
});

test('verify with a damaged routed expert: its MoE layer declines the pair after routing and runs in the separate graphs, which catch it', async () => {
  const damaged = join(fixtures.workDir(), 'mixtral-expert');
  const original = modelDir('mixtral');
  // An expert that the original routes tokens to at this seed (its probe is compared).
  const reference = await verifyCheckpoints({ original, quantized: fixtures.converted.get('mixtral')!, tokens: 12, seed: 5 });
  const target = reference.linears.map((l) => l.module).find((m) => /\.layers\.1\..*experts\.\d+\./.test(m))!;
  assert.ok(target !== undefined, 'an expert of layer 1 is compared');
  await copyCheckpointWithEdits(fixtures.converted.get('mixtral')!, damaged, (t) => scaleF32(t.get(`${target}.weight_scale_inv`)!, 4));
  const { paired, separate, pairedLayers } = await verifyBoth(original, damaged);
  assert.ok(!pairedLayers.includes(1), 'layer 1 is not paired');
  assert.ok(pairedLayers.includes(0), 'layer 0 is paired');
  assertSameReport(paired, separate, 'damaged mixtral expert');
  assert.equal(paired.passed, false);
  const worst = paired.linears.find((l) => l.module === target)!;
  assert.ok(worst.errorRatio! > 2, `the damaged expert's ratio ${worst.errorRatio}`);
});

/**
 * Runs `fn` on Mixtral's original and conversion sharing one pool and one weight accounting:
 * the pool's float32 buffers `fn` took and did not give back, the weight bytes still held, and
 * what `fn` threw. `compare`: every FP8 linear of layer 0.
 */
async function poolAfter(
  fn: (original: ModelRunner, quantized: ModelRunner, hidden: Float32Array, compare: Map<string, number>) => Promise<unknown>,
): Promise<{ kept: number; held: number; error: unknown }> {
  const pool = new HostBufferPool();
  const accounting = new WeightAccounting();
  const options = { weightDecode: 'graph' as const, buffers: pool, accounting };
  const original = await ModelRunner.open(modelDir('mixtral'), options);
  const quantized = await ModelRunner.open(fixtures.converted.get('mixtral')!, options);
  try {
    const hidden = await original.embed(Int32Array.from({ length: 12 }, (_, i) => (i * 71) % 1000));
    const compare = new Map(
      layerLinears(quantized.plan(0))
        .filter((m) => quantized.isFp8Linear(m))
        .map((m) => [m, 128]),
    );
    const taken = new Set<ArrayBufferLike>();
    const [float32, give] = [pool.float32.bind(pool), pool.give.bind(pool)];
    pool.float32 = (n) => {
      const b = float32(n);
      taken.add(b.buffer);
      return b;
    };
    pool.give = (views) => {
      const list = [...views];
      for (const v of list) taken.delete(v.buffer);
      give(list);
    };
    let error: unknown;
    await fn(original, quantized, hidden, compare).catch((e: unknown) => (error = e));
    return { kept: taken.size, held: accounting.held, error };
  } finally {
    await original.close();
    await quantized.close();
  }
}

test('an MoE layer gives its pooled buffers back and closes its weight scopes, paired or declined after routing, and when an expert graph fails (paired or not)', async () => {
  const shape = { batch: 1, seq: 12 };
  /** Fails `runner`'s third graph run: an expert's (graph A is the first). */
  const failThirdRun = (runner: ModelRunner): void => {
    const run = runner.sessions.run.bind(runner.sessions);
    let calls = 0;
    runner.sessions.run = (model, feeds, into) => (++calls === 3 ? Promise.reject(new Error('an expert graph failed')) : run(model, feeds, into));
  };
  const cases = {
    // The pair's hidden states are pooled too: the caller gives them back once the next layer has run.
    paired: await poolAfter(async (o, q, h, c) => {
      const pair = await o.runLayerPair(q, 0, h, h, shape, c, undefined, async () => true);
      assert.notEqual(pair, undefined);
      o.giveBack([pair!.hidden, pair!.otherHidden]);
    }),
    declined: await poolAfter(async (o, q, h, c) => assert.equal(await o.runLayerPair(q, 0, h, h, shape, c, undefined, async () => false), undefined)),
    'paired, failed': await poolAfter(async (o, q, h, c) => {
      failThirdRun(o);
      await o.runLayerPair(q, 0, h, h, shape, c, undefined, async () => true);
    }),
    'separate, failed': await poolAfter(async (o, _q, h) => {
      failThirdRun(o);
      await o.runLayer(0, h, shape, { capture: true });
    }),
  };
  for (const [what, r] of Object.entries(cases)) {
    assert.equal(r.error === undefined, !what.endsWith('failed'), `${what}: ${String(r.error)}`);
    assert.deepEqual([r.kept, r.held], [0, 0], `${what}: pooled buffers kept, weight bytes held`);
  }
});

test("routed experts' floor checks are queued up front only where their layer can run paired: not beside an MLA split, static activation scales, or a linear the workers cannot check (GLM-4's biased attention)", async () => {
  const cases: [string, string, string][] = [];
  const split = join(fixtures.workDir(), 'deepseek_v3-mla-split');
  await convertCheckpoint({ input: modelDir('deepseek_v3'), output: split, mlaSplit: true });
  cases.push(['deepseek_v3 --mla-split', modelDir('deepseek_v3'), split]);
  const calibrated = join(fixtures.workDir(), 'mixtral-static');
  await convertCheckpoint({ input: modelDir('mixtral'), output: calibrated, activationScheme: 'static', calibration: { file: join(MODELS, 'mixtral.logits.safetensors') } });
  cases.push(['mixtral, static activation scales', modelDir('mixtral'), calibrated]);
  const glm = join(fixtures.workDir(), 'glm4_moe-queue');
  await convertCheckpoint({ input: join(MODELS, 'glm4_moe'), output: glm });
  cases.push(['glm4_moe', join(MODELS, 'glm4_moe'), glm]);
  const submit = FloorChecker.prototype.submit;
  for (const [what, original, quantized] of cases) {
    const submitted: string[] = [];
    FloorChecker.prototype.submit = function (this: FloorChecker, ...args: Parameters<typeof submit>) {
      submitted.push(args[0]);
      return submit.apply(this, args);
    };
    let report: VerifyReport;
    try {
      // One token: most experts get none, and no layer runs paired.
      const run = await countingPairs(() => verifyCheckpoints({ original, quantized, tokens: 1, seed: 5, weightDecode: 'graph', floorCheckThreads: 1, pairedLayers: true }));
      assert.deepEqual(run.layers, [], `${what}: no layer paired`);
      report = run.value;
    } finally {
      FloorChecker.prototype.submit = submit;
    }
    const compared = new Set(report.linears.map((l) => l.module));
    const experts = submitted.filter((m) => /\.experts\.\d+\./.test(m));
    assert.ok(experts.length > 0, `${what}: routed experts are checked`);
    assert.deepEqual(
      experts.filter((m) => !compared.has(m)),
      [],
      `${what}: only the experts a token reached`,
    );
  }
});

test('verify where the models route otherwise (the quantized router of layer 1 swaps two experts): paired MoE layers give the report of the separate runs at 12, 2 and 1 tokens and a batch of 2, codes re-quantized or not', async () => {
  const quantized = await swappedRouter('mixtral-router', [[0, 1]]);
  for (const input of [{ tokens: 12 }, { tokens: 2 }, { tokens: 1 }, { input: { ids: Int32Array.from({ length: 12 }, (_, i) => (i * 37) % 1000), batch: 2, seq: 6 } }]) {
    const what = `swapped router, ${JSON.stringify(input.tokens ?? 'batch of 2')}`;
    const { pairedLayers } = await verifyAll(modelDir('mixtral'), quantized, input, what);
    assert.deepEqual(pairedLayers, [0, 1], what);
  }
});

test('verify with damaged experts that only the quantized model routes a token to: they are never re-quantized in the graph (not compared, so not floor-checked), and their damage shows in the logits', async () => {
  const original = modelDir('mixtral');
  // At one token the original routes it to two of the four experts; the others are not compared.
  const reference = await verifyCheckpoints({ original, quantized: fixtures.converted.get('mixtral')!, tokens: 1, seed: 5 });
  const expert = (m: string): number | undefined => Number(/\.layers\.1\..*experts\.(\d+)\./.exec(m)?.[1] ?? Number.NaN);
  const unrouted = [...new Set(reference.notReached.map(expert).filter((e) => e !== undefined && !Number.isNaN(e)))] as number[];
  const routed = [0, 1, 2, 3].filter((e) => !unrouted.includes(e));
  assert.equal(unrouted.length, 2, 'two experts of layer 1 get no token');
  // The quantized router sends the token to the two the original does not.
  const pairs = routed.map((e, i) => [e, unrouted[i]!] as const);
  const damage = (t: Map<string, EditableTensor>): void => {
    for (const e of unrouted) scaleF32(t.get(`model.layers.1.block_sparse_moe.experts.${e}.w1.weight_scale_inv`)!, 4);
  };
  const damaged = await verifyAll(original, await swappedRouter('mixtral-routed-damaged', pairs, damage), { tokens: 1 }, 'damaged experts only the quantized model routes to');
  const sound = await verifyCheckpoints({
    original,
    quantized: await swappedRouter('mixtral-routed-sound', pairs),
    tokens: 1,
    seed: 5,
    weightDecode: 'graph',
    floorCheckThreads: 1,
    pairedLayers: true,
  });
  assert.deepEqual(damaged.pairedLayers, [0, 1]);
  assert.deepEqual(damaged.paired.notReached, sound.notReached, 'the damaged experts are not compared');
  assert.ok(damaged.paired.model.meanKl > 2 * sound.model.meanKl, `the damage shows: mean KL ${damaged.paired.model.meanKl} against ${sound.model.meanKl}`);
});

test('verify of MoE layers with a shared expert and its sigmoid gate (Qwen2-MoE) and group-limited routing (DeepSeek-V3 without q LoRA), synthetic: paired, the report of the separate runs', async () => {
  for (const family of ['qwen2_moe', 'deepseek_v3'] as const) {
    const original = join(fixtures.workDir(), `${family}-synthetic`);
    await writeSyntheticModel(original, family, 3, 'BF16');
    const quantized = join(fixtures.workDir(), `${family}-synthetic-fp8`);
    await convertCheckpoint({ input: original, output: quantized });
    const { pairedLayers } = await verifyAll(original, quantized, { tokens: 12 }, family);
    assert.deepEqual(pairedLayers, [0, 1], `${family}: both layers paired`);
  }
});

test('verify of MoE conversions with ue8m0 scales, with excluded experts (and one of them damaged), and of an FP8 original: the report of the separate runs', async () => {
  const ue8m0 = join(fixtures.workDir(), 'mixtral-ue8m0');
  await convertCheckpoint({ input: modelDir('mixtral'), output: ue8m0, scaleFormat: 'ue8m0' });
  assert.deepEqual((await verifyAll(modelDir('mixtral'), ue8m0)).pairedLayers, [0, 1], 'ue8m0: paired');
  // Expert 1 kept whole, expert 2's w2 kept: the others' linears are compared, expert 2 runs as its linears.
  const excluded = join(fixtures.workDir(), 'mixtral-excluded');
  await convertCheckpoint({ input: modelDir('mixtral'), output: excluded, exclude: ['re:.*experts\\.1\\..*', 'experts.2.w2'] });
  assert.deepEqual((await verifyAll(modelDir('mixtral'), excluded)).pairedLayers, [0, 1], 'excluded experts: paired');
  const damaged = join(fixtures.workDir(), 'mixtral-excluded-damaged');
  await copyCheckpointWithEdits(excluded, damaged, (t) => scaleF32(t.get('model.layers.1.block_sparse_moe.experts.2.w1.weight_scale_inv')!, 4));
  const d = await verifyAll(modelDir('mixtral'), damaged);
  assert.deepEqual(d.pairedLayers, [0], 'the damaged layer declines');
  assert.ok(d.paired.failures.some((f) => f.subject === 'model.layers.1.block_sparse_moe.experts.2.w1'));
  // An FP8 original: the workers cannot check its floor, so nothing is paired.
  const requantized = join(fixtures.workDir(), 'mixtral-requantized');
  await convertCheckpoint({ input: fixtures.converted.get('mixtral')!, output: requantized, requantize: true, block: { bn: 64, bk: 64 } });
  assert.deepEqual((await verifyAll(fixtures.converted.get('mixtral')!, requantized)).pairedLayers, [], 'FP8 original: not paired');
});

test('verify gemma3 (feed-forward norms): paired layers give the report of the separate runs', async () => {
  const out = join(fixtures.workDir(), 'gemma3-fp8');
  await convertCheckpoint({ input: join(MODELS, 'gemma3'), output: out });
  const { paired, separate, pairedLayers } = await verifyBoth(join(MODELS, 'gemma3'), out);
  assert.ok(pairedLayers.length > 0, 'gemma3 layers are paired');
  assertSameReport(paired, separate, 'gemma3');
});

test('verify with a damaged scale: its layer runs in the separate graphs (its floor is probed) and fails the floor gate; the other layers are paired', async () => {
  const damaged = join(fixtures.workDir(), 'llama-scale');
  const target = 'model.layers.1.mlp.down_proj';
  await copyCheckpointWithEdits(fixtures.converted.get('llama')!, damaged, (t) => scaleF32(t.get(`${target}.weight_scale_inv`)!, 4));
  const { paired, separate, pairedLayers } = await verifyBoth(modelDir('llama'), damaged);
  assert.ok(!pairedLayers.includes(1), 'layer 1 is not paired');
  assert.ok(pairedLayers.includes(0), 'layer 0 is paired');
  assertSameReport(paired, separate, 'damaged llama');
  assert.equal(paired.passed, false);
  const worst = paired.linears.find((l) => l.module === target)!;
  assert.ok(worst.errorRatio! > 2, `the damaged linear's ratio ${worst.errorRatio}`);
});

test("verify with a quantized norm changed: the quantized layer uses its own kept tensors, not the original's of the same name", async () => {
  const damaged = join(fixtures.workDir(), 'llama-norm');
  await copyCheckpointWithEdits(fixtures.converted.get('llama')!, damaged, (t) => {
    const norm = t.get('model.layers.0.input_layernorm.weight')!;
    const words = new Uint16Array(norm.bytes.buffer, norm.bytes.byteOffset, norm.bytes.byteLength / 2);
    // Each BF16 weight one exponent step up: twice its value.
    for (let i = 0; i < words.length; i++) words[i] = words[i]! + 0x80;
  });
  const { paired, separate, pairedLayers } = await verifyBoth(modelDir('llama'), damaged);
  assert.deepEqual(pairedLayers, [0, 1], 'the FP8 linears are intact: every layer is paired');
  assertSameReport(paired, separate, 'llama with a changed norm');
  assert.ok(
    paired.model.meanKl > 10 * (await verifyCheckpoints({ original: modelDir('llama'), quantized: fixtures.converted.get('llama')!, tokens: 12, seed: 5 })).model.meanKl,
    'the change shows in the logits',
  );
});

test('verify of an original whose activations float32 cannot square (~1e19 and more): paired layers report what the separate runs do', async () => {
  const original = join(fixtures.workDir(), 'llama-huge');
  await copyCheckpointWithEdits(modelDir('llama'), original, (t) => {
    const norm = t.get('model.layers.1.input_layernorm.weight')!;
    // BF16 0x6000 = 2^65 ≈ 3.7e19: layer 1's attention inputs and outputs are that large.
    new Uint16Array(norm.bytes.buffer, norm.bytes.byteOffset, norm.bytes.byteLength / 2).fill(0x6000);
  });
  const quantized = join(fixtures.workDir(), 'llama-huge-fp8');
  await convertCheckpoint({ input: original, output: quantized });
  const { paired, separate, pairedLayers } = await verifyBoth(original, quantized);
  assert.deepEqual(pairedLayers, [0, 1]);
  const q = separate.linears.find((l) => l.module === 'model.layers.1.self_attn.q_proj')!;
  assert.ok(q.relativeError > 0.01, `the separate runs measure the q_proj error (${q.relativeError})`);
  assertSameReport(paired, separate, 'llama with huge activations');
});

test('verify on the CPU pairs nothing by default (its layers are staged to hold one float32 matrix at a time)', async () => {
  const { value, layers } = await countingPairs(() => verifyCheckpoints({ original: modelDir('llama'), quantized: fixtures.converted.get('llama')!, tokens: 4 }));
  assert.deepEqual(layers, []);
  assert.ok(value.passed);
});

test('block re-quantization in the graph: the host encoder bit for bit (edge blocks, three block shapes, both formats); the self-test passes here', async () => {
  for (const format of ['e4m3fn', 'e5m2'] as const) {
    for (const block of [
      { bn: 128, bk: 128 },
      { bn: 64, bk: 64 },
      { bn: 128, bk: 64 },
    ]) {
      const [n, k] = [200, 300];
      const w = randomValues(n * k, 11).map((v, i) => (i % 97 === 0 ? v * 1e4 : v));
      const nb = Math.ceil(n / block.bn);
      const kb = Math.ceil(k / block.bk);
      const scale = Float32Array.from({ length: nb * kb }, (_, i) => Math.fround((0.002 + 0.001 * i) * (format === 'e5m2' ? 1e-2 : 1)));
      const g = new GraphBuilder();
      const wv = g.input('w', DataType.FLOAT, [n, k]);
      const sv = g.input('s', DataType.FLOAT, [nb, kb]);
      g.output(emitRequantizedBlockWeight(g, wv, sv, block, format), 'y');
      const session = await OnnxSession.create(g.toBytes(), { device: 'cpu' });
      try {
        const out = await session.run({ w: { type: 'float32', data: w, dims: [n, k] }, s: { type: 'float32', data: scale, dims: [nb, kb] } });
        const y = out.y!.data as Float32Array;
        const codes = requantizeBlockWeight(w, n, k, scale, block, format);
        const decode = decodeTableFor(format);
        let saturated = 0;
        for (let i = 0; i < y.length; i++) {
          if (!Object.is(y[i], decode[codes[i]!])) assert.fail(`${format} ${block.bn}x${block.bk}: element ${i} is ${y[i]}, the host gives ${decode[codes[i]!]}`);
          if (Math.abs(y[i]!) === decode[0x7e]! || Math.abs(y[i]!) === decode[0x7b]!) saturated++;
        }
        assert.ok(saturated > 0, 'some values saturate');
      } finally {
        await session.release();
      }
    }
    assert.equal(await requantizeSelfTest('cpu', format), true, `${format}: the CPU provider re-quantizes as the host does`);
  }
});

test('verify with the quantized codes re-quantized in the graph from the original (floor-checked linears) gives the same report; damaged scales still fail', async () => {
  for (const name of ['llama', 'deepseek_v3', 'mixtral'] as const) {
    const common = {
      original: modelDir(name),
      quantized: fixtures.converted.get(name)!,
      tokens: 12,
      seed: 5,
      weightDecode: 'graph' as const,
      floorCheckThreads: 1,
      pairedLayers: true,
    };
    const starts: (boolean | undefined)[] = [];
    const {
      value: { value: withIt, modules: requantized },
      bytes: codesWith,
    } = await countingCodeBytes(() =>
      countingRequantized(() => verifyCheckpoints({ ...common, requantizeOnDevice: true, onEvent: (e) => void (e.type === 'start' && starts.push(e.requantizeOnDevice)) })),
    );
    const { value: without, bytes: codesWithout } = await countingCodeBytes(() =>
      verifyCheckpoints({ ...common, requantizeOnDevice: false, onEvent: (e) => void (e.type === 'start' && starts.push(e.requantizeOnDevice)) }),
    );
    // What is left fed: lm_head's codes, and experts that only the quantized model routed to.
    assert.ok(codesWith < codesWithout / 2, `${name}: code bytes fed ${codesWith} with, ${codesWithout} without`);
    // The start event says whether the device passed the self-test (the CLI prints it), and nothing when not tried.
    assert.deepEqual(starts.splice(0), [true, undefined], `${name}: the start events`);
    assert.ok(requantized.length > 0 && requantized.every((m) => /self_attn|mlp|experts/.test(m)), `${name}: linears re-quantized in the graph (${requantized.length})`);
    const { seconds: _a, ...a } = withIt;
    const { seconds: _b, ...b } = without;
    assert.deepEqual(a, b, `${name}: the same report, bit for bit`);
  }
  // A ×4 scale: its floor check fails, so its layer is not paired and nothing of it is re-quantized.
  const damaged = join(fixtures.workDir(), 'llama-requantize-damaged');
  await copyCheckpointWithEdits(fixtures.converted.get('llama')!, damaged, (t) => scaleF32(t.get('model.layers.0.mlp.down_proj.weight_scale_inv')!, 4));
  const r = await verifyCheckpoints({
    original: modelDir('llama'),
    quantized: damaged,
    tokens: 12,
    seed: 5,
    weightDecode: 'graph',
    floorCheckThreads: 1,
    pairedLayers: true,
    requantizeOnDevice: true,
  });
  assert.ok(
    r.failures.some((f) => f.subject === 'model.layers.0.mlp.down_proj'),
    'the damaged linear is named',
  );
});

/**
 * emitRequantizedBlockWeight with one of its ops replaced (`rewrite` returns the replacement, or
 * undefined to keep the op): how a device that rounds otherwise would compute it.
 */
function requantizeRewritten(rewrite: (g: GraphBuilder, op: string, inputs: readonly Value[], emit: GraphBuilder['op']) => Value | undefined): typeof emitRequantizedBlockWeight {
  return (g, w, s, block, format) => {
    const emit = g.op.bind(g);
    g.op = ((op, inputs, out, attrs) => rewrite(g, op, inputs as Value[], emit) ?? emit(op, inputs, out, attrs)) as GraphBuilder['op'];
    try {
      return emitRequantizedBlockWeight(g, w, s, block, format);
    } finally {
      g.op = emit;
    }
  };
}

test('the re-quantization self-test fails a device that divides through the reciprocal, rounds FP8 ties away from zero, or flushes float32 subnormals', async () => {
  const f32op = (emit: GraphBuilder['op'], op: string, inputs: readonly Value[], shape: Value['shape']): Value =>
    emit(op, inputs, { dtype: DataType.FLOAT, shape, name: op.toLowerCase() });
  const reciprocal = requantizeRewritten((_g, op, [a, b], emit) => (op === 'Div' ? f32op(emit, 'Mul', [a!, f32op(emit, 'Reciprocal', [b!], b!.shape)], a!.shape) : undefined));
  // The quotient one ulp away from zero before the clamp and the Cast: exact ties go away from zero.
  const tiesAway = requantizeRewritten((g, op, [q, lo, hi], emit) =>
    op === 'Clip' ? f32op(emit, 'Clip', [f32op(emit, 'Mul', [q!, g.constFloat32([1 + 2 ** -23], [])], q!.shape), lo!, hi!], q!.shape) : undefined,
  );
  let flushing = false;
  const flush = (g: GraphBuilder, emit: GraphBuilder['op'], v: Value): Value => {
    const normal = emit('GreaterOrEqual', [f32op(emit, 'Abs', [v], v.shape), g.constFloat32([2 ** -126], [])], { dtype: DataType.BOOL, shape: v.shape, name: 'normal' });
    return f32op(emit, 'Mul', [v, emit('Cast', [normal], { dtype: DataType.FLOAT, shape: v.shape, name: 'normal_f32' }, { to: attr.int(DataType.FLOAT) })], v.shape);
  };
  const flushToZero = requantizeRewritten((g, op, [a, b], emit) => {
    if (op !== 'Div' || flushing) return undefined;
    flushing = true;
    try {
      return f32op(emit, 'Div', [flush(g, emit, a!), flush(g, emit, b!)], a!.shape);
    } finally {
      flushing = false;
    }
  });
  for (const format of ['e4m3fn', 'e5m2'] as const) {
    assert.equal(await runSelfTest('cpu', format), true, `${format}: the graph as emitted passes`);
    assert.equal(await runSelfTest('cpu', format, reciprocal), false, `${format}: w × (1 / scale) fails`);
    assert.equal(await runSelfTest('cpu', format, tiesAway), false, `${format}: ties away from zero fail`);
    assert.equal(await runSelfTest('cpu', format, flushToZero), false, `${format}: flushed subnormals fail`);
  }
});

test('a linear whose forward reads another scale tensor than the floor check compared is not re-quantized: a damaged compressed-tensors weight_scale beside a sound weight_scale_inv still fails', async () => {
  const converted = join(fixtures.workDir(), 'llama-ct');
  await convertCheckpoint({ input: modelDir('llama'), output: converted, outputFormat: 'compressed-tensors', threads: 0 });
  const damaged = join(fixtures.workDir(), 'llama-ct-two-scales');
  await copyCheckpointWithEdits(converted, damaged, (t) => {
    // The forward reads `weight_scale` (compressed-tensors' name); `weight_scale_inv` is a sound copy it ignores.
    for (const [name, x] of [...t]) if (name.endsWith('.weight_scale')) t.set(`${name}_inv`, { ...x, bytes: x.bytes.slice() } satisfies EditableTensor);
    scaleF32(t.get('model.layers.0.mlp.down_proj.weight_scale')!, 4);
  });
  const common = { original: modelDir('llama'), quantized: damaged, tokens: 12, seed: 5, weightDecode: 'graph' as const, floorCheckThreads: 1, pairedLayers: true };
  const { seconds: _a, ...withIt } = await verifyCheckpoints({ ...common, requantizeOnDevice: true });
  const { seconds: _b, ...without } = await verifyCheckpoints({ ...common, requantizeOnDevice: false });
  assert.ok(
    without.failures.some((f) => f.subject === 'model.layers.0.mlp.down_proj'),
    'the damaged linear is named',
  );
  const down = without.linears.find((l) => l.module === 'model.layers.0.mlp.down_proj')!;
  assert.ok(down.errorRatio! > 10, `its floor is the original re-quantized, not the stored linear itself (ratio ${down.errorRatio})`);
  assert.deepEqual(withIt, without, 'the same report with the codes re-quantized in the graph');
});

test('one changed code byte: its layer is not re-quantized, and verify reports the changed linear as it does without re-quantizing', async () => {
  const module = 'model.layers.1.mlp.down_proj';
  const edited = join(fixtures.workDir(), 'llama-one-code');
  await copyCheckpointWithEdits(fixtures.converted.get('llama')!, edited, (t) => {
    const codes = t.get(`${module}.weight`)!.bytes;
    codes[codes.length - 1] = codes[codes.length - 1]! ^ 1;
  });
  const common = { original: modelDir('llama'), tokens: 12, seed: 5, weightDecode: 'graph' as const, floorCheckThreads: 1, pairedLayers: true };
  const { value: withIt, modules: requantized } = await countingRequantized(() => verifyCheckpoints({ ...common, quantized: edited, requantizeOnDevice: true }));
  const without = await verifyCheckpoints({ ...common, quantized: edited, requantizeOnDevice: false });
  const clean = await verifyCheckpoints({ ...common, quantized: fixtures.converted.get('llama')!, requantizeOnDevice: false });
  assert.ok(requantized.length > 0 && !requantized.some((m) => m.startsWith('model.layers.1.')), `layer 0 only (${requantized.join(', ')})`);
  const { seconds: _a, ...a } = withIt;
  const { seconds: _b, ...b } = without;
  assert.deepEqual(a, b, 'the same report');
  const figure = (r: VerifyReport) => r.linears.find((l) => l.module === module)!;
  assert.notEqual(figure(withIt).relativeError, figure(clean).relativeError, 'the changed code shows in its linear');
  assert.ok(figure(withIt).errorRatio! > 1, `its floor is probed, not the linear itself (ratio ${figure(withIt).errorRatio})`);
});
