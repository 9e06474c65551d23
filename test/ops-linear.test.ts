// Block-scale linear ops: GEMV (W8A16), block-scale GEMM (W8A8, activations quantized per token),
// and the M == 1 / M > 1 dispatch, graph against reference on awkward shapes (K = 300, N = 200:
// neither a multiple of 128 nor 64).
//
// Tolerance: relative L2 error < 1e-6. The references carry sums in float64 and round once; the
// graphs accumulate in float32 in onnxruntime's order, measured at ~1e-7 (GEMM) and ~3e-7 (GEMV)
// for these shapes. Activation codes are checked bit for bit in the ops-quant tests; what these
// tests guard is the structure (scale indexing, edge-block padding, transposes), whose mistakes
// cost errors of 1e-4 and more.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { decodeTableFor, type Fp8Format } from '../src/fp8/index.js';
import { DataType } from '../src/runtime/onnx/data-type.js';
import { GraphBuilder, littleEndianBytes, type Dim, type Value } from '../src/runtime/onnx/graph-builder.js';
import { blockScaleGemm, emitBlockScaleGemm } from '../src/runtime/ops/block-scale-gemm.js';
import { blockScaleLinear, emitBlockScaleLinear } from '../src/runtime/ops/block-scale-linear.js';
import { relativeL2Error } from '../src/runtime/ops/compare.js';
import { dequantizeFp8GroupwiseScaledGemv, emitDequantizeBlockWeight, emitDequantizeFp8GroupwiseScaledGemv } from '../src/runtime/ops/groupwise-scaled-gemv.js';
import { SeededRandom } from '../src/runtime/ops/random.js';
import { rowwiseGroupQuantFp8 } from '../src/runtime/ops/rowwise-group-quant-fp8.js';
import { fp8DataType, OpShapeError, type BlockShape, type F32Tensor, type Fp8Tensor } from '../src/runtime/ops/types.js';
import { OnnxSession } from '../src/runtime/onnx/session.js';

import { testDevice } from './helpers/device.js';

const TOLERANCE = 1e-6;
const N = 200;
const K = 300;
const BLOCKS: readonly BlockShape[] = [
  { bn: 128, bk: 128 },
  { bn: 64, bk: 64 },
];

interface BlockWeight {
  readonly w: Fp8Tensor;
  readonly wScaleInv: F32Tensor;
}

function randomWeight(rng: SeededRandom, n: number, k: number, block: BlockShape, format: Fp8Format): BlockWeight {
  const nb = Math.ceil(n / block.bn);
  const kb = Math.ceil(k / block.bk);
  return {
    w: { codes: rng.fp8Codes(n * k, format), shape: [n, k], format },
    wScaleInv: {
      data: Float32Array.from({ length: nb * kb }, () => (0.5 + rng.next()) * 1e-3 * (format === 'e5m2' ? 1e-2 : 1)),
      shape: [nb, kb],
    },
  };
}

function addWeight(g: GraphBuilder, bw: BlockWeight): { w: Value; s: Value } {
  return {
    w: g.initializer('weight', fp8DataType(bw.w.format), bw.w.shape, bw.w.codes),
    s: g.initializer('weight_scale_inv', DataType.FLOAT, bw.wScaleInv.shape, littleEndianBytes(bw.wScaleInv.data)),
  };
}

async function openSession(g: GraphBuilder): Promise<(x: F32Tensor) => Promise<Float32Array>> {
  const session = await OnnxSession.create(g.toBytes(), { device: testDevice() });
  after.push(() => session.release());
  return async (x) => {
    const out = await session.run({ x: { type: 'float32', data: x.data, dims: x.shape } });
    return out['y']!.data as Float32Array;
  };
}

const after: (() => Promise<void>)[] = [];

async function releaseAll(): Promise<void> {
  for (const f of after.splice(0)) await f();
}

function assertClose(actual: Float32Array, expected: Float32Array, what: string, tolerance = TOLERANCE): number {
  const err = relativeL2Error(actual, expected);
  assert.ok(err < tolerance, `${what}: relative L2 error ${err.toExponential(3)} ≥ ${tolerance}`);
  return err;
}

