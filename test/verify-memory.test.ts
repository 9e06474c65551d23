// What keeps a CPU verify's memory near one decoder layer, and the floor check that keeps a CUDA
// verify's main thread free, each shown to change no number of the result:
//   - weights decoded to float32 as they are read (WeightScope with decodeInto) give the logits of
//     the decode at graph build (resident weights) and of the in-graph decode (the CUDA route), bit
//     for bit, on stories260K (Llama) and DeepSeek-V3 (MLA, MoE), original and FP8;
//   - the fast BF16 widening and FP8 decode give the bits of the one-element loops;
//   - the buffer pool lends the front of a larger free buffer and takes the whole buffer back;
//   - floor checks in worker threads (floor-check.ts) answer true for fp8q's own linears and false
//     for a damaged one, and verify gives the same report with and without them, and with the
//     read-ahead and expert prefetch of the CUDA route.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';

import { widenToFloat32 } from '../src/fp8/dtypes.js';
import { decodeCodesToFloat32, decodeTableFor } from '../src/fp8/formats.js';
import { convertCheckpoint } from '../src/pipeline/convert-checkpoint.js';
import { HostBufferPool } from '../src/runtime/models/buffer-pool.js';
import type { BlockGemmForm, WeightDecode } from '../src/runtime/models/model-graph.js';
import { ModelRunner } from '../src/runtime/models/runner.js';
import { generateInputIds } from '../src/runtime/models/token-ids.js';
import { FloorChecker, floorCheckJob } from '../src/runtime/verify/floor-check.js';
import { verifyCheckpoints, type VerifyReport } from '../src/runtime/verify/verify-checkpoints.js';
import { copyCheckpointWithEdits, scaleF32 } from './helpers/checkpoint-edit.js';
import { testDevice } from './helpers/device.js';
import { MODELS, modelDir } from './helpers/fixtures.js';
import { useConvertedFixtures } from './helpers/converted-fixtures.js';

const fixtures = useConvertedFixtures('verify-memory');
const converted = fixtures.converted;

async function logits(dir: string, mode: WeightDecode | 'resident', pool?: HostBufferPool, blockGemm?: BlockGemmForm): Promise<Float32Array> {
  const runner = await ModelRunner.open(dir, {
    device: testDevice(),
    weightDecode: mode === 'resident' ? 'host' : mode,
    ...(pool ? { buffers: pool } : {}),
    ...(blockGemm ? { blockGemm } : {}),
  });
  try {
    // Resident weights are decoded when the graph is built, not when read: the old host decode.
    if (mode === 'resident') runner.keepWeightsResident();
    const { ids } = generateInputIds(runner.spec.vocabSize, 10, 3);
    return await runner.forward(ids, { batch: 1, seq: ids.length });
  } finally {
    await runner.close();
  }
}

function assertSameBits(a: Float32Array, b: Float32Array, what: string): void {
  assert.equal(a.length, b.length, what);
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) assert.fail(`${what}: logit ${i} is ${a[i]} against ${b[i]}`);
}

for (const name of ['stories260K', 'deepseek_v3'] as const) {
  for (const which of ['original', 'FP8'] as const) {
    test(`${name} ${which}: weights decoded as read give the logits of the decode at graph build and of the in-graph decode, bit for bit`, async () => {
      let dir = name === 'deepseek_v3' ? modelDir(name) : join(MODELS, name);
      if (which === 'FP8') {
        dir = name === 'deepseek_v3' ? converted.get(name)! : join(fixtures.workDir(), `${name}-fp8`);
        if (name !== 'deepseek_v3') await convertCheckpoint({ input: join(MODELS, name), output: dir });
      }
      // With a shared pool as verify has one: read buffers and float32 buffers are reused layer after layer.
      const asRead = await logits(dir, 'host', new HostBufferPool());
      assertSameBits(asRead, await logits(dir, 'resident'), 'decoded as read vs at graph build');
      // The in-graph decode (the CUDA route) lays FP8 products out dequantized: against the host
      // decode in that form.
      assertSameBits(await logits(dir, 'host', new HostBufferPool(), 'dequantized'), await logits(dir, 'graph'), 'decoded as read vs in the graph');
    });
  }
}

