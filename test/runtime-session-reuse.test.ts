// Weights as graph inputs and one session per distinct graph (model-graph.ts, session-cache.ts):
//   - the in-graph decodes (FP8 codes through a 256-entry table, BF16 words through a 65536-entry
//     one) give exactly the float32 values of Cast / the host widening, for every bit pattern;
//   - a forward with weights decoded in the graph (the CUDA route) gives the same logits as with
//     weights decoded on the host (the CPU route), original and FP8 checkpoints;
//   - the layers of a model share one session; the cache evicts the least recently used one;
//   - host buffers for read and decoded weights are reused, and change nothing in the result; one
//     larger than a Buffer can be (4 GiB on Node 20) is still allocated.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';

import { decodeTableFor } from '../src/fp8/formats.js';
import { widenToFloat32 } from '../src/fp8/dtypes.js';
import { HostBufferPool } from '../src/runtime/models/buffer-pool.js';
import { ModelGraph, decodeFp8Codes, type BlockGemmForm, type WeightDecode } from '../src/runtime/models/model-graph.js';
import { ModelRunner } from '../src/runtime/models/runner.js';
import { readInputIds } from '../src/runtime/models/token-ids.js';
import { DataType } from '../src/runtime/onnx/data-type.js';
import { GraphBuilder } from '../src/runtime/onnx/graph-builder.js';
import { emitCast, emitDecodeFp8Codes, fp8DataType } from '../src/runtime/ops/types.js';
import { relativeL2Error } from '../src/runtime/ops/compare.js';
import { SessionCache } from '../src/runtime/onnx/session-cache.js';
import { OnnxSession, type FeedTensor } from '../src/runtime/onnx/session.js';
import { testDevice } from './helpers/device.js';
import { FIXTURE_MODELS, MODELS, modelDir } from './helpers/fixtures.js';
import { useConvertedFixtures } from './helpers/converted-fixtures.js';

const fixtures = useConvertedFixtures('runtime-reuse');
const converted = fixtures.converted;

const ALL_BYTES = Uint8Array.from({ length: 256 }, (_, i) => i);

async function runOnce(model: Uint8Array, feeds: Readonly<Record<string, FeedTensor>>): Promise<Float32Array> {
  const session = await OnnxSession.create(model, { device: testDevice() });
  try {
    const out = await session.run(feeds);
    const y = out['y']!;
    assert.equal(y.type, 'float32');
    return y.data as Float32Array;
  } finally {
    await session.release();
  }
}

for (const format of ['e4m3fn', 'e5m2'] as const) {
  test(`${format}: every code decoded in the graph (uint8 → Gather) equals Cast(FP8 → float) and the host table`, async () => {
    const g = new GraphBuilder();
    const codes = g.input('codes', DataType.UINT8, [256]);
    const viaTable = emitDecodeFp8Codes(g, codes, format);
    const viaCast = emitCast(g, g.initializer('w', fp8DataType(format), [256], ALL_BYTES), DataType.FLOAT);
    g.output(g.op('Concat', [viaTable, viaCast], { dtype: DataType.FLOAT, shape: [512], name: 'both' }, { axis: { type: 'int', value: 0 } }), 'y');
    const y = await runOnce(g.toBytes(), { codes: { type: 'uint8', data: ALL_BYTES, dims: [256] } });
    const table = decodeTableFor(format);
    const host = decodeFp8Codes(ALL_BYTES, format);
    for (let i = 0; i < 256; i++) {
      const expected = table[i]!;
      for (const [what, got] of [
        ['graph table', y[i]!],
        ['Cast', y[256 + i]!],
        ['host', host[i]!],
      ] as const) {
        if (Number.isNaN(expected)) assert.ok(Number.isNaN(got), `${what}: code ${i} must decode to NaN, got ${got}`);
        else assert.ok(Object.is(got, expected), `${what}: code ${i} decodes to ${got}, expected ${expected}`);
      }
    }
  });
}

test('BF16: every bit pattern decoded in the graph (uint16 → Gather) has the bits of the host widening', async () => {
  const words = Uint16Array.from({ length: 65536 }, (_, i) => i);
  const bytes = new Uint8Array(words.buffer);
  const mg = new ModelGraph(false, 'graph');
  mg.output(mg.stored({ name: 'all', dtype: 'BF16', shape: [65536], bytes }), 'y');
  assert.equal(mg.feeds['data_0']?.type, 'uint16', 'BF16 goes in as its uint16 words');
  const y = await runOnce(mg.toBytes(), mg.feeds);
  const expected = new Uint32Array(widenToFloat32(bytes, 'BF16').buffer);
  const got = new Uint32Array(y.buffer, y.byteOffset, y.length);
  for (let i = 0; i < 65536; i++) {
    if (got[i] !== expected[i]) assert.fail(`BF16 0x${i.toString(16)}: graph gives bits 0x${got[i]!.toString(16)}, host 0x${expected[i]!.toString(16)}`);
  }
});

