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

test('run writes the outputs named in `into` into those arrays, the others as before', async () => {
  const g = new GraphBuilder();
  const a = g.input('a', DataType.FLOAT, ['n']);
  g.output(g.op('Add', [a, a], { dtype: DataType.FLOAT, shape: ['n'] }), 'twice');
  g.output(g.op('Mul', [a, a], { dtype: DataType.FLOAT, shape: ['n'] }), 'square');
  const session = await OnnxSession.create(g.toBytes(), { device: 'cpu', intraOpThreads: 1 });
  const feeds = { a: { type: 'float32', data: new Float32Array([1, -2, 3]), dims: [3] } } as const;
  // Views into the middle of a larger buffer, as the runner passes an expert's slice of its outputs.
  const backing = new Float32Array(10);
  const views: Record<string, Float32Array> = { twice: backing.subarray(1, 4), square: backing.subarray(5, 8) };
  for (const names of [['twice'], ['square'], ['twice', 'square']]) {
    backing.fill(9);
    const out = await session.run(feeds, undefined, Object.fromEntries(names.map((n) => [n, { data: views[n]!, dims: [3] }])));
    assert.deepEqual(Object.keys(out).sort(), ['square', 'twice'], `${names}: every output returned`);
    assert.deepEqual(Array.from(out['twice']!.data), [2, -4, 6], `${names}: twice`);
    assert.deepEqual(Array.from(out['square']!.data), [1, 4, 9], `${names}: square`);
    for (const n of names) assert.equal(out[n]!.data, views[n], `${names}: ${n} is the caller's array`);
    assert.deepEqual(
      Array.from(backing),
      [9, ...(names.includes('twice') ? [2, -4, 6] : [9, 9, 9]), 9, ...(names.includes('square') ? [1, 4, 9] : [9, 9, 9]), 9, 9],
      `${names}: written in place, nothing outside the views`,
    );
  }
  // `fetch` still says which outputs come back: those, and the ones written into a buffer.
  const square = new Float32Array(3);
  const fetched = await session.run(feeds, ['twice'], { square: { data: square, dims: [3] } });
  assert.deepEqual(Object.keys(fetched).sort(), ['square', 'twice'], 'fetch and into');
  assert.deepEqual(
    [Array.from(fetched['twice']!.data), Array.from(square)],
    [
      [2, -4, 6],
      [1, 4, 9],
    ],
  );
  const alone = await session.run(feeds, ['twice'], { twice: { data: new Float32Array(3), dims: [3] } });
  assert.deepEqual(Object.keys(alone), ['twice'], 'square is not fetched');
  assert.deepEqual(Array.from(alone['twice']!.data), [2, -4, 6]);
  await assert.rejects(
    session.run(feeds, undefined, { twice: { data: new Float32Array(4), dims: [3] } }),
    (e: unknown) => e instanceof SessionError && /4 values for dims \[3\]/.test(e.message),
  );
  await assert.rejects(
    session.run(feeds, undefined, { nope: { data: new Float32Array(3), dims: [3] } }),
    (e: unknown) => e instanceof SessionError && /no graph output "nope"/.test(e.message),
  );
  await assert.rejects(
    session.run(feeds, ['nope'], { twice: { data: new Float32Array(3), dims: [3] } }),
    (e: unknown) => e instanceof SessionError && /no graph output "nope"/.test(e.message),
    'a fetched name that is no output is refused with into as without it',
  );
  await assert.rejects(
    session.run(feeds, undefined, { twice: { data: new Float32Array(2), dims: [2] } }),
    (e: unknown) => e instanceof SessionError && /run failed on cpu/.test(e.message),
  );
  await session.release();
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
