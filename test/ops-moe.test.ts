// MoE experts (BlockScaleQuantizeMixtralExperts.forward): grouped rows by indptr through the
// block-scale GEMM, and the single-token path through per-expert GEMVs, graph against reference
// (relative L2 < 1e-6, see ops-linear for why) and reference against the per-expert linear ops.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { DataType } from '../src/runtime/onnx/data-type.js';
import { GraphBuilder } from '../src/runtime/onnx/graph-builder.js';
import { blockScaleGemm } from '../src/runtime/ops/block-scale-gemm.js';
import { relativeL2Error } from '../src/runtime/ops/compare.js';
import { dequantizeFp8GroupwiseScaledGemv } from '../src/runtime/ops/groupwise-scaled-gemv.js';
import { addExpertInitializers, emitMixtralExperts, mixtralExperts, splitStackedExperts, type ExpertWeight, type RoutingTensor } from '../src/runtime/ops/mixtral-experts.js';
import { SeededRandom } from '../src/runtime/ops/random.js';
import { OpShapeError, type BlockShape, type F32Tensor } from '../src/runtime/ops/types.js';
import { OnnxSession } from '../src/runtime/onnx/session.js';

import { testDevice } from './helpers/device.js';

const TOLERANCE = 1e-6;
const E = 4;
const N = 200;
const K = 300;
const BLOCK: BlockShape = { bn: 128, bk: 128 };

function stackedExperts(rng: SeededRandom): ExpertWeight[] {
  const nb = Math.ceil(N / BLOCK.bn);
  const kb = Math.ceil(K / BLOCK.bk);
  return splitStackedExperts(
    { codes: rng.fp8Codes(E * N * K, 'e4m3fn'), shape: [E, N, K], format: 'e4m3fn' },
    { data: Float32Array.from({ length: E * nb * kb }, () => (0.5 + rng.next()) * 1e-3), shape: [E, nb, kb] },
  );
}

async function runGraph(x: F32Tensor, experts: readonly ExpertWeight[], routing: RoutingTensor): Promise<Float32Array> {
  const g = new GraphBuilder();
  const xv = g.input('x', DataType.FLOAT, x.shape);
  const values = addExpertInitializers(g, 'mlp.experts', experts);
  g.output(emitMixtralExperts(g, xv, values, routing, BLOCK), 'y');
  const session = await OnnxSession.create(g.toBytes(), { device: testDevice() });
  try {
    const out = await session.run({ x: { type: 'float32', data: x.data, dims: x.shape } });
    return out['y']!.data as Float32Array;
  } finally {
    await session.release();
  }
}

function rows(x: F32Tensor, start: number, end: number): F32Tensor {
  const k = x.shape[1]!;
  return { data: x.data.subarray(start * k, end * k), shape: [end - start, k] };
}

test('splitStackedExperts gives per-expert views of [E, N, K] weights and [E, nb, kb] scales', () => {
  const experts = stackedExperts(new SeededRandom(20));
  assert.equal(experts.length, E);
  assert.deepEqual(experts[2]!.w.shape, [N, K]);
  assert.deepEqual(experts[2]!.wScaleInv.shape, [2, 3]);
  assert.equal(experts[2]!.w.codes.byteOffset, 2 * N * K);
  assert.equal(experts[3]!.wScaleInv.data.byteOffset, 3 * 6 * 4);
});

test('grouped rows (indptr) run one block-scale GEMM per expert, empty and one-row groups included', async () => {
  const rng = new SeededRandom(21);
  const experts = stackedExperts(rng);
  // Expert 0: 2 rows, expert 1: none, expert 2: 1 row, expert 3: 3 rows.
  const indptr = [0, 2, 2, 3, 6];
  const x: F32Tensor = { data: rng.normalArray(6 * K), shape: [6, K] };
  const ref = mixtralExperts(x, experts, { data: indptr, shape: [E + 1] }, BLOCK);
  assert.deepEqual(ref.shape, [6, N]);
  for (let e = 0; e < E; e++) {
    if (indptr[e] === indptr[e + 1]) continue;
    const part = blockScaleGemm(rows(x, indptr[e]!, indptr[e + 1]!), experts[e]!.w, experts[e]!.wScaleInv, BLOCK);
    assert.deepEqual(ref.data.subarray(indptr[e]! * N, indptr[e + 1]! * N), part.data, `expert ${e}`);
  }
  const y = await runGraph(x, experts, { data: Int32Array.from(indptr), shape: [E + 1] });
  const err = relativeL2Error(y, ref.data);
  assert.ok(err < TOLERANCE, `relative L2 error ${err}`);
});

test('single token: expert_indices [1, k] run the GEMV per selected expert, x [1, K] or [k, K]', async () => {
  const rng = new SeededRandom(22);
  const experts = stackedExperts(rng);
  const selected = [3, 1];
  const routing: RoutingTensor = { data: selected, shape: [1, 2] };
  for (const xRows of [1, 2]) {
    const x: F32Tensor = { data: rng.normalArray(xRows * K), shape: [xRows, K] };
    const ref = mixtralExperts(x, experts, routing, BLOCK);
    assert.deepEqual(ref.shape, [2, N]);
    selected.forEach((e, i) => {
      const xi = rows(x, xRows === 1 ? 0 : i, xRows === 1 ? 1 : i + 1);
      const part = dequantizeFp8GroupwiseScaledGemv(xi, experts[e]!.w, experts[e]!.wScaleInv, BLOCK);
      assert.deepEqual(ref.data.subarray(i * N, (i + 1) * N), part.data, `x rows ${xRows}, slot ${i}`);
    });
    const y = await runGraph(x, experts, routing);
    const err = relativeL2Error(y, ref.data);
    assert.ok(err < TOLERANCE, `x rows ${xRows}: relative L2 error ${err}`);
  }
});

test('routing errors say what was expected', () => {
  const experts = stackedExperts(new SeededRandom(23));
  const x: F32Tensor = { data: new Float32Array(3 * K), shape: [3, K] };
  const bad = (routing: RoutingTensor, pattern: RegExp): void => {
    assert.throws(
      () => mixtralExperts(x, experts, routing, BLOCK),
      (e: unknown) => e instanceof OpShapeError && pattern.test(e.message),
    );
  };
  bad({ data: [0, 1, 2], shape: [3] }, /indptr must be \[5\] for 4 experts/);
  bad({ data: [0, 2, 1, 3, 3], shape: [5] }, /non-decreasing/);
  bad({ data: [0, 1, 1, 1, 2], shape: [5] }, /covers 2 rows but x has 3/);
  bad({ data: [4, 0], shape: [1, 2] }, /expert index 4 is out of range/);
  bad({ data: [0, 1], shape: [1, 2] }, /1 or 2 rows/);
});