async function logits(
  dir: string,
  weightDecode: WeightDecode,
  ids: Int32Array,
  blockGemm?: BlockGemmForm,
): Promise<{ logits: Float32Array; created: number; reused: number; layers: number }> {
  const runner = await ModelRunner.open(dir, { device: testDevice(), weightDecode, ...(blockGemm === undefined ? {} : { blockGemm }) });
  try {
    const out = await runner.forward(ids, { batch: 1, seq: ids.length });
    return { logits: out, ...runner.sessions.stats, layers: runner.spec.numLayers };
  } finally {
    await runner.close();
  }
}

for (const name of FIXTURE_MODELS) {
  for (const which of ['original', 'FP8'] as const) {
    test(`${name} ${which}: weights decoded in the graph (CUDA route) give the logits of weights decoded on the host`, async () => {
      const dir = which === 'original' ? modelDir(name) : converted.get(name)!;
      const ids = (await readInputIds(join(MODELS, `${name}.logits.safetensors`))).ids.subarray(0, 12);
      // The graph route lays FP8 products out dequantized; the host route, given the same form.
      const host = await logits(dir, 'host', ids, 'dequantized');
      const graph = await logits(dir, 'graph', ids);
      assert.equal(graph.logits.length, host.logits.length);
      let maxDiff = 0;
      for (let i = 0; i < host.logits.length; i++) maxDiff = Math.max(maxDiff, Math.abs(graph.logits[i]! - host.logits[i]!));
      // Same float32 weights, same graph after the decode (which is exact): the same logits, bit for bit.
      assert.equal(maxDiff, 0, `max |Δ logit| = ${maxDiff}`);
      if (which === 'FP8') {
        // The host route's default, per-block form: the same sums rounded elsewhere in float32.
        const perBlock = await logits(dir, 'host', ids);
        assert.ok(relativeL2Error(perBlock.logits, graph.logits) < 1e-6, `per-block vs dequantized: ${relativeL2Error(perBlock.logits, graph.logits)}`);
        assert.ok(relativeL2Error(perBlock.logits, graph.logits) > 0, 'the two forms are different graphs');
      }
      if (name === 'llama') {
        // A dense model on the host route: every decoder layer runs as the same three graphs
        // (attention, gate and up, down: four runs), so three sessions for all layers and one for
        // the head; in the graph route one graph a layer.
        assert.deepEqual({ created: host.created, reused: host.reused }, { created: 4, reused: 4 * host.layers - 3 });
        assert.deepEqual({ created: graph.created, reused: graph.reused }, { created: 2, reused: graph.layers - 1 });
      }
    });
  }
}

test('ModelGraph inputs are positional: the layers of a model build the same graphs and run in the same sessions', async () => {
  const runner = await ModelRunner.open(converted.get('llama')!, { device: testDevice() });
  try {
    const ids = (await readInputIds(join(MODELS, 'llama.logits.safetensors'))).ids.subarray(0, 8);
    let hidden = await runner.embed(ids);
    for (let layer = 0; layer < runner.spec.numLayers; layer++) hidden = (await runner.runLayer(layer, hidden, { batch: 1, seq: 8 })).hidden;
    // Every layer ran in the first layer's sessions (attention, gate and up, down: three graphs,
    // four runs); the FP8 weights went in as float32 (CPU route).
    assert.deepEqual(runner.sessions.stats, { created: 3, reused: 4 * runner.spec.numLayers - 3 });
  } finally {
    await runner.close();
  }
});

test('MoE layers share sessions: each routed expert runs in one graph with symbolic rows, and the combine graph is the same in every layer', async () => {
  const original = await ModelRunner.open(modelDir('mixtral'), { device: testDevice() });
  const quantized = await ModelRunner.open(converted.get('mixtral')!, { device: testDevice() });
  try {
    const ids = (await readInputIds(join(MODELS, 'mixtral.logits.safetensors'))).ids.subarray(0, 12);
    const shape = { batch: 1, seq: 12 };
    let ho = await original.embed(ids);
    let hq = await quantized.embed(ids);
    const created: [number, number][] = [];
    let expertRuns = 0;
    for (let layer = 0; layer < original.spec.numLayers; layer++) {
      const o = await original.runLayer(layer, ho, shape, { capture: true });
      const q = await quantized.runLayer(layer, hq, shape, { probes: o.captures });
      const experts = [...o.captures.keys()].filter((m) => m.includes('.experts.'));
      assert.ok(experts.length >= 3 * 2, `layer ${layer}: at least two experts routed and captured`);
      for (const m of experts) assert.ok(q.probeOutputs.has(m), `layer ${layer}: ${m} has a probe output`);
      expertRuns += experts.length / 3;
      created.push([original.sessions.stats.created, quantized.sessions.stats.created]);
      ho = o.hidden;
      hq = q.hidden;
    }
    // The original: attention and router, one expert graph (taps), the combine graph — created in
    // the first MoE layer, reused by every expert and every later layer.
    assert.deepEqual(created[0], created.at(-1), 'later MoE layers create no sessions');
    assert.equal(created[0]![0], 3);
    assert.ok(original.sessions.stats.reused >= expertRuns - 1 + (original.spec.numLayers - 1) * 2);
    // The quantized model: its expert graphs (routed, routed and probed, probed only) on top.
    assert.ok(created[0]![1] <= 5, `quantized sessions: ${created[0]![1]}`);
    // The same logits as a forward through the whole model.
    const plain = await ModelRunner.open(converted.get('mixtral')!, { device: testDevice() });
    try {
      assert.deepEqual(Array.from(await quantized.head(hq, 12)), Array.from(await plain.forward(ids, shape)));
    } finally {
      await plain.close();
    }
  } finally {
    await original.close();
    await quantized.close();
  }
});

