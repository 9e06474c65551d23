// Activation quantization ops: the graphs must give the references' FP8 codes and scales bit for
// bit. onnxruntime-node cannot return FP8 tensors, so the graphs here end in Cast(fp8 → float32)
// and are compared with the reference codes decoded by the same table; decoding is one-to-one on
// the non-NaN codes (Object.is tells -0 from +0), so equal values mean equal codes.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { decodeTableFor, saturateEncode, type Fp8Format } from '../src/fp8/index.js';
import { DataType } from '../src/runtime/onnx/data-type.js';
import { attr, GraphBuilder, littleEndianBytes, type Dim, type Value } from '../src/runtime/onnx/graph-builder.js';
import { firstMismatch } from '../src/runtime/ops/compare.js';
import { SeededRandom } from '../src/runtime/ops/random.js';
import { emitRowwiseGroupQuantFp8, rowwiseGroupQuantFp8 } from '../src/runtime/ops/rowwise-group-quant-fp8.js';
import {
  broadcastActivationScale,
  emitBroadcastActivationScale,
  emitStaticActivationGroupQuantFp8,
  staticActivationGroupQuantFp8,
} from '../src/runtime/ops/static-activation-group-quant-fp8.js';
import { fp8Max, type F32Tensor, type Fp8Tensor } from '../src/runtime/ops/types.js';
import { OnnxSession, type HostTensor } from '../src/runtime/onnx/session.js';

import { testDevice } from './helpers/device.js';

const FORMATS: readonly Fp8Format[] = ['e4m3fn', 'e5m2'];

function decoded(q: Fp8Tensor): Float32Array {
  const table = decodeTableFor(q.format);
  return Float32Array.from(q.codes, (c) => table[c]!);
}

function toFloat(g: GraphBuilder, v: Value): Value {
  return g.op('Cast', [v], { dtype: DataType.FLOAT, shape: v.shape }, { to: attr.int(DataType.FLOAT) });
}

async function run(g: GraphBuilder, feeds: Record<string, F32Tensor>): Promise<Record<string, Float32Array>> {
  const session = await OnnxSession.create(g.toBytes(), { device: testDevice() });
  try {
    const host: Record<string, HostTensor> = {};
    for (const [name, t] of Object.entries(feeds)) host[name] = { type: 'float32', data: t.data, dims: t.shape };
    const out = await session.run(host);
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.data as Float32Array]));
  } finally {
    await session.release();
  }
}

function assertExact(actual: Float32Array, expected: Float32Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const m = firstMismatch(actual, expected);
  assert.equal(m, null, m === null ? '' : `${what}: index ${m.index}: graph ${m.actual}, reference ${m.expected}`);
}

/** Every finite BF16 pattern, as float32. */
function allFiniteBf16(): Float32Array {
  const out: number[] = [];
  const u = new Uint32Array(1);
  const f = new Float32Array(u.buffer);
  for (let h = 0; h < 65536; h++) {
    u[0] = h << 16;
    if (Number.isFinite(f[0]!)) out.push(f[0]!);
  }
  return Float32Array.from(out);
}

test("onnxruntime's saturating Cast gives PyTorch's codes for every BF16 value and random float32", async () => {
  const rng = new SeededRandom(1);
  const bf16 = allFiniteBf16();
  const random = Float32Array.from({ length: 50_000 }, () => rng.normal() * 2 ** Math.floor(rng.next() * 40 - 24));
  const xs = new Float32Array(bf16.length + random.length);
  xs.set(bf16);
  xs.set(random, bf16.length);
  for (const format of FORMATS) {
    // With the ops' Clip in front, and alone: saturate=1 must itself clamp like torch.clamp.
    for (const clip of [true, false]) {
      const max = fp8Max(format);
      const g = new GraphBuilder();
      const x = g.input('x', DataType.FLOAT, ['n']);
      const clipped = clip ? g.op('Clip', [x, g.constFloat32([-max], []), g.constFloat32([max], [])], { dtype: DataType.FLOAT, shape: ['n'] }) : x;
      const dtype = format === 'e4m3fn' ? DataType.FLOAT8E4M3FN : DataType.FLOAT8E5M2;
      const q = g.op('Cast', [clipped], { dtype, shape: ['n'] }, { to: attr.int(dtype), saturate: attr.int(1) });
      g.output(toFloat(g, q), 'y');
      const { y } = await run(g, { x: { data: xs, shape: [xs.length] } });
      const table = decodeTableFor(format);
      assertExact(
        y!,
        Float32Array.from(xs, (v) => table[saturateEncode(v, format)]!),
        `Cast to ${format}, clip=${clip}`,
      );
    }
  }
});