/** float64 x · (decode(w) * scale)ᵀ, the dequantize-first way: independent of the block loop. */
function dequantizedMatmul(x: F32Tensor, xScale: ((r: number, j: number) => number) | null, bw: BlockWeight, block: BlockShape): Float64Array {
  const [m, k] = x.shape as [number, number];
  const n = bw.w.shape[0]!;
  const kb = bw.wScaleInv.shape[1]!;
  const table = decodeTableFor(bw.w.format);
  const y = new Float64Array(m * n);
  for (let r = 0; r < m; r++) {
    for (let i = 0; i < n; i++) {
      let acc = 0;
      for (let j = 0; j < k; j++) {
        const xv = xScale === null ? x.data[r * k + j]! : xScale(r, j);
        acc += xv * table[bw.w.codes[i * k + j]!]! * bw.wScaleInv.data[Math.floor(i / block.bn) * kb + Math.floor(j / block.bk)]!;
      }
      y[r * n + i] = acc;
    }
  }
  return y;
}

test('references agree with a dequantize-first float64 matmul', () => {
  const rng = new SeededRandom(10);
  for (const block of BLOCKS) {
    const bw = randomWeight(rng, N, K, block, 'e4m3fn');
    const x: F32Tensor = { data: rng.normalArray(5 * K), shape: [5, K] };

    const x1: F32Tensor = { data: x.data.subarray(0, K), shape: [1, K] };
    const gemv = dequantizeFp8GroupwiseScaledGemv(x1, bw.w, bw.wScaleInv, block);
    assertClose(gemv.data, Float32Array.from(dequantizedMatmul(x1, null, bw, block)), 'GEMV', 1e-7);

    // GEMM = dequantized activations times dequantized weights, whatever the block loop order.
    const { q, scale } = rowwiseGroupQuantFp8(x, block.bk);
    const kb = Math.ceil(K / block.bk);
    const table = decodeTableFor('e4m3fn');
    const xdq = (r: number, j: number): number => table[q.codes[r * K + j]!]! * scale.data[r * kb + Math.floor(j / block.bk)]!;
    const gemm = blockScaleGemm(x, bw.w, bw.wScaleInv, block);
    assertClose(gemm.data, Float32Array.from(dequantizedMatmul(x, xdq, bw, block)), 'GEMM', 1e-7);

    // The GEMM quantizes activations: it is near, but not at, the unquantized product.
    const err = relativeL2Error(gemm.data, dequantizedMatmul(x, null, bw, block));
    assert.ok(err > 1e-4 && err < 0.05, `activation quantization error ${err}`);
  }
});

test('GEMV graph matches the reference (M = 1, both FP8 formats, 128x128 and 64x64 blocks)', async () => {
  const rng = new SeededRandom(11);
  try {
    for (const format of ['e4m3fn', 'e5m2'] as const) {
      for (const block of BLOCKS) {
        const bw = randomWeight(rng, N, K, block, format);
        const g = new GraphBuilder();
        const x = g.input('x', DataType.FLOAT, [1, K]);
        const { w, s } = addWeight(g, bw);
        g.output(emitDequantizeFp8GroupwiseScaledGemv(g, x, w, s, block), 'y');
        const run = await openSession(g);
        const xs: F32Tensor = { data: rng.normalArray(K), shape: [1, K] };
        assertClose(await run(xs), dequantizeFp8GroupwiseScaledGemv(xs, bw.w, bw.wScaleInv, block).data, `${format} ${block.bn}x${block.bk}`);
      }
    }
  } finally {
    await releaseAll();
  }
});

test('one GEMM graph with symbolic M runs M = 1 and M = 5 and matches the reference', async () => {
  const rng = new SeededRandom(12);
  try {
    for (const format of ['e4m3fn', 'e5m2'] as const) {
      for (const block of BLOCKS) {
        const bw = randomWeight(rng, N, K, block, format);
        const g = new GraphBuilder();
        const x = g.input('x', DataType.FLOAT, ['m', K]);
        const { w, s } = addWeight(g, bw);
        g.output(emitBlockScaleGemm(g, x, w, s, block), 'y');
        const run = await openSession(g);
        for (const m of [1, 5]) {
          const xs: F32Tensor = { data: rng.normalArray(m * K, 2), shape: [m, K] };
          xs.data[3] = 40; // an outlier sets one group's scale
          const y = await run(xs);
          assert.equal(y.length, m * N);
          assertClose(y, blockScaleGemm(xs, bw.w, bw.wScaleInv, block).data, `${format} ${block.bn}x${block.bk} M=${m}`);
        }
      }
    }
  } finally {
    await releaseAll();
  }
});

