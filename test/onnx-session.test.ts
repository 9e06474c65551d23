import assert from 'node:assert/strict';
import { test } from 'node:test';

import { DataType } from '../src/runtime/onnx/data-type.js';
import { attr, GraphBuilder } from '../src/runtime/onnx/graph-builder.js';
import { executionProviders, OnnxSession, SessionError } from '../src/runtime/onnx/session.js';

test('devices map to execution providers without a silent CPU fallback for cuda', () => {
  assert.deepEqual(executionProviders('cpu'), ['cpu']);
  assert.deepEqual(executionProviders('cuda'), ['cuda']);
});

test('runs float32 and float16 feeds and returns typed outputs', async () => {
  const g = new GraphBuilder();
  const a = g.input('a', DataType.FLOAT, [2]);
  const h = g.input('h', DataType.FLOAT16, [2]);
  const hf = g.op('Cast', [h], { dtype: DataType.FLOAT, shape: [2] }, { to: attr.int(DataType.FLOAT) });
  const sum = g.op('Add', [a, hf], { dtype: DataType.FLOAT, shape: [2] });
  g.output(sum, 'sum');
  g.output(g.op('Cast', [sum], { dtype: DataType.FLOAT16, shape: [2] }, { to: attr.int(DataType.FLOAT16) }), 'sum16');

  const session = await OnnxSession.create(g.toBytes(), { device: 'cpu', intraOpThreads: 1 });
  assert.deepEqual(session.inputNames, ['a', 'h']);
  assert.deepEqual(session.outputNames, ['sum', 'sum16']);
  // 0x3c00 = 1.0, 0xc000 = -2.0 in IEEE half.
  const out = await session.run({
    a: { type: 'float32', data: new Float32Array([0.5, 4]), dims: [2] },
    h: { type: 'float16', data: new Uint16Array([0x3c00, 0xc000]), dims: [2] },
  });
  assert.equal(out['sum']!.type, 'float32');
  assert.deepEqual(Array.from(out['sum']!.data), [1.5, 2]);
  assert.equal(out['sum16']!.type, 'float16');
  assert.deepEqual(Array.from(out['sum16']!.data), [0x3e00, 0x4000]);
  assert.deepEqual(out['sum16']!.dims, [2]);

  const only = await session.run(
    {
      a: { type: 'float32', data: new Float32Array([1, 1]), dims: [2] },
      h: { type: 'float16', data: new Uint16Array([0, 0]), dims: [2] },
    },
    ['sum'],
  );
  assert.deepEqual(Object.keys(only), ['sum']);

  await session.release();
  await session.release();
  await assert.rejects(session.run({ a: { type: 'float32', data: new Float32Array(2), dims: [2] } }), (e: unknown) => e instanceof SessionError && /released/.test(e.message));
});

test('load and run failures are SessionErrors naming the device', async () => {
  await assert.rejects(OnnxSession.create(new Uint8Array([1, 2, 3])), (e: unknown) => e instanceof SessionError && /on cpu/.test(e.message));
  const g = new GraphBuilder();
  g.output(g.input('x', DataType.FLOAT, [2]), 'y');
  const session = await OnnxSession.create(g.toBytes());
  await assert.rejects(
    session.run({ x: { type: 'float32', data: new Float32Array(3), dims: [3] } }),
    (e: unknown) => e instanceof SessionError && /run failed on cpu/.test(e.message),
  );
  await session.release();
});