test('reference follows the formula on a hand-checked row', () => {
  // Group 0: amax 896 → scale 2; group 1: all zero → scale eps/448 and zero codes.
  const x: F32Tensor = { data: new Float32Array([896, -1, 0.3, 0, 0, 0]), shape: [1, 6] };
  const { q, scale } = rowwiseGroupQuantFp8(x, 3);
  assert.deepEqual(Array.from(scale.data), [2, Math.fround(Math.fround(1e-10) / 448)]);
  // 448 → 0x7e; -0.5 → 0xb0; 0.15 (0.3/2 in float32) → nearest E4M3 0.15625 = 0x22.
  assert.deepEqual(Array.from(q.codes), [0x7e, 0xb0, 0x22, 0, 0, 0]);
});

interface QuantCase {
  readonly shape: readonly number[];
  readonly groupSize: number;
  readonly symbolic?: boolean;
}

const QUANT_CASES: readonly QuantCase[] = [
  { shape: [5, 300], groupSize: 128 },
  { shape: [1, 300], groupSize: 128 },
  { shape: [5, 300], groupSize: 64, symbolic: true },
  { shape: [2, 3, 200], groupSize: 64 },
  { shape: [4, 256], groupSize: 128 },
];

function randomActivations(rng: SeededRandom, shape: readonly number[]): F32Tensor {
  const data = rng.normalArray(
    shape.reduce((a, b) => a * b, 1),
    3,
  );
  // Outliers and an all-zero group exercise the amax and eps paths.
  data[7] = 900;
  data[data.length - 1] = -0.0001;
  const zeroStart = Math.min(128, shape[shape.length - 1]!);
  for (let i = zeroStart; i < Math.min(zeroStart + 64, data.length); i++) data[i] = 0;
  return { data, shape };
}

test('rowwiseGroupQuantFp8 graph matches the reference bit for bit (codes and scales)', async () => {
  const rng = new SeededRandom(2);
  for (const format of FORMATS) {
    for (const c of QUANT_CASES) {
      for (const transposeScale of [false, true]) {
        const what = `${format} [${c.shape.join(', ')}] g=${c.groupSize} transpose=${transposeScale}`;
        const x = randomActivations(rng, c.shape);
        const ref = rowwiseGroupQuantFp8(x, c.groupSize, { format, transposeScale });
        const g = new GraphBuilder();
        const dims: Dim[] = c.symbolic ? ['m', ...c.shape.slice(1)] : [...c.shape];
        const xv = g.input('x', DataType.FLOAT, dims);
        const { q, scale } = emitRowwiseGroupQuantFp8(g, xv, c.groupSize, { format, transposeScale });
        g.output(toFloat(g, q), 'q');
        g.output(scale, 'scale');
        const out = await run(g, { x });
        assertExact(out['q']!, decoded(ref.q), `${what} codes`);
        assertExact(out['scale']!, ref.scale.data, `${what} scales`);
      }
    }
  }
});

test('rowwiseGroupQuantFp8 takes float16 input, widened to float32 as MLC LLM does', async () => {
  const rng = new SeededRandom(3);
  // Values that are exact in float16, so the reference sees what the graph sees.
  const data = Float32Array.from({ length: 2 * 200 }, () => Math.round(rng.normal() * 256) / 64);
  const ref = rowwiseGroupQuantFp8({ data, shape: [2, 200] }, 128);
  const g = new GraphBuilder();
  const x = g.input('x', DataType.FLOAT16, [2, 200]);
  const { q, scale } = emitRowwiseGroupQuantFp8(g, x, 128);
  g.output(toFloat(g, q), 'q');
  g.output(scale, 'scale');
  const session = await OnnxSession.create(g.toBytes(), { device: testDevice() });
  const half = Uint16Array.from(data, f32ToF16Bits);
  const out = await session.run({ x: { type: 'float16', data: half, dims: [2, 200] } });
  await session.release();
  assertExact(out['q']!.data as Float32Array, decoded(ref.q), 'f16 codes');
  assertExact(out['scale']!.data as Float32Array, ref.scale.data, 'f16 scales');
});

