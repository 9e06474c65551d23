// The runtime's quantization graphs against PyTorch itself (fixtures/reference-vectors, made with
// torch 2.11 float8 dtypes on CPU): onnxruntime's Clip + saturating Cast on every BF16 pattern and
// on 1 Mi float32 values (ties, subnormals, overflow, ±inf, random bits), and
// rowwise_group_quant_fp8 (MLC's formula) codes and scales, bit for bit. Graph outputs come back
// as Cast(fp8 → float32) values; decoding is one-to-one away from NaN, so equal values mean equal
// codes. torch's NaN codes depend on its kernel (README there), so NaN inputs accept any NaN.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';

import { decodeTableFor, widenToFloat32, type Fp8Format } from '../src/fp8/index.js';
import { DataType } from '../src/runtime/onnx/data-type.js';
import { attr, GraphBuilder, type Value } from '../src/runtime/onnx/graph-builder.js';
import { emitRowwiseGroupQuantFp8, rowwiseGroupQuantFp8 } from '../src/runtime/ops/rowwise-group-quant-fp8.js';
import { fp8DataType, fp8Max } from '../src/runtime/ops/types.js';
import { OnnxSession, type HostTensor } from '../src/runtime/onnx/session.js';

import { testDevice } from './helpers/device.js';
import { f32, readAll, REFERENCE_VECTORS } from './helpers/fixtures.js';

function toFloat(g: GraphBuilder, v: Value): Value {
  return g.op('Cast', [v], { dtype: DataType.FLOAT, shape: v.shape }, { to: attr.int(DataType.FLOAT) });
}

async function runOnce(g: GraphBuilder, feeds: Record<string, HostTensor>): Promise<Record<string, Float32Array>> {
  const session = await OnnxSession.create(g.toBytes(), { device: testDevice() });
  try {
    const out = await session.run(feeds);
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.data as Float32Array]));
  } finally {
    await session.release();
  }
}

function compareDecoded(input: Float32Array, got: Float32Array, torchCodes: Uint8Array, format: Fp8Format, label: string): void {
  const table = decodeTableFor(format);
  let mismatches = 0;
  let first = '';
  for (let i = 0; i < input.length; i++) {
    const want = table[torchCodes[i]!]!;
    if (Object.is(got[i], want)) continue;
    if (Number.isNaN(input[i]!) && Number.isNaN(got[i]!) && Number.isNaN(want)) continue;
    if (mismatches++ === 0) first = `index ${i}: input ${input[i]} → onnxruntime ${got[i]}, torch ${want} (0x${torchCodes[i]!.toString(16)})`;
  }
  assert.equal(mismatches, 0, `${label}: ${mismatches} mismatches; first at ${first}`);
}

async function castLikeTheOps(input: Float32Array, format: Fp8Format): Promise<Float32Array> {
  const max = fp8Max(format);
  const g = new GraphBuilder();
  const x = g.input('x', DataType.FLOAT, ['n']);
  const clipped = g.op('Clip', [x, g.constFloat32([-max], []), g.constFloat32([max], [])], { dtype: DataType.FLOAT, shape: ['n'] });
  const dtype = fp8DataType(format);
  const q = g.op('Cast', [clipped], { dtype, shape: ['n'] }, { to: attr.int(dtype), saturate: attr.int(1) });
  g.output(toFloat(g, q), 'y');
  const { y } = await runOnce(g, { x: { type: 'float32', data: input, dims: [input.length] } });
  return y!;
}

test("onnxruntime's Clip + saturating Cast gives torch's codes for every BF16 pattern", async () => {
  const { tensors } = await readAll(join(REFERENCE_VECTORS, 'fp8_cast_bf16_all.safetensors'));
  const input = widenToFloat32(tensors.get('input')!.bytes, 'BF16');
  for (const [format, key] of [
    ['e4m3fn', 'e4m3'],
    ['e5m2', 'e5m2'],
  ] as const) {
    compareDecoded(input, await castLikeTheOps(input, format), tensors.get(key)!.bytes, format, `${key} (bf16)`);
  }
});

test("onnxruntime's Clip + saturating Cast gives torch's codes for 1 Mi float32 values", async () => {
  const { tensors } = await readAll(join(REFERENCE_VECTORS, 'fp8_cast_f32_random.safetensors'));
  const input = f32(tensors.get('input')!.bytes);
  for (const [format, key] of [
    ['e4m3fn', 'e4m3'],
    ['e5m2', 'e5m2'],
  ] as const) {
    compareDecoded(input, await castLikeTheOps(input, format), tensors.get(key)!.bytes, format, `${key} (f32)`);
  }
});

test('rowwise group quantization (reference and graph) reproduces torch codes and scales', async () => {
  const { tensors, metadata } = await readAll(join(REFERENCE_VECTORS, 'group_quant.safetensors'));
  for (const name of ['x1', 'x2']) {
    const xt = tensors.get(`${name}.x`)!;
    const x = { data: f32(xt.bytes), shape: xt.shape };
    const torchCodes = tensors.get(`${name}.q`)!.bytes;
    const torchScale = f32(tensors.get(`${name}.scale`)!.bytes);
    const group = Number(metadata[`${name}.group`]);

    const ref = rowwiseGroupQuantFp8(x, group);
    assert.deepEqual(Array.from(ref.q.codes), Array.from(torchCodes), `${name}: reference codes`);
    assert.deepEqual(Array.from(ref.scale.data), Array.from(torchScale), `${name}: reference scales`);

    const g = new GraphBuilder();
    const xv = g.input('x', DataType.FLOAT, ['m', x.shape[1]!]);
    const { q, scale } = emitRowwiseGroupQuantFp8(g, xv, group);
    g.output(toFloat(g, q), 'q');
    g.output(scale, 'scale');
    const out = await runOnce(g, { x: { type: 'float32', data: x.data, dims: x.shape } });
    compareDecoded(x.data, out['q']!, torchCodes, 'e4m3fn', `${name}: graph codes`);
    assert.deepEqual(Array.from(out['scale']!), Array.from(torchScale), `${name}: graph scales`);
  }
});