function addOne(scale: number): Uint8Array {
  const g = new GraphBuilder();
  const x = g.input('x', DataType.FLOAT, [2]);
  g.output(g.op('Mul', [x, g.constFloat32([scale], [])], { dtype: DataType.FLOAT, shape: [2], name: 'm' }), 'y');
  return g.toBytes();
}

test('SessionCache: one session per distinct model bytes, least recently used evicted', async () => {
  const cache = new SessionCache({ device: testDevice() }, 2);
  const x = { x: { type: 'float32' as const, data: Float32Array.of(1, 2), dims: [2] } };
  const [a, b, c] = [addOne(2), addOne(3), addOne(4)];
  try {
    assert.deepEqual(Array.from((await cache.run(a, x))['y']!.data), [2, 4]);
    assert.deepEqual(Array.from((await cache.run(b, x))['y']!.data), [3, 6]);
    await cache.run(a.slice(), x); // same bytes, another array: a hit; b is now least recent
    assert.deepEqual(cache.stats, { created: 2, reused: 1 });
    assert.deepEqual(Array.from((await cache.run(c, x))['y']!.data), [4, 8]); // evicts b
    assert.equal(cache.size, 2);
    await cache.run(a, x);
    assert.deepEqual(cache.stats, { created: 3, reused: 2 });
    await cache.run(b, x); // b was released: created again
    assert.deepEqual(cache.stats, { created: 4, reused: 2 });
  } finally {
    await cache.clear();
  }
  assert.equal(cache.size, 0);
  assert.throws(() => new SessionCache({}, 0), /capacity must be ≥ 1/);
});

test('HostBufferPool hands back whole buffers by byte length and keeps at most maxFreeBytes', () => {
  const pool = new HostBufferPool(64);
  const a = pool.float32(8);
  const b = pool.bytes(32);
  pool.give([a, b, a, new Uint8Array(a.buffer, 4, 8)]); // a twice and a partial view: counted once, view ignored
  assert.equal(pool.heldBytes, 64);
  const c = pool.bytes(32);
  const d = pool.float32(8);
  assert.ok(c.buffer === b.buffer || c.buffer === a.buffer, 'a 32-byte request reuses a free 32-byte buffer');
  assert.ok(d.buffer === b.buffer || d.buffer === a.buffer);
  assert.notEqual(c.buffer, d.buffer);
  assert.equal(pool.heldBytes, 0);
  assert.notEqual(pool.float32(8).buffer, a.buffer, 'an empty pool allocates');
  pool.give([new Float32Array(20)]); // 80 bytes: over the cap, dropped
  assert.equal(pool.heldBytes, 0);
});

test('HostBufferPool allocates a buffer larger than a Buffer can be (over 4 GiB on Node 20), as an ArrayBuffer allows', () => {
  // A host-decoded FP8 lm_head of more than 2^30 values (a 152064 × 8192 head: 5 GB of float32)
  // is one float32() request; a Buffer of that size is refused with a RangeError.
  const pool = new HostBufferPool(0);
  const length = 2 ** 30 + 2;
  const big = pool.float32(length);
  assert.equal(big.length, length);
  assert.equal(big.buffer.byteLength, length * 4);
});

test('a verify-style runner reads weights into pooled buffers and reuses them layer after layer', async () => {
  const pool = new HostBufferPool();
  const runner = await ModelRunner.open(converted.get('llama')!, { device: testDevice(), buffers: pool });
  try {
    const ids = (await readInputIds(join(MODELS, 'llama.logits.safetensors'))).ids.subarray(0, 8);
    const shape = { batch: 1, seq: 8 };
    const plain = await ModelRunner.open(converted.get('llama')!, { device: testDevice() });
    let expected: Float32Array;
    try {
      expected = await plain.forward(ids, shape);
    } finally {
      await plain.close();
    }
    let hidden = await runner.embed(ids);
    hidden = (await runner.runLayer(0, hidden, shape)).hidden;
    const afterFirst = pool.heldBytes;
    assert.ok(afterFirst > 0, 'layer 0 gave its read and decoded buffers back');
    for (let layer = 1; layer < runner.spec.numLayers; layer++) hidden = (await runner.runLayer(layer, hidden, shape)).hidden;
    assert.equal(pool.heldBytes, afterFirst, 'later layers reused those buffers instead of adding new ones');
    const logits = await runner.head(hidden, 8);
    assert.deepEqual(Array.from(logits), Array.from(expected), 'pooled buffers change nothing in the result');
  } finally {
    await runner.close();
  }
});
