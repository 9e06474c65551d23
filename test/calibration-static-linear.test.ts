// MLC LLM's BlockScaleQuantizeLinearStaticActivation forward: graph against reference on awkward
// shapes (K = 300, N = 200, bk 128 and 64: edge groups), group scales and one per-tensor scale,
// M = 1 (no GEMV branch: the static linear always runs the GEMM) and M = 7, with a bias; and
// the reference against an independent formula: dequant(x_q) · dequant(W)ᵀ with x_q the static
// quantization of x. Tolerance as in the dynamic linear tests: relative L2 < 1e-6 (float32 graph
// sums vs float64 reference sums).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeTableFor } from '../src/fp8/index.js';
import { DataType } from '../src/runtime/onnx/data-type.js';
import { GraphBuilder, littleEndianBytes } from '../src/runtime/onnx/graph-builder.js';
import { relativeL2Error } from '../src/runtime/ops/compare.js';
import { SeededRandom } from '../src/runtime/ops/random.js';
import { staticActivationGroupQuantFp8 } from '../src/runtime/ops/static-activation-group-quant-fp8.js';
import { emitStaticBlockScaleLinear, staticBlockScaleLinear } from '../src/runtime/ops/static-block-scale-linear.js';
import { emitDequantizeBlockWeight } from '../src/runtime/ops/groupwise-scaled-gemv.js';
import { fp8DataType, type BlockShape } from '../src/runtime/ops/types.js';
import { OnnxSession } from '../src/runtime/onnx/session.js';
import { clippingThreshold, countClipped } from '../src/runtime/calibration/activation-ranges.js';

const N = 200;
const K = 300;

for (const block of [
  { bn: 128, bk: 128 },
  { bn: 64, bk: 64 },
] as BlockShape[]) {
  for (const perTensor of [false, true]) {
    test(`static linear ${block.bn}x${block.bk}, ${perTensor ? 'one per-tensor scale' : 'group scales'}: graph = reference = dequantized product`, async () => {
      const rng = new SeededRandom(block.bk + (perTensor ? 1 : 0));
      const kb = Math.ceil(K / block.bk);
      const nb = Math.ceil(N / block.bn);
      const codes = rng.fp8Codes(N * K, 'e4m3fn');
      const wScale = Float32Array.from({ length: nb * kb }, () => (0.5 + rng.next()) * 1e-3);
      const bias = Float32Array.from({ length: N }, () => rng.next() - 0.5);
      // Activation scales from a calibration amax of ~3; test inputs reach ~4, so some values clip.
      const groupScales = Float32Array.from({ length: kb }, () => Math.fround((2.5 + rng.next()) / 448));
      const scale = perTensor ? Float32Array.of(Math.max(...groupScales)) : groupScales;

      const g = new GraphBuilder();
      const x = g.input('x', DataType.FLOAT, ['m', K]);
      const s = g.initializer('activation_scale', DataType.FLOAT, [scale.length], littleEndianBytes(scale));
      const w = g.initializer('weight', fp8DataType('e4m3fn'), [N, K], codes);
      const ws = g.initializer('weight_scale_inv', DataType.FLOAT, [nb, kb], littleEndianBytes(wScale));
      const b = g.initializer('bias', DataType.FLOAT, [N], littleEndianBytes(bias));
      g.output(emitStaticBlockScaleLinear(g, x, s, w, ws, block, b), 'y');
      // The dequantized form (the CUDA route's) beside it, from the same inputs.
      g.output(emitStaticBlockScaleLinear(g, x, s, w, ws, block, b, { dequantizedWeight: emitDequantizeBlockWeight(g, w, ws, block) }), 'y_dequantized');
      const session = await OnnxSession.create(g.toBytes());
      try {
        for (const m of [1, 7]) {
          const xs = Float32Array.from({ length: m * K }, () => (rng.next() - 0.5) * 8);
          const ref = staticBlockScaleLinear({ data: xs, shape: [m, K] }, scale, { codes, shape: [N, K], format: 'e4m3fn' }, { data: wScale, shape: [nb, kb] }, block, bias);
          const out = await session.run({ x: { type: 'float32', data: xs, dims: [m, K] } });
          const err = relativeL2Error(out['y']!.data as Float32Array, ref.data);
          assert.ok(err < 1e-6, `M=${m}: graph vs reference relative L2 ${err}`);
          const errDequantized = relativeL2Error(out['y_dequantized']!.data as Float32Array, ref.data);
          assert.ok(errDequantized < 1e-6, `M=${m}: dequantized graph vs reference relative L2 ${errDequantized}`);

          // Independent: dequantize both operands, multiply in float64.
          const q = staticActivationGroupQuantFp8({ data: xs, shape: [m, K] }, scale, block.bk);
          const dec = decodeTableFor('e4m3fn');
          const sAt = (j: number): number => (scale.length === 1 ? scale[0]! : scale[Math.floor(j / block.bk)]!);
          const expected = new Float32Array(m * N);
          for (let r = 0; r < m; r++) {
            for (let i = 0; i < N; i++) {
              let acc = 0;
              for (let j = 0; j < K; j++) acc += dec[q.codes[r * K + j]!]! * sAt(j) * dec[codes[i * K + j]!]! * wScale[Math.floor(i / block.bn) * kb + Math.floor(j / block.bk)]!;
              expected[r * N + i] = acc + bias[i]!;
            }
          }
          assert.ok(relativeL2Error(ref.data, expected) < 1e-6, `M=${m}: reference vs dequantized product`);
          // Inputs up to 4 against a calibrated range of ~3: some values clip, and are counted.
          const clip = countClipped(xs, m, K, scale, block.bk, 'e4m3fn');
          const manual = xs.filter((v, i) => Math.abs(Math.fround(v / sAt(i % K))) > clippingThreshold('e4m3fn')).length;
          assert.equal(clip.clipped, manual);
          assert.ok(m === 1 || clip.clipped > 0, 'the test inputs exceed the calibrated range');
        }
      } finally {
        await session.release();
      }
    });
  }
}

test('clipping threshold: FP8 max plus half the top step; the calibration maximum itself never counts', () => {
  assert.equal(clippingThreshold('e4m3fn'), 464);
  assert.equal(clippingThreshold('e5m2'), 61440);
  const amax = 3.7;
  const scale = Float32Array.of(Math.fround(amax / 448));
  assert.deepEqual(countClipped(Float32Array.of(amax, -amax, 3.9, -4.1), 1, 4, scale, 4, 'e4m3fn'), { clipped: 2, elements: 4 });
});
