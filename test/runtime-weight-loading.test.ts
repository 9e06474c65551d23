// Weight loading for the forward (runtime/models/weights.ts): the FP8 layout comes from the reader
// every other command uses (io/formats/quantized-format.ts): a config without weight_block_size is refused
// with the reader's message instead of being read as 128x128, and compressed-tensors scale names
// come from the detected layout. Reading layer i+1 ahead while layer i runs (on by default on
// CUDA) gives the same logits bit for bit, on BF16 and FP8 checkpoints and MoE, and is accounted;
// stacked experts, read by rows, are never read ahead whole. Both models' heads in row chunks (verify)
// give the same logits with the next chunk read ahead; warmHeadPages reads lm_head into the page cache
// through one small buffer (verify on the CPU, from its second layer).

import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Checkpoint } from '../src/io/checkpoint/checkpoint.js';
import { convertCheckpoint } from '../src/pipeline/convert-checkpoint.js';
import { QuantizationConfigError } from '../src/io/formats/quantized-format.js';
import { ModelRunner } from '../src/runtime/models/runner.js';
import { HostBufferPool } from '../src/runtime/models/buffer-pool.js';
import { ModelWeights } from '../src/runtime/models/weights.js';
import { readInputIds } from '../src/runtime/models/token-ids.js';
import { blockQuantize } from '../src/fp8/block-quantize.js';
import { widenToFloat32 } from '../src/fp8/dtypes.js';
import { copyCheckpointWithEdits } from './helpers/checkpoint-edit.js';
import { verifyCheckpoints, warmHeadsAt } from '../src/runtime/verify/verify-checkpoints.js';
import { FIXTURE_MODELS, MODELS, modelDir, readAll } from './helpers/fixtures.js';
import { makeTempDir, type TempDir } from './helpers/temp-dir.js';

