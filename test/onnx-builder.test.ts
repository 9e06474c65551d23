import assert from 'node:assert/strict';
import { test } from 'node:test';

import { E4M3_DECODE, E5M2_DECODE } from '../src/fp8/index.js';
import { DataType } from '../src/runtime/onnx/data-type.js';
import { attr, DEFAULT_OPSET, GraphBuilder, GraphBuildError, littleEndianBytes } from '../src/runtime/onnx/graph-builder.js';
import { decodeModel } from '../src/runtime/onnx/onnx-schema.js';
import { OnnxSession } from '../src/runtime/onnx/session.js';

import { testDevice } from './helpers/device.js';

const ALL_CODES = Uint8Array.from({ length: 256 }, (_, i) => i);

/** A graph with one unused float input (onnxruntime-node needs a feed) that decodes `w` to float32. */
function decodeGraph(dtype: DataType, raw: Uint8Array, opset?: number): GraphBuilder {
  const g = new GraphBuilder(opset === undefined ? {} : { opset });
  const one = g.input('one', DataType.FLOAT, [1]);
  const w = g.initializer('w', dtype, [raw.length / (dtype === DataType.BFLOAT16 ? 2 : 1)], raw);
  const f = g.op('Cast', [w], { dtype: DataType.FLOAT, shape: w.shape }, { to: attr.int(DataType.FLOAT) });
  g.output(g.op('Mul', [f, one], { dtype: DataType.FLOAT, shape: w.shape }), 'y');
  return g;
}

async function runDecode(g: GraphBuilder): Promise<Float32Array> {
  const session = await OnnxSession.create(g.toBytes(), { device: testDevice() });
  try {
    const out = await session.run({ one: { type: 'float32', data: new Float32Array([1]), dims: [1] } });
    return out['y']!.data as Float32Array;
  } finally {
    await session.release();
  }
}

test('encodes ModelProto fields, FP8/BF16 initializers as raw_data and typed attributes', () => {
  const g = new GraphBuilder({ name: 'probe' });
  const x = g.input('x', DataType.FLOAT, ['m', 3]);
  const w8 = g.initializer('w', DataType.FLOAT8E4M3FN, [2, 3], new Uint8Array([1, 2, 3, 4, 5, 6]));
  const w5 = g.initializer('w', DataType.FLOAT8E5M2, [1], new Uint8Array([7]));
  const bf = g.initializer('b', DataType.BFLOAT16, [2], new Uint8Array([0x80, 0x3f, 0x00, 0xc0]));
  assert.equal(w8.name, 'w');
  assert.equal(w5.name, 'w_1', 'initializer names are made unique');
  const y = g.op('LeakyRelu', [x], { dtype: DataType.FLOAT, shape: x.shape }, { alpha: attr.float(0.25) });
  const t = g.op('Transpose', [y], { dtype: DataType.FLOAT, shape: [3, 'm'] }, { perm: attr.ints([1, 0]) });
  g.output(t, 'out');
  void bf;

  const model = decodeModel(g.toBytes());
  assert.equal(model.ir_version, 10);
  assert.deepEqual(model.opset_import, [{ domain: '', version: DEFAULT_OPSET }]);
  assert.equal(model.producer_name, 'fp8q');
  const graph = model.graph;
  assert.equal(graph.name, 'probe');
  assert.deepEqual(
    graph.initializer.map((i) => [i.name, i.data_type, i.dims, Array.from(i.raw_data!)]),
    [
      ['w', 17, [2, 3], [1, 2, 3, 4, 5, 6]],
      ['w_1', 19, [1], [7]],
      ['b', 16, [2], [0x80, 0x3f, 0x00, 0xc0]],
    ],
  );
  assert.deepEqual(graph.input[0]!.type.tensor_type.shape!.dim, [{ dim_param: 'm' }, { dim_value: 3 }]);
  assert.deepEqual(
    graph.node.map((n) => n.op_type),
    ['LeakyRelu', 'Transpose', 'Identity'],
  );
  const leaky = graph.node[0]!.attribute[0]!;
  assert.equal(leaky.name, 'alpha');
  assert.equal(leaky.type, 1);
  assert.equal(leaky.f, 0.25);
  assert.deepEqual(graph.node[1]!.attribute[0]!.ints, [1, 0]);
  assert.equal(graph.output[0]!.name, 'out');
  assert.deepEqual(graph.node[2]!.output, ['out']);
});