test('blockScaleLinear dispatches M = 1 to the GEMV and M > 1 to the GEMM, in the graph too', async () => {
  const rng = new SeededRandom(13);
  const block = BLOCKS[0]!;
  const bw = randomWeight(rng, N, K, block, 'e4m3fn');
  const bias = rng.normalArray(N, 0.1);
  const withBias = (y: F32Tensor): Float32Array => Float32Array.from(y.data, (v, i) => v + bias[i % N]!);
  try {
    const build = (dims: readonly Dim[]): GraphBuilder => {
      const g = new GraphBuilder();
      const x = g.input('x', DataType.FLOAT, dims);
      const { w, s } = addWeight(g, bw);
      const b = g.initializer('bias', DataType.FLOAT, [N], littleEndianBytes(bias));
      g.output(emitBlockScaleLinear(g, x, w, s, block, b), 'y');
      return g;
    };
    const symbolic = await openSession(build(['m', K]));
    for (const m of [1, 5]) {
      const xs: F32Tensor = { data: rng.normalArray(m * K), shape: [m, K] };
      const gemv = withBias(dequantizeFp8GroupwiseScaledGemv(xs, bw.w, bw.wScaleInv, block));
      const gemm = withBias(blockScaleGemm(xs, bw.w, bw.wScaleInv, block));
      const expected = m === 1 ? gemv : gemm;
      const other = m === 1 ? gemm : gemv;
      const ref = blockScaleLinear(xs, bw.w, bw.wScaleInv, block, bias);
      assertClose(ref.data, expected, `reference M=${m}`, 1e-7);

      const y = await symbolic(xs);
      assertClose(y, expected, `If graph M=${m}`);
      const apart = relativeL2Error(y, other);
      assert.ok(apart > 1e-4, `If graph M=${m} should differ from the other path (${apart})`);
      const fixed = await openSession(build([m, K]));
      assertClose(await fixed(xs), expected, `static graph M=${m}`);
    }
  } finally {
    await releaseAll();
  }
});

test('the dequantized form (the CUDA route) matches the per-block reference: GEMM, GEMV and the If, edge and whole blocks, bias', async () => {
  // Both operands dequantized in float32, then one Gemm on a weight shared by every linear on it:
  // the reference's sums to float32 rounding, on shapes with edge blocks (N = 200, K = 300, the
  // expanded scale) and with whole ones (N = 256, K = 384, the scale broadcast over block views).
  const rng = new SeededRandom(15);
  try {
    for (const [n, k] of [
      [N, K],
      [256, 384],
    ] as const) {
      for (const format of ['e4m3fn', 'e5m2'] as const) {
        for (const block of BLOCKS) {
          const bw = randomWeight(rng, n, k, block, format);
          const bias = rng.normalArray(n, 0.1);
          const g = new GraphBuilder();
          const x = g.input('x', DataType.FLOAT, ['m', k]);
          const { w, s } = addWeight(g, bw);
          const b = g.initializer('bias', DataType.FLOAT, [n], littleEndianBytes(bias));
          const dequantizedWeight = emitDequantizeBlockWeight(g, w, s, block);
          g.output(emitBlockScaleLinear(g, x, w, s, block, b, { dequantizedWeight }), 'y');
          const run = await openSession(g);
          for (const m of [1, 5]) {
            const xs: F32Tensor = { data: rng.normalArray(m * k, 2), shape: [m, k] };
            xs.data[3] = 40;
            const what = `${format} ${block.bn}x${block.bk} [${n}, ${k}] M=${m}`;
            const err = assertClose(await run(xs), blockScaleLinear(xs, bw.w, bw.wScaleInv, block, bias).data, what);
            if (m > 1) assert.ok(err > 0, `${what}: a graph that computes the reference bit for bit would not need this test`);
          }
        }
      }
    }
  } finally {
    await releaseAll();
  }
});

test('shape errors name the tensors and the expected shapes', () => {
  const rng = new SeededRandom(14);
  const bw = randomWeight(rng, N, K, { bn: 128, bk: 128 }, 'e4m3fn');
  const x: F32Tensor = { data: new Float32Array(2 * K), shape: [2, K] };
  assert.throws(
    () => blockScaleGemm(x, bw.w, { data: new Float32Array(4), shape: [2, 2] }, { bn: 128, bk: 128 }),
    (e: unknown) => e instanceof OpShapeError && /expected \[2, 3\] for weight \[200, 300\]/.test(e.message),
  );
  assert.throws(() => blockScaleGemm({ data: new Float32Array(2 * 299), shape: [2, 299] }, bw.w, bw.wScaleInv, { bn: 128, bk: 128 }), /\[M, 300\]/);
  const g = new GraphBuilder();
  const xv = g.input('x', DataType.FLOAT, ['m', K]);
  const { w } = addWeight(g, bw);
  const bad = g.initializer('bad_scale', DataType.FLOAT, [1, 3], new Uint8Array(12));
  assert.throws(() => emitBlockScaleGemm(g, xv, w, bad, { bn: 128, bk: 128 }), /expected \[2, 3\]/);
});