describe('the forward reads FP8 layouts with io/quantized-format', () => {
  let tmp: TempDir;
  before(async () => {
    tmp = await makeTempDir('fp8-layout');
  });
  after(() => tmp.cleanup());

  test('weight_block_size missing: refused, not assumed 128x128', async () => {
    const out = join(tmp.path, 'hf');
    await convertCheckpoint({ input: modelDir('llama'), output: out, block: { bn: 64, bk: 64 } });
    const configPath = join(out, 'config.json');
    const config = JSON.parse(await readFile(configPath, 'utf8')) as { quantization_config: Record<string, unknown> };
    const ckpt = await Checkpoint.open(out);
    try {
      const weights = new ModelWeights(ckpt);
      assert.deepEqual(weights.block, { bn: 64, bk: 64 });
      const scope = weights.scope();
      const q = await scope.linear('model.layers.0.self_attn.q_proj');
      assert.equal(q.kind, 'fp8');
      scope.close();
    } finally {
      await ckpt.close();
    }
    delete config.quantization_config['weight_block_size'];
    await writeFile(configPath, JSON.stringify(config));
    const broken = await Checkpoint.open(out);
    try {
      assert.throws(
        () => new ModelWeights(broken),
        (e: unknown) => e instanceof QuantizationConfigError && /weight_block_size/.test(e.message),
      );
    } finally {
      await broken.close();
    }
  });

  test('compressed-tensors: weight_scale found through the detected layout', async () => {
    const out = join(tmp.path, 'ct');
    await convertCheckpoint({ input: modelDir('llama'), output: out, outputFormat: 'compressed-tensors' });
    const ckpt = await Checkpoint.open(out);
    try {
      const weights = new ModelWeights(ckpt);
      assert.equal(weights.format?.format, 'compressed-tensors');
      assert.equal(weights.scaleOf('model.layers.0.mlp.down_proj.weight'), 'model.layers.0.mlp.down_proj.weight_scale');
      const scope = weights.scope();
      const w = await scope.linear('model.layers.0.mlp.down_proj');
      assert.equal(w.kind, 'fp8');
      scope.close();
    } finally {
      await ckpt.close();
    }
  });

  test('read-ahead: the same logits bit for bit (BF16 and FP8, dense and MoE), reads served ahead and accounted', async () => {
    const fp8 = join(tmp.path, 'mixtral-fp8');
    await convertCheckpoint({ input: modelDir('mixtral'), output: fp8 });
    const cases: [string, string][] = [...FIXTURE_MODELS.map((m): [string, string] => [modelDir(m), m]), [fp8, 'mixtral']];
    for (const [dir, fixture] of cases) {
      const { tensors } = await readAll(join(MODELS, `${fixture}.logits.safetensors`));
      const ids = Array.from(new BigInt64Array(tensors.get('input_ids')!.bytes.slice().buffer), Number);
      const shape = { batch: 2, seq: ids.length / 2 };
      const logits: Float32Array[] = [];
      for (const [readAhead, buffers] of [
        [false, undefined],
        [true, undefined],
        [true, new HostBufferPool()],
      ] as const) {
        const runner = await ModelRunner.open(dir, { device: 'cpu', readAhead, ...(buffers ? { buffers } : {}) });
        try {
          assert.equal(runner.weights.readAhead, readAhead);
          logits.push(await runner.forward(ids, shape));
        } finally {
          await runner.close();
        }
      }
      assert.ok(Buffer.from(logits[0]!.buffer).equals(Buffer.from(logits[1]!.buffer)), `${dir}: logits with and without read-ahead`);
      assert.ok(Buffer.from(logits[0]!.buffer).equals(Buffer.from(logits[2]!.buffer)), `${dir}: logits with read-ahead into pooled buffers`);
    }
    const ckpt = await Checkpoint.open(modelDir('llama'));
    try {
      const weights = new ModelWeights(ckpt, undefined, undefined, true);
      const scope = weights.scope();
      const q0 = await scope.linear('model.layers.0.self_attn.q_proj');
      const layer1 = ckpt.tensorNames().filter((n) => n.startsWith('model.layers.1.'));
      const ahead = layer1.reduce((sum, n) => sum + ckpt.info(n).byteLength, 0);
      assert.equal(weights.accounting.held, (q0.weight as { bytes: Uint8Array }).bytes.byteLength + ahead, 'layer 1 read ahead and accounted');
      scope.close();
      const next = weights.scope();
      const q1 = await next.linear('model.layers.1.self_attn.q_proj');
      assert.deepEqual((q1.weight as { bytes: Uint8Array }).bytes, await ckpt.readTensor('model.layers.1.self_attn.q_proj.weight'));
      next.close();
      // With a pool, what is read ahead goes into its buffers and back to it when the scope that used it closes.
      const pool = new HostBufferPool();
      const pooled = new ModelWeights(ckpt, undefined, pool, true);
      const s0 = pooled.scope();
      await s0.linear('model.layers.0.self_attn.q_proj');
      s0.close();
      const freeBefore = pool.heldBytes;
      const s1 = pooled.scope();
      const q1p = await s1.linear('model.layers.1.self_attn.q_proj');
      const q1Bytes = (q1p.weight as { bytes: Uint8Array }).bytes;
      assert.deepEqual(q1Bytes, await ckpt.readTensor('model.layers.1.self_attn.q_proj.weight'));
      s1.close();
      assert.ok(pool.heldBytes >= freeBefore + q1Bytes.byteLength, `the read-ahead buffer of q_proj went back to the pool (${freeBefore} → ${pool.heldBytes} bytes free)`);
    } finally {
      await ckpt.close();
    }
  });

  test("both models' heads in row chunks (verify's shared lm_head): with the next chunk read ahead, the logits of reading it after; nothing left held", async () => {
    const fp8 = join(tmp.path, 'llama-heads');
    await convertCheckpoint({ input: modelDir('llama'), output: fp8 });
    const ids = [1, 5, 9, 2, 7, 3];
    const results: Float32Array[][] = [];
    const chunks: number[] = [];
    for (const [readAhead, headChunkBytes] of [
      [false, undefined],
      [false, 3000],
      [true, 3000],
    ] as const) {
      const buffers = new HostBufferPool();
      const options = { device: 'cpu' as const, readAhead, buffers, ...(headChunkBytes === undefined ? {} : { headChunkBytes }) };
      const original = await ModelRunner.open(modelDir('llama'), options);
      const quantized = await ModelRunner.open(fp8, options);
      try {
        const shape = { batch: 1, seq: ids.length };
        const [ho, hq] = [await original.embed(ids), await quantized.embed(ids)];
        const h = original.spec.hiddenSize;
        chunks.push(Math.ceil(original.spec.vocabSize / Math.max(1, Math.floor((headChunkBytes ?? 2 ** 40) / (h * 4)))));
        const runsBefore = original.sessions.stats.created + original.sessions.stats.reused;
        results.push(await original.heads(ho, shape.batch * shape.seq, { runner: quantized, hidden: hq }));
        // One graph per chunk for both models: the lm_head kept as it was is shared.
        assert.equal(original.sessions.stats.created + original.sessions.stats.reused - runsBefore, chunks.at(-1), `one run per chunk (readAhead ${readAhead})`);
        assert.equal(original.weights.accounting.held + quantized.weights.accounting.held, 0, `nothing held after the heads (readAhead ${readAhead})`);
      } finally {
        await original.close();
        await quantized.close();
      }
    }
    assert.ok(chunks[1]! >= 3, `several chunks (${chunks[1]})`);
    const [whole, chunked, ahead] = results as [Float32Array[], Float32Array[], Float32Array[]];
    for (let m = 0; m < 2; m++) {
      assert.ok(Buffer.from(chunked[m]!.buffer).equals(Buffer.from(ahead[m]!.buffer)), `model ${m}: read ahead or not, the same bits`);
      for (let i = 0; i < whole[m]!.length; i++)
        assert.ok(Math.abs(whole[m]![i]! - chunked[m]![i]!) <= 1e-5 * Math.max(1, Math.abs(whole[m]![i]!)), `model ${m}: logit ${i} in chunks`);
    }
  });

  test("heads in row chunks where the other model's lm_head is FP8 (not shareable): its whole head, the logits of one chunk; a differing BF16 lm_head chunk by chunk", async () => {
    const fp8 = join(tmp.path, 'llama-heads-fp8-head');
    await convertCheckpoint({ input: modelDir('llama'), output: fp8 });
    const fp8Head = join(tmp.path, 'llama-heads-fp8-head-q');
    await copyCheckpointWithEdits(fp8, fp8Head, (t) => {
      const w = t.get('lm_head.weight')!;
      const [n, k] = w.shape as [number, number];
      const q = blockQuantize(widenToFloat32(w.bytes, 'BF16'), n, k, { block: { bn: 128, bk: 128 }, format: 'e4m3fn' });
      t.set('lm_head.weight', { dtype: 'F8_E4M3', shape: [n, k], bytes: q.codes });
      t.set('lm_head.weight_scale_inv', { dtype: 'F32', shape: [n / 128, k / 128], bytes: new Uint8Array(q.scaleInv.buffer) });
    });
    // A BF16 lm_head that differs from the original's: shareable, never the same bytes.
    const otherHead = join(tmp.path, 'llama-heads-other-head');
    await copyCheckpointWithEdits(fp8, otherHead, (t) => {
      const w = t.get('lm_head.weight')!;
      for (let i = 1; i < w.bytes.length; i += 2) w.bytes[i] = w.bytes[i]! ^ 0x01;
    });
    const ids = [1, 5, 9, 2, 7, 3];
    for (const quantizedDir of [fp8Head, otherHead]) {
      const results: Float32Array[][] = [];
      for (const [readAhead, headChunkBytes] of [
        [false, undefined],
        [false, 300 * 1024],
        [true, 300 * 1024],
      ] as const) {
        const options = { device: 'cpu' as const, readAhead, buffers: new HostBufferPool(), ...(headChunkBytes === undefined ? {} : { headChunkBytes }) };
        const original = await ModelRunner.open(modelDir('llama'), options);
        const quantized = await ModelRunner.open(quantizedDir, options);
        try {
          const [ho, hq] = [await original.embed(ids), await quantized.embed(ids)];
          results.push(await original.heads(ho, ids.length, { runner: quantized, hidden: hq }));
          assert.equal(original.weights.accounting.held + quantized.weights.accounting.held, 0, `nothing held after the heads (${quantizedDir}, readAhead ${readAhead})`);
        } finally {
          await original.close();
          await quantized.close();
        }
      }
      const [whole, chunked, ahead] = results as [Float32Array[], Float32Array[], Float32Array[]];
      for (let m = 0; m < 2; m++) {
        assert.ok(Buffer.from(chunked[m]!.buffer).equals(Buffer.from(ahead[m]!.buffer)), `${quantizedDir} model ${m}: read ahead or not, the same bits`);
        for (let i = 0; i < whole[m]!.length; i++)
          assert.ok(Math.abs(whole[m]![i]! - chunked[m]![i]!) <= 1e-5 * Math.max(1, Math.abs(whole[m]![i]!)), `${quantizedDir} model ${m}: logit ${i} in chunks`);
      }
    }
  });

  test('warmHeadPages reads all of lm_head through one small buffer, holding nothing; stop() ends it early; verify on the CPU warms both heads from the second layer', async () => {
    const runner = await ModelRunner.open(modelDir('llama'), { device: 'cpu' });
    try {
      const reads: number[] = [];
      const readRows = runner.checkpoint.readRows.bind(runner.checkpoint);
      runner.checkpoint.readRows = (name, start, count, into) => {
        if (name === 'lm_head.weight') reads.push(count);
        return readRows(name, start, count, into);
      };
      await runner.warmHeadPages().stop();
      const stoppedEarly = reads.length;
      reads.length = 0;
      const warm = runner.warmHeadPages();
      while (reads.reduce((a, b) => a + b, 0) < runner.checkpoint.info('lm_head.weight').shape[0]!) await new Promise((r) => setTimeout(r, 1));
      await warm.stop();
      assert.equal(
        reads.reduce((a, b) => a + b, 0),
        runner.checkpoint.info('lm_head.weight').shape[0],
        'every row read once',
      );
      assert.ok(stoppedEarly <= 1, `stopped at once: ${stoppedEarly} read(s)`);
      assert.equal(runner.weights.accounting.held, 0);
    } finally {
      await runner.close();
    }
    const calls: string[] = [];
    const warmHeadPages = ModelRunner.prototype.warmHeadPages;
    ModelRunner.prototype.warmHeadPages = function (this: ModelRunner) {
      calls.push(this.checkpoint.dir);
      return warmHeadPages.call(this);
    };
    try {
      const fp8 = join(tmp.path, 'llama-warm');
      await convertCheckpoint({ input: modelDir('llama'), output: fp8 });
      const report = await verifyCheckpoints({ original: modelDir('llama'), quantized: fp8, tokens: 4 });
      assert.ok(report.passed);
      assert.deepEqual(calls, [modelDir('llama'), fp8], 'both heads warmed once (CPU)');
      calls.length = 0;
      await verifyCheckpoints({ original: modelDir('llama'), quantized: fp8, tokens: 4, readAhead: true });
      assert.deepEqual(calls, [], 'not where reads run ahead (CUDA)');
    } finally {
      ModelRunner.prototype.warmHeadPages = warmHeadPages;
    }
  });

  test('a quantized checkpoint without an lm_head: verify on the CPU fails in the head phase, every head warmer started is stopped', async () => {
    const fp8 = join(tmp.path, 'llama-warm-no-head');
    await convertCheckpoint({ input: modelDir('llama'), output: join(tmp.path, 'llama-warm-no-head-src') });
    await copyCheckpointWithEdits(join(tmp.path, 'llama-warm-no-head-src'), fp8, (t) => {
      t.delete('lm_head.weight');
    });
    const warmers: { stopped: boolean }[] = [];
    const warmHeadPages = ModelRunner.prototype.warmHeadPages;
    ModelRunner.prototype.warmHeadPages = function (this: ModelRunner) {
      const w = warmHeadPages.call(this);
      const seen = { stopped: false };
      warmers.push(seen);
      return {
        stop: async () => {
          seen.stopped = true;
          await w.stop();
        },
      };
    };
    const events: string[] = [];
    try {
      await assert.rejects(
        verifyCheckpoints({ original: modelDir('llama'), quantized: fp8, tokens: 4, onEvent: (e) => events.push(e.type) }),
        /no lm_head\.weight and tie_word_embeddings is false/,
      );
    } finally {
      ModelRunner.prototype.warmHeadPages = warmHeadPages;
    }
    assert.equal(warmers.length, 2, 'both heads warmed');
    assert.ok(
      warmers.every((w) => w.stopped),
      'every warmer stopped',
    );
    assert.equal(events.at(-1), 'head', 'the head phase reports the missing lm_head');
  });

  test('warmHeadsAt: from the second layer, once the layers left to read fit in half the available memory', () => {
    const gib = 2 ** 30;
    // The bench checkpoint: 7.3 GB for both, 5 layers, 20 GiB available: from layer 1.
    assert.deepEqual(
      [0, 1, 2, 4].map((l) => warmHeadsAt(l, 5, 7.3e9, 20 * gib)),
      [false, true, true, true],
    );
    // A 70B-class pair (210 GB, 80 layers) on 64 GiB: only the last 13 layers' share fits in 32 GiB.
    const first = [...Array(80).keys()].find((l) => warmHeadsAt(l, 80, 210e9, 64 * gib));
    assert.equal(first, 80 - Math.floor((32 * gib * 80) / 210e9));
    assert.equal(warmHeadsAt(1, 1, 1e6, 20 * gib), false, 'a one-layer model has no layer after the first');
  });

  test('read-ahead of stacked experts (gpt-oss, BF16 and FP8): nothing read ahead is left held, the logits are the same', async () => {
    const fp8 = join(tmp.path, 'gpt_oss-fp8');
    await convertCheckpoint({ input: join(MODELS, 'gpt_oss'), output: fp8 });
    for (const dir of [join(MODELS, 'gpt_oss'), fp8]) {
      const ids = [1, 5, 9, 2, 7, 3];
      const logits: Float32Array[] = [];
      for (const readAhead of [false, true]) {
        const runner = await ModelRunner.open(dir, { device: 'cpu', readAhead, buffers: new HostBufferPool() });
        try {
          logits.push(await runner.forward(ids, { batch: 1, seq: ids.length }));
          // Stacked experts' tensors (and their scales and biases) are read by rows: read whole ahead, they were never taken.
          assert.equal(runner.weights.accounting.held, 0, `${dir}: bytes still held after the forward (readAhead ${readAhead})`);
        } finally {
          await runner.close();
        }
      }
      assert.ok(Buffer.from(logits[0]!.buffer).equals(Buffer.from(logits[1]!.buffer)), `${dir}: logits with and without read-ahead`);
    }
  });

  test("prefetchLinears: a linear's weight and scale read at once, served to the scope and accounted; nothing without readAhead", async () => {
    const fp8 = join(tmp.path, 'mixtral-fp8-prefetch');
    await convertCheckpoint({ input: modelDir('mixtral'), output: fp8 });
    const ckpt = await Checkpoint.open(fp8);
    try {
      // The last layer's: reading it starts no read-ahead of a next layer.
      const expert = 'model.layers.1.block_sparse_moe.experts.1.w1';
      const bytes = ckpt.info(`${expert}.weight`).byteLength + ckpt.info(`${expert}.weight_scale_inv`).byteLength;
      const off = new ModelWeights(ckpt, undefined, new HostBufferPool(), false);
      off.prefetchLinears([expert]);
      assert.equal(off.accounting.held, 0, 'no read without readAhead');
      const pool = new HostBufferPool();
      const on = new ModelWeights(ckpt, undefined, pool, true);
      on.prefetchLinears([expert, 'model.layers.1.block_sparse_moe.no_such_linear']);
      assert.equal(on.accounting.held, bytes, 'weight and scale read ahead, a missing linear skipped');
      const scope = on.scope();
      const w = await scope.linear(expert);
      assert.equal(w.kind, 'fp8');
      assert.deepEqual(w.kind === 'fp8' ? w.weight.codes : undefined, await ckpt.readTensor(`${expert}.weight`));
      assert.equal(on.accounting.held, bytes, 'taken over by the scope, not read twice');
      const free = pool.heldBytes;
      scope.close();
      assert.equal(on.accounting.held, 0);
      assert.ok(pool.heldBytes > free, 'the prefetched buffer went back to the pool with the scope');
      assert.equal(pool.heldBytes, bytes, "both read-ahead buffers, the scale's too, are back in the pool");
    } finally {
      await ckpt.close();
    }
  });

  test('read-ahead under a multimodal prefix (model.language_model., language_model.model.): the next text layer, not the vision tower; same logits', async () => {
    for (const [fixture, prefix] of [
      ['qwen3_vl', 'model.language_model.'],
      ['mistral3', 'language_model.model.'],
    ] as const) {
      const dir = join(MODELS, fixture);
      const ckpt = await Checkpoint.open(dir);
      try {
        const weights = new ModelWeights(ckpt, undefined, undefined, true);
        const scope = weights.scope();
        const q0 = await scope.linear(`${prefix}layers.0.self_attn.q_proj`);
        const layer1 = ckpt.tensorNames().filter((n) => n.startsWith(`${prefix}layers.1.`));
        assert.ok(layer1.length > 0);
        const ahead = layer1.reduce((sum, n) => sum + ckpt.info(n).byteLength, 0);
        assert.equal(weights.accounting.held, (q0.weight as { bytes: Uint8Array }).bytes.byteLength + ahead, `${fixture}: text layer 1 read ahead, nothing else`);
        scope.close();
      } finally {
        await ckpt.close();
      }
      const { tensors } = await readAll(join(MODELS, `${fixture}.logits.safetensors`));
      const ids = Array.from(new BigInt64Array(tensors.get('input_ids')!.bytes.slice().buffer), Number);
      const shape = { batch: 2, seq: ids.length / 2 };
      const logits: Float32Array[] = [];
      for (const readAhead of [false, true]) {
        const runner = await ModelRunner.open(dir, { device: 'cpu', readAhead, buffers: new HostBufferPool() });
        try {
          logits.push(await runner.forward(ids, shape));
          assert.equal(runner.weights.accounting.held, 0, `${fixture}: nothing left held after the forward (readAhead ${readAhead})`);
        } finally {
          await runner.close();
        }
      }
      assert.ok(Buffer.from(logits[0]!.buffer).equals(Buffer.from(logits[1]!.buffer)), `${fixture}: logits with and without read-ahead`);
    }
  });

  test("an MoE layer holds one routed expert at a time: each expert's weights go when its run is done", async () => {
    const dir = modelDir('mixtral');
    const runner = await ModelRunner.open(dir, { device: 'cpu' });
    try {
      const layer = 'model.layers.0.';
      let nonExpert = 0;
      const expertBytes = new Map<string, number>();
      for (const name of runner.checkpoint.tensorNames()) {
        if (!name.startsWith(layer)) continue;
        const bytes = runner.checkpoint.info(name).byteLength;
        const expert = /\.experts\.(\d+)\./.exec(name);
        if (expert) expertBytes.set(expert[1]!, (expertBytes.get(expert[1]!) ?? 0) + bytes);
        else nonExpert += bytes;
      }
      const oneExpert = Math.max(...expertBytes.values());
      const tokens = 12;
      const hidden = await runner.embed((await readInputIds(join(MODELS, 'mixtral.logits.safetensors'))).ids.subarray(0, tokens));
      const result = await runner.runLayer(0, hidden, { batch: 1, seq: tokens }, { capture: true });
      const routed = new Set([...result.captures.keys()].filter((m) => m.includes('.experts.')).map((m) => /\.experts\.(\d+)\./.exec(m)![1]));
      assert.ok(routed.size >= 2, `tokens reached ${routed.size} experts`);
      // Held at the peak: the layer's other weights (attention, norms, router) and one expert — not every routed expert's.
      assert.ok(
        runner.weights.accounting.peak <= nonExpert + oneExpert,
        `peak ${runner.weights.accounting.peak} bytes > ${nonExpert} (attention, norms, router) + ${oneExpert} (one expert); ${routed.size} experts routed`,
      );
      assert.equal(runner.weights.accounting.held, 0);
    } finally {
      await runner.close();
    }
  });

  test("routed experts are read ahead in a window: one expert's run holds the experts within the window, not the whole layer's", async () => {
    const dir = modelDir('mixtral');
    const tokens = 12;
    const ids = (await readInputIds(join(MODELS, 'mixtral.logits.safetensors'))).ids.subarray(0, tokens);
    const peaks: number[] = [];
    const logits: Float32Array[] = [];
    let expertBytes = 0;
    for (const window of [1, Number.POSITIVE_INFINITY]) {
      const runner = await ModelRunner.open(dir, { device: 'cpu', readAhead: true, expertReadWindowBytes: window, buffers: new HostBufferPool() });
      try {
        expertBytes = ['w1', 'w2', 'w3'].reduce((acc, p) => acc + runner.checkpoint.info(`model.layers.0.block_sparse_moe.experts.0.${p}.weight`).byteLength, 0);
        logits.push(await runner.forward(ids, { batch: 1, seq: tokens }));
        peaks.push(runner.weights.accounting.peak);
        assert.equal(runner.weights.accounting.held, 0, `window ${window}: nothing left held`);
      } finally {
        await runner.close();
      }
    }
    // A window of one byte still reads each expert's three linears ahead (at least the first linear
    // in flight, the rest as they come); the unbounded window holds every routed expert at once.
    assert.ok(peaks[1]! - peaks[0]! >= expertBytes, `peak with the window ${peaks[0]} bytes, without ${peaks[1]}: at least one expert's ${expertBytes} bytes apart`);
    assert.ok(Buffer.from(logits[0]!.buffer).equals(Buffer.from(logits[1]!.buffer)), 'the same logits with and without the window');
  });
});