test('generates unique value names and rejects clashes, bad sizes and non-JS I/O types', () => {
  const g = new GraphBuilder();
  assert.equal(g.uniqueName('a'), 'a');
  assert.equal(g.uniqueName('a'), 'a_1');
  assert.equal(g.uniqueName('a'), 'a_2');
  g.input('x', DataType.FLOAT, [2]);
  assert.throws(() => g.input('x', DataType.FLOAT, [2]), /already used/);
  assert.throws(() => g.input('q', DataType.FLOAT8E4M3FN, [2]), /float32\/float16/);
  assert.throws(
    () => g.initializer('w', DataType.FLOAT, [2, 3], new Uint8Array(20)),
    (e: unknown) => e instanceof GraphBuildError && /needs 24 bytes, got 20/.test(e.message),
  );
  const w = g.initializer('w8', DataType.FLOAT8E4M3FN, [2], new Uint8Array(2));
  assert.throws(() => g.output(w), /Cast it first/);
  assert.throws(() => new GraphBuilder({ opset: 17 }), /opset 17 is not supported/);
  assert.throws(() => new GraphBuilder().toBytes(), /no outputs/);
});

test('small constants are shared; littleEndianBytes lays out float32 little-endian', () => {
  const g = new GraphBuilder();
  const a = g.constInt64([1, 2]);
  const b = g.constInt64([1, 2]);
  const c = g.constFloat32([1, 2]);
  assert.equal(a.name, b.name);
  assert.notEqual(a.name, c.name);
  assert.deepEqual(Array.from(littleEndianBytes(new Float32Array([1]))), [0, 0, 0x80, 0x3f]);
});

test('FP8 E4M3FN and E5M2 initializers decode in onnxruntime to the 256-entry tables', async () => {
  for (const [dtype, table] of [
    [DataType.FLOAT8E4M3FN, E4M3_DECODE],
    [DataType.FLOAT8E5M2, E5M2_DECODE],
  ] as const) {
    const got = await runDecode(decodeGraph(dtype, ALL_CODES));
    for (let code = 0; code < 256; code++) {
      assert.ok(Object.is(got[code], table[code]), `dtype ${dtype} code 0x${code.toString(16)}: ${got[code]} vs ${table[code]}`);
    }
  }
});

test('BF16 initializers decode exactly (upper half of the float32 bits)', async () => {
  const values = [1, -2, 0.15625, 3.0e38, -0, 2 ** -133];
  const f32 = new Float32Array(values);
  const u32 = new Uint32Array(f32.buffer);
  const bf16 = Uint16Array.from(u32, (bits) => bits >>> 16);
  const got = await runDecode(decodeGraph(DataType.BFLOAT16, littleEndianBytes(bf16)));
  const expected = Float32Array.from(bf16, (h) => new Float32Array(new Uint32Array([h << 16]).buffer)[0]!);
  assert.deepEqual(Array.from(got), Array.from(expected));
});

test('opsets 22 to 24 load and run on the CPU provider as well', async () => {
  for (const opset of [22, 23, 24]) {
    const got = await runDecode(decodeGraph(DataType.FLOAT8E4M3FN, new Uint8Array([0x38, 0xb8]), opset));
    assert.deepEqual(Array.from(got), [1, -1], `opset ${opset}`);
  }
});

test('If subgraphs see outer values and initializers', async () => {
  const g = new GraphBuilder();
  const x = g.input('x', DataType.FLOAT, ['n']);
  const sum = g.op('ReduceSum', [x], { dtype: DataType.FLOAT, shape: [] }, { keepdims: attr.int(0) });
  const positive = g.op('Greater', [sum, g.constFloat32([0], [])], { dtype: DataType.BOOL, shape: [] });
  const thenG = g.subgraph('then');
  thenG.output(thenG.op('Mul', [x, thenG.constFloat32([10], [])], { dtype: DataType.FLOAT, shape: ['n'] }));
  const elseG = g.subgraph('else');
  elseG.output(elseG.op('Neg', [x], { dtype: DataType.FLOAT, shape: ['n'] }));
  const y = g.op(
    'If',
    [positive],
    { dtype: DataType.FLOAT, shape: ['n'] },
    {
      then_branch: attr.graph(thenG),
      else_branch: attr.graph(elseG),
    },
  );
  g.output(y, 'y');
  const session = await OnnxSession.create(g.toBytes(), { device: testDevice() });
  const pos = await session.run({ x: { type: 'float32', data: new Float32Array([1, 2]), dims: [2] } });
  const neg = await session.run({ x: { type: 'float32', data: new Float32Array([-1, -2]), dims: [2] } });
  await session.release();
  assert.deepEqual(Array.from(pos['y']!.data), [10, 20]);
  assert.deepEqual(Array.from(neg['y']!.data), [1, 2]);
});