test('widening BF16 words and decoding FP8 codes: the bits of the one-element loop, at every alignment and length (WebAssembly SIMD above 16384 elements)', () => {
  const words = Uint16Array.from({ length: 65536 + 3 }, (_, i) => (i * 40503) & 0xffff);
  const bytes = new Uint8Array(words.buffer);
  for (const [offset, count] of [
    [0, 65539],
    [2, 65536],
    [1, 1001],
    [4, 1],
    [6, 16384 * 3 + 7],
  ] as const) {
    const src = new Uint8Array(bytes.buffer.slice(0), offset, count * 2);
    const got = new Uint32Array(widenToFloat32(src, 'BF16', new Float32Array(count)).buffer);
    const plain = new Uint16Array(bytes.buffer.slice(offset, offset + count * 2));
    for (let i = 0; i < count; i++) if (got[i] !== (plain[i]! << 16) >>> 0) assert.fail(`BF16 offset ${offset}, element ${i}`);
  }
  for (const length of [1027, 65536 * 2 + 19]) {
    const codes = Uint8Array.from({ length }, (_, i) => (i * 37) & 255);
    for (const format of ['e4m3fn', 'e5m2'] as const) {
      const table = new Uint32Array(decodeTableFor(format).buffer.slice(0));
      for (const offset of [0, 1, 3]) {
        const view = codes.subarray(offset);
        const got = new Uint32Array(decodeCodesToFloat32(view, format).buffer);
        for (let i = 0; i < view.length; i++) if (got[i] !== table[view[i]!]) assert.fail(`${format} length ${length} offset ${offset}, code ${view[i]} at ${i}`);
      }
    }
  }
});

test('buffer pool: a byte request takes the front of a free buffer up to twice its size, and gives the whole buffer back', () => {
  const pool = new HostBufferPool();
  const big = pool.bytes(1000);
  pool.give([big]);
  const small = pool.bytes(600);
  assert.equal(small.byteLength, 600);
  assert.equal(small.buffer, big.buffer, 'lent from the free 1000-byte buffer');
  assert.equal(pool.heldBytes, 0);
  assert.notEqual(pool.bytes(400).buffer, big.buffer, 'nothing free of 400..800 bytes: a new buffer');
  pool.give([small]);
  assert.equal(pool.heldBytes, 1000, 'the whole buffer is back');
  assert.equal(pool.bytes(1000).buffer, big.buffer);
  assert.notEqual(pool.bytes(200).buffer, big.buffer, 'more than twice the request: not lent');
});

test('floor check in workers: true for the linears fp8q wrote, false for a damaged scale, no job for what the worker cannot check', async () => {
  const damaged = join(fixtures.workDir(), 'llama-scale');
  const target = 'model.layers.1.mlp.down_proj';
  await copyCheckpointWithEdits(converted.get('llama')!, damaged, (t) => scaleF32(t.get(`${target}.weight_scale_inv`)!, 4));
  const original = await ModelRunner.open(modelDir('llama'));
  const quantized = await ModelRunner.open(damaged);
  const checker = new FloorChecker(2);
  try {
    const modules = ['model.layers.0.self_attn.q_proj', 'model.layers.0.mlp.gate_proj', 'model.layers.1.self_attn.o_proj', target];
    for (const m of modules) {
      const job = floorCheckJob(m, original.checkpoint, quantized.checkpoint, (mm, n, k, s) => quantized.weights.blockFor(mm, n, k, s));
      assert.ok(job, m);
      checker.submit(m, job);
    }
    const answers = await Promise.all(modules.map((m) => checker.result(m)));
    assert.deepEqual(answers, [true, true, true, false]);
    assert.equal(
      floorCheckJob('lm_head', original.checkpoint, quantized.checkpoint, (mm, n, k, s) => quantized.weights.blockFor(mm, n, k, s)),
      undefined,
      'lm_head is kept in BF16',
    );
    assert.equal(await checker.result('model.layers.0.mlp.up_proj'), undefined, 'never submitted');
  } finally {
    await checker.close();
    await original.close();
    await quantized.close();
  }
});

test('floor check in workers: a job submitted `soon` (or queued, then submitted again `soon`) goes ahead of those queued without it, after the earlier `soon` ones and the one waited for', async () => {
  const original = await ModelRunner.open(modelDir('llama'));
  const quantized = await ModelRunner.open(converted.get('llama')!);
  const checker = new FloorChecker(1);
  try {
    const jobOf = (m: string) => floorCheckJob(m, original.checkpoint, quantized.checkpoint, (mm, n, k, s) => quantized.weights.blockFor(mm, n, k, s))!;
    const [running, a, b, c, d, e] = ['0.self_attn.q_proj', '0.self_attn.k_proj', '0.self_attn.v_proj', '1.self_attn.q_proj', '1.mlp.up_proj', '1.mlp.down_proj'].map(
      (m) => `model.layers.${m}`,
    ) as [string, string, string, string, string, string];
    for (const m of [running, a, b]) checker.submit(m, jobOf(m));
    checker.submit(c, jobOf(c), true);
    assert.deepEqual(checker.queued, [c, a, b], 'the first worker took the first job; the soon one goes first');
    const waited = checker.result(b);
    checker.submit(d, jobOf(d), true);
    checker.submit(e, jobOf(e));
    assert.deepEqual(checker.queued, [b, c, d, a, e]);
    // Queued without `soon`, then asked for `soon` (verify: a routed expert queued up front whose layer runs separately).
    checker.submit(e, jobOf(e), true);
    assert.deepEqual(checker.queued, [b, c, d, e, a]);
    assert.deepEqual(await Promise.all([waited, ...[running, a, c, d, e].map((m) => checker.result(m))]), [true, true, true, true, true, true]);
  } finally {
    await checker.close();
    await original.close();
    await quantized.close();
  }
});

