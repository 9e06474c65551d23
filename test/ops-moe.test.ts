// MoE experts (BlockScaleQuantizeMixtralExperts.forward): the reference — grouped rows by indptr
// through the block-scale GEMM, the single-token path through per-expert GEMVs — against the
// per-expert linear ops, and the graph of one expert's share (emitExpertRows, as the model runner
// emits it: a symbolic row count, one session for any group) against the reference (relative L2
// < 1e-6, see ops-linear for why).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { DataType } from '../src/runtime/onnx/data-type.js';
import { GraphBuilder, littleEndianBytes } from '../src/runtime/onnx/graph-builder.js';
import { blockScaleGemm } from '../src/runtime/ops/block-scale-gemm.js';
import { relativeL2Error } from '../src/runtime/ops/compare.js';
import { dequantizeFp8GroupwiseScaledGemv } from '../src/runtime/ops/groupwise-scaled-gemv.js';
import { emitExpertRows, mixtralExperts, type ExpertWeight, type RoutingTensor } from '../src/runtime/ops/mixtral-experts.js';
import { SeededRandom } from '../src/runtime/ops/random.js';
import { fp8DataType, OpShapeError, type BlockShape, type F32Tensor } from '../src/runtime/ops/types.js';
import { OnnxSession } from '../src/runtime/onnx/session.js';

import { testDevice } from './helpers/device.js';

const TOLERANCE = 1e-6;
const E = 4;
const N = 200;
const K = 300;
const BLOCK: BlockShape = { bn: 128, bk: 128 };

/** E experts as views of stacked [E, N, K] codes and [E, nb, kb] scales. */
function stackedExperts(rng: SeededRandom): ExpertWeight[] {
  const nb = Math.ceil(N / BLOCK.bn);
  const kb = Math.ceil(K / BLOCK.bk);
  const codes = rng.fp8Codes(E * N * K, 'e4m3fn');
  const scales = Float32Array.from({ length: E * nb * kb }, () => (0.5 + rng.next()) * 1e-3);
  return Array.from({ length: E }, (_, e) => ({
    w: { codes: codes.subarray(e * N * K, (e + 1) * N * K), shape: [N, K], format: 'e4m3fn' as const },
    wScaleInv: { data: scales.subarray(e * nb * kb, (e + 1) * nb * kb), shape: [nb, kb] },
  }));
}

/** A session of one expert's share of the op: `x` [rows, K] with the row count symbolic, or [1, K] for a single token. */
async function expertSession(expert: ExpertWeight, single: boolean): Promise<OnnxSession> {
  const g = new GraphBuilder();
  const xv = g.input('x', DataType.FLOAT, single ? [1, K] : ['rows', K]);
  const values = {
    w: g.initializer('expert.weight', fp8DataType(expert.w.format), expert.w.shape, expert.w.codes),
    wScaleInv: g.initializer('expert.weight_scale_inv', DataType.FLOAT, expert.wScaleInv.shape, littleEndianBytes(expert.wScaleInv.data)),
  };
  g.output(emitExpertRows(g, xv, values, BLOCK, single), 'y');
  return OnnxSession.create(g.toBytes(), { device: testDevice() });
}

async function run(session: OnnxSession, x: F32Tensor): Promise<Float32Array> {
  const out = await session.run({ x: { type: 'float32', data: x.data, dims: x.shape } });
  return out['y']!.data as Float32Array;
}

function rows(x: F32Tensor, start: number, end: number): F32Tensor {
  const k = x.shape[1]!;
  return { data: x.data.subarray(start * k, end * k), shape: [end - start, k] };
}

test('grouped rows (indptr) run one block-scale GEMM per expert, empty and one-row groups included; one graph per expert serves any group', async () => {
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
  for (let e = 0; e < E; e++) {
    const session = await expertSession(experts[e]!, false);
    try {
      // Its own group (a one-row group takes the GEMM too), then groups of 1 and 3 rows in the same session.
      if (indptr[e] !== indptr[e + 1]) {
        const y = await run(session, rows(x, indptr[e]!, indptr[e + 1]!));
        const err = relativeL2Error(y, ref.data.subarray(indptr[e]! * N, indptr[e + 1]! * N));
        assert.ok(err < TOLERANCE, `expert ${e}: relative L2 error ${err}`);
      }
      for (const [start, end] of [
        [5, 6],
        [0, 3],
      ] as const) {
        const y = await run(session, rows(x, start, end));
        const err = relativeL2Error(y, blockScaleGemm(rows(x, start, end), experts[e]!.w, experts[e]!.wScaleInv, BLOCK).data);
        assert.ok(err < TOLERANCE, `expert ${e}, ${end - start} row(s): relative L2 error ${err}`);
      }
    } finally {
      await session.release();
    }
  }
});

test('single token: expert_indices [1, k] run the GEMV per selected expert, x [1, K] or [k, K]', async () => {
  const rng = new SeededRandom(22);
  const experts = stackedExperts(rng);
  const selected = [3, 1];
  const routing: RoutingTensor = { data: selected, shape: [1, 2] };
  const sessions = new Map<number, OnnxSession>();
  try {
    for (const e of selected) sessions.set(e, await expertSession(experts[e]!, true));
    for (const xRows of [1, 2]) {
      const x: F32Tensor = { data: rng.normalArray(xRows * K), shape: [xRows, K] };
      const ref = mixtralExperts(x, experts, routing, BLOCK);
      assert.deepEqual(ref.shape, [2, N]);
      for (const [i, e] of selected.entries()) {
        const xi = rows(x, xRows === 1 ? 0 : i, xRows === 1 ? 1 : i + 1);
        const part = dequantizeFp8GroupwiseScaledGemv(xi, experts[e]!.w, experts[e]!.wScaleInv, BLOCK);
        const expected = ref.data.subarray(i * N, (i + 1) * N);
        assert.deepEqual(expected, part.data, `x rows ${xRows}, slot ${i}`);
        const err = relativeL2Error(await run(sessions.get(e)!, xi), expected);
        assert.ok(err < TOLERANCE, `x rows ${xRows}, slot ${i}: relative L2 error ${err}`);
      }
    }
  } finally {
    for (const s of sessions.values()) await s.release();
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