/** float32 → IEEE half bits, for values exactly representable in half. */
function f32ToF16Bits(v: number): number {
  if (v === 0) return Object.is(v, -0) ? 0x8000 : 0;
  const sign = v < 0 ? 0x8000 : 0;
  const a = Math.abs(v);
  const e = Math.floor(Math.log2(a));
  if (e < -14) return sign | Math.round(a / 2 ** -24);
  return sign | ((e + 15) << 10) | Math.round((a / 2 ** e - 1) * 1024);
}

test('staticActivationGroupQuantFp8 graph matches the reference bit for bit', async () => {
  const rng = new SeededRandom(4);
  for (const format of FORMATS) {
    for (const c of QUANT_CASES) {
      const k = c.shape[c.shape.length - 1]!;
      const groups = Math.ceil(k / c.groupSize);
      for (const scalar of [false, true]) {
        const what = `${format} [${c.shape.join(', ')}] g=${c.groupSize} scalar=${scalar}`;
        const x = randomActivations(rng, c.shape);
        // Calibrated scales are smaller than this batch's amax for some groups: clamping happens.
        const s = Float32Array.from({ length: scalar ? 1 : groups }, () => Math.fround(((0.5 + rng.next()) * 8) / fp8Max(format)));
        const ref = staticActivationGroupQuantFp8(x, s, c.groupSize, format);
        const g = new GraphBuilder();
        const xv = g.input('x', DataType.FLOAT, c.symbolic ? ['m', ...c.shape.slice(1)] : c.shape);
        const sv = g.initializer('activation_scale', DataType.FLOAT, [s.length], littleEndianBytes(s));
        g.output(toFloat(g, emitStaticActivationGroupQuantFp8(g, xv, sv, c.groupSize, format)), 'q');
        const out = await run(g, { x });
        assertExact(out['q']!, decoded(ref), what);
      }
    }
  }
});

test('staticActivationGroupQuantFp8 rejects a scale of the wrong length', () => {
  assert.throws(() => staticActivationGroupQuantFp8({ data: new Float32Array(300), shape: [1, 300] }, new Float32Array(2), 128), /expected 3 \(one per input group\) or 1/);
});

test('broadcastActivationScale graph matches the reference, transposed or not', async () => {
  const s = new Float32Array([0.5, 0.25, 0.125]);
  // Reference against the definition: out[..., r, j] = s[j], transposed out[..., j, r].
  const plain = broadcastActivationScale({ shape: [2, 4, 300] }, s, false);
  assert.deepEqual(plain.shape, [2, 4, 3]);
  const t = broadcastActivationScale({ shape: [2, 4, 300] }, s, true);
  assert.deepEqual(t.shape, [2, 3, 4]);
  for (let b = 0; b < 2; b++) {
    for (let r = 0; r < 4; r++) {
      for (let j = 0; j < 3; j++) {
        assert.equal(plain.data[b * 12 + r * 3 + j], s[j]);
        assert.equal(t.data[b * 12 + j * 4 + r], s[j]);
      }
    }
  }
  for (const shape of [
    [5, 300],
    [2, 4, 300],
  ]) {
    for (const transpose of [false, true]) {
      const g = new GraphBuilder();
      const x = g.input('x', DataType.FLOAT, ['m', ...shape.slice(1)]);
      const sv = g.initializer('s', DataType.FLOAT, [3], littleEndianBytes(s));
      g.output(emitBroadcastActivationScale(g, x, sv, transpose), 'y');
      const out = await run(g, { x: { data: new Float32Array(shape.reduce((a, b) => a * b, 1)), shape } });
      const ref = broadcastActivationScale({ shape }, s, transpose);
      assertExact(out['y']!, ref.data, `[${shape.join(', ')}] transpose=${transpose}`);
    }
  }
});