test('floor check in workers: a worker that dies idle is not handed jobs; with none left the main thread answers', async () => {
  const original = await ModelRunner.open(modelDir('llama'));
  const quantized = await ModelRunner.open(converted.get('llama')!);
  const checker = new FloorChecker(2);
  const within = <T>(p: Promise<T>, what: string): Promise<T> =>
    Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what}: no answer in 20 s`)), 20_000).unref())]);
  try {
    const jobOf = (m: string) => floorCheckJob(m, original.checkpoint, quantized.checkpoint, (mm, n, k, s) => quantized.weights.blockFor(mm, n, k, s))!;
    const first = checker.threads[0]!;
    await first.terminate();
    await new Promise((r) => setImmediate(r));
    assert.equal(checker.threads.length, 1, 'the stopped worker is gone');
    const modules = ['model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.k_proj', 'model.layers.0.mlp.up_proj'];
    for (const m of modules) checker.submit(m, jobOf(m));
    assert.deepEqual(await within(Promise.all(modules.map((m) => checker.result(m))), 'one live worker'), [true, true, true]);
    await checker.threads[0]!.terminate();
    await new Promise((r) => setImmediate(r));
    checker.submit('model.layers.1.mlp.down_proj', jobOf('model.layers.1.mlp.down_proj'));
    assert.equal(await within(checker.result('model.layers.1.mlp.down_proj'), 'no live worker'), undefined, 'undefined: the main thread decides');
  } finally {
    await checker.close();
    await original.close();
    await quantized.close();
  }
});

function withoutTime(r: VerifyReport): unknown {
  const { seconds: _seconds, ...rest } = r;
  return rest;
}

for (const [name, edit] of [
  ['llama', undefined],
  ['llama', 'model.layers.0.self_attn.v_proj'],
  ['deepseek_v3', undefined],
  ['deepseek_v3', 'model.layers.1.mlp.experts.1.down_proj'],
] as const) {
  test(`${name}${edit ? ` with ${edit} damaged` : ''}: verify with floor checks and metrics in workers gives the report without them`, async () => {
    let quantized = converted.get(name)!;
    if (edit !== undefined) {
      quantized = join(fixtures.workDir(), `${name}-${edit}`);
      await copyCheckpointWithEdits(converted.get(name)!, quantized, (t) => scaleF32(t.get(`${edit}.weight_scale_inv`)!, 4));
    }
    const run = (threads: number, readAhead?: boolean) =>
      verifyCheckpoints({
        original: modelDir(name),
        quantized,
        tokens: 24,
        device: testDevice(),
        floorCheckThreads: threads,
        metricsThreads: threads,
        ...(readAhead === undefined ? {} : { readAhead }),
      });
    const [inThread, inWorkers, ahead] = [await run(0), await run(2), await run(2, true)];
    // With workers, one of them finds both lm_heads the same bytes, and the head reads only the
    // original's: it holds less, and nothing else changes.
    assert.deepEqual(withoutTime({ ...inWorkers, peakWeightBytes: 0 }), withoutTime({ ...inThread, peakWeightBytes: 0 }));
    assert.ok(inWorkers.peakWeightBytes <= inThread.peakWeightBytes, `held ${inWorkers.peakWeightBytes} with workers, ${inThread.peakWeightBytes} without`);
    // Reading ahead (the next layer; a MoE layer's experts at once, the quantized ones as soon as the
    // original has routed) holds more at a time and changes nothing else.
    assert.deepEqual(withoutTime({ ...ahead, peakWeightBytes: 0 }), withoutTime({ ...inThread, peakWeightBytes: 0 }));
    assert.ok(inThread.linears.length > 0 && inThread.linears.every((l) => l.floorError !== undefined || l.module.includes('experts')), 'linears measured, with floors');
    if (edit !== undefined)
      assert.ok(
        inThread.failures.some((f) => f.subject === edit),
        `${edit} is named`,
      );
  });
}
